"""What a failed SSH connection says (pure: the exceptions are built by hand, nothing connects)."""

from __future__ import annotations

import errno
import socket

import paramiko

from hpcci.backends.remote import connect_error


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
