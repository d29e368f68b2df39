"""Option parsing of the hpcci apptainer STAND-IN (not the real Apptainer), like Apptainer's (cobra) parser.

Options come before the positional arguments and stop at the first one, so ``exec IMAGE cmd --flag`` passes
``--flag`` to ``cmd``; ``--`` ends the options; ``--name=value`` and ``--name value`` both work; a switch accepts
``=true/false/1/0``. The tables name every option each command accepts; anything else is a usage error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from apptainer_standin.console import UsageError, require_args, unknown_flag

Kind = Literal["switch", "value", "list"]  # list: a value option that may repeat


class Flag(NamedTuple):
    dest: str
    kind: Kind


Spec = dict[str, Flag]


@dataclass
class Options:
    """The options given to one command, by destination name."""

    given: dict[str, str | bool | list[str]] = field(default_factory=dict)

    def on(self, dest: str) -> bool:
        """Whether the option was given (a switch set, or a non-empty value)."""
        return bool(self.given.get(dest))

    def value(self, dest: str) -> str | None:
        v = self.given.get(dest)
        return v if isinstance(v, str) else None

    def values(self, dest: str) -> list[str]:
        v = self.given.get(dest)
        return v if isinstance(v, list) else []


def flags(*items: tuple[str, str, Kind]) -> Spec:
    """A table of options from ``("-s|--long", dest, kind)`` rows."""
    return {name: Flag(dest, kind) for names, dest, kind in items for name in names.split("|")}


def _switch(name: str, eq: str, val: str) -> bool:
    if eq and val.lower() not in ("true", "false", "1", "0"):
        raise UsageError(f'invalid argument "{val}" for "{name}" flag')
    return not (eq and val.lower() in ("false", "0"))


def parse(args: list[str], spec: Spec, nargs_min: int, form: str) -> tuple[Options, list[str]]:
    """Split ``args`` into the options in ``spec`` and at least ``nargs_min`` positional arguments."""
    opts, i = Options(), 0
    pos: list[str] = []
    while i < len(args):
        a = args[i]
        if pos or a == "-" or not a.startswith("-"):
            pos.append(a)
            i += 1
            continue
        if a == "--":
            pos.extend(args[i + 1 :])
            break
        name, eq, val = a.partition("=")
        flag = spec.get(name)
        if flag is None:
            raise UsageError(unknown_flag(a))
        if flag.kind == "switch":
            opts.given[flag.dest] = _switch(name, eq, val)
        else:
            if not eq:
                i += 1
                if i >= len(args):
                    raise UsageError(f"flag needs an argument: {name}")
                val = args[i]
            _store(opts, flag, val)
        i += 1
    require_args(pos, nargs_min, form)
    return opts, pos


def _store(opts: Options, flag: Flag, val: str) -> None:
    if flag.kind == "list":
        opts.given[flag.dest] = [*opts.values(flag.dest), val]
    else:
        opts.given[flag.dest] = val


RUNTIME_FLAGS = flags(
    ("-B|--bind", "bind", "list"),
    ("--mount", "mount", "list"),
    ("-e|--cleanenv", "cleanenv", "switch"),
    ("--env", "env", "list"),
    ("--env-file", "env_file", "value"),
    ("--nv", "nv", "switch"),
    ("--rocm", "rocm", "switch"),
    ("--pwd", "pwd", "value"),
    ("-H|--home", "home", "value"),
    ("--no-home", "no_home", "switch"),
    ("-c|--contain", "contain", "switch"),
    ("-C|--containall", "containall", "switch"),
    ("--writable-tmpfs", "writable_tmpfs", "switch"),
    ("-u|--userns", "userns", "switch"),
    ("-i|--ipc", "ipc", "switch"),
    ("-p|--pid", "pid", "switch"),
    ("--no-init", "no_init", "switch"),
    ("--no-eval", "no_eval", "switch"),
    ("--fakeroot", "fakeroot", "switch"),
    ("-w|--writable", "writable", "switch"),
    ("--app", "app", "value"),
    ("-h|--help", "help", "switch"),
)

BUILD_FLAGS = flags(
    ("-F|--force", "force", "switch"),
    ("-s|--sandbox", "sandbox", "switch"),
    ("--fakeroot|-f", "fakeroot", "switch"),
    ("--fix-perms", "fix_perms", "switch"),
    ("--tmpdir", "tmpdir", "value"),
    ("--disable-cache", "disable_cache", "switch"),
    ("--nohttps|--no-https", "nohttps", "switch"),
    ("--arch", "arch", "value"),
    ("--mksquashfs-args", "mksquashfs_args", "value"),
    ("-h|--help", "help", "switch"),
)

PULL_FLAGS = flags(
    ("-F|--force", "force", "switch"),
    ("--dir", "dir", "value"),
    ("--tmpdir", "tmpdir", "value"),
    ("--disable-cache", "disable_cache", "switch"),
    ("--nohttps|--no-https", "nohttps", "switch"),
    ("--arch", "arch", "value"),
    ("-h|--help", "help", "switch"),
)

INSPECT_FLAGS = flags(
    ("-l|--labels", "labels", "switch"),
    ("-r|--runscript", "runscript", "switch"),
    ("-e|--environment", "environment", "switch"),
    ("-j|--json", "json", "switch"),
    ("--all", "all", "switch"),
    ("-h|--help", "help", "switch"),
)
