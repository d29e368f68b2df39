"""The one architecture vocabulary: uname names, OCI names, platform strings."""

from __future__ import annotations

import pytest

from hpcci.platforms import Architecture, image_platform, machine_platform, platform_machine


def test_node_machines_map_to_the_image_platform_they_run() -> None:
    assert machine_platform("x86_64") == "linux/amd64"
    assert machine_platform("aarch64") == "linux/arm64"
    assert machine_platform("ppc64le") == "linux/ppc64le"
    with pytest.raises(ValueError):
        machine_platform("sparc64")


def test_platforms_map_back_to_the_machine_that_runs_them_natively() -> None:
    assert platform_machine("linux/arm64") == "aarch64"
    assert platform_machine("linux/amd64") == "x86_64"
    assert platform_machine("linux/mips") is None


def test_arm64_v8_is_plain_arm64_but_arm_v7_keeps_its_variant() -> None:
    # docker save of an arm64 image built by buildah records variant v8; containerd normalizes it away
    assert image_platform("arm64", "v8") == "linux/arm64"
    assert image_platform("arm", "v7") == "linux/arm/v7"
    assert image_platform("amd64") == "linux/amd64"


def test_macos_arm64_is_the_same_architecture_as_linux_aarch64() -> None:
    assert Architecture.from_machine("arm64") is Architecture.ARM64
    assert Architecture.ARM64.qemu == "aarch64"
