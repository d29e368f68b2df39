"""The local registry (distribution 2.8) takes pushes only with the right basic-auth credentials."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcci.process import run

pytestmark = pytest.mark.integration

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def registry_get(
    env: dict[str, str], path: str, accept: str = MANIFEST_V2, auth: bool = True, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        f"http://{env['HPCCI_REGISTRY']}{path}", method=method, headers={"Accept": accept}
    )
    if auth:
        token = base64.b64encode(
            f"{env['HPCCI_REGISTRY_USERNAME']}:{env['HPCCI_REGISTRY_PASSWORD']}".encode()
        ).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def push_errors(client: Any, repo: str, tag: str, auth_config: dict[str, str]) -> list[str]:
    """Push and collect the errors in the streamed JSON (a failed push does not raise)."""
    stream = client.images.push(repo, tag, stream=True, decode=True, auth_config=auth_config)
    return [
        str(part.get("error") or part.get("errorDetail"))
        for part in stream
        if "error" in part or "errorDetail" in part
    ]


@pytest.fixture
def scratch_repo(require: Callable[..., None], stack_env: dict[str, str]) -> Iterator[tuple[Any, str, str]]:
    """A fresh repository name tagged locally from the base image; deleted from the registry afterwards."""
    require("docker", "registry")
    import docker

    client = docker.from_env(timeout=120)
    repo = f"{stack_env['HPCCI_REGISTRY']}/hpcci-test/push-{uuid.uuid4().hex[:12]}"
    client.images.get("hpcci/base:bookworm-amd64").tag(repo, "t")
    yield client, repo, "t"
    name = repo.split("/", 1)[1]
    status, headers, _ = registry_get(stack_env, f"/v2/{name}/manifests/t", method="HEAD")
    if status == 200:
        registry_get(stack_env, f"/v2/{name}/manifests/{headers['Docker-Content-Digest']}", method="DELETE")
    client.images.remove(f"{repo}:t")
    client.close()


def test_push_with_credentials_succeeds(
    scratch_repo: tuple[Any, str, str], stack_env: dict[str, str]
) -> None:
    client, repo, tag = scratch_repo
    auth = {
        "username": stack_env["HPCCI_REGISTRY_USERNAME"],
        "password": stack_env["HPCCI_REGISTRY_PASSWORD"],
    }
    assert push_errors(client, repo, tag, auth) == []
    status, _, _ = registry_get(stack_env, f"/v2/{repo.split('/', 1)[1]}/manifests/{tag}", method="HEAD")
    assert status == 200


def test_push_without_credentials_is_refused(scratch_repo: tuple[Any, str, str]) -> None:
    client, repo, tag = scratch_repo
    errors = push_errors(client, repo, tag, {})
    assert errors
    assert "auth" in errors[0].lower()


def test_push_with_wrong_password_is_refused(
    scratch_repo: tuple[Any, str, str], stack_env: dict[str, str]
) -> None:
    client, repo, tag = scratch_repo
    errors = push_errors(
        client, repo, tag, {"username": stack_env["HPCCI_REGISTRY_USERNAME"], "password": "wrong"}
    )
    assert errors
    assert "unauthorized" in errors[0].lower() or "auth" in errors[0].lower()


def test_login_with_wrong_password_raises(require: Callable[..., None], stack_env: dict[str, str]) -> None:
    require("docker", "registry")
    import docker
    from docker.errors import APIError

    client = docker.from_env(timeout=60)
    with pytest.raises(APIError):
        client.login(
            username=stack_env["HPCCI_REGISTRY_USERNAME"],
            password="wrong",
            registry=stack_env["HPCCI_REGISTRY"],
            reauth=True,
        )


def test_anonymous_api_request_is_refused(require: Callable[..., None], stack_env: dict[str, str]) -> None:
    require("registry")
    status, headers, _ = registry_get(stack_env, "/v2/", auth=False)
    assert status == 401
    assert headers.get("Www-Authenticate", "").startswith("Basic")


def test_base_image_is_a_manifest_list_of_amd64_and_arm64(
    require: Callable[..., None], stack_env: dict[str, str]
) -> None:
    require("registry")
    image = stack_env["HPCCI_BASE_IMAGE"]
    name, tag = image.split("/", 1)[1].rsplit(":", 1)
    status, _, body = registry_get(stack_env, f"/v2/{name}/manifests/{tag}", accept=MANIFEST_LIST)
    assert status == 200
    listing = json.loads(body)
    assert listing["mediaType"] == MANIFEST_LIST
    assert {m["platform"]["architecture"] for m in listing["manifests"]} == {"amd64", "arm64"}


def test_buildah_builds_from_the_base_image_for_amd64_and_arm64(
    require: Callable[..., None], stack_env: dict[str, str], tmp_path: Path
) -> None:
    require("registry", "docker")  # `up docker` installs buildah
    registry = stack_env["HPCCI_REGISTRY"]
    userpass = f"{stack_env['HPCCI_REGISTRY_USERNAME']}:{stack_env['HPCCI_REGISTRY_PASSWORD']}"
    authfile = tmp_path / "auth.json"
    authfile.write_text(
        json.dumps({"auths": {registry: {"auth": base64.b64encode(userpass.encode()).decode()}}})
    )
    (tmp_path / "Containerfile").write_text(
        f"FROM {stack_env['HPCCI_BASE_IMAGE']}\nRUN uname -m > /arch.txt && python3 -c 'print(55)' > /out.txt\n"
    )
    name = f"hpcci-test-{uuid.uuid4().hex[:12]}"
    build = [
        "buildah",
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--manifest",
        name,
        "--tls-verify=false",
        "--authfile",
        str(authfile),
        "-f",
        str(tmp_path / "Containerfile"),
        str(tmp_path),
    ]
    try:
        run(build, timeout=600, echo=False)
        listing = json.loads(run(["buildah", "manifest", "inspect", name], timeout=60, echo=False).stdout)
        arches = {m["platform"]["architecture"]: m["digest"] for m in listing["manifests"]}
        assert sorted(arches) == ["amd64", "arm64"]
        for arch, want in (("amd64", "x86_64"), ("arm64", "aarch64")):
            image = run(
                ["buildah", "inspect", "--format", "{{.FromImageID}}", f"{name}@{arches[arch]}"],
                timeout=60,
                check=False,
                echo=False,
            )
            ctr = run(
                ["buildah", "from", "--pull=never", image.stdout.strip() or f"{name}@{arches[arch]}"],
                timeout=60,
                echo=False,
            ).stdout.strip()
            try:
                root = Path(run(["buildah", "mount", ctr], timeout=60, echo=False).stdout.strip())
                assert [(root / f).read_text().strip() for f in ("arch.txt", "out.txt")] == [want, "55"]
            finally:
                run(["buildah", "rm", ctr], timeout=60, check=False, echo=False)
    finally:
        images = run(["buildah", "manifest", "inspect", name], timeout=60, check=False, echo=False)
        run(["buildah", "manifest", "rm", name], timeout=60, check=False, echo=False)
        if images.ok:
            for m in json.loads(images.stdout)["manifests"]:
                run(["buildah", "rmi", m["digest"].split(":", 1)[1]], timeout=60, check=False, echo=False)
