"""Container runtimes on the cluster: apptainer | singularity | charliecloud | podman, as pure command lines.

One Protocol-like base, one table of names (``RUNTIMES``). Each runtime says how to turn a docker-archive tar
into its image file (``convert``), how to pull from a registry (``pull``) and how to run a command in the image
(``exec``), with binds, environment, a clean environment, the site's own options (the cluster config's
``runtime.exec_args``) and its own form of GPU access for the cluster's GPU kind (``runtime.gpu``). A clean
environment can keep the variables an MPI launcher gives each rank (``ExecOptions.pass_env``). Apptainer
packs its SIF with the cluster's SquashFS settings (``Squashfs``: compression and a thread cap), given through
``--mksquashfs-args`` only when they differ from Apptainer's own defaults. Whether a runtime takes those options
is its capability ``takes_squashfs_options(version)``: Apptainer from 1.4 (apptainer/apptainer#2707, "Add
--mksquashfs-args build option"; https://apptainer.org/docs/user/main/cli/apptainer_build.html), from the version
its ``version()`` command prints. ``choose_packing`` turns ``runtime.compression`` (``auto``: zstd where options
are taken, gzip otherwise) and that version into the Squashfs a build uses and the sentence saying why. On the
local stack `apptainer` and `singularity` are a stand-in that accepts these same command lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from hpcci.errors import ConfigError

RuntimeName = Literal["apptainer", "singularity", "charliecloud", "podman"]
GpuKind = Literal["nvidia", "amd"]
Compression = Literal["gzip", "lz4", "zstd", "xz", "lzo"]
CompressionChoice = Literal[
    "auto", "gzip", "lz4", "zstd", "xz", "lzo"
]  # auto: zstd where the runtime takes it
# mksquashfs's zstd level. Measured on a 1 GiB tree of programs and libraries, 2 threads, three interleaved runs
# (benchmarks/bench_convert.py): gzip (Apptainer's default) 158-165 s for 303 MiB; zstd 3 5.6-7.7 s for 314 MiB;
# zstd 1 2.7-4.8 s for 330 MiB; zstd 6 15.6 s for 296 MiB; mksquashfs's own default 15 slower than gzip. Both 1 and
# 3 are 20x+ faster than gzip; 3 costs 1-5 s more per GiB for an image 5% smaller (kept releases, read from shared
# file systems), 6 doubles the time for 6% less. Reading every file back: alike (3-6 s).
ZSTD_LEVEL = 3
SQUASHFS_OPTIONS_SINCE = (1, 4)  # Apptainer 1.4.0 added `build --mksquashfs-args` (apptainer/apptainer#2707)


@dataclass(frozen=True)
class Squashfs:
    """How mksquashfs packs a converted image: gzip and all CPUs are Apptainer's defaults."""

    compression: Compression = "gzip"
    processors: int | None = (
        None  # mksquashfs threads: the conversion job's CPUs, or a login node's fair share
    )

    def mksquashfs_args(self) -> str | None:
        """The value of Apptainer's --mksquashfs-args, or None when the defaults need none."""
        words = [] if self.compression == "gzip" else ["-comp", self.compression]
        if self.compression == "zstd":
            words += ["-Xcompression-level", str(ZSTD_LEVEL)]
        if self.processors:
            words += ["-processors", str(self.processors)]
        return " ".join(words) or None


def parse_version(text: str) -> str | None:
    """The version a runtime's ``version()`` command printed: the line "apptainer version 1.4.1-1.el9" (or just
    "1.4.1"), wherever a module's messages put it; None when no line is one."""
    m = re.search(r"^(?:\S+ version )?(\d+\.\d+(?:\.\d+)?[\w.+~-]*)\s*$", text, re.MULTILINE)
    return m.group(1) if m else None


def version_tuple(version: str) -> tuple[int, ...]:
    """The leading numbers of a version ("1.4.1-1.el9" -> (1, 4, 1)), for comparisons."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    return tuple(int(g) for g in m.groups() if g is not None) if m else ()


@dataclass(frozen=True)
class ExecOptions:
    gpu: GpuKind | None = None  # the cluster's GPUs, only for GPU tests
    binds: Sequence[str] = ()  # "src[:dst[:opts]]"
    cleanenv: bool = True
    env: Mapping[str, str] | None = None
    exec_args: Sequence[str] = ()  # the site's options for every run, from the cluster config
    # Name prefixes of host variables a clean environment keeps: an MPI test's launcher variables
    # (backends/launchers.py rank_env), set per rank when the launcher starts it, so known only at run time.
    pass_env: Sequence[str] = ()


def _check_env(env: Mapping[str, str] | None) -> list[tuple[str, str]]:
    items = list((env or {}).items())
    for key, _ in items:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"test env: {key!r} is not a valid environment variable name")
    return items


def _check_bind(bind: str) -> str:
    if not bind or "\n" in bind or bind.startswith("-"):
        raise ConfigError(f"bind {bind!r} is not 'src[:dst[:opts]]'")
    return bind


# The host side of ``pass_env``: `sh -c SCRIPT hpcci-pass-env RUNTIME-ARGV...` exports every host variable whose name
# starts with one of the prefixes again as EXPORT + name; Apptainer (APPTAINERENV_X) and Singularity
# (SINGULARITYENV_X) set those as X inside the container even under --cleanenv ("SINGULARITYENV_ prefix" in
# https://apptainer.org/docs/user/main/environment_and_metadata.html), then the runtime starts as given. Prefixes and
# names are [A-Za-z0-9_] before eval sees them; a line of a multi-line value that looks like NAME= is skipped unless
# NAME is set.
_KEEP_ENV_SHIM = (
    r"""for n in $(env | awk -F= '/^(PATTERN)[A-Za-z0-9_]*=/ {print $1}'); do """
    r'eval "[ -z \"\${$n+x}\" ] || export EXPORT$n=\"\$$n\""; done; exec "$@"'
)
_NAME_START = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_prefix(word: str) -> str:
    if not _NAME_START.fullmatch(word):
        raise ConfigError(f"pass_env: {word!r} is not the start of an environment variable name")
    return word


def pass_env_argv(prefixes: Sequence[str], export: str) -> list[str]:
    """The argv put in front of a runtime command so that the host variables named ``prefixes``* reach a clean
    container environment, exported again as ``export`` + name (which the runtime turns back into the name)."""
    for word in (*prefixes, export):
        _check_prefix(word)
    script = _KEEP_ENV_SHIM.replace("PATTERN", "|".join(prefixes)).replace("EXPORT", export)
    return ["sh", "-c", script, "hpcci-pass-env"]


class Runtime:
    """Base: Apptainer's command lines (Singularity shares them under another name)."""

    name = "apptainer"
    suffix = ".sif"
    # converts from `oci:<layout>:<tag>` (containers/image's OCI layout): layer staging
    builds_from_layout = True
    # whether some version's build takes mksquashfs options (Apptainer's, from 1.4: takes_squashfs_options)
    may_take_squashfs_options = True
    env_prefix = "APPTAINER"
    gpu_args: Mapping[GpuKind, Sequence[str]] = {"nvidia": ("--nv",), "amd": ("--rocm",)}

    def __init__(self, executable: str | None = None, squashfs: Squashfs | None = None) -> None:
        self.executable = executable or self.name
        self.squashfs = squashfs or Squashfs()

    def version(self) -> list[str]:
        return [self.executable, "--version"]

    def takes_squashfs_options(self, version: str | None) -> bool | None:
        """Whether `build` takes mksquashfs options (--mksquashfs-args) at ``version``; None: not known."""
        if version is None:
            return None
        return version_tuple(version) >= SQUASHFS_OPTIONS_SINCE

    def gpu(self, kind: GpuKind | None) -> list[str]:
        """This runtime's options that give the container the cluster's GPUs of ``kind`` (none for None)."""
        return list(self.gpu_args[kind]) if kind else []

    def image_path(self, cache_dir: str, key: str) -> str:
        """Where the converted image for content key ``key`` (a digest's hex) lives."""
        return f"{cache_dir}/{key}{self.suffix}"

    def exists(self, image: str) -> list[str]:
        """A command that succeeds when the converted image is there (non-empty)."""
        return ["test", "-s", image]

    def is_file(self) -> bool:
        """Whether the image is a file (written to a temporary name and renamed) or lives in a store."""
        return True

    def tmp_env(self, tmpdir: str) -> dict[str, str]:
        """Environment for conversion: keep big temporary files off /tmp (the seeds show /tmp overflowing)."""
        return {
            "TMPDIR": tmpdir,
            f"{self.env_prefix}_TMPDIR": tmpdir,
            f"{self.env_prefix}_CACHEDIR": f"{tmpdir}/cache",
        }

    def convert(self, tar: str, image: str) -> list[list[str]]:
        """Steps that turn the docker-archive ``tar`` into the image file ``image``."""
        return self.build(f"docker-archive://{tar}", image)

    def build(self, source: str, image: str) -> list[list[str]]:
        """`build` of the image file ``image`` from an Apptainer build source (docker-archive://TAR, oci:DIR:TAG)."""
        args = self.squashfs.mksquashfs_args()
        packing = ["--mksquashfs-args", args] if args else []
        return [[self.executable, "build", "--force", *packing, image, source]]

    def pull(self, ref: str, image: str, *, insecure: bool = False) -> list[list[str]]:
        """Steps that pull ``ref`` (a registry reference, no scheme) into the image file ``image``."""
        plain = ["--nohttps"] if insecure else []
        return [[self.executable, "pull", "--force", *plain, image, f"docker://{ref}"]]

    def registry_env(self, username: str, password: str) -> dict[str, str]:
        """Environment variables that give ``pull`` the registry credentials."""
        return {
            f"{self.env_prefix}_DOCKER_USERNAME": username,
            f"{self.env_prefix}_DOCKER_PASSWORD": password,
        }

    def exec(self, image: str, argv: Sequence[str], opts: ExecOptions) -> list[str]:
        out = [self.executable, "exec", *self.gpu(opts.gpu)]
        if opts.cleanenv:
            out.append("--cleanenv")
        out += opts.exec_args
        for b in opts.binds:
            out += ["--bind", _check_bind(b)]
        # APPTAINERENV_K=V rather than --env K=V: --env splits its value at commas; these survive --cleanenv.
        env = [f"{self.env_prefix}ENV_{k}={v}" for k, v in _check_env(opts.env)]
        keep = (
            pass_env_argv(opts.pass_env, f"{self.env_prefix}ENV_") if opts.cleanenv and opts.pass_env else []
        )
        return [*keep, *(["env", *env] if env else []), *out, image, *argv]

    def wrapper_argv(self, kind: str, image: str, opts: ExecOptions) -> list[str]:
        """The command line of a release's ``<name>-<kind>`` wrapper (exec, run, shell), before the user's
        arguments: run and shell take exec's options."""
        argv = self.exec(image, [], opts)
        at = argv.index(self.executable) + 1
        return argv if kind == "exec" else [*argv[:at], kind, *argv[at + 1 :]]


class Singularity(Runtime):
    name = "singularity"
    may_take_squashfs_options = False  # SingularityCE's build has no --mksquashfs-args
    env_prefix = "SINGULARITY"

    def takes_squashfs_options(self, version: str | None) -> bool | None:
        return False  # Singularity (3.x, SingularityCE): mksquashfs settings live in singularity.conf

    def build(self, source: str, image: str) -> list[list[str]]:
        # Singularity (3.x, SingularityCE) has no --mksquashfs-args: gzip, threads as singularity.conf's
        # `mksquashfs procs` says
        return [[self.executable, "build", "--force", image, source]]


class Charliecloud(Runtime):
    """ch-convert makes a SquashFS image from a docker-archive tar loaded into ch-image storage; ch-run runs it."""

    name = "charliecloud"
    builds_from_layout = False
    may_take_squashfs_options = False
    suffix = ".sqfs"
    # ch-run has no GPU option: the host's GPU libraries are injected into the image (ch-fromhost --nvidia).
    gpu_args: Mapping[GpuKind, Sequence[str]] = {"nvidia": (), "amd": ()}

    def __init__(self, executable: str | None = None, squashfs: Squashfs | None = None) -> None:
        super().__init__(executable or "ch-run", squashfs)

    def takes_squashfs_options(self, version: str | None) -> bool | None:
        return False  # ch-convert packs with its own mksquashfs settings

    def _tool(self, tool: str) -> str:
        # ch-run, ch-image and ch-convert live side by side; a configured ch-run path gives the folder.
        return self.executable.rsplit("ch-run", 1)[0] + tool if "ch-run" in self.executable else tool

    def version(self) -> list[str]:
        return [self.executable, "--version"]

    def tmp_env(self, tmpdir: str) -> dict[str, str]:
        return {"TMPDIR": tmpdir, "CH_IMAGE_STORAGE": f"{tmpdir}/ch-image"}

    def convert(self, tar: str, image: str) -> list[list[str]]:
        name = "hpcci-" + re.sub(r"[^a-z0-9]+", "-", image.rsplit("/", 1)[-1].lower()).strip("-")
        return [
            [self._tool("ch-image"), "import", tar, name],
            [self._tool("ch-convert"), "-i", "ch-image", "-o", "squash", name, image],
        ]

    def registry_env(self, username: str, password: str) -> dict[str, str]:
        return {"CH_IMAGE_USERNAME": username, "CH_IMAGE_PASSWORD": password}

    def pull(self, ref: str, image: str, *, insecure: bool = False) -> list[list[str]]:
        tls = ["--tls-no-verify"] if insecure else []
        return [
            [self._tool("ch-image"), "pull", *tls, ref],
            [self._tool("ch-convert"), "-i", "ch-image", "-o", "squash", ref, image],
        ]

    def wrapper_argv(self, kind: str, image: str, opts: ExecOptions) -> list[str]:
        """ch-run has no runscript and no shell subcommand: run runs the arguments like exec, shell runs /bin/sh."""
        return self.exec(image, ["/bin/sh"] if kind == "shell" else [], opts)

    def exec(self, image: str, argv: Sequence[str], opts: ExecOptions) -> list[str]:
        out = [self.executable, *self.gpu(opts.gpu)]
        # ch-run can unset variables by name pattern but not keep some: an environment that must keep the MPI
        # launcher's variables (pass_env) is not cleaned.
        if opts.cleanenv and not opts.pass_env:
            out.append("--unset-env=*")
        out += opts.exec_args
        for b in opts.binds:
            out += ["--bind", _check_bind(b)]
        for k, v in _check_env(opts.env):
            out.append(f"--set-env={k}={v}")
        return [*out, image, "--", *argv]


class Podman(Runtime):
    """Rootless podman: the 'image file' is an image name in the user's store, loaded from the tar."""

    name = "podman"
    builds_from_layout = False
    may_take_squashfs_options = False
    suffix = ""
    # NVIDIA through CDI (nvidia-ctk cdi generate); ROCm needs the compute device and the render nodes.
    gpu_args: Mapping[GpuKind, Sequence[str]] = {
        "nvidia": ("--device=nvidia.com/gpu=all",),
        "amd": ("--device=/dev/kfd", "--device=/dev/dri"),
    }

    def tmp_env(self, tmpdir: str) -> dict[str, str]:
        return {"TMPDIR": tmpdir}

    def takes_squashfs_options(self, version: str | None) -> bool | None:
        return False  # images live in podman's store, no SquashFS

    def image_path(self, cache_dir: str, key: str) -> str:
        # docker save's image id is the config digest, which is the cache key: `podman load` keeps it.
        return f"localhost/hpcci-cache:{key}"

    def exists(self, image: str) -> list[str]:
        return [self.executable, "image", "exists", image]

    def is_file(self) -> bool:
        return False

    def convert(self, tar: str, image: str) -> list[list[str]]:
        key = image.rsplit(":", 1)[-1]
        return [[self.executable, "load", "--quiet", "--input", tar], [self.executable, "tag", key, image]]

    def registry_env(self, username: str, password: str) -> dict[str, str]:
        return {
            "REGISTRY_AUTH_FILE": ""
        }  # podman: log in on the cluster (`podman login`); no env credentials

    def pull(self, ref: str, image: str, *, insecure: bool = False) -> list[list[str]]:
        tls = ["--tls-verify=false"] if insecure else []
        return [[self.executable, "pull", "--quiet", *tls, ref], [self.executable, "tag", ref, image]]

    def exec(self, image: str, argv: Sequence[str], opts: ExecOptions) -> list[str]:
        out = [self.executable, "run", "--rm", "--pull=never", "--network=none", *opts.exec_args]
        out += self.gpu(opts.gpu)
        for b in opts.binds:
            out += ["--volume", _check_bind(b)]
        # podman passes none of the host's environment; `--env NAME*` passes the host's variables named NAME...
        # (https://docs.podman.io/en/latest/markdown/podman-run.1.html, --env)
        out += [f"--env={_check_prefix(p)}*" for p in opts.pass_env]
        for k, v in _check_env(opts.env):
            out += ["--env", f"{k}={v}"]
        return [*out, image, *argv]


RUNTIMES: dict[str, type[Runtime]] = {  # one entry per RuntimeName
    "apptainer": Runtime,
    "singularity": Singularity,
    "charliecloud": Charliecloud,
    "podman": Podman,
}


def runtime_for(name: str, executable: str | None = None, squashfs: Squashfs | None = None) -> Runtime:
    try:
        return RUNTIMES[name](executable, squashfs)
    except KeyError:
        raise ConfigError(f"unknown runtime {name!r}; use one of: {', '.join(RUNTIMES)}") from None


@dataclass(frozen=True)
class Packing:
    """How a deploy's conversions pack the image, and the one sentence that says why (doctor, plan, the log)."""

    squashfs: Squashfs
    why: str
    version: str | None = (
        None  # the runtime's, as its version() command printed it; None: not asked or not known
    )

    @property
    def compression(self) -> str:
        """For records and logs: the mksquashfs words passed, or "gzip" (Apptainer's default, none passed)."""
        return self.squashfs.mksquashfs_args() or "gzip"


def choose_packing(
    rt: Runtime, compression: CompressionChoice, processors: int | None, version: str | None
) -> Packing:
    """``runtime.compression`` and ``runtime.convert_cpus`` for ``rt`` at ``version`` (None: not known).

    auto: zstd at ZSTD_LEVEL where the runtime takes mksquashfs options, else gzip (Apptainer's default) with no
    options at all, so an older runtime never sees --mksquashfs-args; a version not known keeps gzip and passes
    convert_cpus as before. A named compression other than gzip on a runtime known not to take options is a
    ConfigError saying what to set instead.
    """
    takes = rt.takes_squashfs_options(version)
    at = f"{rt.name} {version}" if version else f"{rt.name} (version not known)"
    since = ".".join(map(str, SQUASHFS_OPTIONS_SINCE))
    if takes is False:
        if compression not in ("auto", "gzip"):
            raise ConfigError(
                f"runtime.compression {compression} needs `build --mksquashfs-args` (apptainer >= {since}); "
                f"the cluster has {at}: set runtime.compression to auto or gzip"
            )
        dropped = f"; convert_cpus {processors} is not passed to mksquashfs" if processors else ""
        why = f"{compression}: gzip (the runtime's default), {at} takes no --mksquashfs-args{dropped}"
        return Packing(Squashfs(), why, version)
    if compression == "auto":
        if takes is None:
            return Packing(
                Squashfs("gzip", processors),
                f"auto: gzip, the runtime's version is not known (auto picks zstd on apptainer >= {since})",
                version,
            )
        chosen = Squashfs("zstd", processors)
        why = f"auto: zstd level {ZSTD_LEVEL}, {at} takes --mksquashfs-args (apptainer >= {since})"
        return Packing(chosen, why, version)
    chosen = Squashfs(compression, processors)
    return Packing(chosen, f"{compression}: as runtime.compression says ({at})", version)
