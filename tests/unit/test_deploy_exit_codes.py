"""`hpcci deploy`'s exit code and annotations follow the check runs' conclusion (issue 20 item 12): a node failure
is a cluster problem (neutral check run, exit 72, a warning), never "smoke tests did not pass" (exit 70, an error
on hpcci.yaml)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hpcci import errors
from hpcci import records as rec
from hpcci.commands.deploy import _report, verdict_error
from hpcci.log import Log
from hpcci.records import ClusterDeploy, ClusterResult, Results, Verdict
from hpcci.stages.deploy.outcome import Outcome
from hpcci.stages.report.text import conclude

PATH = Path(".hpcci/results.json")


def result(cluster: str, verdict: Verdict, state: str, reason: str) -> ClusterResult:
    test = rec.TestResult(cluster, "fib", "linux/amd64", "41", state, None, 3.0, verdict, reason,
                      source_file="hpcci.yaml", source_line=12)  # fmt: skip
    return ClusterResult(cluster, "linux/amd64", [test])


NODE_FAIL = result(
    "local", "infra", "NODE_FAIL", "the job was lost because its node failed (a cluster problem)"
)
FAILED = result("other", "fail", "FAILED", "the job exited with code 3, expected 0")


def test_a_node_failure_is_a_cluster_problem_with_its_own_exit_code() -> None:
    err = verdict_error(Results("img", [NODE_FAIL]), PATH)
    assert conclude(NODE_FAIL).conclusion == "neutral"
    assert isinstance(err, errors.ClusterProblem) and err.exit_code == 72
    assert "cluster problem, not the code" in str(err) and "local/fib" in str(err)


def test_a_failed_test_anywhere_is_a_smoke_test_failure() -> None:
    err = verdict_error(Results("img", [NODE_FAIL, FAILED]), PATH)
    assert type(err) is errors.SmokeTestFailed and err.exit_code == 70
    assert "local/fib, other/fib" in str(err)


def test_a_cluster_problem_is_annotated_as_a_warning_and_a_failure_as_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    out = io.StringIO()
    results = Results("img", [NODE_FAIL, FAILED])
    _report([_outcome(c) for c in results.clusters], results, Log(out, github=True))
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("::")]
    assert lines == [
        "::warning file=hpcci.yaml,line=12::local/fib: the job was lost because its node failed (a cluster problem)",
        "::error file=hpcci.yaml,line=12::other/fib: the job exited with code 3, expected 0",
    ]


def test_every_error_class_has_its_own_exit_code() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.HpcciError)]
    codes = [c.exit_code for c in classes if c is not errors.ConfigError]  # ConfigError is a UsageError (2)
    assert len(codes) == len(set(codes)), sorted(codes)
    assert errors.INTERNAL_ERROR_EXIT not in codes


def _outcome(cr: ClusterResult) -> Outcome:
    return Outcome(ClusterDeploy(cluster=cr.cluster, login_host="h", platform=cr.platform, staging="sftp",
                                 tar_path=None, tar_sha256=None, sif_path="/c/x.sif", image_digest="sha256:00",
                                 cache_hit=False, jobs={"fib": "41"}), cr)  # fmt: skip
