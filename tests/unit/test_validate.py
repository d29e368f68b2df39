"""`hpcci validate` refuses what later stages refuse about a config's own values, with the stage's wording and the
value's file:line:column; `-c FILE` names the pipeline as for every other command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hpcci import tags
from hpcci.backends.schedulers import SCHEDULERS
from hpcci.commands import validate
from hpcci.config import models as config
from hpcci.config.load import load_cluster, load_pipeline
from hpcci.context import GitEvent
from hpcci.errors import ConfigError, HpcciError
from hpcci.references import normalize_repository
from hpcci.stages.deploy.paths import unresolved_paths
from hpcci.stages.deploy.plan import plan_cluster
from hpcci.stages.deploy.smoke import _judge_output
from hpcci.stages.sources import ImageSource

CLUSTER = """\
name: c
login: {host: h, user: u, key: {env: K}, known_hosts: {env: KH}}
scheduler:
  partitions:
    cpu: {name: cpu}
runtime: {type: apptainer}
"""
PIPELINE = "image:\n  name: reg/org/app\n  platforms: [linux/amd64]\ndeploy: {clusters: [c]}\n"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    validate.add_arguments(parser)
    return validate.main(parser.parse_args(list(argv)), None)  # type: ignore[arg-type]


def refusal(*argv: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        run(*argv)
    return str(e.value).splitlines()


def write(folder: Path, text: str, name: str = "hpcci.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def later(call: object) -> str:
    """The message a later stage raises."""
    assert callable(call)
    with pytest.raises(HpcciError) as e:
        call()
    return str(e.value)


def test_an_image_name_build_refuses_is_refused_with_its_position(tmp_path: Path) -> None:
    p = write(tmp_path, "image:\n  name: reg/org/app;rm\n")
    stage = later(lambda: normalize_repository("reg/org/app;rm"))
    assert refusal(str(p)) == [f"{p}:2:9: {stage}"]


def test_a_fixed_extra_tag_build_refuses_is_refused_with_its_position(tmp_path: Path) -> None:
    p = write(tmp_path, "image: {name: org/app}\ntags:\n  extra: [ok, 'x;y']\n")
    rules = config.TagRules(extra=["ok", "x;y"])
    stage = later(lambda: tags.compute_tags(GitEvent(event_name="push", ref="refs/heads/main"), rules))
    assert refusal(str(p)) == [f"{p}:3:15: {stage}"]


def test_an_extra_tag_with_placeholders_is_checked_rendered(tmp_path: Path) -> None:
    p = write(tmp_path, "image: {name: org/app}\ntags:\n  extra: ['{{branch}}-a b', '{{sha}}-ok']\n")
    (line,) = refusal(str(p))
    assert line.startswith(f"{p}:3:11: tags.extra entry 'main-a b' is not a valid image tag: it contains ' '")
    assert line.endswith("(rendered from '{{branch}}-a b' with {{branch}} = 'main', ...)")


@pytest.mark.parametrize(("key", "col"), [("extra", 11), ("semver", 12)])
def test_an_unknown_tag_placeholder_is_refused(tmp_path: Path, key: str, col: int) -> None:
    p = write(tmp_path, f"image: {{name: org/app}}\ntags:\n  {key}: ['{{{{brnch}}}}']\n")
    (line,) = refusal(str(p))
    assert line.startswith(
        f"{p}:3:{col}: tags.{key}: unknown placeholder {{{{brnch}}}} in '{{{{brnch}}}}'; known:"
    )


def test_a_test_command_the_planner_cannot_split_is_refused_in_the_planners_words(tmp_path: Path) -> None:
    text = "image: {name: org/app, platforms: [linux/amd64]}\ntests:\n  - name: t\n    command: echo 'hi\n"
    p = write(tmp_path, text)
    cluster = config.Cluster.model_validate(__import__("yaml").safe_load(CLUSTER))
    pipe = load_pipeline(p)
    source = {"linux/amd64": ImageSource("linux/amd64", "sha256:" + "0" * 64, local_tar="x.tar")}
    paths = unresolved_paths(cluster, "R")
    stage = later(lambda: plan_cluster(pipe, cluster, source, paths, "R", SCHEDULERS["slurm"]))
    assert refusal(str(p)) == [f"{p}:4:14: {stage}"]


def test_test_env_binds_and_expected_output_are_refused_as_the_runtime_and_judge_do(tmp_path: Path) -> None:
    text = (
        "image: {name: org/app}\ntests:\n  - name: t\n    command: x\n    env: {'A-B': '1', OK: '2'}\n"
        "    binds: ['/a:/a', '-x']\n    expect: {output: '(unclosed'}\n"
    )
    p = write(tmp_path, text)
    judged = _judge_output("(unclosed", 0, "")
    assert judged.verdict == "error"
    assert refusal(str(p)) == [
        f"{p}:5:11: test env: 'A-B' is not a valid environment variable name",
        f"{p}:6:22: bind '-x' is not 'src[:dst[:opts]]'",
        f"{p}:7:22: {judged.reason}",
    ]


def test_a_cluster_bind_and_gres_a_job_cannot_carry_are_refused(tmp_path: Path) -> None:
    text = CLUSTER.replace("{name: cpu}", '{name: cpu, gres: "gpu:1\\nx"}').replace(
        "runtime: {type: apptainer}", "runtime:\n  type: apptainer\n  binds: ['']"
    )
    p = write(tmp_path, text, "c.yaml")
    assert refusal(str(p)) == [
        f"{p}:8:11: bind '' is not 'src[:dst[:opts]]'",
        f"{p}:5:28: an #SBATCH directive cannot hold a line break or NUL: 'gpu:1\\nx'; change the value",
    ]


def test_an_automation_cluster_with_shell_paths_is_refused_as_deploy_does(tmp_path: Path) -> None:
    from hpcci.stages.deploy.paths import require_absolute_paths

    text = CLUSTER.replace("user: u,", "user: u, mode: automation,") + "paths: {scratch: $SCRATCH/x}\n"
    p = write(tmp_path, text, "c.yaml")
    assert refusal(str(p)) == [later(lambda: require_absolute_paths(load_cluster(p)))]
    assert refusal(str(p))[0].startswith(f"{p}:7:18: paths.scratch uses $SCRATCH, but login.mode automation")


def test_a_template_with_an_unknown_placeholder_is_refused_at_scheduler_template(tmp_path: Path) -> None:
    write(tmp_path, "#!/bin/bash\n$directives\n$bdy\n", "job.tpl")
    p = write(tmp_path, CLUSTER.replace("  partitions:", "  template: job.tpl\n  partitions:"), "c.yaml")
    (line,) = refusal(str(p))
    assert line.startswith(f"{p}:4:13: batch script template: unknown or malformed placeholder 'bdy'")


def test_a_platform_the_clusters_partitions_need_but_the_build_lacks_is_refused(tmp_path: Path) -> None:
    c = write(
        tmp_path, CLUSTER.replace("{name: cpu}", "{name: cpu, arch: aarch64}"), "cluster-configs/c.yaml"
    )
    p = write(tmp_path, PIPELINE + "tests: [{name: t, command: x}]\n")
    (line,) = refusal(str(p), str(c))
    assert line.startswith(
        f"{c}: deploying {p}: cluster c: its partitions are aarch64 and need a linux/arm64"
    )
    assert line.endswith("add linux/arm64 to image.platforms in hpcci.yaml")


def test_good_configs_pass_and_are_said_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = write(tmp_path, CLUSTER, "cluster-configs/c.yaml")
    p = write(tmp_path, PIPELINE + "tests: [{name: t, command: x, env: {A: b}, expect: {output: '^ok$'}}]\n")
    assert run(str(p), str(c)) == 0
    assert capsys.readouterr().out == f"ok: {p} (pipeline)\nok: {c} (cluster)\n"


def test_dash_c_names_the_pipeline_and_brings_its_cluster_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    c = write(project, CLUSTER.replace("{name: cpu}", "{name: cpu, cpus: 2}"), "site/c.yaml")
    write(project, "name: other\n", "cluster-configs/ignored.yaml")  # not its folder: not read
    p = write(
        project, PIPELINE.replace("{clusters: [c]}", "{clusters: [c], cluster_configs: site}"), "ci.yaml"
    )
    monkeypatch.chdir(tmp_path)
    assert run("-c", str(p)) == 0
    assert capsys.readouterr().out == f"ok: {p} (pipeline)\nok: {c} (cluster)\n"


def test_dash_c_with_files_checks_the_pipeline_against_them(tmp_path: Path) -> None:
    c = write(tmp_path, CLUSTER.replace("{name: cpu}", "{name: cpu, cpus: 2}"), "elsewhere/c.yaml")
    p = write(
        tmp_path, PIPELINE + "tests: [{name: t, command: x, resources: {cpus_per_task: 4}}]\n", "ci.yaml"
    )
    (line,) = refusal("-c", str(p), str(c))
    assert line.startswith(f"{p}:5:42: test 't' asks for 4 CPUs on a node")


def test_output_none_with_expect_output_on_an_automation_node_is_refused_as_deploy_does(
    tmp_path: Path,
) -> None:
    text = (
        CLUSTER.replace("user: u,", "user: u, mode: automation,")
        + "paths: {scratch: /s, image_cache: /s/c, tmpdir: /s/t}\nreport: {output: none}\n"
    )
    cluster = write(tmp_path, text, "cluster-configs/c.yaml")
    tests = "tests:\n  - {name: t, command: 'true', expect: {output: ok}}\n  - {name: u, command: 'true'}\n"
    pipe = write(tmp_path, PIPELINE + tests)
    (problem,) = refusal("-c", str(pipe))
    assert f"{cluster}:8:18: report.output none matches expect.output with grep" in problem, problem
    assert "(tests t);" in problem, problem
    write(
        tmp_path, PIPELINE + "tests:\n  - {name: u, command: 'true'}\n"
    )  # no expect.output: nothing to match
    assert run("-c", str(pipe)) == 0
