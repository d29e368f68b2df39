"""What a failed SSH connection or remote command says: pure builders of one-line errors (nothing connects here).

Each message names the cluster, what failed and why in a few words (paramiko's own texts such as "[Errno None]"
hidden), and the settings to check.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence

from hpcci.backends.ssh.certs import Certificate, when
from hpcci.errors import RemoteAuthError, RemoteError
from hpcci.process import tail

_ERRNO_WHY = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "timed out",
    errno.ECONNRESET: "connection reset",
}


def connect_failure_reason(e: BaseException) -> str:
    """A few words for why a TCP/SSH connection failed (paramiko's own texts such as "[Errno None]" hidden)."""
    errors = getattr(e, "errors", None)  # paramiko's NoValidConnectionsError: {(addr, port): OSError}
    if isinstance(errors, dict) and errors:
        reasons = dict.fromkeys(connect_failure_reason(x) for x in errors.values())
        return " / ".join(reasons)
    if isinstance(e, socket.gaierror):
        return "unknown host name"
    if isinstance(e, TimeoutError | socket.timeout):
        return "timed out: no answer"
    if isinstance(e, OSError) and e.errno in _ERRNO_WHY:
        return _ERRNO_WHY[e.errno]
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    text = " ".join(str(e).split())
    return f"the SSH handshake failed: {text}" if text else f"the SSH handshake failed ({type(e).__name__})"


def connect_error(
    cluster: str,
    host: str,
    port: int,
    e: BaseException,
    config_file: str | None,
    settings: str = "login.host and login.port",
) -> RemoteError:
    """One line: what could not be reached, why, and which settings to check."""
    where = "the cluster config"
    if config_file:
        rel = os.path.relpath(config_file)
        where = config_file if rel.startswith("..") else rel
    what = "jump host" if "jump" in settings else "login host"
    return RemoteError(
        f"cluster {cluster}: cannot connect to {host}:{port} ({connect_failure_reason(e)}); is the {what} up? "
        f"check {settings} in {where}",
        transient=True,
    )


WAYS_OUT = (
    "a CI job cannot answer it: use an automation node with a restricted key (login.mode: automation, e.g. the "
    "Alliance's), an SSH user certificate (login.certificate, e.g. NERSC's sshproxy), or a self-hosted runner on "
    "a host the site exempts from MFA (e.g. by request to TACC)"
)


def offered_methods(e: BaseException) -> list[str]:
    """The methods the server still allows after refusing the key (paramiko's AuthFailure / BadAuthenticationType)."""
    import paramiko
    from paramiko.auth_strategy import AuthFailure

    causes = [r.result for r in e.result] if isinstance(e, AuthFailure) else [e]
    for c in causes:
        if isinstance(c, paramiko.BadAuthenticationType):
            return list(c.allowed_types)
    return []


def auth_refused(
    cluster: str, where: str, offered: Sequence[str] = (), cert: Certificate | None = None
) -> RemoteAuthError:
    """The server at ``where`` (user@host) refused the key or certificate; ``offered``: the methods it allows."""
    if "publickey" not in offered and {"keyboard-interactive", "password"} & set(offered):
        return RemoteAuthError(
            f"cluster {cluster}: {where} accepts no SSH key, only interactive logins "
            f"({', '.join(offered)}): it requires a password or second factor; {WAYS_OUT}"
        )
    if cert is not None:
        return RemoteAuthError(
            f"cluster {cluster}: {where} refused the SSH certificate {cert.key_id!r} (principals "
            f"{', '.join(cert.principals) or 'none'}, valid until {when(cert.valid_before)}); check login.user "
            "is one of its principals and that the site trusts its CA, or renew it (e.g. sshproxy at NERSC)"
        )
    return RemoteAuthError(
        f"cluster {cluster}: {where} refused the SSH key; check login.user and login.key "
        "(is the public key in ~/.ssh/authorized_keys there?)"
    )


def second_factor(cluster: str, where: str) -> RemoteAuthError:
    """The key was accepted as a first factor only: the login node asks for a second one (MFA)."""
    return RemoteAuthError(
        f"cluster {cluster}: {where} accepted the SSH key but requires a second factor "
        f"(keyboard-interactive MFA); {WAYS_OUT}"
    )


def certificate_invalid(cluster: str, cert: Certificate, now: float) -> RemoteAuthError:
    """login.certificate is outside its validity window (checked before connecting)."""
    if cert.expired(now):
        what = f"expired at {when(cert.valid_before)}"
    else:
        what = f"is not valid before {when(cert.valid_after)}"
    return RemoteAuthError(
        f"cluster {cluster}: the SSH certificate {cert.key_id!r} (login.certificate) {what}; renew it "
        "(e.g. `sshproxy` at NERSC issues a new one) and update the secret login.certificate reads"
    )


def jump_failed(cluster: str, jump_host: str, host: str, port: int, e: BaseException) -> RemoteError:
    """The jump host is connected but could not open the second hop to host:port."""
    return RemoteError(
        f"cluster {cluster}: the jump host {jump_host} could not open a connection to "
        f"{host}:{port}: {e}; check login.host/port as seen from the jump host",
        transient=True,
    )


def short(cmd: str, width: int = 160) -> str:
    """A command line on one line, cut to ``width`` characters for an error message."""
    one = cmd.replace("\n", "; ")
    return one if len(one) <= width else one[: width - 3] + "..."


def command_timed_out(
    cluster: str, cmd: str, limit: float, error: type[RemoteError] | None = None
) -> RemoteError:
    """``cmd`` ran past its ``limit`` seconds and was stopped (worth retrying)."""
    return (error or RemoteError)(
        f"cluster {cluster}: `{short(cmd)}` did not finish within {limit:g}s and was stopped",
        transient=True,
    )


def command_dropped(cluster: str, cmd: str, e: BaseException) -> RemoteError:
    """The connection broke while ``cmd`` ran (worth retrying)."""
    return RemoteError(
        f"cluster {cluster}: the connection dropped while running `{short(cmd)}`: {str(e) or type(e).__name__}",
        transient=True,
    )


def command_failed(
    cluster: str, cmd: str, code: int, output: str, error: type[RemoteError] | None = None
) -> RemoteError:
    """``cmd`` exited with ``code``; the last lines of its ``output`` say why."""
    return (error or RemoteError)(
        f"cluster {cluster}: `{short(cmd)}` failed with exit code {code}: {tail(output)}"
    )
