"""The value types of hpcci's config models (Slurm times, platforms, sizes, names, paths, secrets) and ``Source``.

Each type is checked when a config is loaded, so `hpcci validate` refuses what a cluster would refuse later.
Secrets are never inline: they are references to an environment variable or a file, resolved only when used.
``Source`` records where each value came from (file, line, column), for errors that name the spot.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from hpcci.durations import duration_seconds
from hpcci.errors import ConfigError
from hpcci.platforms import PLATFORMS


def check_duration(v: str) -> str:
    if "." in v or duration_seconds(v) is None:
        raise ValueError(
            f"{v!r} is not a Slurm time: write MM, MM:SS, HH:MM:SS or D-HH:MM:SS (e.g. '00:10:00' for ten minutes)"
        )
    return v


def check_platform(v: str) -> str:
    if v not in PLATFORMS:
        raise ValueError(f"{v!r} is not a platform: write linux/amd64 or linux/arm64 (os/arch[/variant])")
    return v


def check_memory(v: str) -> str:
    if not re.match(r"^\d+[KMGT]?$", v):
        raise ValueError(f"{v!r} is not a Slurm memory size: write e.g. 512M or 4G")
    return v


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _name_problem(v: str) -> str:
    """What keeps ``v`` from being a name, in words: the characters it may not hold, or how it starts."""
    bad = list(dict.fromkeys(c for c in v if not re.match(r"[A-Za-z0-9_.-]", c)))
    if bad:
        return f"{', '.join(repr(c) for c in bad)} {'is' if len(bad) == 1 else 'are'} not allowed"
    return "it is empty" if not v else f"it starts with {v[0]!r}"


def ascii_name(v: str) -> str | None:
    """The nearest name: accents dropped (é -> e), every other run of disallowed characters -> '-'."""
    plain = unicodedata.normalize("NFKD", v).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", plain).strip("-._")
    return name if name and _NAME.match(name) else None


def check_name(v: str) -> str:
    if not _NAME.match(v):
        raise ValueError(
            f"{v!r} is not a valid name: {_name_problem(v)}; use ASCII letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return v


def check_test_name(v: str) -> str:
    """A test's name is its file names on the cluster (its batch script, NAME.out) and its job's name, which
    re-attach and crash cancel look up, as well as what check runs show: one string, so what a check run shows is
    what `ls` and the scheduler's queue show. Portable file names (POSIX's portable filename character set) mean the same on
    every cluster file system, locale and Slurm version, so that is the rule."""
    if not _NAME.match(v):
        hint = ascii_name(v)
        raise ValueError(
            f"{v!r} is not a valid test name: {_name_problem(v)}; the name is the file name of the test's job "
            "script and output on the cluster and its Slurm job name, so it is ASCII letters, digits, '.', '_' "
            "and '-' (POSIX's portable file names), starting with a letter or digit"
            + (f"; e.g. {hint!r}" if hint else "")
        )
    return v


def check_one_line(v: str) -> str:
    """A value that ends up in a batch-script directive (paths of the job's folder and output, account, partition,
    directives): the scheduler reads any other character inside double quotes, but no line break."""
    if any(c in v for c in "\n\r\0"):
        raise ValueError(
            f"{v!r} holds a line break or NUL, which no batch-script directive can carry; remove it"
        )
    return v


Duration = Annotated[str, AfterValidator(check_duration)]
Platform = Annotated[str, AfterValidator(check_platform)]
Memory = Annotated[str, AfterValidator(check_memory)]
Name = Annotated[str, AfterValidator(check_name)]
TestName = Annotated[str, AfterValidator(check_test_name)]
OneLine = Annotated[str, AfterValidator(check_one_line)]


class ConfigModel(BaseModel):
    """Every config model: unknown keys refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FromEnv(ConfigModel):
    """A value read from an environment variable (a CI secret)."""

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    def resolve(self, what: str) -> str:
        value = os.environ.get(self.env)
        if not value:
            raise ConfigError(
                f"{what}: environment variable {self.env} is not set; set it (e.g. from a CI secret)"
            )
        return value


class FromFile(ConfigModel):
    """A value read from a local file (~ and $VARS expanded)."""

    file: str

    @property
    def path(self) -> Path:
        return Path(os.path.expandvars(os.path.expanduser(self.file)))

    def resolve(self, what: str) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(
                f"{what}: cannot read {self.path}: {e.strerror}; fix the path or create the file"
            ) from e


Secret = FromEnv | FromFile
Value = str | FromEnv


# -- where each value came from (hpcci.config.load fills it in) ---------------------------------------------------

Loc = tuple[str | int, ...]


class Source:
    """Where each value came from: file and (line, column) per key path, 1-based."""

    def __init__(self, file: str, positions: dict[Loc, tuple[int, int]]) -> None:
        self.file = file
        self.positions = positions

    def position(self, loc: Loc) -> tuple[int, int]:
        while loc and loc not in self.positions:
            loc = loc[:-1]
        return self.positions.get(loc, (1, 1))

    def line_of(self, loc: Loc) -> int | None:
        return self.positions.get(loc, (None, None))[0]

    def where(self, loc: Loc) -> str:
        line, col = self.position(loc)
        return f"{self.file}:{line}:{col}"
