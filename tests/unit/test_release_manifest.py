"""The release manifest and the decisions read from it: re-installs, the default, retention, version order."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from hpcci.errors import ReleaseError, ReleaseRefused
from hpcci.stages.release.manifest import (
    Entry,
    Manifest,
    parse,
    reinstall,
    render,
    retention,
    takes_default,
    version_key,
)

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def entry(version: str, digest: str = A) -> Entry:
    return Entry(version, f"v{version}", "c" * 40, "docker.io/o/fib", digest, f"/p/{version}/fib.sif", "d" * 64,
                 "2026-11-26T01:00:00Z", "local", "42", "https://gh/runs/42", "fib (job 7)")  # fmt: skip


def manifest(*versions: str, default: str | None = None) -> Manifest:
    m = Manifest("fib", default)
    for v in versions:
        m = m.with_entry(entry(v))
    return m


def test_a_manifest_round_trips_through_its_json() -> None:
    m = manifest("0.1.0", "0.2.0", default="0.2.0")
    assert parse(render(m), source="x", name="fib") == m


def test_no_manifest_yet_is_an_empty_one() -> None:
    assert parse("", source="x", name="fib") == Manifest("fib")


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"schema": 7, "releases": []}',
        '{"schema": 1, "releases": [{}]}',
        # retention runs `rm -rf <root>/<name>/<version>`: a version read back must stay one folder name
        json.dumps({"schema": 1, "releases": [{**asdict(entry("0.1.0")), "version": "../../home"}]}),
        '{"schema": 1, "default": "../x", "releases": []}',
        '{"schema": 1, "default": 7, "releases": []}',
    ],
)
def test_a_damaged_manifest_is_one_error_saying_what_to_do(text: str) -> None:
    with pytest.raises(
        ReleaseError, match=r"^cluster local: /p/releases.json: the release manifest cannot be read"
    ):
        parse(text, source="cluster local: /p/releases.json", name="fib")


def test_versions_sort_in_semver_order_with_pre_releases_first() -> None:
    versions = ["1.0.0", "0.10.0", "1.0.0-rc.2", "0.9.0", "1.0.0-rc.10", "nightly", "1.0.0-beta"]
    assert sorted(versions, key=version_key) == [
        "0.9.0", "0.10.0", "1.0.0-beta", "1.0.0-rc.2", "1.0.0-rc.10", "1.0.0", "nightly"
    ]  # fmt: skip


def test_entries_are_kept_in_version_order() -> None:
    assert manifest("0.10.0", "0.9.0").versions() == ["0.9.0", "0.10.0"]


def test_the_same_image_again_is_nothing_to_do_and_a_new_version_a_fresh_install() -> None:
    m = manifest("0.1.0")
    assert reinstall(m, "0.1.0", A, replace=False, how="x") is None
    assert reinstall(m, "0.2.0", B, replace=False, how="x") is False


def test_another_image_under_an_installed_version_is_refused_saying_how_to_replace() -> None:
    with pytest.raises(
        ReleaseRefused, match=r"fib/0.1.0 is installed already from image sha256:a+ .*: to replace it, pass"
    ):
        reinstall(manifest("0.1.0"), "0.1.0", B, replace=False, how="pass --replace-release")
    assert reinstall(manifest("0.1.0"), "0.1.0", B, replace=True, how="x") is True


@pytest.mark.parametrize(
    ("default", "version", "make_default", "takes", "why"),
    [
        (None, "0.1.0", True, True, ""),
        ("0.1.0", "0.2.0", True, True, ""),
        ("0.2.0", "0.2.0", True, True, ""),
        ("0.2.0", "0.1.1", True, False, "the default 0.2.0 is newer"),
        ("0.1.0", "0.2.0-rc.1", True, False, "0.2.0-rc.1 is a pre-release"),
        ("0.1.0", "0.2.0", False, False, "release.make_default is false"),
        (
            "0.2.0",
            "nightly-7",
            True,
            False,
            "nightly-7 is not a semantic version; the default stays the release 0.2.0",
        ),
        (None, "nightly-7", True, True, ""),
        ("nightly-6", "nightly-7", True, True, ""),
        ("nightly-7", "0.1.0", True, True, ""),
    ],
)
def test_which_release_takes_the_default(
    default: str | None, version: str, make_default: bool, takes: bool, why: str
) -> None:
    m = replace(manifest("0.1.0", "0.2.0"), default=default)
    assert takes_default(m, version, make_default=make_default) == (takes, why)


def test_retention_removes_the_oldest_but_never_the_default_or_the_new_one() -> None:
    m = manifest("0.1.0", "0.2.0", "0.3.0", "0.4.0", default="0.1.0")
    assert retention(m, 2, protect=["0.1.0", "0.4.0"]) == ["0.2.0", "0.3.0"]
    assert retention(m, 3, protect=["0.1.0", "0.4.0"]) == ["0.2.0"]
    assert retention(m, 5, protect=["0.1.0", "0.4.0"]) == []


def test_retention_keeps_protected_versions_even_beyond_keep() -> None:
    m = manifest("0.1.0", "0.2.0", "0.3.0", default="0.1.0")
    assert retention(m, 1, protect=["0.1.0", "0.3.0"]) == ["0.2.0"]
