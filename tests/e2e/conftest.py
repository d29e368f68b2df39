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
CI=true when a service is down, else skips naming `scripts/local-stack up`), ``make_repo`` (a user repository). Everything a session makes (images, S3 tars, act's
folders, temporary folders) is removed afterwards, whatever the outcome.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from act_harness import ACT_TIMEOUT, E2E_RELEASES, REPO, UserRepo, make_user_repo

from hpcci.process import run
from stack_env import read_env, require_services
from swift_cleanup import delete_keys

SERVICES = ("docker", "registry", "s3", "cluster", "github")


# pytest-timeout for each e2e test: two whole workflows and the session's set-up, then it fails
E2E_TIMEOUT = 2 * ACT_TIMEOUT + 600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(E2E_TIMEOUT))


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str]) -> dict[str, str]:
    """The local stack's exports; every service must be up (a loud skip, or a failure under CI=true)."""
    require_services(*SERVICES)
    return stack_env


EXAMPLE_REPOSITORY = "127.0.0.1:5000/octo-org/fibonacci"  # the example's image.name
EXAMPLE_S3_PREFIX = "images/octo-org/fibonacci/"  # its publish.s3.prefix + image path


def _image_store(tool: str) -> tuple[set[str], dict[str, str]]:
    """(every image id, {ref of the example's repository: id}) in docker's or buildah's store."""
    argv = [tool, "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]
    if tool == "buildah":
        argv[-1] = "{{.Name}}:{{.Tag}} {{.ID}}"
    ids: set[str] = set()
    refs: dict[str, str] = {}
    for line in run(argv, timeout=60, check=False, echo=False).stdout.splitlines():
        if len(line.split()) != 2:
            continue
        ref, image_id = line.split()  # buildah pads its columns
        image_id = image_id.removeprefix("sha256:")
        ids.add(image_id)
        if ref.rpartition(":")[0] == EXAMPLE_REPOSITORY:
            refs[ref] = image_id
    return ids, refs


def _remove_session_images(
    tool: str, before: tuple[set[str], dict[str, str]], published: set[str]
) -> set[str]:
    """Remove the example's images this session made (and those its rebuilds left untagged); their ids."""
    before_ids, before_refs = before
    now_ids, now_refs = _image_store(tool)
    ours = {ref: i for ref, i in now_refs.items() if before_refs.get(ref) != i and ":bench" not in ref}
    for ref in ours:
        run([tool, "rmi", "-f", ref], timeout=120, check=False, echo=False)
    tagged = set(_image_store(tool)[1].values())
    untagged = {i for i in before_refs.values() if i not in tagged} | (published & (now_ids - before_ids))
    for image_id in untagged - tagged:
        run([tool, "rmi", image_id], timeout=120, check=False, echo=False)  # refused while still in use
    return set(ours.values()) | (untagged - tagged)


def _act_run_dirs() -> list[Path]:
    """The folders act's host executor leaves in its cache, one per run (named by 16 hex digits)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "act"
    return [
        d
        for d in cache.glob("????????????????")
        if d.is_dir() and all(c in "0123456789abcdef" for c in d.name)
    ]


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """pytest's tmp_path (the user's repository, act's logs), deleted after the test whatever its outcome."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def remove_what_the_session_made(stack_env: dict[str, str]) -> Iterator[None]:
    """After all scenarios, whatever their outcome: the example's images the workflows built (docker and buildah
    stores; the ones rebuilt over earlier runs' tags too), their docker-archive tars in S3 and act's per-run
    folders. Tags named bench* belong to the benchmarks and are left alone."""
    tools = [t for t in ("docker", "buildah") if shutil.which(t)]
    before = {tool: _image_store(tool) for tool in tools}
    act_runs = set(_act_run_dirs())
    releases = Path(stack_env["HPCCI_LOCAL_PROJECT_DIR"]) / E2E_RELEASES
    shutil.rmtree(releases, ignore_errors=True)  # an interrupted session's installs
    yield
    shutil.rmtree(releases, ignore_errors=True)
    for folder in set(_act_run_dirs()) - act_runs:
        shutil.rmtree(folder, ignore_errors=True)
    try:
        import boto3
        from botocore.config import Config

        s3 = boto3.client(
            "s3", config=Config(s3={"addressing_style": "path"}, connect_timeout=10, read_timeout=60)
        )
        bucket = stack_env.get("HPCCI_S3_BUCKET", "hpcci")
        keys = [
            obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=EXAMPLE_S3_PREFIX)
            for obj in page.get("Contents", [])
        ]
        digest_of = {k: k[len(EXAMPLE_S3_PREFIX) :].split("/")[0].removeprefix("sha256-") for k in keys}
        removed: set[str] = set()
        for tool in tools:
            removed |= _remove_session_images(tool, before[tool], set(digest_of.values()))
        for key, digest in digest_of.items():
            if digest in removed:
                delete_keys(bucket, [key])  # its multipart segments too (tests/swift_cleanup.py)
    except Exception as e:  # cleanup must not turn a passing run red
        print(f"e2e cleanup failed: {type(e).__name__}: {e}")


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clean copy of this checkout, the way GitHub would fetch octo-org/hpcci@v1 (no venv, no caches)."""
    dest = tmp_path_factory.mktemp("kit") / "hpcci"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".mypy_cache", ".ruff_cache", "*.pyc")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, dest / name)
    for name in ("src", "actions", ".github"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    yield dest
    shutil.rmtree(dest.parent, ignore_errors=True)


@pytest.fixture
def make_repo(stack: dict[str, str], kit: Path, tmp_path: Path) -> Callable[[], UserRepo]:
    """Makes the user's repository (examples/fibonacci) in a fresh temporary folder."""

    return lambda: make_user_repo(tmp_path / "fibonacci", lambda: read_env(check=True), kit)
