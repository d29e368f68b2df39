"""The release plan, pure data: the steps that install a tested release as a module, move its default, keep N.

Nothing half-made is ever visible: the version's folder (the SIF, hard-linked from hpcci's image cache or copied
where the link fails, and the wrapper commands) is filled under a hidden temporary name and renamed into place with
`mv -T`; the modulefile, the default pointer and the manifest are each written under a hidden name and renamed over
the old one. Users therefore see the old state or the new one. stages/promote.py runs these steps; `hpcci plan`
prints them. Imports no transport.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hpcci.config.models import Cluster
from hpcci.config.release import ReleaseConfig
from hpcci.config.types import check_name
from hpcci.context import GitEvent
from hpcci.errors import ConfigError
from hpcci.modules import MODULE_SYSTEMS, modulefile_name
from hpcci.references import parse_reference
from hpcci.shell import expand, path_variables
from hpcci.stages.cluster import remove_argv
from hpcci.stages.release.manifest import Manifest, render
from hpcci.stages.release.modulefile import (
    ModuleInfo,
    modulefile_text,
    version_file,
    wrapper_gpu_flag,
    wrappers,
)
from hpcci.stages.steps import Command, WriteFile
from hpcci.tags import parse_semver, sanitize_tag

REPLACE_HOW = "re-run the deploy with --replace-release (or HPCCI_REPLACE_RELEASE=1 in its environment)"


@dataclass(frozen=True)
class ReleaseRequest:
    """A release-tag deploy: which version it would install, from what, by which run."""

    tag: str
    version: str
    commit: str
    image: str  # the image's repository
    run_id: str
    run_url: str = ""
    replace: bool = False  # install over the same version from another image


def release_request(
    event: GitEvent, image: str, run_id: str, *, replace: bool = False
) -> ReleaseRequest | None:
    """The release a deploy of ``event`` makes: only a tag is a release. The version follows the tag rules
    (hpcci.tags): v0.1.0 -> 0.1.0; a tag that is not a version gives its (sanitised) name."""
    if not event.is_tag:
        return None
    tag = event.ref_name
    semver = parse_semver(tag)
    version = semver.version if semver else sanitize_tag(tag)
    if not version:
        return None
    return ReleaseRequest(tag, version, event.sha, image, run_id, event.run_url or "", replace)


def module_name(cfg: ReleaseConfig, image: str) -> str:
    """release.name, else the image's last path part without a tag: docker.io/org/fibonacci -> fibonacci.

    The name becomes a folder under the release root and words in modulefiles and wrappers, so one taken from
    image.name must be a plain name too: `..` would leave the root, a line break would start code."""
    name = cfg.name or parse_reference(image).path.rsplit("/", 1)[-1]
    try:
        return check_name(name)
    except ValueError as e:
        raise ConfigError(
            f"release: the module's name from image.name {image!r}: {e}; set release.name"
        ) from e


# -- where things go ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleasePaths:
    """One application's places on a cluster, $VARS resolved (or as written, in a plan)."""

    name: str
    app: str  # <root>/<name>: one folder per version, the manifest, the lock
    modules: str  # <modulefiles>/<name>: one modulefile per version, the default pointer

    @property
    def manifest(self) -> str:
        return f"{self.app}/releases.json"

    @property
    def lock(self) -> str:
        return f"{self.app}/.hpcci-lock"

    def version_dir(self, version: str) -> str:
        return f"{self.app}/{version}"

    def sif(self, version: str) -> str:
        return f"{self.version_dir(version)}/{self.name}.sif"

    def modulefile(self, cfg: ReleaseConfig, version: str) -> str:
        return f"{self.modules}/{modulefile_name(cfg.module_system, version)}"

    def hidden(self, folder: str, what: str, run_id: str, suffix: str = "part") -> str:
        """A temporary name in ``folder`` that module systems and users skip (a dot file), unique to the run. The run
        id (--run-id) is made one name part: a '/' in it would put the temporary folder outside the release root."""
        return f"{folder}/.{what}.{re.sub(r'[^A-Za-z0-9_.-]', '-', run_id)}.{suffix}"


def release_variables(cluster: Cluster) -> list[str]:
    cfg = cluster.release
    return [*path_variables([cfg.root, cfg.modulefiles]), "HOME"] if cfg else []  # HOME: for ~/ paths


def require_absolute(cluster: Cluster) -> None:
    """login.mode automation has no login shell to resolve $VARS in: the release paths must be written out."""
    cfg = cluster.release
    assert cfg is not None
    for key, value in (("root", cfg.root), ("modulefiles", cfg.modulefiles)):
        if not value.startswith("/"):
            raise ConfigError(
                f"{cluster.source.where(('release', key))}: release.{key} {value} needs a login shell to resolve, "
                "but login.mode automation has none; write the absolute path"
            )


def release_paths(cluster: Cluster, name: str, env: dict[str, str] | None) -> ReleasePaths:
    """The release paths, $VARS replaced by the login shell's values (``env``), or as written when ``env`` is None."""
    cfg = cluster.release
    assert cfg is not None
    root, modulefiles = cfg.root, cfg.modulefiles
    if env is not None:
        root = expand(root, env, what=f"cluster {cluster.name}: release.root")
        modulefiles = expand(modulefiles, env, what=f"cluster {cluster.name}: release.modulefiles")
    return ReleasePaths(name, f"{root}/{name}", f"{modulefiles}/{name}")


# -- steps ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkOrCopy:
    """The cached SIF into the release: a hard link (no second copy), or a copy where the link fails (another file
    system); either way to a name inside the hidden temporary folder."""

    link: Command
    copy: Command

    def lines(self) -> list[str]:
        return [*self.link.lines(), *[f"  {line}" for line in self.copy.lines()]]


ReleaseStep = Command | WriteFile | LinkOrCopy


def share(group: str | None, paths: list[str], *, recursive: bool = False) -> list[Command]:
    """The group gets read access to ``paths`` (folders also traverse: g+rX); nothing when there is no group."""
    if not group:
        return []
    r = ["-R"] if recursive else []
    note = f"group {group} reads"
    return [
        Command(["chgrp", *r, "--", group, *paths], note=note),
        Command(["chmod", *r, "g+rX", "--", *paths]),
    ]


def mkdir_steps(cfg: ReleaseConfig, paths: ReleasePaths) -> list[Command]:
    """The application's folder and its modulefile folder (the group may traverse and list them)."""
    return [
        Command(["mkdir", "-p", "--", paths.app, paths.modules]),
        *share(cfg.group, [paths.app, paths.modules]),
    ]


def lock_step(paths: ReleasePaths) -> Command:
    return Command(["mkdir", "--", paths.lock], note="one install or rollback at a time (mkdir is atomic)")


def unlock_step(paths: ReleasePaths) -> Command:
    return Command(["rm", "-rf", "--", paths.lock])


def read_manifest_step(paths: ReleasePaths) -> Command:
    return Command(["cat", "--", paths.manifest], note="the installed versions (none yet when missing)")


@dataclass(frozen=True)
class Install:
    """The steps that put one version in place, in order (see the module's docstring for why this order)."""

    stage: list[ReleaseStep]  # into the hidden folder: SIF, wrappers, modulefile, permissions
    checksum: Command  # sha256sum of the staged SIF (for the manifest)
    aside: Command  # the version's old folder moved away: run only when it exists (a replacement)
    commit: list[Command]  # the folder, then the modulefile, renamed into place
    cleanup: list[Command]  # the old folder removed (after a replacement)
    discard: list[Command]  # what a failed install leaves: removed
    restore: Command  # a failed replacement: the old folder moved back (the modulefile still points into it)

    def steps(self) -> list[ReleaseStep]:
        return [*self.stage, self.checksum, self.aside, *self.commit, *self.cleanup]


def plan_install(
    cluster: Cluster, paths: ReleasePaths, info: ModuleInfo, cache_sif: str, run_id: str
) -> Install:
    """Every step that installs ``info.version`` from the cached SIF ``cache_sif``."""
    cfg = cluster.release
    assert cfg is not None
    v = info.version
    tmp = paths.hidden(paths.app, v, run_id)
    tmp_sif = f"{tmp}/{paths.name}.sif"
    tmp_module = paths.hidden(paths.modules, modulefile_name(cfg.module_system, v), run_id)
    old = paths.hidden(paths.app, v, run_id, "old")
    scripts = [WriteFile(f"{tmp}/bin/{n}", text) for n, text in wrappers(cluster, info).items()]
    stage: list[ReleaseStep] = [
        Command(["mkdir", "-p", "--", f"{tmp}/bin"]),
        LinkOrCopy(
            Command(["ln", "--", cache_sif, tmp_sif], note="a hard link: the cached SIF, not a second copy"),
            Command(
                ["cp", "--", cache_sif, tmp_sif], timeout=3600, note="if the link fails: another file system"
            ),
        ),
        *scripts,
        Command(["chmod", "0755", "--", *(s.path for s in scripts)]),
        WriteFile(
            tmp_module,
            modulefile_text(cfg.module_system, info, cluster.runtime.type, wrapper_gpu_flag(cluster)),
        ),
        *share(cfg.group, [tmp], recursive=True),
        *share(cfg.group, [tmp_module]),
    ]
    return Install(
        stage=stage,
        checksum=Command(["sha256sum", "--", tmp_sif], timeout=1800, note="recorded in the manifest"),
        aside=Command(["mv", "-T", "--", paths.version_dir(v), old], note="only when replacing this version"),
        commit=[
            Command(["mv", "-T", "--", tmp, paths.version_dir(v)]),
            Command(["mv", "-T", "--", tmp_module, paths.modulefile(cfg, v)]),
        ],
        cleanup=[Command(["rm", "-rf", "--", old])],
        discard=[Command(["rm", "-rf", "--", tmp]), Command(remove_argv(tmp_module))],
        restore=Command(["mv", "-T", "--", old, paths.version_dir(v)]),
    )


def pointer_steps(cfg: ReleaseConfig, paths: ReleasePaths, version: str, run_id: str) -> list[ReleaseStep]:
    """The module's default moved to ``version`` in one rename. Lmod: a `default` symlink, the first of the three
    ways Lmod's "Marked a Version as Default" (060_locating) lists; environment-modules: a `.version` file setting
    ModulesVersion (modulefile(4), "Locating Modulefiles")."""
    system = MODULE_SYSTEMS[cfg.module_system]
    pointer = f"{paths.modules}/{system.pointer_file}"
    if system.default_pointer == "symlink":
        tmp = paths.hidden(paths.modules, "default", run_id)
        target = modulefile_name(system.name, version)
        return [
            Command(["ln", "-sfn", "--", target, tmp], note=f"default -> {target}"),
            Command(["mv", "-T", "--", tmp, pointer]),
        ]
    tmp = paths.hidden(paths.modules, "version", run_id)
    return [
        WriteFile(tmp, version_file(version)),
        *share(cfg.group, [tmp]),
        Command(["mv", "-T", "--", tmp, pointer]),
    ]


def manifest_steps(
    cfg: ReleaseConfig, paths: ReleasePaths, manifest: Manifest, run_id: str
) -> list[ReleaseStep]:
    tmp = paths.hidden(paths.app, "releases.json", run_id)
    return [
        WriteFile(tmp, render(manifest)),
        *share(cfg.group, [tmp]),
        Command(["mv", "-T", "--", tmp, paths.manifest]),
    ]


def removal_steps(cfg: ReleaseConfig, paths: ReleasePaths, version: str) -> list[Command]:
    """A version removed: its modulefile first (it disappears from `module avail`), then its folder."""
    return [
        Command(remove_argv(paths.modulefile(cfg, version)), note=f"retention: {version} removed"),
        Command(["rm", "-rf", "--", paths.version_dir(version)]),
    ]


def step_lines(steps: list[ReleaseStep]) -> list[str]:
    return [line for step in steps for line in step.lines()]
