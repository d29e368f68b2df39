"""Integration tests run against the real local stack (scripts/local-stack).

- ``stack_env`` (session): the exports of ``scripts/local-stack env`` as a dict, also put into os.environ.
- ``require`` : ``require("s3", "registry")`` skips the test when a service is down, with a message naming
  ``scripts/local-stack up <service>``; under CI=true it fails instead (CI must have the whole stack).
Every test in tests/integration/ gets the ``integration`` marker.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hpcci.process import run

REPO = Path(__file__).resolve().parents[2]
LOCAL_STACK = str(REPO / "scripts" / "local-stack")

_status: dict[str, tuple[bool, str]] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def parse_env(text: str) -> dict[str, str]:
    """``export NAME=VALUE`` lines (VALUE shell-quoted) as a dict."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            env[name] = value
    return env


def service_status(service: str) -> tuple[bool, str]:
    """(up, why) from ``scripts/local-stack status SERVICE``, asked once per session."""
    if service not in _status:
        done = run([LOCAL_STACK, "status", service], timeout=60, check=False, echo=False)
        why = " ".join((done.stdout + done.stderr).split()[2:]) or "no status output"
        _status[service] = (done.ok, why)
    return _status[service]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    done = run([LOCAL_STACK, "env"], timeout=60, check=False, echo=False)
    env = parse_env(done.stdout)
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    yield env
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def require(stack_env: dict[str, str]) -> Callable[..., None]:
    def require(*services: str) -> None:
        for service in services:
            up, why = service_status(service)
            if up:
                continue
            message = (
                f"local stack service '{service}' is down ({why}); start it: scripts/local-stack up {service}"
            )
            if in_ci():
                pytest.fail(message)
            pytest.skip(message)

    return require
