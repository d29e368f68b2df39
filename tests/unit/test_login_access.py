"""Access modes without a server: certificates read from their own bytes, the MFA and certificate errors, the
automation-node plan (plain commands only, verification and conversion in a batch job), and the robot key's
wrapper (scripts/stack/access/allowed_commands.py) deciding what it runs.
"""

from __future__ import annotations

import base64
import importlib.util
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import paramiko
import pytest
from paramiko.auth_strategy import AuthFailure, AuthResult, SourceResult
from test_deploy_steps import SHA, RecordingRemote
from test_sbatch_scripts import DIGEST, FIB, local_cluster, pipeline

from hpcci.backends.schedulers import slurm
from hpcci.backends.ssh import errors as ssh_errors
from hpcci.backends.ssh.certs import FOREVER, Certificate, parse_certificate, when
from hpcci.errors import ConfigError
from hpcci.records import S3Object
from hpcci.stages.cluster import shell_modules
from hpcci.stages.deploy.execute import Deployer
from hpcci.stages.sources import ImageSource
from hpcci.stages.steps import Submit, WriteFile

ROOT = Path(__file__).resolve().parents[2]
ED = "ssh-ed25519-cert-v01@openssh.com"


def _s(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def cert_line(after: int, before: int, *, kind: int = 1, principals: tuple[str, ...] = ("hpcci",)) -> str:
    """A user certificate laid out as PROTOCOL.certkeys says (the signature is not checked here)."""
    names = b"".join(_s(p.encode()) for p in principals)
    blob = (_s(ED.encode()) + _s(b"n" * 32) + _s(b"k" * 32) + struct.pack(">QI", 7, kind) + _s(b"ci-key")
            + _s(names) + struct.pack(">QQ", after, before) + _s(b"") + _s(b"") + _s(b"") + _s(b"ca") + _s(b"sig"))  # fmt: skip
    return f"{ED} {base64.b64encode(blob).decode()} comment"


# -- certificates ----------------------------------------------------------------------------------------------


def test_a_certificate_s_window_is_read_from_its_bytes() -> None:
    cert = parse_certificate(cert_line(1735689600, 1735693200, principals=("hpcci", "ci")))
    assert cert == Certificate("ci-key", ["hpcci", "ci"], 1735689600, 1735693200)
    assert cert.expired(1735693200) and not cert.expired(1735693199)
    assert cert.not_yet_valid(1735689599) and not cert.not_yet_valid(1735689600)
    assert when(cert.valid_before) == "2025-01-01 01:00:00 UTC"


def test_a_certificate_without_end_never_expires() -> None:
    cert = parse_certificate(cert_line(0, FOREVER))
    assert not cert.expired(4e9) and when(cert.valid_before) == "forever"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB user@host", "not an OpenSSH user certificate"),
        (cert_line(0, 1, kind=2), "host certificate"),
        (f"{ED} AAAA", "truncated"),
        (f"{ED} !!!", "damaged"),
    ],
    ids=["plain-key", "host-cert", "truncated", "not-base64"],
)
def test_what_is_not_a_user_certificate_says_what_it_is(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_certificate(text)


def test_an_expired_certificate_error_names_its_expiry_and_the_renewal() -> None:
    cert = parse_certificate(cert_line(1735689600, 1735693200))
    text = str(ssh_errors.certificate_invalid("perlmutter", cert, 1800000000))
    assert "\n" not in text and text.startswith("cluster perlmutter: the SSH certificate 'ci-key'")
    assert "expired at 2025-01-01 01:00:00 UTC" in text and "sshproxy" in text
    early = str(ssh_errors.certificate_invalid("perlmutter", cert, 1700000000))
    assert "is not valid before 2025-01-01 00:00:00 UTC" in early


def test_a_refused_certificate_names_its_principals_and_window() -> None:
    cert = parse_certificate(cert_line(0, 1735693200))
    text = str(ssh_errors.auth_refused("c", "robot@[h]:22", ["publickey"], cert))
    assert (
        "refused the SSH certificate 'ci-key' (principals hpcci, valid until 2025-01-01 01:00:00 UTC)" in text
    )


# -- MFA ----------------------------------------------------------------------------------------------------------

WAYS = ("login.mode: automation", "login.certificate", "self-hosted runner")


def test_a_key_accepted_as_a_first_factor_names_the_ways_out() -> None:
    text = str(ssh_errors.second_factor("frontera", "ci@[login.tacc]:22"))
    assert "\n" not in text and "requires a second factor" in text
    assert all(w in text for w in WAYS), text


def test_a_server_that_takes_no_key_at_all_is_named_as_interactive_only() -> None:
    text = str(ssh_errors.auth_refused("c", "u@[h]:22", ["keyboard-interactive"]))
    assert "accepts no SSH key, only interactive logins (keyboard-interactive)" in text
    assert all(w in text for w in WAYS)
    plain = str(ssh_errors.auth_refused("c", "u@[h]:22", ["publickey", "keyboard-interactive"]))
    assert "refused the SSH key" in plain  # publickey is offered: the key itself is wrong


def test_the_methods_offered_are_read_from_paramiko_s_failure() -> None:
    bad = paramiko.BadAuthenticationType("Bad authentication type", ["keyboard-interactive"])
    result = AuthResult(strategy=None)  # type: ignore[arg-type]
    result.append(SourceResult(source=None, result=bad))  # type: ignore[arg-type]
    failure = AuthFailure(result)
    assert ssh_errors.offered_methods(failure) == ["keyboard-interactive"]
    assert ssh_errors.offered_methods(paramiko.AuthenticationException("no")) == []


# -- the automation-node plan ----------------------------------------------------------------------------------

ROBOT = {"login.mode": "automation", "paths.scratch": "/scratch/robot", "paths.image_cache": "/scratch/robot/img",
         "paths.tmpdir": "/scratch/robot/tmp"}  # fmt: skip
S3 = S3Object("hpcci", "fib/linux-amd64.tar", 100, SHA, "linux/amd64", DIGEST, "http://s3:8080")


def robot_deploy(**changes: Any) -> tuple[Deployer, RecordingRemote]:
    cluster = local_cluster(**{**ROBOT, **changes})
    remote = RecordingRemote()
    deployer = Deployer(pipeline(FIB), cluster, remote, slurm, run_id="r1", info=lambda _m: None)  # type: ignore[arg-type]
    return deployer, remote


def test_an_automation_deploy_sends_only_plain_file_and_scheduler_commands() -> None:
    deployer, remote = robot_deploy()
    source = ImageSource("linux/amd64", DIGEST, tar_sha256=SHA, local_tar="/tmp/fib.tar")
    plan = deployer.plan({"linux/amd64": source})  # no login shell asked for $VARS
    deployer.setup(plan)
    staged = {p: deployer.stage_image(i) for p, i in plan.images.items()}
    jobs, refused = deployer.submit_tests(plan, staged)
    assert jobs == {0: "4242"} and not refused
    ran = [d[1] for d in remote.done if d[0] == "run"]
    assert set(ran) == {"mkdir", "test", "sbatch"}, remote.done  # never bash, env, curl or sha256sum
    image = plan.images["linux/amd64"]
    assert (
        image.convert is None and image.convert_job is not None
    )  # converted in a job even with convert_on: login
    assert ["write", image.checksum_file, f"{SHA}  {image.tar_tmp}\n"] in remote.done
    body = image.convert_job.script.text
    assert body.index("sha256sum --check --strict --quiet") < body.index("apptainer build")
    assert (
        f"docker-archive://{image.tar_tmp}" in body and image.tar not in body
    )  # no rename: a requeue reruns
    assert body.rstrip().endswith(f"rm -f -- {image.checksum_file}")
    assert ["run", "sbatch", "--parsable", "--dependency=afterok:4242", "--kill-on-invalid-dep=yes",
            plan.tests[0].script_path] in remote.done  # fmt: skip


def test_automation_mode_pulls_from_s3_inside_the_conversion_job() -> None:
    deployer, remote = robot_deploy()
    url = "http://s3:8080/hpcci/fib?X-Amz-Signature=secret"
    deployer.presign = lambda _obj, _endpoint: url
    plan = deployer.plan({"linux/amd64": ImageSource("linux/amd64", DIGEST, tar_sha256=SHA, s3=S3)})
    deployer.setup(plan)
    image = plan.images["linux/amd64"]
    staged = deployer.stage_image(image)
    assert staged.convert_job == "4242" and image.fetch is None and image.url_file is not None
    assert {d[1] for d in remote.done if d[0] == "run"} == {"mkdir", "test", "sbatch"}, remote.done
    assert ["write", image.url_file, f'url = "{url}"\n'] in remote.done  # to a file, never into the script
    assert image.convert_job is not None
    body = image.convert_job.script.text
    assert "secret" not in body
    fetch = f"--config {image.url_file} --output {image.tar_tmp}"
    assert body.index(fetch) < body.index("sha256sum --check") < body.index("apptainer build")
    assert body.rstrip().endswith(
        f"rm -f -- {image.checksum_file} {image.url_file}"
    )  # kept for a requeued run


def test_automation_mode_needs_absolute_paths() -> None:
    deployer, remote = robot_deploy(**{"paths.scratch": "$SCRATCH/hpcci"})
    with pytest.raises(
        ConfigError, match=r"paths.scratch uses \$SCRATCH, but login.mode automation has no login"
    ):
        deployer.plan({"linux/amd64": ImageSource("linux/amd64", DIGEST, local_tar="/tmp/fib.tar")})
    assert remote.done == []


def test_a_submit_without_a_login_shell_is_a_plain_sbatch() -> None:
    script = WriteFile("/s/fib.sbatch", "#!/bin/bash\n")
    assert Submit(script, slurm, None).argv(["7"])[0] == "sbatch"
    assert Submit(script, slurm, []).argv()[:2] == ["bash", "-lc"]
    assert shell_modules(local_cluster(**ROBOT)) is None and shell_modules(local_cluster()) == []


# -- the robot key's wrapper -----------------------------------------------------------------------------------


def wrapper() -> ModuleType:
    path = ROOT / "scripts" / "stack" / "access" / "allowed_commands.py"
    spec = importlib.util.spec_from_file_location("allowed_commands", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "argv",
    [
        ["bash", "-c", "id"],
        ["sh"],
        ["env", "bash"],
        ["/bin/rm", "x"],
        ["curl", "x"],
        ["eval", "x"],
        ["scontrol", "update", "x"],
        ["scp", "a", "b"],
        ["rsync", "a", "b"],
        ["module", "load", "x"],
    ],
)
def test_the_wrapper_refuses(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        wrapper().check(argv)
    assert e.value.code == 126


@pytest.mark.parametrize(
    "argv",
    [
        ["sbatch", "--parsable", "x.sbatch"],
        ["squeue", "-h"],
        ["sacct", "-X"],
        ["scancel", "1"],
        ["scontrol", "show", "job", "1"],
        ["mkdir", "-p", "--", "/s"],
        ["mv", "-f", "a", "b"],
        ["rm", "-f", "x"],
        ["sha256sum", "x"],
        ["test", "-s", "x"],
        ["scp", "-t", "/s"],
        ["rsync", "--server", "-e.Lsfx", ".", "/s"],
    ],
)
def test_the_wrapper_allows(argv: list[str]) -> None:
    wrapper().check(argv)
