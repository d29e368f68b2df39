"""The host side of the hpcci apptainer STAND-IN (not the real Apptainer): helper tools, temporary directories.

Every real tool the stand-in drives (skopeo, umoci, mksquashfs, unsquashfs) runs through ``run_tool``, which turns a
failure into one FATAL line: the tool's last error line, or a clear "no space left on device" naming where.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import stat
import subprocess
from collections.abc import Sequence

from apptainer_standin.console import fatal, verbose
from apptainer_standin.options import Options

_MACHINE_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}


def setting(name: str) -> str | None:
    """An APPTAINER_<name> environment variable, or its older SINGULARITY_<name> spelling."""
    return os.environ.get(f"APPTAINER_{name}") or os.environ.get(f"SINGULARITY_{name}")


def run_tool(argv: list[str], what: str, space_dirs: Sequence[str] = ()) -> None:
    """Run a helper tool; on failure raise Fatal with its last error line (disk full named clearly)."""
    verbose("running " + " ".join(argv))
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except FileNotFoundError:
        fatal(f"{what}: {argv[0]} is not installed on this host")
    if p.returncode != 0:
        err = (p.stderr.decode(errors="replace") + p.stdout.decode(errors="replace")).strip()
        if "no space left on device" in err.lower():
            where = ", ".join(sorted(set(space_dirs))) or "the output or temporary directory"
            fatal(
                f"{what}: no space left on device (in {where}): free some space there, or use a larger "
                "filesystem (APPTAINER_TMPDIR for temporary files, another path for the image), then retry"
            )
        fatal(f"{what}: {_last_error(err, f'{argv[0]} exited with status {p.returncode}')}")


def _last_error(err: str, default: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    last = lines[-1] if lines else default
    m = re.search(r'level=\w+ msg="(.*)"\s*$', last)  # skopeo's logrus format
    return m.group(1).replace('\\"', '"') if m else last


def tmp_root(opts: Options) -> str:
    """The directory for a build's temporary files: --tmpdir, APPTAINER_TMPDIR, TMPDIR or /tmp."""
    d = opts.value("tmpdir") or setting("TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    if not os.path.isdir(d) or not os.access(d, os.W_OK | os.X_OK):
        fatal(
            f"temporary directory {d} does not exist or is not writable: "
            "set APPTAINER_TMPDIR to a writable directory"
        )
    return d


def make_writable(tree: str) -> None:
    """Give the owner write access to every directory under ``tree`` (images hold read-only directories)."""
    for root, dirs, _files in os.walk(tree):
        for d in dirs:
            p = os.path.join(root, d)
            try:
                st = os.lstat(p)
                if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IWUSR:
                    os.chmod(p, st.st_mode | stat.S_IRWXU)
            except OSError:
                pass


def rmtree(path: str) -> None:
    """Remove ``path`` and everything under it, read-only directories included; errors are ignored."""
    if os.path.lexists(path):
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        make_writable(path)
        shutil.rmtree(path, ignore_errors=True)


def touch(path: str) -> None:
    """Create ``path`` as an empty file if it does not exist."""
    with open(path, "a"):
        pass


def host_arch() -> str:
    """This machine's architecture in OCI's words (amd64, arm64, ...)."""
    m = platform.machine()
    return _MACHINE_ARCH.get(m, m)
