"""What a failed SSH connection or remote command says (pure: the exceptions are built by hand, nothing connects)."""

from __future__ import annotations

import errno
import socket

import paramiko

from hpcci.backends.ssh.errors import command_dropped, command_failed, command_timed_out, connect_error, short
from hpcci.errors import RemoteError, TransferError


def refused(port: int) -> paramiko.ssh_exception.NoValidConnectionsError:
    return paramiko.ssh_exception.NoValidConnectionsError(
        {("10.77.0.2", port): ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")}
    )


def test_a_refused_connection_is_one_clean_line_naming_host_port_and_settings() -> None:
    e = connect_error("local", "10.77.0.2", 2299, refused(2299), "cluster-configs/local.yaml")
    assert str(e) == (
        "cluster local: cannot connect to 10.77.0.2:2299 (connection refused); is the login host up? "
        "check login.host and login.port in cluster-configs/local.yaml"
    )
    assert e.transient
    assert "Errno" not in str(e) and "\n" not in str(e)


def test_an_unknown_host_name_and_a_timeout_say_so() -> None:
    unknown = connect_error("c", "nosuch.example", 22, socket.gaierror(-2, "Name or service not known"), None)
    assert "(unknown host name)" in str(unknown) and "in the cluster config" in str(unknown)
    slow = connect_error("c", "10.0.0.9", 22, TimeoutError(), None)
    assert "(timed out: no answer)" in str(slow)


def test_a_broken_handshake_keeps_its_reason() -> None:
    e = connect_error("c", "h", 22, paramiko.SSHException("Error reading SSH protocol banner"), None)
    assert "(the SSH handshake failed: Error reading SSH protocol banner)" in str(e)


def test_a_jump_host_failure_names_the_jump_settings() -> None:
    e = connect_error("c", "gw", 22, refused(22), None, "login.jump.host and login.jump.port")
    assert "is the jump host up? check login.jump.host and login.jump.port" in str(e)


def test_a_command_past_its_timeout_names_the_command_and_the_limit() -> None:
    e = command_timed_out("c", "sleep 30", 1.0)
    assert type(e) is RemoteError and e.transient
    assert str(e) == "cluster c: `sleep 30` did not finish within 1s and was stopped"
    assert type(command_timed_out("c", "cp a b", 2.5, TransferError)) is TransferError


def test_a_failed_command_shows_its_exit_code_and_last_output_in_the_callers_error_class() -> None:
    e = command_failed("c", "sha256sum x", 1, "one\n\ntwo\n", TransferError)
    assert type(e) is TransferError and not e.transient
    assert str(e) == "cluster c: `sha256sum x` failed with exit code 1: one | two"


def test_a_dropped_connection_names_the_command_and_the_cause() -> None:
    e = command_dropped("c", "ls", OSError("Socket is closed"))
    assert str(e) == "cluster c: the connection dropped while running `ls`: Socket is closed" and e.transient


def test_a_long_or_multiline_command_is_shown_on_one_short_line() -> None:
    assert short("cd /x\nls") == "cd /x; ls"
    cut = short("x" * 500)
    assert len(cut) == 160 and cut.endswith("...")
