"""Shell quoting, the one place: argv lists become shell lines, login scripts and env prefixes (pure, no I/O).

Every remote command is an argv list turned into one shell line by ``command_line``, so an image name, path or test
command holding quotes, ``;``, ``$(...)`` or newlines reaches the remote program as one literal argument and never
runs as shell. Scripts that need a login shell (module loads) are built by ``login_argv`` from argv lists and run as
``bash -lc <one quoted script>``. Also here: ``$VAR`` expansion of cluster paths with the values the login shell
reported (``parse_env0``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

from hpcci.errors import ConfigError
from hpcci.modules import load_argv


def command_line(argv: Sequence[str]) -> str:
    """``argv`` as one shell command line in which every element is one literal word (shlex.join)."""
    if not argv:
        raise ValueError("empty command")
    for a in argv:
        if not isinstance(a, str):
            raise TypeError(f"argv elements must be str, got {type(a).__name__}: {a!r}")
        if "\0" in a:
            raise ConfigError(f"a command argument contains a NUL byte: {a!r}")
    return shlex.join(argv)


class Pipe:
    """``cmd1 | cmd2 | ...``: every command an argv quoted by ``command_line``; `|` is the only operator."""

    def __init__(self, *commands: Sequence[str]) -> None:
        if len(commands) < 2:
            raise ValueError("a pipe needs at least two commands")
        self.commands = tuple(tuple(c) for c in commands)

    def line(self) -> str:
        return " | ".join(command_line(c) for c in self.commands)


Step = Sequence[str] | Pipe


def script(steps: Sequence[Step], *, modules: Sequence[str] = ()) -> str:
    """A bash script: `module load` for each of ``modules``, then each step (an argv or a Pipe).

    ``set -e -o pipefail`` stops at the first failing command. Every line is quoted by ``command_line``: nothing in
    it runs as shell but the words themselves (and `|` between the commands of a Pipe).
    """
    lines = ["set -e -o pipefail"]
    lines += [command_line(load_argv(m)) for m in modules]
    lines += [step.line() if isinstance(step, Pipe) else command_line(step) for step in steps]
    return "\n".join(lines)


def login_argv(steps: Sequence[Step], *, modules: Sequence[str] = ()) -> list[str]:
    """Run ``steps`` in a login shell (where `module` and site variables such as $SCRATCH exist)."""
    return ["bash", "-lc", script(steps, modules=modules)]


def login_command(argv: Sequence[str], modules: Sequence[str] | None) -> list[str]:
    """One command as the login node runs it: in a login shell loading ``modules``, or as plain argv when
    ``modules`` is None (an automation node, whose forced command accepts no shell)."""
    return list(argv) if modules is None else login_argv([argv], modules=modules)


def with_env(env: Mapping[str, str], argv: Sequence[str]) -> list[str]:
    """``env K=V ... argv``: set variables for one command without any shell."""
    for k in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise ConfigError(f"{k!r} is not a valid environment variable name")
    return ["env", *(f"{k}={v}" for k, v in env.items()), *argv] if env else list(argv)


# -- variables in cluster paths ----------------------------------------------------------------------------------

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def path_variables(paths: Sequence[str]) -> list[str]:
    """The variable names used in ``paths`` ($SCRATCH, ${HOME}, ...), in order, once each."""
    names: list[str] = []
    for p in paths:
        for m in _VAR.finditer(p):
            name = m.group(1) or m.group(2)
            if name not in names:
                names.append(name)
    return names


def expand(path: str, env: Mapping[str, str], *, what: str = "path") -> str:
    """Substitute $VARS in ``path`` with the values the remote login shell reported; unset is an error."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        value = env.get(name)
        if not value:
            raise ConfigError(
                f"{what} {path!r} uses ${name}, which is not set in a login shell on the cluster; "
                "use an absolute path or another variable"
            )
        return value

    out = _VAR.sub(sub, path)
    if out.startswith("~/"):
        home = env.get("HOME")
        if not home:
            raise ConfigError(f"{what} {path!r} starts with ~ but $HOME is not set on the cluster")
        out = home + out[1:]
    return out


def parse_env0(text: str) -> dict[str, str]:
    """`env -0` output -> dict."""
    out: dict[str, str] = {}
    for item in text.split("\0"):
        key, sep, value = item.partition("=")
        if sep and key:
            out[key.lstrip("\n")] = value
    return out
