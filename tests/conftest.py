"""Shared test fixtures. Unit-test guards live in tests/unit/conftest.py; stack helpers in tests/stack_env.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """The exports of `scripts/local-stack env` as a dict, also put into os.environ for the session."""
    from stack_env import exported, read_env

    env = read_env()
    with exported(env):
        yield env
