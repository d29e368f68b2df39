"""The local stack (scripts/local-stack) as the tests and benchmarks see it: one parser of `local-stack env`,
one service check, one "skip here, fail under CI=true" rule.

Imported by tests/integration/conftest.py and tests/e2e/conftest.py (pytest puts tests/ on sys.path because of
tests/conftest.py) and by benchmarks/*.py (which put tests/ on sys.path themselves).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from hpcci.process import run

REPO = Path(__file__).resolve().parents[1]
LOCAL_STACK = str(REPO / "scripts" / "local-stack")

_status: dict[str, tuple[bool, str]] = {}


@dataclass(frozen=True)
class GitHubApp:
    """A GitHub App registered with the GitHub API stand-in (the ``github_app`` fixture makes one)."""

    app_id: str
    private_key_pem: str


def parse_env(text: str) -> dict[str, str]:
    """``export NAME=VALUE`` lines (VALUE shell-quoted) as a dict."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            env[name] = value
    return env


def read_env(*, check: bool = False) -> dict[str, str]:
    """The exports of ``scripts/local-stack env`` (read afresh: the GitHub stand-in's token changes on restart).

    check=False: a failing `env` gives what it printed (the service checks then say what is down)."""
    done = run([LOCAL_STACK, "env"], timeout=60, check=check, echo=False)
    return parse_env(done.stdout)


@contextmanager
def exported(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` in os.environ for the duration; the previous values come back afterwards."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(message: str) -> NoReturn:
    """Skip the test, naming what is missing; under CI=true fail instead (CI must have the whole stack)."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def service_status(service: str) -> tuple[bool, str]:
    """(up, why) from ``scripts/local-stack status SERVICE``, asked once per session."""
    if service not in _status:
        done = run([LOCAL_STACK, "status", service], timeout=60, check=False, echo=False)
        why = " ".join((done.stdout + done.stderr).split()[2:]) or "no status output"
        _status[service] = (done.ok, why)
    return _status[service]


def require_services(*services: str) -> None:
    """Every service named must be up: otherwise skip_or_fail with `scripts/local-stack up SERVICE`."""
    for service in services:
        up, why = service_status(service)
        if not up:
            skip_or_fail(
                f"local stack service '{service}' is down ({why}); start it: scripts/local-stack up {service}"
            )
