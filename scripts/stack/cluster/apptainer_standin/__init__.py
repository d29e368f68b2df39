"""The hpcci STAND-IN for Apptainer on the local test cluster (the real Apptainer cannot be installed here).

It accepts the real command lines the hpcci kit (and a user following a site's documentation) uses, and does the
real work with real tools:

- build / pull (convert.py, fetch.py): skopeo (docker-archive, oci-archive, oci: layouts, docker:// registries) -> umoci unpack
  -> mksquashfs: the output file is a SquashFS image (a real SIF wraps a SquashFS partition), with the image
  metadata under /.singularity.d like Apptainer's docker conversion (image.py).
- exec / run / shell (launch.py, environment.py): the program really runs inside the image's root filesystem, as
  the calling uid, in an unprivileged user namespace (charliecloud's ch-run), from an unpacked copy in the cache
  (cache.py).

Differences from the real tool are kept small and deliberate; the version string says "hpcci-standin". Python 3
standard library only: it runs with the system /usr/bin/python3 of the login node and compute nodes, where hpcci
itself is not installed. The command line starts in cli.py; options are parsed like Apptainer's (options.py).
"""

VERSION = "1.3.6+hpcci-standin"
