"""Access modes against real sshd profiles of the local login node (scripts/local-stack up access): an automation
node whose robot key runs only a wrapper's allowed commands, SSH user certificates from a test CA, and a login
node that asks for a second factor after the key.

Needs `scripts/local-stack up docker registry cluster access`; skips without them (fails under CI=true).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_support import cluster_config, hpcci, make_project

from hpcci import records as rec
from hpcci.backends.ssh.remote import SSHRemote
from hpcci.config.models import LoginConfig
from hpcci.errors import RemoteAuthError
from hpcci.process import run
from hpcci.wiring import ssh_target
from stack_env import require_services

FIB = {"name": "fib", "command": "python3 /app/fib.py 10", "expect": {"output": "^55$"},
       "resources": {"time": "00:05:00", "memory": "512M"}}  # fmt: skip
REFUSED = 126  # the wrapper's exit code for a command it does not allow


@pytest.fixture(autouse=True)
def access_up(require: Callable[..., None]) -> None:
    require("cluster", "access")


def login(**changes: Any) -> LoginConfig:
    e = os.environ
    data: dict[str, Any] = {
        "host": e["HPCCI_ACCESS_HOST"],
        "port": int(e["HPCCI_AUTO_SSH_PORT"]),
        "user": e["HPCCI_AUTO_SSH_USER"],
        "key": {"file": e["HPCCI_AUTO_SSH_KEY_FILE"]},
        "known_hosts": {"file": e["HPCCI_ACCESS_KNOWN_HOSTS"]},
        "connect_timeout": 10,
    }
    return LoginConfig.model_validate({**data, **changes})


def robot() -> SSHRemote:
    return SSHRemote(ssh_target("local", login()))


def cert_login(expired: bool = False, **changes: Any) -> LoginConfig:
    e = os.environ
    which = "EXPIRED_" if expired else ""
    cert = {
        "user": e["HPCCI_CERT_SSH_USER"],
        "key": {"file": e[f"HPCCI_CERT_{which}KEY_FILE"]},
        "certificate": {"file": e[f"HPCCI_CERT_{which}FILE"]},
    }
    return login(**{**cert, **changes})


# -- a. the automation node -----------------------------------------------------------------------------------


def test_the_robot_key_is_constrained_in_authorized_keys() -> None:
    line = Path(f"/home/{os.environ['HPCCI_AUTO_SSH_USER']}/.ssh/authorized_keys").read_text().strip()
    assert line.startswith('restrict,from="10.77.0.1",command="') and "allowed_commands" in line


def test_the_robot_key_is_refused_from_another_address() -> None:
    """from="10.77.0.1": the same key from inside the login node's namespace (source 10.77.0.2) does not log in."""
    e = os.environ
    done = run(
        ["nsenter", "--net=/run/netns/hpcci-login", "ssh", "-o", f"UserKnownHostsFile={e['HPCCI_ACCESS_KNOWN_HOSTS']}",
         "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", e["HPCCI_AUTO_SSH_KEY_FILE"], "-p",
         e["HPCCI_AUTO_SSH_PORT"], f"{e['HPCCI_AUTO_SSH_USER']}@{e['HPCCI_ACCESS_HOST']}", "ls", "-d", "/"],
        timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 255 and "Permission denied (publickey)" in done.stderr, done


@pytest.mark.parametrize(
    "argv",
    [
        ["bash", "-c", "id"],
        ["bash", "-lc", "env -0"],
        ["sh", "-c", "id"],
        ["env", "bash", "-c", "id"],
        ["python3", "-c", "print(1)"],
        ["curl", "--version"],
        ["/bin/ls"],
        ["scontrol", "update", "nodename=x", "state=down"],
        ["module", "load", "apptainer"],
        ["tar", "-cf", "/dev/null", "--to-command=id", "/etc/hostname"],
        ["tar", "-cf", "/dev/null", "--checkpoint=1", "--checkpoint-action=exec=id", "/etc/hostname"],
    ],
    ids=lambda a: " ".join(a)[:30],
)
def test_the_wrapper_refuses_anything_but_its_allowed_commands(argv: list[str]) -> None:
    remote = robot()
    try:
        done = remote.run(argv)
    finally:
        remote.close()
    assert done.returncode == REFUSED, done
    assert done.stderr.startswith("automation node: ") and "may run only" in done.stderr, done.stderr


def test_shell_syntax_in_an_allowed_command_is_never_run_by_a_shell(tmp_path: Path) -> None:
    remote = robot()
    marker = f"{os.environ['HPCCI_AUTO_SCRATCH']}/injected"
    try:
        done = remote.run(["ls", "-d", "/", ";", "touch", marker])  # quoted: `;` reaches ls as a file name
        assert done.returncode != 0 and not remote.run(["test", "-e", marker]).ok
    finally:
        remote.close()


def test_allowed_commands_and_sftp_work() -> None:
    remote = robot()
    scratch = os.environ["HPCCI_AUTO_SCRATCH"]
    try:
        assert remote.run(["squeue", "--noheader", "--me"]).ok
        assert remote.run(["scontrol", "show", "partition", "cpu"]).ok
        remote.write_text(f"{scratch}/hello.txt", "hello\n")
        assert remote.read_tail(f"{scratch}/hello.txt", 100) == "hello\n"
        done = remote.run(["sha256sum", "--", f"{scratch}/hello.txt"])
        assert done.ok and done.stdout.startswith(
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        )
        assert remote.run(["rm", "-f", "--", f"{scratch}/hello.txt"]).ok
    finally:
        remote.close()


@pytest.fixture
def fib_tar(fib_tar: Path, require: Callable[..., None]) -> Path:
    """The session's fibonacci tar (tests/integration/conftest.py), for tests that also need the access service."""
    require("access")
    return fib_tar


def automation_cluster(scratch: str) -> dict[str, Any]:
    e = os.environ
    return cluster_config(**{
        "login.port": int(e["HPCCI_AUTO_SSH_PORT"]),
        "login.user": e["HPCCI_AUTO_SSH_USER"],
        "login.key": {"file": e["HPCCI_AUTO_SSH_KEY_FILE"]},
        "login.known_hosts": {"file": e["HPCCI_ACCESS_KNOWN_HOSTS"]},
        "login.mode": "automation",
        "paths.scratch": scratch,
        "paths.image_cache": f"{scratch}/images",
        "paths.tmpdir": f"{scratch}/tmp",
        "staging.method": "sftp",
    })  # fmt: skip


@pytest.fixture
def scratch() -> Iterator[str]:
    """A fresh folder in the robot account's scratch (a fresh image cache: no cache hit), removed afterwards."""
    path = f"{os.environ['HPCCI_AUTO_SCRATCH']}/hpcci-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)  # the tests run as root, the robot's files are its own


def test_a_full_deploy_passes_through_the_restricted_key(fib_tar: Path, tmp_path: Path, scratch: str) -> None:
    mpi = {"name": "mpi", "mpi": True, "resources": {"tasks": 2}, "command": "python3 /app/fib_mpi.py 10",
           "expect": {"output": r"^world size 2, ranks 0 1: fib\(10\) = 55$"}}  # fmt: skip  # the ranks met
    proj = make_project(tmp_path / "proj", [FIB, mpi], cluster=automation_cluster(scratch))
    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
    assert done.returncode == 0, done.stdout + done.stderr
    tests = proj.tests()
    assert tests["fib"]["verdict"] == "pass" and tests["fib"]["output_tail"].strip() == "55", tests
    assert tests["mpi"]["verdict"] == "pass", tests
    log = done.stdout + done.stderr
    assert "bash -lc" not in log and "env -0" not in log
    assert "(SFTP; checked by the conversion job)" in log  # no sha256sum on the login node: the job checks
    assert "+ sbatch --parsable --dependency=afterok:" in log  # the test waits for the conversion job


def test_doctor_checks_an_automation_node_with_its_allowed_commands_only(
    tmp_path: Path, scratch: str
) -> None:
    proj = make_project(tmp_path / "proj", [FIB], cluster=automation_cluster(scratch))
    done = hpcci(
        proj, "doctor", "--cluster", "local", "--cluster-configs", str(proj.root / "cluster-configs")
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "bash -lc" not in out and "refused" not in out, out
    assert "partition cpu" in out and "runtime" in out and "inside jobs" in out, out


def test_the_conversion_job_pulls_the_published_tar_from_s3(
    fib_tar: Path, tmp_path: Path, scratch: str
) -> None:
    import boto3

    require_services("s3")
    cluster = automation_cluster(scratch)
    cluster["staging"]["method"] = "auto"
    proj = make_project(tmp_path / "proj", [FIB], cluster=cluster)
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    bucket, key = os.environ.get("HPCCI_S3_BUCKET", "hpcci"), f"access-tests/{uuid.uuid4().hex[:8]}.tar"
    s3.upload_file(str(fib_tar), bucket, key)
    try:
        obj = rec.S3Object(
            bucket=bucket, key=key, size=fib_tar.stat().st_size, sha256=hashlib.sha256(fib_tar.read_bytes()).hexdigest(),
            platform="linux/amd64", digest="sha256:" + hashlib.sha256(os.urandom(16)).hexdigest(),
            endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        )  # fmt: skip
        rec.write(
            rec.PublishRecord(image="hpcci-test/fibonacci", tags=["t"], s3=[obj]),
            proj.records / "publish.json",
        )
        done = hpcci(proj, "deploy")
    finally:
        s3.delete_object(Bucket=bucket, Key=key)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert proj.deploy_record()["clusters"][0]["staging"] == "s3"
    assert f"the conversion job pulls s3://{bucket}/{key}" in log and "curl" not in log.replace(
        "--config", ""
    )
    assert "X-Amz-Signature" not in log
    assert proj.tests()["fib"]["verdict"] == "pass"


def test_automation_mode_refuses_paths_with_variables(fib_tar: Path, tmp_path: Path) -> None:
    proj = make_project(tmp_path / "proj", [FIB], cluster=automation_cluster("$SCRATCH/hpcci"))
    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
    error = proj.cluster_error() or ""
    assert done.returncode != 0 and "paths.scratch uses $SCRATCH" in error, done.stdout + done.stderr
    assert "no login shell" in error and "bash -lc" not in done.stdout + done.stderr


# -- b. certificates ------------------------------------------------------------------------------------------


def test_a_valid_certificate_logs_in() -> None:
    remote = SSHRemote(ssh_target("local", cert_login()))
    try:
        done = remote.run(["id", "-un"])
    finally:
        remote.close()
    assert done.ok and done.stdout.strip() == os.environ["HPCCI_CERT_SSH_USER"], done


def test_an_expired_certificate_fails_before_connecting_naming_its_expiry() -> None:
    remote = SSHRemote(ssh_target("local", cert_login(expired=True)))
    with pytest.raises(RemoteAuthError) as e:
        remote.connect(attempts=1)
    text = str(e.value)
    assert "\n" not in text and "expired at 2025-01-01 01:00:00 UTC" in text and "sshproxy" in text, text


def test_a_certificate_the_server_refuses_says_so() -> None:
    # a valid certificate for user hpcci, offered as the robot account: not one of its principals
    remote = SSHRemote(ssh_target("local", cert_login(user=os.environ["HPCCI_AUTO_SSH_USER"])))
    with pytest.raises(RemoteAuthError) as e:
        remote.connect(attempts=1)
    text = str(e.value)
    assert "refused the SSH certificate 'hpcci-local-user'" in text and "principals hpcci" in text, text


# -- c. a login node that wants a second factor -----------------------------------------------------------------


def mfa_cluster() -> dict[str, Any]:
    e = os.environ
    return cluster_config(**{"login.port": int(e["HPCCI_MFA_SSH_PORT"]),
                             "login.known_hosts": {"file": e["HPCCI_ACCESS_KNOWN_HOSTS"]}})  # fmt: skip


def test_doctor_names_the_second_factor_and_the_ways_out(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "proj", [FIB], cluster=mfa_cluster())
    done = hpcci(
        proj, "doctor", "--cluster", "local", "--cluster-configs", str(proj.root / "cluster-configs")
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    lines = [ln for ln in out.splitlines() if "second factor" in ln]
    assert len(lines) == 1, out
    for way in ("login.mode: automation", "login.certificate", "self-hosted runner"):
        assert way in lines[0], lines[0]
    assert "refused the SSH key" not in out


def test_deploy_names_the_second_factor_with_the_auth_exit_code(fib_tar: Path, tmp_path: Path) -> None:
    proj = make_project(tmp_path / "proj", [FIB], cluster=mfa_cluster())
    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
    out = done.stdout + done.stderr
    assert done.returncode == RemoteAuthError.exit_code, out
    error = proj.cluster_error() or ""
    assert "requires a second factor" in error and "\n" not in error, error
    assert "refused the SSH key" not in out
