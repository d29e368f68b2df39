"""Where and how to log in: the frozen SSH target the composition root builds from a cluster's login section.

The transport reads only this, never the config model: secrets are zero-argument callables that resolve (and
fail with a config message) when the connection first needs them, so building a target never reads a key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

LazySecret = Callable[[], str]


@dataclass(frozen=True)
class SSHHop:
    """A jump host (ProxyJump): reached first, the login node through it."""

    host: str
    port: int
    user: LazySecret


@dataclass(frozen=True)
class SSHTarget:
    """One login node: address, user, key material, certificate, known hosts, mode and timeouts."""

    cluster: str
    host: str
    port: int
    user: str
    key: LazySecret
    known_hosts: LazySecret
    key_passphrase: LazySecret | None = None
    certificate: LazySecret | None = None
    mode: Literal["shell", "automation"] = "shell"
    jump: SSHHop | None = None
    connect_timeout: float = 30.0
    command_timeout: float = 600.0
    keepalive: int = 30
    config_file: str | None = None  # named in connection errors ("check login.port in FILE")
