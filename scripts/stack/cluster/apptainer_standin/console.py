"""Messages and errors of the hpcci apptainer STAND-IN (not the real Apptainer): INFO/WARNING/VERBOSE lines on stderr.

The two errors end the command the way Apptainer does (exit 255): ``UsageError`` for a bad command line
("Error: ..." and a hint to --help), ``Fatal`` for a failure while working ("FATAL:   ...").
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import NoReturn


def _prog_name(argv0: str) -> str:
    """The name the tool was called by (`singularity` is a link to `apptainer`), as in its messages."""
    name = os.path.basename(argv0) or "apptainer"
    return name if name in ("apptainer", "singularity") else "apptainer"


PROG = _prog_name(sys.argv[0])


class Fatal(Exception):
    """A failure while working: printed as ``FATAL:   <message>``."""


class UsageError(Exception):
    """A command line the tool does not accept: printed as ``Error: <message>`` with a hint to --help."""


@dataclass
class Output:
    """The global options -q/--quiet and -v/--verbose."""

    quiet: bool = False
    verbose: bool = False


OUTPUT = Output()


def fatal(msg: str) -> NoReturn:
    raise Fatal(msg)


def info(msg: str) -> None:
    if not OUTPUT.quiet:
        print(f"INFO:    {msg}", file=sys.stderr)


def warning(msg: str) -> None:
    print(f"WARNING: {msg}", file=sys.stderr)


def verbose(msg: str) -> None:
    if OUTPUT.verbose:
        print(f"VERBOSE: {msg}", file=sys.stderr)


def usage(*lines: str) -> str:
    """A usage text: ``Usage:`` and each form of the command after the program's name."""
    return "Usage:\n" + "\n".join(f"  {PROG} {line}" for line in lines)


def unknown_flag(arg: str) -> str:
    """The message for an option the command does not know (cobra's wording)."""
    if arg.startswith("--"):
        return f"unknown flag: {arg.partition('=')[0]}"
    return f"unknown shorthand flag: '{arg[1:2]}' in {arg}"


def require_args(pos: list[str], need: int, form: str) -> None:
    """Refuse a command line with fewer than ``need`` positional arguments."""
    if len(pos) < need:
        raise UsageError(f"requires at least {need} arg(s), only received {len(pos)}\n\n{usage(form)}")
