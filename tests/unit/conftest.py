"""Unit tests are pure: starting a process or opening a network connection makes the test fail.

Like cibuildwheel's mock_protection: anything that reaches outside the process is a bug in a unit test.
Being pure, each runs in well under a second: pytest-timeout stops one after UNIT_TIMEOUT s (not the 600 s default).
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest

# seconds: a guard against a hang (a unit test waiting on a lock or a queue), not a duration check
UNIT_TIMEOUT = 60


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT))


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
