"""`exec`, `run` and `shell` of the hpcci apptainer STAND-IN (not the real Apptainer): a program in the image.

The program runs in the image's unpacked root filesystem (cache.py) as the calling uid, in an unprivileged user
namespace, by charliecloud's ch-run. Like Apptainer by default: $HOME, the current directory and /var/tmp are bound
in, /tmp is the host's, the working directory stays the current one when it is visible inside; --contain and
--containall bind none of these. -B/--bind and APPTAINER_BIND add binds (src[:dst[:ro|rw]], comma-separated).
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from typing import NoReturn

from apptainer_standin.cache import rootfs_for
from apptainer_standin.console import UsageError, fatal, require_args, usage, verbose
from apptainer_standin.environment import DEFAULT_PATH, container_env
from apptainer_standin.host import host_arch, touch
from apptainer_standin.image import read_meta
from apptainer_standin.options import RUNTIME_FLAGS, Options, parse

Bind = tuple[str, str]
FORMS = {
    "exec": "exec [exec options...] <container> <command>",
    "run": "run [run options...] <container> [args...]",
    "shell": "shell [shell options...] <container>",
}
UNSUPPORTED = ("fakeroot", "writable", "app", "mount")
BIND_VARIABLES = ("APPTAINER_BIND", "SINGULARITY_BIND", "APPTAINER_BINDPATH", "SINGULARITY_BINDPATH")
SYSTEM_DIRS = ("/proc", "/sys", "/dev", "/usr", "/etc", "/bin", "/lib", "/sbin")  # never bound as the cwd


def split_binds(values: list[str]) -> list[Bind]:
    """(source, destination) pairs of bind specs ``src[:dst[:ro|rw]]``, several per value comma-separated."""
    out = []
    for v in values:
        for item in v.split(","):
            item = item.strip()
            if not item:
                continue
            parts = item.split(":")
            src = parts[0]
            dst = parts[1] if len(parts) > 1 and parts[1] else src
            if len(parts) > 2 and parts[2] not in ("rw", "ro"):
                raise UsageError(f"invalid bind option '{parts[2]}' in {item}: use rw or ro")
            out.append((src, dst))
    return out


def ensure_point(rootfs: str, src: str, dst: str) -> None:
    """Create the mount point for ``dst`` in the image: a directory or a file, like ``src``."""
    p = os.path.join(rootfs, dst.lstrip("/"))
    if os.path.lexists(p):
        return
    os.makedirs(os.path.dirname(p), exist_ok=True)
    if os.path.isdir(src):
        os.makedirs(p, exist_ok=True)
    else:
        touch(p)


def find_in_rootfs(rootfs: str, cmd: str, path: str) -> bool:
    """Whether ``cmd`` can be found in the image (a relative path with a slash is left to ch-run)."""
    if "/" in cmd:
        return os.path.lexists(os.path.join(rootfs, cmd.lstrip("/"))) or not cmd.startswith("/")
    return any(os.path.lexists(os.path.join(rootfs, d.lstrip("/"), cmd)) for d in path.split(":") if d)


def _inside(path: str, dirs: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def _check_arch(image: str, arch: str) -> None:
    """Refuse an image of another architecture unless QEMU binfmt can run it."""
    if arch == host_arch():
        return
    qemu = {"arm64": "qemu-aarch64", "amd64": "qemu-x86_64"}.get(arch, f"qemu-{arch}")
    if not os.path.exists(f"/proc/sys/fs/binfmt_misc/{qemu}"):
        fatal(
            f"image {image} is {arch} and this host is {host_arch()} without QEMU binfmt ({qemu}): "
            f"build the image for {host_arch()}"
        )


def _binds(opts: Options, contain: bool, home: Bind, cwd: str) -> list[Bind]:
    """The binds of a run: the defaults (home, /var/tmp, the cwd) unless contained, then -B and APPTAINER_BIND."""
    binds = []
    if not contain and not opts.on("no_home") and os.path.isdir(home[0]):
        binds.append(home)
    if not contain:
        binds.append(("/var/tmp", "/var/tmp"))
        if cwd != "/" and not cwd.startswith(SYSTEM_DIRS) and not _inside(cwd, [dst for _, dst in binds]):
            binds.append((cwd, cwd))
    binds += split_binds(opts.values("bind"))
    for var in BIND_VARIABLES:
        if os.environ.get(var):
            binds += split_binds([os.environ[var]])
    return binds


def _user() -> str:
    try:
        return os.environ.get("USER") or pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _check_can_run(opts: Options) -> None:
    for unsupported in UNSUPPORTED:
        if opts.on(unsupported):
            fatal(f"--{unsupported.replace('_', '-')} is not supported by the hpcci apptainer stand-in")
    if shutil.which("ch-run") is None:
        fatal("ch-run (charliecloud) is not installed on this host: the hpcci apptainer stand-in needs it")


def _home(opts: Options) -> Bind:
    """The home directory bound in (-H src[:dst], default $HOME) as (source, destination)."""
    home_src, _, home_dst = (
        opts.value("home") or os.environ.get("HOME") or os.path.expanduser("~")
    ).partition(":")
    return home_src, home_dst or home_src


def _make_mount_points(rootfs: str, binds: list[Bind], home: str) -> None:
    """Refuse a bind whose source is missing; create each bind's mount point, and the home's."""
    for src, dst in binds:
        if not os.path.exists(src):
            fatal(
                f"container creation failed: mount {src}->{dst} error: while mounting {src}: "
                f"mount source {src} doesn't exist"
            )
        ensure_point(rootfs, src, dst)
    ensure_point(rootfs, "/", home)  # --contain/--no-home: an empty home, like Apptainer


def _chrun_argv(rootfs: str, binds: list[Bind], contain: bool, workdir: str, argv: list[str]) -> list[str]:
    chrun = ["ch-run", *(["--private-tmp"] if contain else [])]
    for src, dst in binds:
        chrun += ["-b", f"{src}:{dst}"]
    return [*chrun, "-c", workdir, rootfs, "--", *argv]


def launch(image: str, argv: list[str], opts: Options) -> NoReturn:
    """Replace this process by ch-run running ``argv`` in ``image``."""
    _check_can_run(opts)
    rootfs = rootfs_for(image)
    meta = read_meta(rootfs)
    _check_arch(image, meta.get("architecture") or host_arch())
    env = container_env(opts, meta, image)
    contain = opts.on("contain") or opts.on("containall")
    home = _home(opts)
    env["HOME"] = home[1]
    cwd = os.getcwd()
    binds = _binds(opts, contain, home, cwd)
    _make_mount_points(rootfs, binds, home[1])
    shared = [d for _, d in binds] + ([] if contain else ["/tmp"])  # ch-run shares the host's /tmp
    workdir = opts.value("pwd") or (cwd if _inside(cwd, shared) else home[1])
    if not find_in_rootfs(rootfs, argv[0], env.get("PATH", DEFAULT_PATH)):
        fatal(f'"{argv[0]}": executable file not found in $PATH')
    chrun = _chrun_argv(rootfs, binds, contain, workdir, argv)
    verbose("exec " + " ".join(chrun))
    env.setdefault("USER", _user())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe("ch-run", chrun, env)  # noqa: S606 - an argv list, no shell: the program becomes ch-run


def _program(command: str, image: str, rest: list[str]) -> list[str]:
    """What runs: exec's arguments, a shell, or (run) the image's ENTRYPOINT with the arguments or its CMD."""
    if command == "exec":
        return rest
    if command == "shell":
        tree = rootfs_for(image)
        return ["/bin/bash"] if os.path.lexists(os.path.join(tree, "bin/bash")) else ["/bin/sh"]
    meta = read_meta(rootfs_for(image))
    argv = list(meta.get("entrypoint") or []) + (rest if rest else list(meta.get("cmd") or []))
    return argv or ["/bin/sh"]


def runtime_cmd(args: list[str], command: str) -> int:
    """`exec|run|shell [options] IMAGE [command/args]`."""
    form = FORMS[command]
    opts, pos = parse(args, RUNTIME_FLAGS, 0, form)
    if opts.on("help"):
        print(
            f"{usage(form)}\n\nOptions (hpcci stand-in): -B/--bind src[:dst[:ro]], -e/--cleanenv, "
            "--env K=V, --env-file F, --nv, --rocm, --pwd DIR, -H/--home, --no-home, -c/--contain, "
            "-C/--containall"
        )
        return 0
    require_args(pos, 2 if command == "exec" else 1, form)
    launch(pos[0], _program(command, pos[0], pos[1:]), opts)
