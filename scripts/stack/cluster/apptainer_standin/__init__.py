"""The hpcci STAND-IN for Apptainer on the local test cluster (the real Apptainer cannot be installed here).

It accepts the real command lines the hpcci kit (and a user following a site's documentation) uses, and does the
real work with real tools:

- build / pull (convert.py, fetch.py): skopeo (docker-archive, oci-archive, oci: layouts, docker:// registries) -> umoci unpack
  -> mksquashfs: the output file is a SquashFS image (a real SIF wraps a SquashFS partition), with the image
  metadata under /.singularity.d like Apptainer's docker conversion (image.py).
- exec / run / shell (launch.py, environment.py): the program really runs inside the image's root filesystem, as
  the calling uid, in an unprivileged user namespace (charliecloud's ch-run), from an unpacked copy in the cache
  (cache.py).

Differences from the real tool are kept small and deliberate; the version string says "hpcci-standin". The
version it reports is $APPTAINER_STANDIN_VERSION (the stack's modulefiles apptainer/1.3.6-standin and
apptainer/1.4.1-standin set it; 1.3.6 when unset), and it behaves as that version: `build --mksquashfs-args` and
$APPTAINER_MKSQUASHFS_ARGS exist from 1.4 on, as in Apptainer (apptainer/apptainer#2707). Python 3
standard library only: it runs with the system /usr/bin/python3 of the login node and compute nodes, where hpcci
itself is not installed. The command line starts in cli.py; options are parsed like Apptainer's (options.py).
"""

import os
import re

DEFAULT_VERSION = "1.3.6"
SUFFIX = "+hpcci-standin"


def version() -> str:
    """The Apptainer version the stand-in is: $APPTAINER_STANDIN_VERSION (N.N.N), else DEFAULT_VERSION."""
    v = os.environ.get("APPTAINER_STANDIN_VERSION", "")
    return (v if re.fullmatch(r"\d+\.\d+\.\d+", v) else DEFAULT_VERSION) + SUFFIX


def at_least(major: int, minor: int) -> bool:
    """Whether the stand-in is Apptainer ``major.minor`` or newer."""
    parts = version().split("+")[0].split(".")
    return (int(parts[0]), int(parts[1])) >= (major, minor)
