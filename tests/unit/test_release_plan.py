"""The release plan: which tag is a release, where it goes, the install steps in their atomic order, the default
pointer, the promotion gate, the report line, the config section and the commands' input errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hpcci import cli, records
from hpcci.config.load import load_cluster
from hpcci.config.models import Cluster
from hpcci.context import GitEvent
from hpcci.errors import ConfigError
from hpcci.records import ClusterResult, ReleaseOutcome
from hpcci.stages.release.modulefile import ModuleInfo
from hpcci.stages.release.plan import (
    LinkOrCopy,
    plan_install,
    pointer_steps,
    release_paths,
    release_request,
    release_variables,
    require_absolute,
)
from hpcci.stages.release.promote import untested
from hpcci.stages.report.text import release_line
from hpcci.stages.steps import Command, WriteFile

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab" * 32


def local(**release: Any) -> Cluster:
    cluster = load_cluster(ROOT / "cluster-configs" / "local.yaml")
    assert cluster.release is not None
    return cluster.model_copy(update={"release": cluster.release.model_copy(update=release)})


def tag(ref: str) -> GitEvent:
    return GitEvent(ref=ref, sha="c" * 40, repository="o/fib", run_id="42")


# -- which release ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "version"),
    [
        ("refs/tags/v0.1.0", "0.1.0"),
        ("refs/tags/2.0.0-rc.1", "2.0.0-rc.1"),
        ("refs/tags/nightly/7", "nightly-7"),
    ],
)
def test_the_version_follows_the_tag_rules(ref: str, version: str) -> None:
    request = release_request(tag(ref), "docker.io/o/fib", "run-1")
    assert request is not None and request.version == version and request.commit == "c" * 40
    assert request.run_url == "https://github.com/o/fib/actions/runs/42"


def test_a_branch_is_not_a_release() -> None:
    assert release_request(tag("refs/heads/main"), "docker.io/o/fib", "run-1") is None


# -- where ---------------------------------------------------------------------------------------------------------


def test_paths_resolve_the_login_shells_variables() -> None:
    paths = release_paths(local(), "fib", {"PROJECT": "/proj/g"})
    assert (paths.app, paths.modules, paths.manifest) == ("/proj/g/apps/fib", "/proj/g/modulefiles/fib",
                                                          "/proj/g/apps/fib/releases.json")  # fmt: skip
    with pytest.raises(ConfigError, match=r"release.root '\$PROJECT/apps' uses \$PROJECT, which is not set"):
        release_paths(local(), "fib", {})


def test_home_relative_paths_resolve_too() -> None:
    cluster = local(root="~/apps", modulefiles="~/modulefiles")
    assert "HOME" in release_variables(cluster)
    assert release_paths(cluster, "fib", {"HOME": "/home/u"}).app == "/home/u/apps/fib"


def test_an_automation_node_needs_absolute_release_paths_and_says_where() -> None:
    with pytest.raises(
        ConfigError, match=r"local\.yaml:\d+:\d+: release.root \$PROJECT/apps needs a login shell"
    ):
        require_absolute(local())
    require_absolute(local(root="/proj/apps", modulefiles="/proj/modulefiles"))


# -- the steps -------------------------------------------------------------------------------------------------------


def install_steps(cluster: Cluster) -> list[Any]:
    paths = release_paths(cluster, "fib", {"PROJECT": "/proj"})
    info = ModuleInfo("fib", "0.1.0", "v0.1.0", "c" * 40, "docker.io/o/fib", DIGEST, paths.sif("0.1.0"),
                      "/proj/apps/fib/0.1.0/bin", ("apptainer",), "tested")  # fmt: skip
    return plan_install(cluster, paths, info, "/scratch/images/abab.sif", "run-1").steps()


def test_everything_is_made_under_hidden_names_and_appears_by_rename() -> None:
    steps = install_steps(local())
    renames = [s.argv for s in steps if isinstance(s, Command) and s.argv[:2] == ["mv", "-T"]]
    assert renames[1:] == [
        ["mv", "-T", "--", "/proj/apps/fib/.0.1.0.run-1.part", "/proj/apps/fib/0.1.0"],
        ["mv", "-T", "--", "/proj/modulefiles/fib/.0.1.0.lua.run-1.part", "/proj/modulefiles/fib/0.1.0.lua"],
    ]
    last_write = max(i for i, s in enumerate(steps) if isinstance(s, (WriteFile, LinkOrCopy)))
    first_visible = next(
        i for i, s in enumerate(steps) if isinstance(s, Command) and s.argv[-1].endswith("/0.1.0")
    )
    assert last_write < first_visible
    for s in steps:
        if isinstance(s, WriteFile):
            assert "/." in s.path and s.path.endswith(
                (".part", "/bin/fib-run", "/bin/fib-exec", "/bin/fib-shell")
            )


def test_the_cached_sif_is_hard_linked_or_else_copied() -> None:
    (step,) = [s for s in install_steps(local()) if isinstance(s, LinkOrCopy)]
    assert step.link.argv == [
        "ln",
        "--",
        "/scratch/images/abab.sif",
        "/proj/apps/fib/.0.1.0.run-1.part/fib.sif",
    ]
    assert step.copy.argv[0] == "cp" and step.copy.argv[2:] == step.link.argv[2:]


def test_the_group_gets_read_access_before_anything_is_visible() -> None:
    argvs = [s.argv for s in install_steps(local()) if isinstance(s, Command)]
    assert ["chgrp", "-R", "--", "hpcci-users", "/proj/apps/fib/.0.1.0.run-1.part"] in argvs
    assert ["chmod", "-R", "g+rX", "--", "/proj/apps/fib/.0.1.0.run-1.part"] in argvs
    assert not any(
        a[0] == "chgrp" for a in (s.argv for s in install_steps(local(group=None)) if isinstance(s, Command))
    )


def test_lmod_default_is_a_symlink_renamed_into_place() -> None:
    cluster = local()
    assert cluster.release is not None
    steps = pointer_steps(cluster.release, release_paths(cluster, "fib", {"PROJECT": "/p"}), "0.2.0", "r")
    assert [s.argv for s in steps if isinstance(s, Command)] == [
        ["ln", "-sfn", "--", "0.2.0.lua", "/p/modulefiles/fib/.default.r.part"],
        ["mv", "-T", "--", "/p/modulefiles/fib/.default.r.part", "/p/modulefiles/fib/default"],
    ]


def test_tcl_default_is_a_version_file_renamed_into_place() -> None:
    cluster = local(module_system="tcl", group=None)
    assert cluster.release is not None
    write, move = pointer_steps(
        cluster.release, release_paths(cluster, "fib", {"PROJECT": "/p"}), "0.2.0", "r"
    )
    assert isinstance(write, WriteFile) and 'set ModulesVersion "0.2.0"' in write.text
    assert isinstance(move, Command) and move.argv[-1] == "/p/modulefiles/fib/.version"


# -- the gate and the report line --------------------------------------------------------------------------------


def result(*verdicts: str, error: str | None = None, release: ReleaseOutcome | None = None) -> ClusterResult:
    tests = [records.TestResult("local", f"t{i}", "linux/amd64", str(i), "X", 0, 1.0, v, "why")  # type: ignore[arg-type]
             for i, v in enumerate(verdicts)]  # fmt: skip
    return ClusterResult("local", "linux/amd64", tests, DIGEST, error=error, release=release)


def test_only_a_cluster_whose_every_smoke_test_passed_promotes() -> None:
    assert untested(result("pass", "pass")) is None
    assert untested(result("pass", "timed_out", "infra")) == (
        "2 of 3 smoke tests did not pass: t1 (timed out), t2 (infra)"
    )
    assert untested(result("cancelled")) == "1 of 1 smoke tests did not pass: t0 (cancelled)"
    assert untested(result()) == "no smoke test ran on this cluster; hpcci installs only tested releases"
    assert untested(result(error="unreachable")) == "the deploy failed (unreachable)"


@pytest.mark.parametrize(
    ("outcome", "line"),
    [
        (None, None),
        (ReleaseOutcome("fib/0.1.0", "installed", "", True), "installed as module fib/0.1.0 on local (default)"),
        (ReleaseOutcome("fib/0.1.1", "installed", "the default stays 0.2.0: it is newer", False, ["0.0.9"]),
         "installed as module fib/0.1.1 on local (not default: the default stays 0.2.0: it is newer); removed "
         "0.0.9 (retention)"),
        (ReleaseOutcome("fib/0.1.0", "not_installed", "1 of 1 smoke tests did not pass: t0 (fail)"),
         "not installed as module fib/0.1.0 on local: 1 of 1 smoke tests did not pass: t0 (fail)"),
        (ReleaseOutcome("fib/0.1.0", "unchanged", "installed already from this image; nothing changed", True),
         "module fib/0.1.0 on local (default): installed already from this image; nothing changed"),
    ],
)  # fmt: skip
def test_the_check_run_says_where_the_release_was_installed_or_why_not(
    outcome: ReleaseOutcome | None, line: str | None
) -> None:
    assert release_line(result("pass", release=outcome)) == line


# -- the config section ----------------------------------------------------------------------------------------------


def config_error(tmp_path: Path, **release: Any) -> str:
    data = yaml.safe_load((ROOT / "cluster-configs" / "local.yaml").read_text())
    data["release"] = {"root": "$WORK/apps", "modulefiles": "$WORK/modulefiles", **release}
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_cluster(path)
    return str(e.value)


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ({"root": "apps"}, "release.root: 'apps' is relative"),
        ({"modulefiles": "$WORK/modulefiles/"}, "without a trailing '/'"),
        ({"keep": 0}, "release.keep"),
        ({"group": "-x"}, "release.group"),
        ({"module_system": "lua"}, "release.module_system"),
        ({"make_defualt": False}, "did you mean 'make_default'?"),
        ({"root": "/proj/a:b"}, "release.root: '/proj/a:b' holds ':'"),
        ({"modulefiles": "$WORK/m:x"}, "release.modulefiles: '$WORK/m:x' holds ':'"),
    ],
    ids=["relative", "trailing-slash", "keep", "group", "system", "typo", "colon-root", "colon-modulefiles"],
)
def test_a_bad_release_section_is_one_error_with_file_and_line(
    tmp_path: Path, release: dict[str, Any], expected: str
) -> None:
    error = config_error(tmp_path, **release)
    assert error.startswith(f"{tmp_path}/local.yaml:") and expected in error, error


# -- the commands ----------------------------------------------------------------------------------------------------


def test_rollback_refuses_a_version_that_is_not_one_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rollback", "--cluster", "local", "--to", "../x"]) == 2
    assert capsys.readouterr().err.strip().startswith("hpcci: error: --to '../x' is not a module version")


@pytest.mark.parametrize("command", ["releases", "rollback"])
def test_a_module_name_that_is_not_a_plain_name_is_refused_with_exit_2(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        command,
        "--cluster",
        "local",
        "--name",
        "../../etc",
        *(["--to", "0.1.0"] if command == "rollback" else []),
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hpcci: error: --name '../../etc' is not a valid name"), err


def test_releases_on_a_cluster_without_a_release_section_is_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load((ROOT / "cluster-configs" / "local.yaml").read_text())
    del data["release"]
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(data))
    rc = cli.main(
        ["releases", "--cluster", str(tmp_path / "local.yaml"), "--config", str(tmp_path / "none.yaml")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cluster local has no release section" in err[0]


def test_plan_prints_the_release_steps_and_the_modulefile(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(ROOT / "examples" / "fibonacci" / "hpcci.yaml")
    argv = [
        "plan",
        "-c",
        config,
        "--records",
        "/nonexistent",
        "--only",
        "release",
        "--ref",
        "refs/tags/v0.1.0",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "### cluster local: fibonacci/0.1.0 as a lmod module, only when every smoke test passed" in out
    # pasteable: $PROJECT expands in a shell on the cluster, the rest stays literal
    assert (
        "+ mv -T -- \"$PROJECT\"'/apps/fibonacci/.0.1.0.RUN_ID.part' \"$PROJECT\"'/apps/fibonacci/0.1.0'"
        in out
    )
    assert 'setenv("FIBONACCI_SIF", "$PROJECT/apps/fibonacci/0.1.0/fibonacci.sif")' in out
    assert "users: module use $PROJECT/modulefiles; module load fibonacci/0.1.0" in out


def test_the_release_outcome_round_trips_through_results_json() -> None:
    release = ReleaseOutcome("fib/0.1.0", "installed", "", True, ["0.0.1"], "/p/fib.sif", "/p/m/0.1.0.lua")
    results = records.Results("img", [result("pass", release=release)])
    assert records.from_json(records.Results, records.to_json(results)) == results


def test_the_check_run_summary_carries_the_release_line() -> None:
    from hpcci.stages.report.text import summary

    text = summary(result("pass", release=ReleaseOutcome("fib/0.1.0", "installed", "", True)))
    assert "**Release:** installed as module fib/0.1.0 on local (default)" in text


@pytest.mark.parametrize(
    "image", ["docker.io/org/..", "docker.io/org/x\nos.execute('id')", "docker.io/org/.hidden"]
)
def test_a_module_name_from_image_name_that_is_not_a_plain_name_is_refused(image: str) -> None:
    from hpcci.stages.release.plan import module_name

    cfg = local().release
    assert cfg is not None
    with pytest.raises(ConfigError, match=r"set release\.name"):
        module_name(cfg.model_copy(update={"name": None}), image)


def test_a_run_id_with_slashes_keeps_every_temporary_name_inside_the_release_root() -> None:
    cluster = local(root="/proj/apps", modulefiles="/proj/modulefiles")
    paths = release_paths(cluster, "fibonacci", {})
    info = ModuleInfo("fibonacci", "0.1.0", "v0.1.0", "c" * 40, "i", DIGEST, paths.sif("0.1.0"),
                      f"{paths.version_dir('0.1.0')}/bin", (), "tested")  # fmt: skip
    run_id = "x/../../../../tmp/evil"
    install = plan_install(cluster, paths, info, "/cache/x.sif", run_id)
    assert cluster.release is not None
    pointer = pointer_steps(cluster.release, paths, "0.1.0", run_id)
    steps = [*install.steps(), *install.discard, install.restore, *pointer]
    words = [
        w
        for s in steps
        for w in (s.argv if isinstance(s, Command) else [s.path] if isinstance(s, WriteFile) else s.link.argv)
    ]
    assert not any("/.." in w for w in words), [w for w in words if "/.." in w]
