"""The command line of the hpcci apptainer STAND-IN (not the real Apptainer): global options, commands, exit codes.

``apptainer [-q|-s|-v|-d|--nocolor] COMMAND ...`` as Apptainer 1.3 accepts it; -h/--help and --version answer at
once. A usage error or a failure prints one line and exits 255, like Apptainer; Ctrl-C exits 130.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from apptainer_standin import version
from apptainer_standin.cache import cmd_cache
from apptainer_standin.console import OUTPUT, PROG, Fatal, UsageError, unknown_flag
from apptainer_standin.convert import cmd_build, cmd_pull
from apptainer_standin.image import cmd_inspect
from apptainer_standin.launch import runtime_cmd

HELP = """Usage:
  {prog} [global options...] <command>

hpcci STAND-IN for Apptainer {version} (not the real Apptainer): skopeo + umoci +
squashfs-tools build SquashFS images, charliecloud's ch-run runs programs in them as your uid.

Available Commands:
  build       Build an Apptainer image (from docker-archive://, oci-archive://, oci:, docker://)
  exec        Run a command within a container
  run         Run the user-defined default command within a container
  shell       Run a shell within a container
  pull        Pull an image from a URI (docker://)
  inspect     Show metadata for an image
  cache       Manage the local cache (clean)
  version     Show the version for {prog}
  help        Help about any command

Global Options:
  -d, --debug     print debugging information
  -h, --help      help for {prog}
  -q, --quiet     suppress normal output
  -s, --silent    only print errors
  -v, --verbose   print additional information
      --version   version for {prog}
"""


def _help() -> str:
    return HELP.format(prog=PROG, version=version().split("+")[0])


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "build": cmd_build,
    "pull": cmd_pull,
    "inspect": cmd_inspect,
    "cache": cmd_cache,
    "exec": lambda a: runtime_cmd(a, "exec"),
    "run": lambda a: runtime_cmd(a, "run"),
    "shell": lambda a: runtime_cmd(a, "shell"),
}


def main(argv: list[str]) -> int:
    """Run one command line (without the program name); raises UsageError or Fatal."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        if a in ("-h", "--help"):
            print(_help())
            return 0
        if a == "--version":
            print(f"{PROG} version {version()}")
            return 0
        if a in ("-q", "--quiet", "-s", "--silent"):
            OUTPUT.quiet = True
        elif a in ("-v", "--verbose", "-d", "--debug"):
            OUTPUT.verbose = True
        elif a != "--nocolor":
            raise UsageError(unknown_flag(a))
        i += 1
    if i >= len(argv) or argv[i] == "help":
        print(_help())
        return 0
    cmd, rest = argv[i], argv[i + 1 :]
    if cmd == "version":
        print(version())
        return 0
    if cmd not in COMMANDS:
        raise UsageError(f'unknown command "{cmd}" for "{PROG}"')
    return COMMANDS[cmd](rest)


def run(argv: list[str]) -> int:
    """``main`` with Apptainer's error lines and exit codes."""
    try:
        return main(argv)
    except UsageError as e:
        print(f"Error: {e}\nRun '{PROG} --help' for more detailed usage information.", file=sys.stderr)
        return 255
    except Fatal as e:
        print(f"FATAL:   {e}", file=sys.stderr)
        return 255
    except KeyboardInterrupt:
        return 130
