"""Tags and labels from git refs, after docker/metadata-action's rules (table-driven)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from hpcci.config.models import ImageConfig, TagRules
from hpcci.context import GitEvent
from hpcci.errors import ConfigError, UsageError
from hpcci.tags import (
    TAG_RE,
    check_tag,
    compute_tags,
    created_from,
    image_meta,
    oci_labels,
    parse_semver,
    sanitize_tag,
)

SHA = "860c1904a1ce19322e91ac35af1ab07466440c37"
NOW = datetime(2026, 11, 21, 8, 30, 0, tzinfo=timezone.utc)


def ev(ref: str, event: str = "push", sha: str = SHA, pr: int | None = None) -> GitEvent:
    return GitEvent(event_name=event, ref=ref, sha=sha, repository="octo-org/fibonacci", pr_number=pr)


DEFAULT_CASES = [
    # (event, ref, pr, expected tags in order)
    ("push", "refs/heads/main", None, ["main", "sha-860c190"]),
    ("push", "refs/heads/master", None, ["master", "sha-860c190"]),
    ("push", "refs/heads/releases/v1", None, ["releases-v1", "sha-860c190"]),
    ("push", "refs/heads/feature/Add_GPU+MPI", None, ["feature-Add_GPU-MPI", "sha-860c190"]),
    ("push", "refs/heads/-weird..name", None, ["weird..name", "sha-860c190"]),
    ("push", "refs/heads/dependabot/pip/boto3-1.35.0", None, ["dependabot-pip-boto3-1.35.0", "sha-860c190"]),
    ("pull_request", "refs/pull/2/merge", 2, ["pr-2", "sha-860c190"]),
    ("pull_request", "refs/pull/1234/merge", None, ["pr-1234", "sha-860c190"]),
    ("push", "refs/tags/v1.2.3", None, ["1.2.3", "1.2", "1", "sha-860c190", "latest"]),
    ("push", "refs/tags/1.2.3", None, ["1.2.3", "1.2", "1", "sha-860c190", "latest"]),
    ("push", "refs/tags/v0.4.0", None, ["0.4.0", "0.4", "0", "sha-860c190", "latest"]),
    ("push", "refs/tags/v2.0.8-beta.67", None, ["2.0.8-beta.67", "sha-860c190"]),
    ("push", "refs/tags/v1.0.0-rc1", None, ["1.0.0-rc1", "sha-860c190"]),
    ("push", "refs/tags/v1.2.3+build.5", None, ["1.2.3", "1.2", "1", "sha-860c190", "latest"]),
    ("push", "refs/tags/v1.2", None, ["v1.2", "sha-860c190"]),
    ("push", "refs/tags/release-2024.11", None, ["release-2024.11", "sha-860c190"]),
    ("push", "refs/tags/v01.2.3", None, ["v01.2.3", "sha-860c190"]),
    ("workflow_dispatch", "refs/heads/main", None, ["main", "sha-860c190"]),
    ("workflow_dispatch", "refs/tags/v3.1.4", None, ["3.1.4", "3.1", "3", "sha-860c190", "latest"]),
    ("schedule", "", None, ["nightly", "sha-860c190"]),
    ("push", "refs/heads/" + "x" * 200, None, ["x" * 128, "sha-860c190"]),
]


@pytest.mark.parametrize(("event", "ref", "pr", "expected"), DEFAULT_CASES)
def test_default_rules_give_metadata_action_tags(
    event: str, ref: str, pr: int | None, expected: list[str]
) -> None:
    assert compute_tags(ev(ref, event, pr=pr), TagRules()) == expected


RULE_CASES = [
    (TagRules(latest=False), "refs/tags/v1.2.3", ["1.2.3", "1.2", "1", "sha-860c190"]),
    (TagRules(latest=True), "refs/heads/main", ["main", "sha-860c190", "latest"]),
    (TagRules(latest=True), "refs/tags/v1.0.0-rc.1", ["1.0.0-rc.1", "sha-860c190", "latest"]),
    (TagRules(sha=False), "refs/heads/main", ["main"]),
    (TagRules(branch=False), "refs/heads/main", ["sha-860c190"]),
    (TagRules(pr=False, sha=False), "refs/pull/7/merge", []),
    (TagRules(semver=["{{version}}"]), "refs/tags/v1.2.3", ["1.2.3", "sha-860c190", "latest"]),
    (
        TagRules(semver=["v{{major}}.{{minor}}.{{patch}}", "{{raw}}"]),
        "refs/tags/v1.2.3",
        ["v1.2.3", "sha-860c190", "latest"],
    ),
    (TagRules(semver=["{{raw}}", "{{major}}"]), "refs/tags/v2.0.0-alpha", ["v2.0.0-alpha", "sha-860c190"]),
    (
        TagRules(extra=["edge", "build-{{sha}}"]),
        "refs/heads/main",
        ["main", "edge", "build-860c190", "sha-860c190"],
    ),
    (TagRules(extra=["{{branch}}-dev"]), "refs/heads/main", ["main", "main-dev", "sha-860c190"]),
]


@pytest.mark.parametrize(("rules", "ref", "expected"), RULE_CASES)
def test_tag_rules_change_what_is_generated(rules: TagRules, ref: str, expected: list[str]) -> None:
    assert compute_tags(ev(ref, pr=7 if "pull" in ref else None), rules) == expected


def test_every_generated_tag_is_valid_for_registries() -> None:
    for event, ref, pr, _ in DEFAULT_CASES:
        for tag in compute_tags(ev(ref, event, pr=pr), TagRules()):
            assert TAG_RE.match(tag), (ref, tag)


def test_duplicate_tags_are_dropped_keeping_the_first() -> None:
    rules = TagRules(semver=["{{version}}", "{{version}}"], extra=["1.2.3"])
    assert compute_tags(ev("refs/tags/v1.2.3"), rules) == ["1.2.3", "sha-860c190", "latest"]


def test_event_without_sha_has_no_sha_tag() -> None:
    assert compute_tags(ev("refs/heads/main", sha=""), TagRules()) == ["main"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v1.2.3", (1, 2, 3, "", "")),
        ("1.0.0-rc.1", (1, 0, 0, "rc.1", "")),
        ("v10.20.30-beta.1+exp.sha.5114f85", (10, 20, 30, "beta.1", "exp.sha.5114f85")),
        ("=1.2.3", (1, 2, 3, "", "")),
        ("v1.2", None),
        ("v01.2.3", None),
        ("1.2.3.4", None),
        ("latest", None),
        ("", None),
    ],
)
def test_semver_parsing(text: str, expected: tuple[int, int, int, str, str] | None) -> None:
    v = parse_semver(text)
    got = None if v is None else (v.major, v.minor, v.patch, v.prerelease, v.build)
    assert got == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("main", "main"),
        ("feature/x", "feature-x"),
        ("a  b//c", "a-b-c"),
        ("..hidden", "hidden"),
        ("_ok", "_ok"),
        ("ünïcode", "n-code"),
        ("///", None),
        ("", None),
    ],
)
def test_sanitize_tag(text: str, expected: str | None) -> None:
    assert sanitize_tag(text) == expected


@pytest.mark.parametrize(
    ("tag", "reason"),
    [
        ("has space", "contains ' '"),
        ("-dash", "starts with '-'"),
        ("x" * 129, "129 characters"),
        ("a:b", "contains ':'"),
        ("", "is empty"),
    ],
)
def test_invalid_verbatim_tag_says_why(tag: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        check_tag(tag)


def test_invalid_extra_tag_is_refused_with_a_suggestion() -> None:
    with pytest.raises(UsageError, match="use 'my-tag' instead"):
        compute_tags(ev("refs/heads/main"), TagRules(extra=["my tag"]))


def test_unknown_placeholder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown placeholder \{\{date\}\}"):
        compute_tags(ev("refs/heads/main"), TagRules(extra=["{{date}}"]))


def test_oci_labels_follow_metadata_action() -> None:
    image = ImageConfig(
        name="x/fib", description="Fibonacci", licenses="MIT", labels={"org.example.team": "hpc"}
    )
    labels = oci_labels(image, ev("refs/tags/v1.2.3"), version="1.2.3", created=NOW)
    assert labels == {
        "org.opencontainers.image.title": "fibonacci",
        "org.opencontainers.image.description": "Fibonacci",
        "org.opencontainers.image.url": "https://github.com/octo-org/fibonacci",
        "org.opencontainers.image.source": "https://github.com/octo-org/fibonacci",
        "org.opencontainers.image.version": "1.2.3",
        "org.opencontainers.image.created": "2026-11-21T08:30:00Z",
        "org.opencontainers.image.revision": SHA,
        "org.opencontainers.image.licenses": "MIT",
        "org.example.team": "hpc",
    }


def test_user_labels_override_generated_ones() -> None:
    image = ImageConfig(name="x/fib", labels={"org.opencontainers.image.title": "Fib"})
    labels = oci_labels(image, ev("refs/heads/main"), version="main", created=NOW)
    assert labels["org.opencontainers.image.title"] == "Fib"
    assert "org.opencontainers.image.licenses" not in labels


def test_image_meta_version_is_the_first_tag() -> None:
    meta = image_meta(ImageConfig(name="Reg:5000/Org/Fib"), TagRules(), ev("refs/tags/v1.2.3"), created=NOW)
    assert meta.repository == "reg:5000/org/fib"
    assert meta.version == "1.2.3"
    assert meta.labels["org.opencontainers.image.version"] == "1.2.3"
    assert meta.refs[0] == "reg:5000/org/fib:1.2.3"


def test_image_meta_without_any_tag_is_a_usage_error() -> None:
    rules = TagRules(sha=False)
    with pytest.raises(UsageError, match="no image tag"):
        image_meta(ImageConfig(name="org/fib"), rules, GitEvent(event_name="workflow_dispatch"), created=NOW)


def test_created_comes_from_source_date_epoch_when_set() -> None:
    assert created_from("1700000000", NOW) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert created_from(None, NOW) == NOW
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        created_from("yesterday", NOW)
