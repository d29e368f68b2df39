"""`hpcci doctor`'s verdict: a failure exits with the code `hpcci deploy` exits with for the same cause."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcci.backends.ssh.certs import Certificate
from hpcci.backends.ssh.errors import auth_refused, certificate_invalid, connect_error, second_factor
from hpcci.commands.doctor import NETWORK_FIX, Check, check_cluster, exit_code, failed
from hpcci.config.load import load_cluster
from hpcci.errors import ConfigError, HostKeyError, HpcciError, RemoteAuthError, RemoteError

ROOT = Path(__file__).resolve().parents[2]


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


class Refusing:
    """A login node as far as doctor's SSH check sees it: connecting raises ``error``."""

    user = "u"

    def __init__(self, error: HpcciError) -> None:
        self.error = error

    def connect(self, attempts: int = 3) -> object:
        raise self.error


def ssh_check(error: HpcciError) -> Check:
    cluster = load_cluster(ROOT / "cluster-configs" / "local.yaml")
    (check,) = check_cluster(cluster, Refusing(error))  # type: ignore[arg-type]
    return check


CERT = Certificate("ci@nersc", ["u"], valid_after=0, valid_before=1_700_000_000)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (certificate_invalid("local", CERT, now=1_800_000_000), "renew it"),
        (certificate_invalid("local", CERT, now=-1), "is not valid before"),
        (auth_refused("local", "u@h", cert=CERT), "renew it"),
        (auth_refused("local", "u@h"), "authorized_keys"),
        (second_factor("local", "u@h"), "second factor"),
        (
            RemoteAuthError("cluster local: login.key is encrypted; set login.key_passphrase"),
            "key_passphrase",
        ),
        (
            HostKeyError("cluster local: the host key of h CHANGED: ... confirm the new fingerprint"),
            "fingerprint",
        ),
    ],
    ids=["cert-expired", "cert-not-yet", "cert-refused", "key-refused", "mfa", "passphrase", "host-key"],
)
def test_an_ssh_failure_is_explained_by_its_cause_not_its_class(error: HpcciError, says: str) -> None:
    check = ssh_check(error)
    assert says in check.detail
    assert (
        check.fix == ""
    )  # no class-wide guess beside it ("is the public key authorized?" for a certificate)


def test_a_connection_error_that_names_no_setting_gets_the_networks_fix() -> None:
    assert ssh_check(RemoteError("cluster local: the connection dropped")).fix == NETWORK_FIX
    assert ssh_check(connect_error("local", "h", 22, ConnectionRefusedError(111, "x"), None)).fix == ""
