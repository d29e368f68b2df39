"""The stage actions' own `run:` scripts (actions/{build,publish,deploy}/action.yml), run by bash as the runner
runs them, with every secret of the repository in HPCCI_SECRETS (`toJSON(secrets)`): the program they start -
hpcci, here a stand-in that writes down its environment - gets only the secrets the trusted configuration names
for that job. The build holds no cluster key; a deploy holds only its own cluster's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
EVERY_SECRET = {
    "REG_PASSWORD": "reg-pass-value",
    "S3_SECRET": "s3-secret-value",
    "ALPHA_SSH_KEY": "alpha-key-value",
    "BETA_SSH_KEY": "beta-key-value",
    "UNRELATED_TOKEN": "unrelated-value",
}
PIPELINE = """\
image: {name: 127.0.0.1:5000/octo-org/app, platforms: [linux/amd64]}
publish:
  registry: {url: 127.0.0.1:5000, username: ci, password: {env: REG_PASSWORD}}
  s3: {bucket: b, access_key: key-id, secret_key: {env: S3_SECRET}}
deploy: {clusters: [alpha, beta]}
tests: [{name: t, command: "true"}]
"""
CLUSTER = """\
name: {name}
login: {{host: login.example.org, user: ci, key: {{env: {key}}}, known_hosts: {{file: known_hosts}}}}
scheduler: {{type: slurm, account: a, partitions: {{cpu: {{name: cpu, arch: x86_64}}}}, default_partition: cpu}}
runtime: {{type: apptainer}}
"""


def step_script(action: str, step_id: str) -> str:
    doc: Any = YAML(typ="safe", pure=True).load((REPO / "actions" / action / "action.yml").read_text())
    (step,) = [s for s in doc["runs"]["steps"] if s.get("id") == step_id]
    return str(step["run"])


def run_step(action: str, step_id: str, work: Path, **env: str) -> dict[str, str]:
    """Run the step's script in ``work`` (bash -e -o pipefail, as `shell: bash`); the environment hpcci got."""
    dump = work / "hpcci-env.json"
    fake = work / "fake-hpcci"
    fake.write_text(
        f"#!{sys.executable}\nimport json, os\nopen({str(dump)!r}, 'w').write(json.dumps(dict(os.environ)))\n"
    )
    fake.chmod(0o755)
    script = work / "step.sh"
    script.write_text(step_script(action, step_id))
    full = {
        "PATH": os.environ["PATH"],
        "HOME": str(work),
        "GITHUB_ACTION_PATH": str(REPO / "actions" / action),
        "HPCCI": str(fake),
        "HPCCI_VENV_PYTHON": sys.executable,
        "HPCCI_SECRETS": json.dumps(EVERY_SECRET),
        "HPCCI_CONFIG": "hpcci.yaml",
        "HPCCI_RECORDS": ".hpcci",
        **env,
    }
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", str(script)],
        cwd=work,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    got: dict[str, str] = json.loads(dump.read_text())
    return got


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "cluster-configs").mkdir()
    for name, key in (("alpha", "ALPHA_SSH_KEY"), ("beta", "BETA_SSH_KEY")):
        (tmp_path / "cluster-configs" / f"{name}.yaml").write_text(CLUSTER.format(name=name, key=key))
    (tmp_path / "hpcci.yaml").write_text(PIPELINE)
    return tmp_path


def secrets_in(env: dict[str, str]) -> set[str]:
    return {name for name, value in EVERY_SECRET.items() if env.get(name) == value} | (
        {"HPCCI_SECRETS"} if "HPCCI_SECRETS" in env else set()
    )


def test_the_build_job_hands_hpcci_no_cluster_key(work: Path) -> None:
    assert secrets_in(run_step("build", "build", work, HPCCI_SOURCE="")) == {"REG_PASSWORD"}


def test_the_publish_step_hands_hpcci_the_registry_and_s3_secrets_only(work: Path) -> None:
    assert secrets_in(run_step("publish", "publish", work, HPCCI_TO="")) == {"REG_PASSWORD", "S3_SECRET"}


def test_a_deploy_job_hands_hpcci_only_its_own_clusters_key(work: Path) -> None:
    env = {"HPCCI_BUILD_RECORD": "", "HPCCI_PUBLISH_RECORD": ""}
    alpha = secrets_in(run_step("deploy", "deploy", work, HPCCI_CLUSTER="alpha", **env))
    assert alpha == {"REG_PASSWORD", "S3_SECRET", "ALPHA_SSH_KEY"}
    beta = secrets_in(run_step("deploy", "deploy", work, HPCCI_CLUSTER="beta", **env))
    assert beta == {"REG_PASSWORD", "S3_SECRET", "BETA_SSH_KEY"}
