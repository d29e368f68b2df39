"""Git ref/event -> image tags and OCI labels, following docker/metadata-action's rules.

Defaults mirror metadata-action's: a branch push gives the branch name, a pull request `pr-N`, every
event with a commit `sha-<7 hex>`; a tag `vX.Y.Z` gives `{{version}}`, `{{major}}.{{minor}}`, `{{major}}` and
`latest` (a pre-release such as `v2.0.0-rc.1` only its full version, never `latest`); a tag that is not a
version gives its name. Tags are ordered like metadata-action's priorities (semver, ref, raw, sha), and the
first is the image's version label. Tags are sanitised (invalid runs -> `-`, at most 128 characters);
repositories are lowercased.
https://github.com/docker/metadata-action#tags-input
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from hpcci.config.models import ImageConfig, TagRules
from hpcci.context import GitEvent
from hpcci.errors import ConfigError, UsageError
from hpcci.references import normalize_repository

TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_INVALID_TAG_RUN = re.compile(r"[^A-Za-z0-9_.-]+")
_SEMVER = re.compile(
    r"^[v=]?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
OCI = "org.opencontainers.image."


@dataclass(frozen=True)
class Version:
    """A semantic version read from a git tag (``v1.2.3-rc.1+build.5``)."""

    raw: str
    major: int
    minor: int
    patch: int
    prerelease: str = ""
    build: str = ""

    @property
    def version(self) -> str:
        """``{{version}}``: major.minor.patch[-prerelease]; no build metadata (tags cannot hold '+')."""
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{self.prerelease}" if self.prerelease else core

    def render(self, pattern: str) -> str:
        values = {
            "version": self.version,
            "major": str(self.major),
            "minor": str(self.minor),
            "patch": str(self.patch),
            "raw": self.raw,
            "prerelease": self.prerelease,
        }
        return _render(pattern, values, what="tags.semver")


@dataclass(frozen=True)
class ImageMeta:
    """What the build stamps on the image: where it goes, under which tags, with which labels."""

    repository: str  # lowercased, e.g. 127.0.0.1:5000/octo-org/fibonacci
    tags: list[str]
    labels: dict[str, str]
    version: str  # the first tag (metadata-action's `version` output)

    @property
    def refs(self) -> list[str]:
        return [f"{self.repository}:{t}" for t in self.tags]


def parse_semver(text: str) -> Version | None:
    """``v1.2.3`` / ``1.2.3-rc.1`` -> Version; anything else (``v1.2``, ``release-7``) -> None."""
    m = _SEMVER.match(text)
    if not m:
        return None
    return Version(
        raw=text,
        major=int(m["major"]),
        minor=int(m["minor"]),
        patch=int(m["patch"]),
        prerelease=m["pre"] or "",
        build=m["build"] or "",
    )


def sanitize_tag(text: str) -> str | None:
    """Make ``text`` a valid tag like metadata-action: invalid runs -> '-', no leading '.'/'-', <= 128 chars.

    None when nothing usable is left (e.g. a branch named only of symbols).
    """
    tag = _INVALID_TAG_RUN.sub("-", text).lstrip(".-")[:128]
    return tag if tag and TAG_RE.match(tag) else None


def check_tag(tag: str, *, what: str = "tag") -> str:
    """A tag given verbatim (config, command line) must already be valid: say why when it is not."""
    if TAG_RE.match(tag):
        return tag
    if len(tag) > 128:
        why = f"is {len(tag)} characters long (at most 128)"
    elif not tag:
        why = "is empty"
    elif not re.match(r"[A-Za-z0-9_]", tag[0]):
        why = f"starts with {tag[0]!r} (must start with a letter, digit or '_')"
    else:
        bad = sorted(set(_INVALID_TAG_RUN.findall(tag[1:])) or {tag[0]})
        why = f"contains {', '.join(repr(b) for b in bad)} (allowed: letters, digits, '_', '.', '-')"
    suggestion = sanitize_tag(tag)
    hint = f"; use {suggestion!r} instead" if suggestion and suggestion != tag else ""
    raise UsageError(f"{what} {tag!r} is not a valid image tag: it {why}{hint}")


def compute_tags(event: GitEvent, rules: TagRules) -> list[str]:
    """The tags for ``event`` in metadata-action's priority order (semver, ref, raw, sha), no duplicates."""
    version = parse_semver(event.ref_name) if event.is_tag else None
    ordered: list[str] = []
    if version is not None:
        ordered += _semver_tags(version, rules.semver)
    ordered += _ref_tags(event, rules, version is not None)
    ordered += [_extra_tag(t, event, version) for t in rules.extra]
    if rules.sha and event.sha:
        ordered.append(f"sha-{event.sha[:7].lower()}")
    if _wants_latest(rules, version):
        ordered.append("latest")
    return list(dict.fromkeys(ordered))


def _semver_tags(version: Version, patterns: list[str]) -> list[str]:
    # metadata-action: a pre-release only extends {{version}} (and {{raw}}): 1.2 must not move to an rc.
    out: list[str] = []
    for pattern in patterns:
        if version.prerelease and not re.search(r"\{\{\s*(version|raw)\s*\}\}", pattern):
            continue
        tag = sanitize_tag(version.render(pattern))
        if tag:
            out.append(tag)
    return out


def _ref_tags(event: GitEvent, rules: TagRules, is_semver: bool) -> list[str]:
    ref = event.ref
    if ref.startswith("refs/heads/") and rules.branch:
        tag = sanitize_tag(event.ref_name)
        return [tag] if tag else []
    if ref.startswith("refs/tags/") and not is_semver:
        tag = sanitize_tag(event.ref_name)
        return [tag] if tag else []
    if ref.startswith("refs/pull/") or event.pr_number is not None:
        number = event.pr_number if event.pr_number is not None else _pr_from_ref(ref)
        return [f"pr-{number}"] if rules.pr and number is not None else []
    if event.event_name == "schedule":
        return ["nightly"]
    return []


def _pr_from_ref(ref: str) -> int | None:
    m = re.match(r"^refs/pull/(\d+)/", ref)
    return int(m.group(1)) if m else None


def _extra_tag(pattern: str, event: GitEvent, version: Version | None) -> str:
    values = {
        "branch": event.ref_name if event.ref.startswith("refs/heads/") else "",
        "tag": event.ref_name if event.is_tag else "",
        "sha": event.sha[:7].lower(),
        "version": version.version if version else "",
    }
    return check_tag(_render(pattern, values, what="tags.extra"), what="tags.extra entry")


# What `hpcci validate` renders patterns with: values a real event could have, so a pattern refused here is refused
# for every event (an empty {{branch}} on a tag push is the event's, not the pattern's).
SAMPLE_VALUES = {"branch": "main", "tag": "v1.2.3", "sha": "0123abc", "version": "1.2.3"}
SAMPLE_VERSION = Version(raw="v1.2.3", major=1, minor=2, patch=3)


def check_extra(pattern: str) -> str:
    """A tags.extra entry as compute_tags renders it (same errors), filled with SAMPLE_VALUES."""
    tag = _render(pattern, SAMPLE_VALUES, what="tags.extra")
    try:
        return check_tag(tag, what="tags.extra entry")
    except UsageError as e:
        if tag == pattern:
            raise
        raise UsageError(f"{e} (rendered from {pattern!r} with {{{{branch}}}} = 'main', ...)") from None


def check_semver(pattern: str) -> str:
    """A tags.semver entry as a version tag renders it (same errors: an unknown placeholder)."""
    return SAMPLE_VERSION.render(pattern)


def _wants_latest(rules: TagRules, version: Version | None) -> bool:
    if rules.latest == "auto":
        return version is not None and not version.prerelease
    return bool(rules.latest)


def _render(pattern: str, values: dict[str, str], *, what: str) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            known = ", ".join("{{" + k + "}}" for k in values)
            raise ConfigError(f"{what}: unknown placeholder {{{{{key}}}}} in {pattern!r}; known: {known}")
        return values[key]

    return _PLACEHOLDER.sub(sub, pattern)


def oci_labels(image: ImageConfig, event: GitEvent, *, version: str, created: datetime) -> dict[str, str]:
    """The org.opencontainers.image.* labels (metadata-action's set), then the user's own labels on top."""
    source = f"{event.server_url.rstrip('/')}/{event.repository}" if event.repository else ""
    title = event.repository.rsplit("/", 1)[-1] if event.repository else image.name.rsplit("/", 1)[-1]
    stamp = created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {
        f"{OCI}title": title,
        f"{OCI}description": image.description,
        f"{OCI}url": source,
        f"{OCI}source": source,
        f"{OCI}version": version,
        f"{OCI}created": stamp,
        f"{OCI}revision": event.sha,
        f"{OCI}licenses": image.licenses,
    }
    labels = {k: v for k, v in labels.items() if v}
    labels.update(image.labels)
    return labels


def image_meta(image: ImageConfig, rules: TagRules, event: GitEvent, *, created: datetime) -> ImageMeta:
    """Repository, tags and labels for one build. Raises UsageError when no tag can be derived."""
    repository = normalize_repository(image.name)
    tags = compute_tags(event, rules)
    if not tags:
        raise UsageError(
            f"no image tag for event {event.event_name!r} ref {event.ref or '(none)'!r}: pass --ref/--sha, "
            "or add a fixed tag under tags.extra in hpcci.yaml"
        )
    return ImageMeta(repository, tags, oci_labels(image, event, version=tags[0], created=created), tags[0])


def created_from(source_date_epoch: str | None, now: datetime) -> datetime:
    """The `created` time: $SOURCE_DATE_EPOCH (reproducible builds) when set, else ``now``."""
    if source_date_epoch:
        try:
            return datetime.fromtimestamp(int(source_date_epoch), tz=timezone.utc)
        except ValueError as e:
            raise UsageError(f"SOURCE_DATE_EPOCH={source_date_epoch!r} is not a Unix timestamp") from e
    return now
