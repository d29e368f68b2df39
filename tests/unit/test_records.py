"""Records round-trip through JSON exactly, are written atomically, and bad ones are a usage error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hpcci import records
from hpcci.errors import UsageError


def sample_results() -> records.Results:
    test = records.TestResult(
        cluster="local",
        test="fib",
        platform="linux/amd64",
        job_id="42",
        state="COMPLETED",
        exit_code=0,
        elapsed_s=1.5,
        verdict="pass",
        reason="exit code 0 and output matched ^55$",
        output_tail="55\n",
        source_file="hpcci.yaml",
        source_line=12,
    )
    cluster = records.ClusterResult(
        cluster="local", platform="linux/amd64", tests=[test], image_digest="sha256:ab"
    )
    return records.Results(image="org/fib", clusters=[cluster], ref="refs/tags/v1.0.0", sha="abc")


def test_results_round_trip_through_json() -> None:
    r = sample_results()
    assert records.from_json(records.Results, records.to_json(r)) == r


def test_publish_record_round_trips_nested_optionals() -> None:
    rec = records.PublishRecord(
        image="org/fib",
        tags=["v1"],
        registry=records.RegistryPublication(
            refs=["r/org/fib:v1"], digest="sha256:1", platforms={"linux/amd64": "x"}
        ),
        s3=[records.S3Object("b", "k", 10, "ff", "linux/amd64", "sha256:1")],
    )
    assert records.from_json(records.PublishRecord, records.to_json(rec)) == rec


def test_written_record_reads_back_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / ".hpcci" / "results.json"
    records.write(sample_results(), path)
    assert records.read(records.Results, path) == sample_results()
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_missing_record_says_which_stage_to_run(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="run the stage that writes it first"):
        records.read(records.BuildRecord, tmp_path / "build.json")


def test_record_with_unknown_field_is_refused() -> None:
    with pytest.raises(UsageError, match="not a valid Results"):
        records.from_json(records.Results, '{"image": "x", "clusters": [], "surprise": 1}')


def test_results_pass_only_when_every_test_passes() -> None:
    r = sample_results()
    assert r.passed
    failing = dataclasses.replace(r.clusters[0].tests[0], verdict="fail")
    bad = records.Results(image="x", clusters=[records.ClusterResult("local", "linux/amd64", [failing])])
    assert not bad.passed


def test_results_with_no_cluster_are_not_a_pass() -> None:
    assert not records.Results(image="x", clusters=[]).passed
