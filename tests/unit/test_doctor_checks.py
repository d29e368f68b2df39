"""`hpcci doctor`'s verdict: a failure exits with the code `hpcci deploy` exits with for the same cause."""

from __future__ import annotations

from hpcci.commands.doctor import Check, exit_code, failed
from hpcci.errors import ConfigError, HostKeyError, RemoteAuthError, RemoteError


def test_a_refused_host_key_exits_41_as_deploy_does() -> None:
    check = failed("ssh", HostKeyError("cluster local: the host key CHANGED"), "verify the fingerprint")
    assert (check.status, check.detail, check.exit_code) == (
        "FAIL",
        "cluster local: the host key CHANGED",
        41,
    )
    assert exit_code([check]) == 41


def test_each_connection_cause_keeps_its_own_code() -> None:
    assert [
        failed("ssh", e, "").exit_code for e in (RemoteError("x"), RemoteAuthError("x"), ConfigError("x"))
    ] == [
        40,
        42,
        2,
    ]


def test_the_first_failure_decides_and_warnings_do_not_fail() -> None:
    checks = [
        Check("paths", "ok", "scratch /s"),
        Check("space", "warn", "2 GiB free"),
        Check("partition gpu", "FAIL", "no partition gpuz"),
        failed("s3", RemoteError("unreachable"), "fix staging.s3_endpoint_url"),
    ]
    assert exit_code(checks) == 1
    assert exit_code(checks[:2]) == 0
