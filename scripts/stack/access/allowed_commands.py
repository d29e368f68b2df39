#!/usr/bin/python3
"""Forced command of the local automation node's robot key (authorized_keys: restrict,from=...,command=THIS).

Modelled on the Alliance's wrappers for its automation nodes ("Automation in the context of multifactor
authentication", docs.alliancecan.ca): the key may run only commands of fixed groups - file transfer
(sftp, scp, rsync), file management, archiving, and Slurm job submission and management - and nothing else.
SSH_ORIGINAL_COMMAND is split into words like a POSIX shell would (shlex) and the command is executed DIRECTLY
(os.execv): no shell ever sees it, so `;`, `|`, `$(...)` are plain characters in an argument. Refusals print one
line on stderr and exit 126.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import NoReturn

SFTP_SERVER = "/usr/lib/openssh/sftp-server"
BIN = ("/usr/bin", "/bin", "/usr/sbin")
GROUPS = {
    "transfer": {"scp", "rsync"},
    "file": {
        "cat",
        "chgrp",
        "chmod",
        "cp",
        "df",
        "du",
        "head",
        "ln",
        "ls",
        "md5sum",
        "mkdir",
        "mv",
        "pwd",
        "readlink",
        "realpath",
        "rm",
        "rmdir",
        "sha1sum",
        "sha256sum",
        "stat",
        "tail",
        "test",
        "touch",
        "wc",
    },
    "archiving": {"gzip", "gunzip", "tar", "zstd", "xz"},
    "slurm": {"sacct", "sbatch", "scancel", "scontrol", "sinfo", "squeue", "sshare"},
}
ALLOWED: set[str] = set().union(*GROUPS.values())
# tar options that run another program on the login node (GNU tar 1.34): refused like a shell would be
TAR_EXEC = ("--to-command", "--checkpoint-action", "--use-compress-program", "-I", "--info-script", "-F",
            "--new-volume-script", "--rsh-command", "--rmt-command")  # fmt: skip


def refuse(why: str) -> NoReturn:
    sys.stderr.write(
        f"automation node: {why}; this key may run only: {', '.join(sorted(ALLOWED))} "
        "and the sftp subsystem\n"
    )
    sys.exit(126)


def check(argv: list[str]) -> None:
    name = argv[0]
    if name not in ALLOWED:
        refuse(f"command {name!r} is not allowed")
    if name == "scontrol" and argv[1:2] != ["show"]:
        refuse("scontrol is allowed only as `scontrol show ...`")
    if name == "scp" and not ({"-t", "-f"} & set(argv[1:])):
        refuse("scp is allowed only as the server side of a copy (scp -t / scp -f)")
    if name == "rsync" and "--server" not in argv[1:]:
        refuse("rsync is allowed only as the server side of a transfer (rsync --server)")
    if name == "tar" and any(a.startswith(TAR_EXEC) for a in argv[1:]):
        refuse("tar options that run another program are not allowed")


def main() -> None:
    line = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    if not line.strip():
        refuse("interactive logins are not allowed")
    # a subsystem request under a forced command arrives as the configured subsystem's command
    if line in ("internal-sftp", SFTP_SERVER, "/usr/lib/sftp-server"):
        os.execv(SFTP_SERVER, [SFTP_SERVER])  # noqa: S606 - no shell, on purpose
    try:
        argv = shlex.split(line)
    except ValueError as e:
        refuse(f"cannot split the command into words ({e})")
    if not argv:
        refuse("empty command")
    check(argv)
    for d in BIN:
        path = os.path.join(d, argv[0])
        if os.access(path, os.X_OK):
            os.execv(path, argv)  # noqa: S606 - no shell, on purpose
    refuse(f"{argv[0]!r} is not installed here")


if __name__ == "__main__":
    main()
