"""The `release` section of a cluster config: where tested releases are installed as modules, and how.

A release tag whose smoke tests all pass on a cluster is installed there as ``<name>/<version>``: the SIF under
``<root>/<name>/<version>/``, a modulefile under ``<modulefiles>/<name>/``, a manifest ``<root>/<name>/releases.json``
(stages/release.py plans it, stages/promote.py runs it). Paths follow the rules of ``paths``: ``$VARS`` are resolved
in a login shell, and login.mode automation needs them absolute.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from hpcci.config.types import ConfigModel, Name, OneLine

ModuleSystem = Literal["lmod", "tcl"]


class ReleaseConfig(ConfigModel):
    root: OneLine = Field(
        description="Folder released images go under, one folder per application: <root>/<name>/<version>/ "
        "(e.g. $WORK/apps)"
    )
    modulefiles: OneLine = Field(
        description="Folder of modulefiles users `module use`: <modulefiles>/<name>/<version> (e.g. "
        "$WORK/modulefiles)"
    )
    module_system: ModuleSystem = Field(
        "lmod",
        description="lmod: Lua modulefiles and a `default` symlink; tcl: Tcl modulefiles (environment-modules) "
        "and a .version file",
    )
    name: Name | None = Field(
        None, description="The module's name (default: the last part of image.name, e.g. fibonacci)"
    )
    keep: int = Field(
        5, ge=1, description="Versions kept installed; older ones are removed, never the default"
    )
    group: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$",
        description="A unix group given read access to the release (its folders g+rx, files g+r)",
    )
    make_default: bool = Field(
        True,
        description="Move the module's default to each new release (never to a pre-release or an older one)",
    )

    @field_validator("root", "modulefiles")
    @classmethod
    def _a_path(cls, v: str) -> str:
        if not v.startswith(("/", "$", "~/")):
            raise ValueError(
                f"{v!r} is relative; write an absolute path or start it with a variable ($WORK/apps)"
            )
        if v.rstrip("/") != v or "/../" in f"{v}/" or "/./" in f"{v}/":
            raise ValueError(f"{v!r}: write the folder without a trailing '/', '.' or '..' parts")
        if ":" in v:  # PATH and MODULEPATH are ':'-separated: the rest would be a second, relative, entry
            raise ValueError(
                f"{v!r} holds ':', which PATH and MODULEPATH read as a separator; choose another folder"
            )
        return v
