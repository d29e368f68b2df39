"""The architecture vocabulary, one table: OCI platform names, `uname -m` names and QEMU binfmt names (pure)."""

from __future__ import annotations

from enum import Enum

from hpcci.errors import UsageError


class Architecture(Enum):
    """A CPU architecture; the value is its OCI name (the `arch` of linux/<arch>)."""

    AMD64 = "amd64"
    ARM64 = "arm64"
    PPC64LE = "ppc64le"
    S390X = "s390x"
    RISCV64 = "riscv64"
    I386 = "386"
    ARM = "arm"

    @property
    def machine(self) -> str:
        """What `uname -m` prints on such a machine (and what cluster configs call a partition's arch)."""
        return _MACHINE[self]

    @property
    def qemu(self) -> str:
        """The QEMU user-mode emulator's name for it (binfmt handler qemu-<name>)."""
        return _MACHINE[self]

    @property
    def platform(self) -> str:
        """The OCI platform string: linux/<arch>."""
        return f"linux/{self.value}"

    @classmethod
    def from_machine(cls, machine: str) -> Architecture | None:
        """`uname -m` (x86_64, aarch64, arm64, ...) -> Architecture, or None when unknown."""
        return _BY_MACHINE.get(machine.lower())

    @classmethod
    def from_oci(cls, arch: str) -> Architecture | None:
        """An OCI/Docker architecture name (amd64, arm64, ...) -> Architecture, or None when unknown."""
        try:
            return cls(arch)
        except ValueError:
            return None


_MACHINE = {
    Architecture.AMD64: "x86_64",
    Architecture.ARM64: "aarch64",
    Architecture.PPC64LE: "ppc64le",
    Architecture.S390X: "s390x",
    Architecture.RISCV64: "riscv64",
    Architecture.I386: "i386",
    Architecture.ARM: "arm",
}
_BY_MACHINE = {m: a for a, m in _MACHINE.items()} | {"arm64": Architecture.ARM64, "i686": Architecture.I386}

# The platforms an image can be built for (linux/arm needs a variant); config validates against this.
PLATFORMS = (
    "linux/amd64",
    "linux/arm64",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/386",
    "linux/arm/v6",
    "linux/arm/v7",
)

# Partition architectures a cluster config may name (`uname -m` of its nodes).
CLUSTER_MACHINES = ("x86_64", "aarch64", "ppc64le")


def machine_platform(machine: str) -> str:
    """A node's `uname -m` -> the image platform it runs (x86_64 -> linux/amd64)."""
    arch = Architecture.from_machine(machine)
    if arch is None:
        raise ValueError(f"unknown machine architecture {machine!r}")
    return arch.platform


def platform_machine(platform: str) -> str | None:
    """An image platform -> the `uname -m` of nodes that run it natively (linux/arm64 -> aarch64), or None."""
    parts = platform.split("/")
    arch = Architecture.from_oci(parts[1]) if len(parts) >= 2 else None
    return arch.machine if arch else None


def split_platform(platform: str) -> tuple[str, str, str]:
    """linux/arm/v7 -> ("linux", "arm", "v7"); linux/amd64 -> ("linux", "amd64", "")."""
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"{platform!r} is not a platform: write os/arch[/variant], e.g. linux/arm64")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def platform_tag(tag: str, platform: str) -> str:
    """The per-platform tag: ``1.2.3`` + linux/arm64 -> ``1.2.3-arm64`` (<= 128 characters)."""
    _, arch, variant = split_platform(platform)
    suffix = f"-{arch}{variant}"
    return tag[: 128 - len(suffix)] + suffix


def platform_key(platform: str) -> str:
    """linux/arm/v7 -> linux-arm-v7 (for file names and object keys)."""
    return platform.replace("/", "-")


# Variants that are an architecture's only (default) one: OCI and containerd normalize them away.
_DEFAULT_VARIANT = {"arm64": "v8"}


def image_platform(arch: str, variant: str | None = None, os: str = "linux") -> str:
    """An image config's os/architecture/variant -> its platform string, normalized as containerd does
    (arm64/v8 is plain linux/arm64; arm/v7 keeps its variant)."""
    if not variant or _DEFAULT_VARIANT.get(arch) == variant:
        return f"{os}/{arch}"
    return f"{os}/{arch}/{variant}"
