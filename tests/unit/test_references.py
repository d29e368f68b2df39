"""Image references as data: host/path/tag/digest splitting, repository names, registry destinations."""

from __future__ import annotations

import pytest

from hpcci.errors import ConfigError
from hpcci.references import Reference, destination, normalize_repository, parse_reference

AMD = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/o/fib:1.2@sha256:x", Reference("127.0.0.1:5000", "o/fib", "1.2", "sha256:x")),
        ("localhost/fib", Reference("localhost", "fib")),
        ("localhost:5000/fib", Reference("localhost:5000", "fib")),
        ("docker.io/org/fib:latest", Reference("docker.io", "org/fib", "latest")),
        ("org/fib:1", Reference("", "org/fib", "1")),
        ("fib:1", Reference("", "fib", "1")),
        ("localhost", Reference("", "localhost")),
        ("fib@sha256:x", Reference("", "fib", "", "sha256:x")),
    ],
)
def test_reference_parts(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


def test_repository_drops_tag_and_digest_but_keeps_the_host_port() -> None:
    assert parse_reference("127.0.0.1:5000/o/fib:1.2@sha256:x").repository == "127.0.0.1:5000/o/fib"
    assert parse_reference("fib:1").repository == "fib"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("127.0.0.1:5000/octo-org/fibonacci", "127.0.0.1:5000/octo-org/fibonacci"),
        ("docker.io/Octo-Org/Fibonacci", "docker.io/octo-org/fibonacci"),
        ("ghcr.io/OWNER/app.x_y", "ghcr.io/owner/app.x_y"),
        ("org/app", "org/app"),
        ("localhost/app", "localhost/app"),
        ("Registry.Example.COM:443/a/b/c", "registry.example.com:443/a/b/c"),
    ],
)
def test_repository_is_lowercased(name: str, expected: str) -> None:
    assert normalize_repository(name) == expected


@pytest.mark.parametrize(
    "name", ["org/app:1.0", "org/app@sha256:abc", "org/-app", "org/a..b", "org//app", ""]
)
def test_invalid_repository_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match=r"image\.name"):
        normalize_repository(name)


@pytest.mark.parametrize(
    ("url", "repository", "image", "insecure", "api", "name"),
    [
        (
            "127.0.0.1:5000",
            None,
            "127.0.0.1:5000/octo-org/fib",
            True,
            "http://127.0.0.1:5000",
            "127.0.0.1:5000/octo-org/fib",
        ),
        ("docker.io", None, "docker.io/Org/Fib", False, "https://registry-1.docker.io", "docker.io/org/fib"),
        ("docker.io", "fib", "x/fib", False, "https://registry-1.docker.io", "docker.io/library/fib"),
        (
            "https://ghcr.io/",
            "owner/fib",
            "127.0.0.1:5000/a/b",
            False,
            "https://ghcr.io",
            "ghcr.io/owner/fib",
        ),
        (
            "registry.example.com:8443",
            None,
            "org/app",
            False,
            "https://registry.example.com:8443",
            "registry.example.com:8443/org/app",
        ),
    ],
)
def test_registry_destination(
    url: str, repository: str | None, image: str, insecure: bool, api: str, name: str
) -> None:
    dest = destination(url, repository, image, insecure=insecure)
    assert (dest.api, dest.name) == (api, name)
    assert dest.ref("1.0") == f"{name}:1.0"
    assert dest.ref(AMD) == f"{name}@{AMD}"
