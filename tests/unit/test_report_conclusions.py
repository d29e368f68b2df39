"""What a maintainer reads: conclusion mapping, title, table, failing output, annotations, GitHub's limits."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hpcci import records
from hpcci.records import ClusterResult, Results, Verdict
from hpcci.records import TestResult as SmokeResult
from hpcci.stages.report import text as C


def result(
    name: str = "fib",
    verdict: Verdict = "pass",
    state: str = "COMPLETED",
    exit_code: int | None = 0,
    reason: str = "",
    tail: str = "",
    line: int | None = 30,
    cluster: str = "frontera",
) -> SmokeResult:
    return SmokeResult(
        cluster=cluster,
        test=name,
        platform="linux/amd64",
        job_id="4242",
        state=state,
        exit_code=exit_code,
        elapsed_s=12.5,
        verdict=verdict,
        reason=reason or ("exited with code 0" if verdict == "pass" else f"{name} did not pass"),
        output_tail=tail,
        source_file="hpcci.yaml",
        source_line=line,
    )


def cluster(*tests: SmokeResult, error: str | None = None) -> ClusterResult:
    return ClusterResult(
        cluster="frontera",
        platform="linux/amd64",
        tests=list(tests),
        image_digest="sha256:" + "a" * 64,
        tar_sha256="b" * 64,
        sif_path="/scratch/hpcci/images/fib-aaaa.sif",
        error=error,
    )


def test_all_pass_is_success() -> None:
    assert C.conclude(cluster(result("a"), result("b"))).conclusion == "success"


def test_a_failing_test_makes_the_cluster_fail() -> None:
    c = C.conclude(
        cluster(result("a"), result("b", "fail", "FAILED", 1, reason="exited with code 1, expected 0"))
    )
    assert c.conclusion == "failure"
    assert "b" in c.reason and "exited with code 1" in c.reason


def test_timeout_job_reports_timed_out() -> None:
    assert (
        C.conclude(cluster(result("a"), result("b", "timed_out", "TIMEOUT", None))).conclusion == "timed_out"
    )


def test_cancelled_job_reports_cancelled() -> None:
    assert C.conclude(cluster(result("a", "cancelled", "CANCELLED", None))).conclusion == "cancelled"


@pytest.mark.parametrize("state", ["NODE_FAIL", "PREEMPTED", "BOOT_FAIL"])
def test_cluster_failures_are_neutral_with_the_reason(state: str) -> None:
    c = C.conclude(cluster(result("a", "infra", state, None, reason=f"the job was lost ({state})")))
    assert c.conclusion == "neutral"
    assert "not the code" in c.reason and state in c.reason


def test_a_verdict_this_version_does_not_know_is_a_failure_whatever_the_state() -> None:
    from_another_version = result("a", "weird", "NODE_FAIL", None)  # type: ignore[arg-type]
    assert C.test_conclusion(from_another_version) == "failure"


def test_every_verdict_has_a_conclusion_and_a_label() -> None:
    assert set(C.VERDICT_CONCLUSION) == set(C.VERDICT_LABEL) == set(records.VERDICTS)


def test_stuck_pending_on_invalid_account_requires_action() -> None:
    stuck = result(
        "a",
        "action_required",
        "CANCELLED",
        None,
        reason="the job can never start: the account is invalid; fix scheduler.account; hpcci cancelled it",
    )
    c = C.conclude(cluster(stuck))
    assert c.conclusion == "action_required"
    assert "fix scheduler.account" in c.reason


def test_a_job_cancelled_because_its_dependency_failed_is_cancelled_not_action_required() -> None:
    reason = "the job can never start: the job it depends on failed; hpcci cancelled it instead of waiting"
    assert (
        C.conclude(cluster(result("a", "cancelled", "CANCELLED", None, reason=reason))).conclusion
        == "cancelled"
    )


def test_a_job_stuck_on_the_config_reads_action_required_in_the_table() -> None:
    stuck = result(
        "gpu", "action_required", "CANCELLED", None, reason="the job can never start: fix scheduler.account"
    )
    row = "| gpu | linux/amd64 | 4242 | CANCELLED | - | - | 12s | - | - | 🔧 action required |"
    assert row in C.summary(cluster(stuck))


def test_action_required_verdict_maps_to_action_required() -> None:
    assert (
        C.conclude(cluster(result("a", "action_required", "PENDING", None))).conclusion == "action_required"
    )


def test_skipped_tests_do_not_spoil_a_success() -> None:
    assert C.conclude(cluster(result("a"), result("b", "skipped", "NOT_RUN", None))).conclusion == "success"
    assert C.conclude(cluster(result("b", "skipped", "NOT_RUN", None))).conclusion == "skipped"


def test_a_code_failure_outranks_a_cluster_failure() -> None:
    c = C.conclude(cluster(result("a", "infra", "NODE_FAIL", None), result("b", "fail", "FAILED", 2)))
    assert c.conclusion == "failure"


def test_deploy_error_before_tests_is_a_failure_with_the_error() -> None:
    cr = cluster(error="conversion failed: apptainer build exited 255")
    assert C.conclude(cr).conclusion == "failure"
    assert C.title(cr) == "Deploy failed on frontera (linux/amd64)"
    assert "apptainer build exited 255" in C.summary(cr)


def test_title_counts_passed_tests_on_the_cluster_and_platform() -> None:
    cr = cluster(result("a"), result("b"), result("c"), result("d", "fail", "FAILED", 1))
    assert C.title(cr) == "3/4 smoke tests passed on frontera (linux/amd64)"


def test_summary_has_a_table_row_per_test_and_the_provenance() -> None:
    cr = cluster(result("a"), result("b", "fail", "FAILED", 3))
    s = C.summary(cr)
    assert (
        "| Test | Platform | Job | State | Exit code | Queue wait | Run time | Nodes | Core-h | Verdict |"
        in s
    )
    assert "| a | linux/amd64 | 4242 | COMPLETED | 0 | - | 12s | - | - | ✅ pass |" in s  # no usage recorded
    assert "| b | linux/amd64 | 4242 | FAILED | 3 | - | 12s | - | - | ❌ fail |" in s
    assert "**Image:** a local tar, image id `sha256:" + "a" * 64 in s  # nothing published: nothing to pull
    assert f"→ tar `sha256:{'b' * 64}` → SIF `/scratch/hpcci/images/fib-aaaa.sif`" in s


def test_table_cells_escape_pipes_and_newlines() -> None:
    assert C.cell("a|b\nc") == "a\\|b c"
    assert C.cell(None) == "-"


def test_elapsed_reads_like_a_duration() -> None:
    assert [C.elapsed(x) for x in (None, 3.25, 42, 125, 3725)] == ["-", "3.2s", "42s", "2m05s", "1h02m05s"]


def test_text_shows_the_tail_of_each_failing_test_in_a_fenced_block() -> None:
    out = "\n".join(f"line {i}" for i in range(100))
    t = C.text(cluster(result("a"), result("b", "fail", "FAILED", 1, tail=out)))
    assert t is not None
    assert "### b (job 4242, FAILED)" in t
    assert "```text\n" in t and "line 99\n```" in t
    assert "line 59" not in t  # only the last TAIL_LINES lines
    assert "### a" not in t


def test_text_is_none_when_everything_passed() -> None:
    assert C.text(cluster(result("a"))) is None


def test_output_with_backticks_cannot_close_the_fence() -> None:
    block = C.fence("before\n```\nafter")
    assert block.startswith("````text\n") and block.endswith("\n````")


def test_huge_output_is_cut_to_github_limit_with_a_note() -> None:
    tests = [result(f"t{i}", "fail", "FAILED", 1, tail="x" * 200 + "\n" + "y" * 30000) for i in range(20)]
    t = C.text(cluster(*tests))
    assert t is not None
    assert len(t) <= C.MAX_OUTPUT_CHARS
    assert "earlier output cut" in t or "left out" in t
    assert t.count("```") % 2 == 0  # every block is closed


def test_thousands_of_tests_keep_the_summary_within_limits() -> None:
    tests = [result(f"test-{i:05d}", "fail", "FAILED", 1, reason="r" * 100) for i in range(3000)]
    s = C.summary(cluster(*tests))
    assert len(s) <= C.MAX_OUTPUT_CHARS
    assert "more tests: see the job's step summary" in s
    assert "**Provenance:**" in s


def test_truncate_keeps_short_text_and_cuts_long_text_with_a_note() -> None:
    assert C.truncate("short", 100) == "short"
    cut = C.truncate("a\n" * 100, 50)
    assert len(cut) <= 50 and "truncated" in cut


def test_truncate_closes_an_open_code_block() -> None:
    cut = C.truncate("intro\n```text\n" + "z\n" * 1000, 300)
    assert len(cut) <= 300 and cut.count("```") % 2 == 0


def test_annotations_point_at_the_hpcci_yaml_line_of_each_failing_test() -> None:
    cr = cluster(result("a", line=30), result("b", "fail", "FAILED", 1, line=36, tail="boom"))
    (a,) = C.annotations_for(cr)
    assert (a["path"], a["start_line"], a["end_line"]) == ("hpcci.yaml", 36, 36)
    assert a["annotation_level"] == "failure"
    assert a["raw_details"] == "boom"


def test_cluster_problems_are_warnings_not_failures() -> None:
    (a,) = C.annotations_for(cluster(result("a", "infra", "NODE_FAIL", None)))
    assert a["annotation_level"] == "warning"


def test_annotation_titles_and_messages_respect_github_limits() -> None:
    long_name = "n" * 300
    (a,) = C.annotations_for(cluster(result(long_name, "fail", "FAILED", 1, reason="m" * 100_000)))
    assert len(a["title"]) <= 255
    assert len(a["message"].encode()) <= 64 * 1024


def test_tests_without_a_known_line_get_no_annotation() -> None:
    assert C.annotations_for(cluster(result("a", "fail", "FAILED", 1, line=None))) == []


def test_120_annotations_go_in_three_requests_of_at_most_50() -> None:
    assert [len(b) for b in C.batches(list(range(120)))] == [50, 50, 20]
    assert C.batches([]) == []


def test_missing_annotations_skips_those_already_on_the_check_run() -> None:
    a = {"path": "hpcci.yaml", "start_line": 1, "end_line": 1, "title": "t", "message": "m"}
    b = {**a, "start_line": 2, "end_line": 2}
    present = [{**a, "blob_href": "x", "annotation_level": "failure"}]
    assert C.missing_annotations([a, b], present) == [b]
    assert C.missing_annotations([a, a], present) == [a]  # two equal ones need two


def test_commit_status_states_for_the_fallback() -> None:
    assert C.STATUS_STATE["success"] == "success"
    assert C.STATUS_STATE["failure"] == C.STATUS_STATE["timed_out"] == "failure"
    assert C.STATUS_STATE["neutral"] == C.STATUS_STATE["action_required"] == "error"


def test_step_summary_has_a_section_per_cluster() -> None:
    r = Results(
        image="img", sha="c" * 40, clusters=[cluster(result("a")), cluster(result("b", "fail", "FAILED", 1))]
    )
    s = C.step_summary(r, check_names={"frontera": "hpcci / frontera"})
    assert s.count("### hpcci / frontera: ") == 2
    assert "Commit `cccccccccccc`" in s


def test_a_deploy_error_is_said_once_in_the_check_run_not_again_per_test() -> None:
    err = "cluster frontera: conversion job 12 failed: FATAL: no space left on device"
    never_ran = [
        replace(result(n, "error", "-", None, reason=f"not run: {err}", line=30 + i), job_id=None)
        for i, n in enumerate(["fib", "gpu", "mpi"])
    ]
    cr = cluster(*never_ran, error=err)
    summary = C.summary(cr)
    assert summary.count("no space left on device") == 1
    assert "- not run, as the deploy failed: fib, gpu, mpi" in summary
    assert C.text(cr) is None
    assert C.annotations_for(cr, default_file="hpcci.yaml") == []


def test_a_test_that_failed_on_its_own_beside_a_deploy_error_keeps_its_reason_and_output() -> None:
    err = "cluster frontera: the checksum step failed"
    ran = result("fib", "fail", "FAILED", 1, reason="exited with code 1, expected 0", tail="Traceback")
    never = replace(result("gpu", "error", "-", None, reason=f"not run: {err}"), job_id=None)
    cr = cluster(ran, never, error=err)
    assert C.summary(cr).count(err) == 1
    assert "- **fib** (FAILED): exited with code 1, expected 0" in C.summary(cr)
    text = C.text(cr)
    assert text is not None and "Traceback" in text and "gpu" not in text
    assert [a["title"].split(" ")[0] for a in C.annotations_for(cr)] == ["fib"]
