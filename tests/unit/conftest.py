"""Unit tests are pure: starting a process or opening a network connection makes the test fail.

Like cibuildwheel's mock_protection: anything that reaches outside the process is a bug in a unit test.
"""

from __future__ import annotations

import socket
import subprocess
from typing import Any, NoReturn

import pytest


class OutsideWorld(AssertionError):
    pass


def _refuse(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise OutsideWorld(f"unit tests must not {what}: {args[:2]!r}; move this test to tests/integration/")

    return refuse


@pytest.fixture(autouse=True)
def no_processes_or_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refuse("start processes"))
    monkeypatch.setattr(os, "system", _refuse("start processes"))
    monkeypatch.setattr(os, "fork", _refuse("fork"))
    monkeypatch.setattr(os, "execv", _refuse("exec"))
    monkeypatch.setattr(os, "execve", _refuse("exec"))
    monkeypatch.setattr(os, "posix_spawn", _refuse("start processes"))
    monkeypatch.setattr(os, "posix_spawnp", _refuse("start processes"))
    monkeypatch.setattr(os, "spawnv", _refuse("start processes"))
    monkeypatch.setattr(os, "spawnve", _refuse("start processes"))
    monkeypatch.setattr(socket.socket, "sendto", _refuse("send network packets"))
    monkeypatch.setattr(socket.socket, "connect", _refuse("open network connections"))
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse("open network connections"))
    monkeypatch.setattr(socket.socket, "bind", _refuse("listen on sockets"))
    monkeypatch.setattr(socket, "create_connection", _refuse("open network connections"))
