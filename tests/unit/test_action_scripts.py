"""The small scripts the composite actions run: secret masking and export, step outputs, the deploy matrix."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def script(relpath: str) -> ModuleType:
    path = REPO / relpath
    spec = importlib.util.spec_from_file_location(f"action_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


secrets = script("actions/setup/secrets.py")
outputs = script("actions/setup/outputs.py")
clusters = script("actions/deploy/clusters/clusters.py")


def test_multiline_secret_is_masked_whole_and_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nabc123\n-----END KEY-----"
    lines = secrets.mask_lines(key)
    assert lines[0] == "::add-mask::-----BEGIN KEY-----%0Aabc123%0A-----END KEY-----"
    assert "::add-mask::abc123" in lines
    assert len(lines) == 4


def test_empty_secret_masks_nothing() -> None:
    assert secrets.mask_lines("") == []
    assert secrets.mask_lines("  \n ") == []


def test_mask_reads_the_secrets_object_and_named_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HPCCI_SECRETS", json.dumps({"DOCKERHUB_TOKEN": "tok-1", "github_token": "ghs_x"}))
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_y")
    assert secrets.mask(["GITHUB_TOKEN"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["::add-mask::tok-1", "::add-mask::ghs_x", "::add-mask::ghs_y"]


def test_secrets_input_that_is_not_json_stops_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCCI_SECRETS", "DOCKERHUB_TOKEN=abc")
    with pytest.raises(SystemExit, match="toJSON"):
        secrets.secrets_object()


def test_secrets_become_environment_variables_but_never_override_or_leak_the_token() -> None:
    env = secrets.exported(
        {
            "DOCKERHUB_TOKEN": "t",
            "HPCCI_REGISTRY_USERNAME": "from-secret",
            "github_token": "g",
            "bad name": "x",
        },
        {"PATH": "/bin", "HPCCI_REGISTRY_USERNAME": "set-by-workflow", "HPCCI_SECRETS": "{...}"},
    )
    assert env == {"PATH": "/bin", "HPCCI_REGISTRY_USERNAME": "set-by-workflow", "DOCKERHUB_TOKEN": "t"}


def test_build_outputs_come_from_the_build_record(tmp_path: Path) -> None:
    record = {"image": "r/o/app", "tags": ["main", "sha-abc1234"], "manifest_digest": None, "platforms": []}
    (tmp_path / "build.json").write_text(json.dumps(record))
    out = outputs.outputs("build", tmp_path)
    assert out["image"] == "r/o/app"
    assert out["tags"] == "main\nsha-abc1234"
    assert out["digest"] == ""
    assert json.loads(out["record"]) == record


def test_publish_outputs_carry_the_registry_digest(tmp_path: Path) -> None:
    record = {"image": "r/o/app", "tags": ["v1"], "registry": {"refs": [], "digest": "sha256:ab"}, "s3": []}
    (tmp_path / "publish.json").write_text(json.dumps(record))
    assert outputs.outputs("publish", tmp_path)["digest"] == "sha256:ab"


def test_missing_record_gives_no_outputs(tmp_path: Path) -> None:
    assert outputs.outputs("publish", tmp_path) == {}


def _results(verdicts: list[str], error: str | None = None) -> dict[str, object]:
    tests = [{"test": f"t{i}", "verdict": v} for i, v in enumerate(verdicts)]
    return {
        "image": "i",
        "clusters": [{"cluster": "local", "platform": "linux/amd64", "tests": tests, "error": error}],
    }


def test_deploy_conclusion_is_success_only_when_every_test_passed() -> None:
    assert outputs.conclusion(_results(["pass", "pass"])) == "success"
    assert outputs.conclusion(_results(["pass", "fail"])) == "failure"
    assert outputs.conclusion(_results(["pass", "timed_out"])) == "failure"
    assert outputs.conclusion(_results([], error="login node unreachable")) == "failure"
    assert outputs.conclusion({"image": "i", "clusters": []}) == "failure"


def test_deploy_outputs_include_results_and_conclusion(tmp_path: Path) -> None:
    (tmp_path / "deploy.json").write_text(json.dumps({"image": "i", "clusters": []}))
    (tmp_path / "results.json").write_text(json.dumps(_results(["pass"])))
    out = outputs.outputs("deploy", tmp_path)
    assert out["conclusion"] == "success"
    assert json.loads(out["results"])["clusters"][0]["cluster"] == "local"


def test_github_output_text_survives_json_and_newlines() -> None:
    text = outputs.github_output_text({"record": '{\n  "a": 1\n}'})
    name, _, delim = text.splitlines()[0].partition("<<")
    assert name == "record"
    assert text.splitlines()[1:] == ["{", '  "a": 1', "}", delim]


EXAMPLE = REPO / "examples" / "fibonacci" / "hpcci.yaml"


def test_tag_push_deploys_to_the_examples_clusters() -> None:
    names, why = clusters.deploy_clusters(EXAMPLE, "", "tag")
    assert names == ["local"]
    assert "deploys to local" in why


def test_branch_push_does_not_deploy_when_deploy_on_leaves_it_out() -> None:
    names, why = clusters.deploy_clusters(EXAMPLE, "", "push")
    assert names == []
    assert "does not deploy" in why


def test_unknown_cluster_fails_before_anything_is_deployed() -> None:
    from hpcci.errors import ConfigError

    with pytest.raises(ConfigError, match="no config for cluster 'locl'; did you mean 'local'"):
        clusters.deploy_clusters(EXAMPLE, "locl", "workflow_dispatch")


def test_secrets_named_like_startup_variables_are_not_exported() -> None:
    env = secrets.exported({"LD_PRELOAD": "/x.so", "PYTHONPATH": "/x", "BASH_ENV": "/x", "OK_NAME": "v"}, {})
    assert env == {"OK_NAME": "v"}


# -- secret_names.py: a job hands hpcci only the secrets its trusted configuration names ---------------------------

secret_names = script("actions/setup/secret_names.py")

PIPELINE = """\
image: {name: 127.0.0.1:5000/octo-org/app, platforms: [linux/amd64]}
build:
  registries: [{host: ghcr.io, username: bot, password: {env: BASE_PULL_TOKEN}}]
publish:
  registry: {url: 127.0.0.1:5000, username: {env: REG_USER}, password: {env: REG_PASSWORD}}
  s3: {bucket: b, access_key: {env: S3_KEY_ID}, secret_key: {env: S3_SECRET}}
deploy: {clusters: [alpha, beta]}
tests: [{name: t, command: "true"}]
"""
CLUSTER = """\
name: {name}
login: {{host: login.example.org, user: ci, key: {{env: {key}}}, known_hosts: {{file: "$HOSTS_DIR/known"}}}}
scheduler: {{type: slurm, account: a, partitions: {{cpu: {{name: cpu, arch: x86_64}}}}, default_partition: cpu}}
runtime: {{type: apptainer}}
paths: {{scratch: /scratch/ci}}
"""


@pytest.fixture
def trusted_config(tmp_path: Path) -> Path:
    (tmp_path / "cluster-configs").mkdir()
    for name, key in (("alpha", "ALPHA_SSH_KEY"), ("beta", "BETA_SSH_KEY")):
        text = CLUSTER.format(name=name, key=key)
        (tmp_path / "cluster-configs" / f"{name}.yaml").write_text(text, encoding="utf-8")
    config = tmp_path / "hpcci.yaml"
    config.write_text(PIPELINE, encoding="utf-8")
    return config


def test_the_build_gets_the_registry_secrets_and_no_cluster_key(trusted_config: Path) -> None:
    assert secret_names.names_for("build", trusted_config) == ["BASE_PULL_TOKEN", "REG_PASSWORD", "REG_USER"]
    assert secret_names.names_for("publish", trusted_config) == [
        "REG_PASSWORD",
        "REG_USER",
        "S3_KEY_ID",
        "S3_SECRET",
    ]


def test_a_deploy_gets_only_its_own_clusters_key(trusted_config: Path) -> None:
    alpha = secret_names.names_for("deploy", trusted_config, "alpha")
    assert "ALPHA_SSH_KEY" in alpha and "BETA_SSH_KEY" not in alpha, alpha
    assert "HOSTS_DIR" in alpha  # a `$NAME` in a file path is read from the environment too
    both = secret_names.names_for("deploy", trusted_config, "")
    assert {"ALPHA_SSH_KEY", "BETA_SSH_KEY"} <= set(both)


def test_only_the_named_secrets_are_exported() -> None:
    every = {"REG_PASSWORD": "p", "ALPHA_SSH_KEY": "k", "BETA_SSH_KEY": "b"}
    assert secrets.exported(every, {"PATH": "/bin"}, {"REG_PASSWORD"}) == {
        "PATH": "/bin",
        "REG_PASSWORD": "p",
    }
    assert secrets.exported(every, {}, set()) == {}
    assert secrets.exported(every, {}) == every  # no --only: as before (the secrets object is already scoped)


def test_secret_names_reports_a_broken_config_as_an_annotation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hpcci.yaml").write_text("image: {}\n", encoding="utf-8")
    rc = secret_names.main(["build", str(tmp_path / "hpcci.yaml")])
    out = capsys.readouterr()
    assert rc != 0 and out.err.startswith("::error title=hpcci secrets::") and out.out == ""


def test_exec_takes_the_names_before_the_program() -> None:
    assert secrets.exec_arguments(["--only=A,B", "/bin/hpcci", "build"]) == (
        {"A", "B"},
        ["/bin/hpcci", "build"],
    )
    assert secrets.exec_arguments(["--only=", "/bin/hpcci"]) == (
        set(),
        ["/bin/hpcci"],
    )  # the config names none
    assert secrets.exec_arguments(["/bin/hpcci", "--only=A"]) == (None, ["/bin/hpcci", "--only=A"])


def test_an_s3_target_without_keys_names_boto3s_own_variables(trusted_config: Path) -> None:
    text = trusted_config.read_text(encoding="utf-8").replace(
        "s3: {bucket: b, access_key: {env: S3_KEY_ID}, secret_key: {env: S3_SECRET}}", "s3: {bucket: b}"
    )
    trusted_config.write_text(text, encoding="utf-8")
    publish = secret_names.names_for("publish", trusted_config)
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} <= set(publish)
    assert "S3_SECRET" not in publish
    assert "AWS_SECRET_ACCESS_KEY" not in secret_names.names_for("build", trusted_config)


def test_each_cluster_deploys_in_its_own_github_environment(trusted_config: Path) -> None:
    beta = trusted_config.parent / "cluster-configs" / "beta.yaml"
    beta.write_text("environment: site-beta\n" + beta.read_text(encoding="utf-8"), encoding="utf-8")
    envs = clusters.environments(trusted_config, ["alpha", "beta"])
    assert envs == {"alpha": "hpcci-alpha", "beta": "site-beta"}
