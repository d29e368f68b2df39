"""The release manifest (<root>/<name>/releases.json) and the decisions read from it: reinstall, default, retention.

The manifest lists each installed version with its tag, commit, image digest, SIF sha256, date and the workflow run
that installed it, and which version is the default. hpcci writes it atomically after every change; `hpcci releases`
prints it. Everything here is pure: text in, text or decisions out.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hpcci.errors import ReleaseError, ReleaseRefused
from hpcci.tags import parse_semver

MANIFEST_SCHEMA = 1
# a module version: one path part (never '..', never an option); retention removes <root>/<name>/<version>
VERSION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class Entry:
    """One installed version."""

    version: str
    tag: str
    commit: str
    image: str  # repository
    image_digest: str
    sif: str
    sif_sha256: str
    installed: str  # UTC, ISO 8601
    cluster: str = ""
    run_id: str = ""
    run_url: str = ""
    tested: str = ""  # where the smoke tests ran


@dataclass(frozen=True)
class Manifest:
    name: str
    default: str | None = None
    releases: list[Entry] = field(default_factory=list)

    def get(self, version: str) -> Entry | None:
        return next((e for e in self.releases if e.version == version), None)

    def versions(self) -> list[str]:
        return [e.version for e in self.releases]

    def with_entry(self, entry: Entry) -> Manifest:
        """This manifest with ``entry`` added (or replacing the entry of its version), in version order."""
        others = [e for e in self.releases if e.version != entry.version]
        return replace(self, releases=sorted([*others, entry], key=lambda e: version_key(e.version)))

    def without(self, versions: list[str]) -> Manifest:
        return replace(self, releases=[e for e in self.releases if e.version not in versions])


def render(manifest: Manifest) -> str:
    return json.dumps({"schema": MANIFEST_SCHEMA, **asdict(manifest)}, indent=2) + "\n"


def parse(text: str, *, source: str, name: str) -> Manifest:
    """The manifest in ``text``; an empty text (no manifest yet) is an empty one. Damage is a ReleaseError."""
    if not text.strip():
        return Manifest(name)
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
            raise ValueError(f"not a release manifest of schema {MANIFEST_SCHEMA}")
        entries = [Entry(**_fields(Entry, e)) for e in data.get("releases", [])]
        default = data.get("default")
        for v in [*(e.version for e in entries), *([] if default is None else [default])]:
            if not isinstance(v, str) or not VERSION.match(v):
                raise ValueError(
                    f"{v!r} is not a version (one folder name: letters, digits, '.', '_', '+', '-')"
                )
        return Manifest(str(data.get("name", name)), default, entries)
    except (ValueError, TypeError) as e:
        raise ReleaseError(
            f"{source}: the release manifest cannot be read ({e}); restore it from the installed versions or move it "
            "away (hpcci then starts a new one)"
        ) from e


def _fields(cls: type[Entry], value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError("a release is not an object")
    known = set(Entry.__dataclass_fields__)
    if missing := [k for k in ("version", "image_digest", "sif") if k not in value]:
        raise ValueError(f"a release lacks {', '.join(missing)}")
    return {k: str(v) for k, v in value.items() if k in known}


# -- decisions ------------------------------------------------------------------------------------------------------


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key: semantic versions in semver order (a pre-release before its release), others after, by name."""
    v = parse_semver(version)
    if v is None:
        return (1, version)
    pre = (
        [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in v.prerelease.split(".")]
        if v.prerelease
        else []
    )
    return (0, v.major, v.minor, v.patch, 0 if v.prerelease else 1, pre)


def is_prerelease(version: str) -> bool:
    v = parse_semver(version)
    return bool(v and v.prerelease)


def reinstall(manifest: Manifest, version: str, digest: str, *, replace: bool, how: str) -> bool | None:
    """None: ``version`` is installed from ``digest`` already (nothing to do); False: a fresh install; True: it
    replaces the version installed from another image (only when ``replace``; refused otherwise, saying ``how``)."""
    have = manifest.get(version)
    if have is None:
        return False
    if have.image_digest == digest:
        return None
    if not replace:
        raise ReleaseRefused(
            f"{manifest.name}/{version} is installed already from image {have.image_digest} (tag {have.tag}, "
            f"{have.installed}), not from {digest}; a release is never replaced silently: to replace it, {how}"
        )
    return True


def takes_default(manifest: Manifest, version: str, *, make_default: bool) -> tuple[bool, str]:
    """Whether a new release becomes the default, and why (not): never a pre-release, one older than the default,
    or a tag that is no version (`nightly-7`) over a default that is one."""
    if not make_default:
        return False, "release.make_default is false"
    if is_prerelease(version):
        return False, f"{version} is a pre-release"
    current = manifest.default
    if not current or current == version:
        return True, ""
    new_semver, current_semver = parse_semver(version) is not None, parse_semver(current) is not None
    if current_semver and not new_semver:
        return False, f"{version} is not a semantic version; the default stays the release {current}"
    # versions compare only with versions; a tag that is none (nightly-7) is older than any release that is one
    if new_semver and current_semver and version_key(version) < version_key(current):
        return False, f"the default {current} is newer"
    return True, ""


def retention(manifest: Manifest, keep: int, *, protect: list[str]) -> list[str]:
    """The versions to remove so that ``keep`` stay: the oldest in version order, never one of ``protect`` (the
    default and the version just installed)."""
    ordered = sorted(manifest.versions(), key=version_key)
    excess = len(ordered) - keep
    removable = [v for v in ordered if v not in protect]
    return removable[: max(0, excess)]
