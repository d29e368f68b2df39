"""Whether this machine can run a platform's code: its own architecture, or QEMU through binfmt_misc."""

from __future__ import annotations

import platform as host_platform
from pathlib import Path

from hpcci.platforms import Architecture, split_platform


def host_arch() -> str:
    machine = host_platform.machine().lower()
    arch = Architecture.from_machine(machine)
    return arch.value if arch else machine


def emulation_problem(platform: str, binfmt_dir: Path = Path("/proc/sys/fs/binfmt_misc")) -> str | None:
    """Why RUN steps for ``platform`` cannot execute on this machine (no QEMU binfmt handler), or None."""
    _, arch, _ = split_platform(platform)
    if arch == host_arch() or (arch == "386" and host_arch() == "amd64"):
        return None
    known = Architecture.from_oci(arch)
    qemu = known.qemu if known else arch
    handler = binfmt_dir / f"qemu-{qemu}"
    try:
        enabled = handler.read_text(encoding="utf-8").splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        enabled = False
    if enabled:
        return None
    return (
        f"this {host_arch()} machine cannot run {arch} code: no QEMU binfmt handler ({handler} is missing or "
        "disabled); install qemu-user-static and binfmt-support (on GitHub: docker/setup-qemu-action), or "
        f"drop {platform} from image.platforms"
    )
