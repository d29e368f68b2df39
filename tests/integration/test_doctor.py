"""`hpcci doctor --cluster NAME` against the local cluster: what is ready, and what to fix when it is not.

Needs `scripts/local-stack up cluster`; skips without it (fails under CI=true).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from deploy_support import REPO, Project, cluster_config, hpcci

from hpcci.errors import ConfigError, HostKeyError
from hpcci.process import Completed, run


def doctor(tmp_path: Path, config: dict[str, object] | None = None) -> Completed:
    folder = tmp_path / "cluster-configs"
    folder.mkdir(exist_ok=True)
    (folder / "local.yaml").write_text(yaml.safe_dump(config or cluster_config()))
    return hpcci(Project(tmp_path), "doctor", "--cluster", "local", "--cluster-configs", str(folder))


@pytest.fixture(autouse=True)
def cluster_up(require: Callable[..., None]) -> None:
    require("cluster")


def test_the_local_cluster_is_ready(tmp_path: Path) -> None:
    done = doctor(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for check in (
        "ssh",
        "paths",
        "runtime",
        "partition cpu",
        "partition gpu",
        "account",
        "mpi",
        "curl",
        "s3",
    ):
        assert any(line.split()[:1] == ["ok"] and check in line for line in out.splitlines()), (check, out)
    # free space depends on the machine: below 10 GiB it is a warning, never a failure
    assert any(line.split()[:1] in (["ok"], ["warn"]) and "GiB free" in line for line in out.splitlines()), (
        out
    )
    assert "apptainer version 1.4.1+hpcci-standin" in out  # the stand-in, after `module load apptainer`
    assert out.rstrip().endswith("ready")


def test_doctor_finds_the_cluster_from_hpcci_yaml(tmp_path: Path) -> None:
    done = run(
        [str(REPO / ".venv" / "bin" / "hpcci"), "doctor"], timeout=120, check=False,
        cwd=str(REPO / "examples" / "fibonacci"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_wrong_partition_account_and_runtime_module_each_say_what_to_fix(tmp_path: Path) -> None:
    config = cluster_config(
        **{
            "scheduler.partitions.gpu.name": "gpuz",
            "scheduler.account": "nosuch",
            "runtime.modules": ["apptainer/9.9"],
        }
    )
    done = doctor(tmp_path, config)
    assert done.returncode == 1
    out = done.stdout
    assert "FAIL  partition gpu" in out and "fix scheduler.partitions.gpu.name" in out
    assert "FAIL  account" in out and "fix scheduler.account" in out
    assert "FAIL  runtime" in out and "fix runtime.modules" in out
    assert "NOT ready: 3 problem(s)" in out


def test_an_unknown_host_key_is_reported_with_its_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("")
    done = doctor(tmp_path, cluster_config(**{"login.known_hosts": {"file": str(tmp_path / "known_hosts")}}))
    assert done.returncode == HostKeyError.exit_code  # 41, as `hpcci deploy` exits for the same cause
    fp = run(["ssh-keygen", "-l", "-f", os.environ["HPCCI_LOCAL_KNOWN_HOSTS"]], timeout=30).stdout.split()[1]
    assert "FAIL  ssh" in done.stdout and fp in done.stdout and "confirm this fingerprint" in done.stdout
    assert " -> " not in done.stdout  # the error names its own fix: no class-wide guess beside it


def test_an_unreachable_s3_endpoint_is_reported(tmp_path: Path) -> None:
    done = doctor(tmp_path, cluster_config(**{"staging.s3_endpoint_url": "http://10.77.0.1:1"}))
    assert done.returncode == 1
    assert "FAIL  s3" in done.stdout and "staging.s3_endpoint_url" in done.stdout


def test_an_unset_ssh_user_secret_is_a_failed_check_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("H7_UNSET_DOCTOR_USER", raising=False)
    done = doctor(tmp_path, cluster_config(**{"login.user": {"env": "H7_UNSET_DOCTOR_USER"}}))
    assert done.returncode == ConfigError.exit_code, done.stdout + done.stderr
    assert "FAIL  ssh" in done.stdout and "H7_UNSET_DOCTOR_USER is not set" in done.stdout
    assert done.stdout.rstrip().endswith("NOT ready: 1 problem(s)")
    assert "Traceback" not in done.stderr
