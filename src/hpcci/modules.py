"""Module systems (Lmod, environment-modules' Tcl): the one table of what differs, and the `module load` command.

Everything that writes a `module load` line or a modulefile's name asks here. Pure and without dependencies, so the
ground floor's login-shell scripts (shell.py) use it as well as the deploy and release stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ModuleSystemFacts:
    """What one module system reads: its modulefiles' names and how a default version is marked."""

    name: str
    modulefile_suffix: str  # Lmod reads `.lua` files as Lua, every other file as Tcl
    # Lmod: a `default` symlink, the first of the ways Lmod's "Marked a Version as Default" (060_locating) lists;
    # environment-modules: a `.version` file setting ModulesVersion (modulefile(4), "Locating Modulefiles")
    default_pointer: Literal["symlink", "version-file"]
    pointer_file: str


MODULE_SYSTEMS: dict[str, ModuleSystemFacts] = {
    "lmod": ModuleSystemFacts("lmod", ".lua", "symlink", "default"),
    "tcl": ModuleSystemFacts("tcl", "", "version-file", ".version"),
}  # the keys are config.release.ModuleSystem's (a unit test keeps the two equal)


def load_argv(module: str) -> list[str]:
    """The command that loads ``module`` (the same for every module system)."""
    return ["module", "load", module]


def modulefile_name(system: str, version: str) -> str:
    """The modulefile's name in <modulefiles>/<name>/ for ``version``."""
    return f"{version}{MODULE_SYSTEMS[system].modulefile_suffix}"
