"""Publish as data: object keys, the index, the manifest list body, registry destinations, progress lines."""

from __future__ import annotations

import io
import json

import pytest

from hpcci.backends.objectstore import MiB, Progress, part_size_for
from hpcci.backends.registry import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestInfo,
    digest_of,
    manifest_list,
)
from hpcci.log import Log
from hpcci.records import BuildRecord, PlatformImage, PublishRecord, RegistryPublication, S3Object
from hpcci.stages.publish import merge, s3_index_key, s3_key, update_index

AMD = "sha256:" + "a" * 64
ARM = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("prefix", "repo", "platform", "key"),
    [
        (
            "images",
            "127.0.0.1:5000/octo-org/fib",
            "linux/amd64",
            f"images/octo-org/fib/sha256-{'a' * 64}/linux-amd64.tar",
        ),
        ("/images/", "docker.io/org/fib", "linux/arm64", f"images/org/fib/sha256-{'a' * 64}/linux-arm64.tar"),
        ("", "org/fib", "linux/arm/v7", f"org/fib/sha256-{'a' * 64}/linux-arm-v7.tar"),
        ("a/b", "localhost/fib", "linux/amd64", f"a/b/fib/sha256-{'a' * 64}/linux-amd64.tar"),
    ],
)
def test_s3_keys_are_content_addressed(prefix: str, repo: str, platform: str, key: str) -> None:
    assert s3_key(prefix, repo, AMD, platform) == key


def test_index_key_sits_next_to_the_digests() -> None:
    assert s3_index_key("images", "127.0.0.1:5000/octo-org/fib") == "images/octo-org/fib/index.json"


def build_record(tags: list[str]) -> BuildRecord:
    return BuildRecord(
        image="127.0.0.1:5000/octo-org/fib",
        tags=tags,
        platforms=[
            PlatformImage("linux/amd64", AMD, "r:1-amd64"),
            PlatformImage("linux/arm64", ARM, "r:1-arm64"),
        ],
        builder="docker",
        source_sha="abc",
        created="2026-11-21T08:00:00Z",
    )


def objects() -> list[S3Object]:
    return [
        S3Object("hpcci", "k/amd64.tar", 10, "11" * 32, "linux/amd64", AMD),
        S3Object("hpcci", "k/arm64.tar", 20, "22" * 32, "linux/arm64", ARM),
    ]


def test_index_maps_every_tag_to_digests_and_keys() -> None:
    index = update_index(None, build_record(["1.2.3", "latest"]), objects(), "sha256:list")
    assert set(index["tags"]) == {"1.2.3", "latest"}
    entry = index["tags"]["latest"]
    assert entry["manifest_digest"] == "sha256:list"
    assert entry["platforms"]["linux/arm64"] == {
        "digest": ARM,
        "key": "k/arm64.tar",
        "sha256": "22" * 32,
        "size": 20,
    }


def test_index_keeps_other_tags_and_moves_republished_ones() -> None:
    old = update_index(None, build_record(["1.2.2", "latest"]), objects()[:1], None)
    new = update_index(json.loads(json.dumps(old)), build_record(["1.2.3", "latest"]), objects(), None)
    assert set(new["tags"]) == {"1.2.2", "1.2.3", "latest"}
    assert set(new["tags"]["latest"]["platforms"]) == {"linux/amd64", "linux/arm64"}
    assert set(new["tags"]["1.2.2"]["platforms"]) == {"linux/amd64"}


def test_same_publication_gives_the_same_index() -> None:
    first = update_index(None, build_record(["1"]), objects(), None)
    again = update_index(json.loads(json.dumps(first)), build_record(["1"]), objects(), None)
    assert again == first


def test_manifest_list_body_is_deterministic_and_docker_typed() -> None:
    entries = [
        ("linux/amd64", ManifestInfo(AMD, DOCKER_MANIFEST, 500)),
        ("linux/arm64", ManifestInfo(ARM, DOCKER_MANIFEST, 501)),
    ]
    body, media = manifest_list(entries)
    assert media == DOCKER_LIST
    assert manifest_list(entries)[0] == body
    data = json.loads(body)
    assert [m["platform"] for m in data["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
    ]
    assert data["manifests"][1] == {
        "mediaType": DOCKER_MANIFEST,
        "size": 501,
        "digest": ARM,
        "platform": {"architecture": "arm64", "os": "linux"},
    }
    assert digest_of(body).startswith("sha256:") and len(digest_of(body)) == 71


def test_oci_manifests_get_an_oci_index_with_variants() -> None:
    body, media = manifest_list([("linux/arm/v7", ManifestInfo(AMD, OCI_MANIFEST, 1))])
    assert media == OCI_INDEX
    assert json.loads(body)["manifests"][0]["platform"] == {
        "architecture": "arm",
        "os": "linux",
        "variant": "v7",
    }


def test_part_size_gives_every_thread_a_part_within_s3_limits() -> None:
    assert part_size_for(1 << 30, 64 * MiB, 8) == 64 * MiB
    assert part_size_for(256 * MiB, 64 * MiB, 8) == 32 * MiB
    assert part_size_for(10 * MiB, 64 * MiB, 8) == 8 * MiB
    assert part_size_for(1 << 30, 1 * MiB, 8) == 5 * MiB
    big = 10 * (1 << 40)  # 10 TiB
    assert big / part_size_for(big, 64 * MiB, 8) <= 10_000


def test_progress_in_ci_prints_plain_lines_with_rate_and_eta() -> None:
    out = io.StringIO()
    progress = Progress("s3://b/k.tar", 100 * MiB, Log(out, github=False), every=0.0, tty=False)
    progress(50 * MiB)
    progress.close(failed=True)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("  s3://b/k.tar: 50/100 MiB (50%), ")
    assert "MiB/s, ETA " in lines[0]
    assert lines[-1].startswith("  s3://b/k.tar: upload failed after 50 of 100 MiB in ")


def test_publishing_one_target_keeps_the_other_from_an_earlier_run() -> None:
    reg = RegistryPublication(refs=["r:1"], digest="sha256:l")
    old = PublishRecord(image="i", tags=["1"], registry=reg)
    new = PublishRecord(image="i", tags=["1"], s3=objects(), s3_index_key="k/index.json")
    merged = merge(old, new)
    assert merged.registry == reg and merged.s3 == objects()
    other = PublishRecord(image="i", tags=["2"], s3=objects())
    assert merge(old, other).registry is None


def test_plan_sections_show_tags_commands_targets_and_keys() -> None:
    from pathlib import Path

    from hpcci.commands import build, common, publish
    from hpcci.config_load import load_pipeline
    from hpcci.context import GitEvent

    example = Path(__file__).resolve().parents[2] / "examples" / "fibonacci"
    event = GitEvent(
        ref="refs/tags/v1.2.3", sha="860c1904a1ce19322e91ac35af1ab07466440c37", repository="o/fib"
    )
    ctx = common.PlanContext(load_pipeline(example / "hpcci.yaml"), {}, event, example, Path(".hpcci"))
    text = build.plan_section(ctx)
    assert "tags: 1.2.3, 1.2, 1, sha-860c190, latest" in text
    assert "buildah build --platform linux/arm64 --format docker" in text
    assert "docker build --platform linux/amd64 --pull" in text
    text = publish.plan_section(ctx)
    assert "manifest list: 127.0.0.1:5000/octo-org/fibonacci:latest" in text
    assert "s3://hpcci/images/octo-org/fibonacci/<image id>/linux-arm64.tar" in text
    assert "index: s3://hpcci/images/octo-org/fibonacci/index.json" in text


def test_progress_in_a_terminal_draws_a_bar_and_still_sums_up() -> None:
    out = io.StringIO()
    progress = Progress("s3://b/k.tar", 10 * MiB, Log(out, github=False), tty=True)
    for _ in range(10):
        progress(MiB)
    progress.close()
    assert progress.done == 10 * MiB
    assert out.getvalue().splitlines()[-1].startswith("  s3://b/k.tar: 10 MiB in ")
