"""`build` and `pull` of the hpcci apptainer STAND-IN (not the real Apptainer): an image source to a SquashFS image.

skopeo copies the source to an OCI layout (fetch.py), umoci unpacks it rootless, the stand-in adds Apptainer's
mount points and /.singularity.d metadata (image.py), and mksquashfs packs the tree into the target file - or, with
--sandbox, the tree itself becomes the target directory. As Apptainer 1.4 does, mksquashfs gets `-comp gzip` unless
`build --mksquashfs-args "..."` (or $APPTAINER_MKSQUASHFS_ARGS) names another compression, and those words are
passed on as they are; as an earlier stand-in version (apptainer/1.3.6-standin), the option is unknown and the
variable ignored, as in Apptainer 1.3. The target appears only when complete: mksquashfs writes a temporary file that is renamed.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import tempfile

from apptainer_standin import at_least
from apptainer_standin.cache import cache_root
from apptainer_standin.console import UsageError, fatal, info, unknown_flag, usage
from apptainer_standin.fetch import fetch_oci, oci_config
from apptainer_standin.host import make_writable, rmtree, run_tool, tmp_root
from apptainer_standin.image import add_mount_points, image_meta, write_metadata
from apptainer_standin.options import BUILD_FLAGS, PULL_FLAGS, Options, parse

BUILDING = "While performing build"  # the real tool's error prefixes
PULLING = "While making image from oci registry"
BUILD_FORM = "build [build options...] <image path> <build spec>"
PULL_FORM = "pull [pull options...] [output file] <URI>"


def convert(source: str, target: str, opts: Options, force: bool, sandbox: bool, doing: str) -> None:
    """Build the image ``target`` (a SquashFS file, or a directory with ``sandbox``) from ``source``."""
    target = os.path.abspath(target)
    if os.path.lexists(target) and not force:
        fatal(f"{doing}: build target '{target}' already exists. Use --force if you want to overwrite it")
    outdir = os.path.dirname(target)
    if not os.path.isdir(outdir) or not os.access(outdir, os.W_OK):
        fatal(f"{doing}: output directory {outdir} does not exist or is not writable")
    cache_root()  # validates APPTAINER_CACHEDIR like the real tool does at start
    tmp = tempfile.mkdtemp(prefix="build-temp-", dir=tmp_root(opts))
    try:
        info("Starting build...")
        rootfs = _unpack(source, tmp, opts, doing)
        if sandbox:
            if os.path.lexists(target):
                rmtree(target)
            shutil.move(rootfs, target)
        else:
            _pack(rootfs, target, mksquashfs_args(opts), doing)
        info(f"Build complete: {target}")
    except OSError as e:
        if e.errno == errno.ENOSPC:
            fatal(
                f"{doing}: no space left on device ({e.filename or tmp}): "
                "free some space or set APPTAINER_TMPDIR to a larger filesystem, then retry"
            )
        fatal(f"{doing}: {e}")
    finally:
        rmtree(tmp)


def _unpack(source: str, tmp: str, opts: Options, doing: str) -> str:
    """The root filesystem of ``source``, unpacked under ``tmp`` with the stand-in's metadata added."""
    what, src = fetch_oci(source, tmp, opts, doing)
    cfg = oci_config(os.path.join(tmp, "oci"))
    info(f"Extracting OCI image ({cfg.get('architecture', '?')})...")
    run_tool(
        ["umoci", "--log", "error", "unpack", "--rootless", "--image", f"{tmp}/oci:img", f"{tmp}/bundle"],
        f"{doing}: unpacking the image failed",
        space_dirs=[tmp],
    )
    rootfs = os.path.join(tmp, "bundle", "rootfs")
    make_writable(rootfs)
    add_mount_points(rootfs)
    write_metadata(rootfs, image_meta(cfg, what, src))
    return rootfs


def mksquashfs_args(opts: Options) -> list[str]:
    """The user's mksquashfs words (--mksquashfs-args, else $APPTAINER_MKSQUASHFS_ARGS), after `-comp gzip`
    unless they name a compression themselves."""
    given = opts.value("mksquashfs_args")
    from_env = os.environ.get("APPTAINER_MKSQUASHFS_ARGS", "") if at_least(1, 4) else ""
    words = shlex.split(given if given is not None else from_env)
    return words if "-comp" in words else ["-comp", "gzip", *words]


def _pack(rootfs: str, target: str, extra: list[str], doing: str) -> None:
    info("Creating SIF file (SquashFS image, hpcci stand-in)...")
    partial = f"{target}.tmp-{os.getpid()}"
    try:
        run_tool(
            ["mksquashfs", rootfs, partial, "-noappend", "-all-root", "-no-progress", "-quiet", *extra],
            f"{doing}: packer failed to pack",
            space_dirs=[os.path.dirname(target)],
        )
        os.chmod(partial, 0o755)  # noqa: S103 - an image is an executable file, as a SIF is
        os.replace(partial, target)
    finally:
        if os.path.lexists(partial):
            os.unlink(partial)


def cmd_build(args: list[str]) -> int:
    """`build [-F] [-s] [--tmpdir DIR] [--arch A] [--nohttps] IMAGE SOURCE`."""
    opts, pos = parse(args, BUILD_FLAGS, 0, BUILD_FORM)
    if opts.value("mksquashfs_args") is not None and not at_least(1, 4):
        # Apptainer 1.4 added the option (apptainer/apptainer#2707): before, it is unknown
        raise UsageError(unknown_flag("--mksquashfs-args"))
    if opts.on("help"):
        print(
            f"{usage(BUILD_FORM)}\n\n"
            "Build specs supported by the hpcci stand-in: docker-archive://FILE.tar, oci-archive://FILE.tar, "
            "oci:DIR[:TAG], docker://REGISTRY/IMAGE:TAG\n\nOptions:\n  -F, --force  overwrite an existing image\n"
            "  -s, --sandbox  build a directory\n      --tmpdir DIR  temporary directory (APPTAINER_TMPDIR)\n"
            "      --arch ARCH  architecture to pull\n      --nohttps  plain http registry\n"
            '      --mksquashfs-args "ARGS"  extra mksquashfs options, e.g. "-comp zstd -processors 4"'
        )
        return 0
    if len(pos) != 2:
        raise UsageError(f"accepts 2 arg(s), received {len(pos)}\n\n{usage(BUILD_FORM)}")
    convert(pos[1], pos[0], opts, opts.on("force"), opts.on("sandbox"), BUILDING)
    return 0


def pull_name(uri: str) -> str:
    """The file `pull` writes when given none: NAME_TAG.sif (NAME_digest.sif for a digest reference)."""
    name, tag = uri[len("docker://") :].rsplit("/", 1)[-1], "latest"
    if "@" in name:
        name, tag = name.split("@", 1)[0], "digest"
    elif ":" in name:
        name, tag = name.split(":", 1)
    return f"{name}_{tag}.sif"


def cmd_pull(args: list[str]) -> int:
    """`pull [-F] [--dir DIR] [--tmpdir DIR] [--arch A] [--nohttps] [FILE] docker://REF`."""
    opts, pos = parse(args, PULL_FLAGS, 1, PULL_FORM)
    if opts.on("help"):
        print(
            f"{usage(PULL_FORM)}\n\n"
            "URI: docker://REGISTRY/IMAGE:TAG "
            "(credentials: APPTAINER_DOCKER_USERNAME / APPTAINER_DOCKER_PASSWORD)"
        )
        return 0
    if len(pos) > 2:
        raise UsageError(f"accepts at most 2 arg(s), received {len(pos)}")
    uri = pos[-1]
    if not uri.startswith("docker://"):
        fatal(f"Unsupported transport type: {uri.split(':', 1)[0]} (the hpcci stand-in pulls docker:// only)")
    out = pos[0] if len(pos) == 2 else pull_name(uri)
    directory = opts.value("dir")
    if directory:
        out = os.path.join(directory, out)
    if os.path.lexists(out) and not opts.on("force"):
        fatal(f'Image file already exists: "{out}" - will not overwrite')
    convert(uri, out, opts, True, False, PULLING)
    return 0
