"""The local dockerd runs arm64 images under QEMU and has the locally made multi-arch base image."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def docker_client(require: Callable[..., None]) -> Iterator[Any]:
    require("docker", "registry")  # the base images are made by `up registry`
    import docker

    client = docker.from_env(timeout=120)
    yield client
    client.close()


def test_arm64_container_runs_under_qemu(docker_client: Any) -> None:
    out = docker_client.containers.run(
        "hpcci/base:bookworm-arm64", ["uname", "-m"], platform="linux/arm64", remove=True
    )
    assert out.decode().strip() == "aarch64"


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_base_image_reports_its_architecture(docker_client: Any, arch: str) -> None:
    image = docker_client.images.get(f"hpcci/base:bookworm-{arch}")
    assert image.attrs["Architecture"] == arch
    assert image.attrs["Os"] == "linux"


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_base_image_has_python3_and_bash(docker_client: Any, arch: str) -> None:
    out = docker_client.containers.run(
        f"hpcci/base:bookworm-{arch}",
        ["bash", "-c", "python3 -c 'print(sum(range(11)))'"],
        platform=f"linux/{arch}",
        remove=True,
    )
    assert out.decode().strip() == "55"


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_base_image_has_the_clusters_open_mpi_and_mpi4py(docker_client: Any, arch: str) -> None:
    """The hybrid MPI model needs the cluster's Open MPI inside the image: Debian bookworm's 4.1, as on the cluster."""
    out = docker_client.containers.run(
        f"hpcci/base:bookworm-{arch}",
        [
            "sh",
            "-c",
            "python3 -c 'import mpi4py' && dpkg-query --showformat='${Version}\\n' --show libopenmpi3",
        ],
        platform=f"linux/{arch}",
        remove=True,
    )
    assert out.decode().strip().startswith("4.1.")
