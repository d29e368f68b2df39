"""End-to-end: the users' adoption workflow run by act (nektos/act) against the local stack.

Each scenario makes a temporary git repository out of examples/fibonacci - the user's repository, with its
.github/workflows/hpcci.yml exactly as the README shows it - and runs act in it: host mode
(`-P ubuntu-latest=-self-hosted`), offline (`--pull=false --action-offline-mode`), with the kit's reusable
workflows and actions (`octo-org/hpcci/...@v1`) mapped to a clean copy of this checkout (`--local-repository`).
act runs with a clean environment: the stack's credentials reach the workflow only as act secrets (a secret
file, never the command line), its endpoints only as `--env-file` entries, exactly as a repository's secrets
and runner environment would. The assertions read the results where a user would look: the registry, S3 and
the GitHub API stand-in's check runs.

Fixtures: ``kit`` (session, the copy act maps), ``stack`` (session, the local-stack exports; fails under
CI=true when a service is down, else skips naming `scripts/local-stack up`), ``make_repo`` (a user repository).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from act_harness import REPO, UserRepo, make_user_repo

from stack_env import exported, read_env, require_services

SERVICES = ("docker", "registry", "s3", "cluster", "github")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """The exports of `scripts/local-stack env`, also put into os.environ (as for the integration tests)."""
    env = read_env()
    with exported(env):
        yield env


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str]) -> dict[str, str]:
    """The local stack's exports; every service must be up (a loud skip, or a failure under CI=true)."""
    require_services(*SERVICES)
    return stack_env


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean copy of this checkout, the way GitHub would fetch octo-org/hpcci@v1 (no venv, no caches)."""
    dest = tmp_path_factory.mktemp("kit") / "hpcci"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".mypy_cache", ".ruff_cache", "*.pyc")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, dest / name)
    for name in ("src", "actions", ".github"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    return dest


@pytest.fixture
def make_repo(stack: dict[str, str], kit: Path, tmp_path: Path) -> Callable[[], UserRepo]:
    """Makes the user's repository (examples/fibonacci) in a fresh temporary folder."""

    return lambda: make_user_repo(tmp_path / "fibonacci", lambda: read_env(check=True), kit)
