"""Integration tests run against the real local stack (scripts/local-stack); the helpers are in tests/stack_env.py.

- ``stack_env`` (session): the exports of ``scripts/local-stack env`` as a dict, also put into os.environ.
- ``require`` : ``require("s3", "registry")`` skips the test when a service is down, with a message naming
  ``scripts/local-stack up <service>``; under CI=true it fails instead (CI must have the whole stack).
- ``github_app``: a GitHub App (fresh RSA key) registered with the GitHub API stand-in.
- ``tmp_path`` is removed after each test, whatever its outcome (the tests here write large tars).
- ``fib_tar`` (session): the examples/fibonacci image for linux/amd64 as a docker-archive tar, built once.
- ``project``: ``project(tests, cluster=..., ...)`` makes a throw-away project (hpcci.yaml + cluster-configs/local.yaml).
- ``local_images`` (module): add image repository names and image ids (sha256:...) to it; every local image of
  those repositories and those ids (docker and buildah stores) is removed when the module ends, whatever the
  outcome. Add the ids of what a test built: a rebuild moves the tags and leaves the first image untagged.
Every test in tests/integration/ gets the ``integration`` marker.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_support import Project, build_fib_tar, make_project

from hpcci.process import run
from stack_env import GitHubApp, require_services


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """pytest's tmp_path, deleted after the test (pytest would keep the last three runs' copies)."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def require(stack_env: dict[str, str]) -> Callable[..., None]:
    return require_services


@pytest.fixture(scope="session")
def fib_tar(tmp_path_factory: pytest.TempPathFactory, stack_env: dict[str, str]) -> Iterator[Path]:
    require_services("docker", "registry", "cluster")  # the `require` fixture's rule, for a session fixture
    folder = tmp_path_factory.mktemp("image")
    yield build_fib_tar(folder / "fib.tar")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def project(tmp_path: Path, require: Callable[..., None]) -> Callable[..., Project]:
    require("cluster")

    def make(tests: list[dict[str, Any]], **kw: Any) -> Project:
        return make_project(tmp_path / "proj", tests, **kw)

    return make


@pytest.fixture
def github_app(require: Callable[..., None], stack_env: dict[str, str]) -> GitHubApp:
    """A GitHub App with a fresh key, registered with the GitHub API stand-in (its /_standin/apps)."""
    require("github")
    import httpx
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    app_id = str(uuid.uuid4().int % 10**6)
    r = httpx.post(
        f"{stack_env['GITHUB_API_URL']}/_standin/apps",
        json={"app_id": app_id, "public_key": public},
        headers={"Authorization": f"Bearer {stack_env['GITHUB_TOKEN']}"},
        timeout=30,
    )
    assert r.status_code == 201, f"registering app {app_id} with the stand-in: {r.status_code} {r.text[:300]}"
    return GitHubApp(app_id, pem)


def remove_local_images(repository: str) -> None:
    """Every tag of ``repository`` in docker's and in buildah's image store (best effort: cleanup never fails)."""
    if shutil.which("docker"):
        listed = run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", repository],
            timeout=60,
            check=False,
            echo=False,
        )
        for ref in listed.stdout.split():
            run(["docker", "rmi", "-f", ref], timeout=120, check=False, echo=False)
    if shutil.which("buildah"):
        listed = run(
            ["buildah", "images", "--format", "{{.Name}}:{{.Tag}}"], timeout=60, check=False, echo=False
        )
        for ref in listed.stdout.split():
            if ref.rpartition(":")[0] == repository:
                run(["buildah", "rmi", "-f", ref], timeout=120, check=False, echo=False)


def remove_image_id(image_id: str) -> None:
    """An image by id, if no tag still points at it (the tags were removed first)."""
    for tool in ("docker", "buildah"):
        if shutil.which(tool):
            run([tool, "rmi", image_id.removeprefix("sha256:")], timeout=120, check=False, echo=False)


@pytest.fixture(scope="module")
def local_images() -> Iterator[set[str]]:
    """Image repositories and image ids (sha256:...) the module's tests made; all removed afterwards."""
    made: set[str] = set()
    yield made
    for repository in sorted(m for m in made if not m.startswith("sha256:")):
        remove_local_images(repository)
    for image_id in sorted(m for m in made if m.startswith("sha256:")):
        remove_image_id(image_id)
