"""`hpcci report` against the GitHub stand-in: what a maintainer sees on the commit after each kind of run.

Each test reports into its own repository (octo-org/r-<random>) and reads the stand-in's state for it back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpcci import cli, records
from hpcci.backends.github.client import AppAuth, RestGitHub, RetryPolicy, TokenAuth
from hpcci.records import ClusterResult, Results, Verdict
from hpcci.records import TestResult as SmokeResult
from hpcci.stages.report.checkruns import Reporter
from hpcci.stages.report.outputs import Target
from stack_env import GitHubApp

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "fibonacci" / "hpcci.yaml"
SHA = "feedc0de" * 5
FAST = RetryPolicy(backoff=0.05, max_pause=5, max_total_wait=20, timeout=30)


class Lines:
    """A Log stand-in for the stage that keeps what it was told (the real Log writes to stderr and files)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.summaries: list[str] = []

    def info(self, msg: str) -> None:
        self.lines.append(msg)

    def warning(
        self, msg: str, *, file: str | None = None, line: int | None = None, title: str | None = None
    ) -> None:
        self.lines.append(f"warning: {file}:{line}: {msg}")

    def error(
        self, msg: str, *, file: str | None = None, line: int | None = None, title: str | None = None
    ) -> None:
        self.lines.append(f"error: {file}:{line}: {msg}")

    def summary(self, markdown: str) -> None:
        self.summaries.append(markdown)


@pytest.fixture
def env(require: Any, stack_env: dict[str, str]) -> dict[str, str]:
    require("github")
    return stack_env


@pytest.fixture
def repo() -> str:
    return f"octo-org/r-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def admin(env: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=env["GITHUB_API_URL"], headers={"Authorization": f"Bearer {env['GITHUB_TOKEN']}"}, timeout=30
    ) as c:
        yield c


def api(env: dict[str, str], repo: str, log: Lines | None = None) -> RestGitHub:
    return RestGitHub(
        env["GITHUB_API_URL"],
        repo,
        TokenAuth(env["GITHUB_TOKEN"]),
        policy=FAST,
        log=(log.info if log else lambda _m: None),
    )


def state(admin: httpx.Client, repo: str) -> dict[str, Any]:
    r = admin.get("/_standin/state", params={"repo": repo})
    r.raise_for_status()
    data: dict[str, Any] = r.json()
    return data


def reporter(env: dict[str, str], repo: str, log: Lines | None = None, **target: Any) -> Reporter:
    t = Target(sha=SHA, run_key="1001", details_url="https://github.com/o/r/actions/runs/1001", **target)
    return Reporter(api(env, repo, log), t, log or Lines())


def smoke(
    name: str, verdict: Verdict = "pass", state_: str = "COMPLETED", code: int | None = 0, **kw: Any
) -> Any:
    return SmokeResult(
        cluster=kw.pop("cluster", "frontera"),
        test=name,
        platform="linux/amd64",
        job_id=kw.pop("job_id", "5150"),
        state=state_,
        exit_code=code,
        elapsed_s=2.0,
        verdict=verdict,
        reason=kw.pop(
            "reason", "exited with code 0" if verdict == "pass" else f"{name}: exit code {code}, expected 0"
        ),
        output_tail=kw.pop("tail", "55\n"),
        source_file="examples/fibonacci/hpcci.yaml",
        source_line=kw.pop("line", 30),
    )


def cluster(name: str, *tests: Any, error: str | None = None) -> ClusterResult:
    return ClusterResult(
        cluster=name,
        platform="linux/amd64",
        tests=list(tests),
        image_digest="sha256:" + "1" * 64,
        tar_sha256="2" * 64,
        sif_path=f"/scratch/hpcci/images/fib-{name}.sif",
        error=error,
    )


def two_clusters() -> Results:
    return Results(
        image="127.0.0.1:5000/octo-org/fibonacci",
        sha=SHA,
        clusters=[
            cluster("frontera", smoke("fib"), smoke("fib-big")),
            cluster(
                "perlmutter",
                smoke("fib", cluster="perlmutter"),
                smoke(
                    "fib-big",
                    "fail",
                    "FAILED",
                    1,
                    cluster="perlmutter",
                    line=36,
                    tail="Traceback\nValueError",
                ),
            ),
        ],
    )


def runs_by_name(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in st["check_runs"]:
        assert r["name"] not in out, f"two check runs named {r['name']}"
        out[r["name"]] = r
    return out


def test_one_completed_check_run_per_cluster_with_the_right_conclusion(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    r = reporter(env, repo)
    r.start([("frontera", "linux/amd64"), ("perlmutter", "linux/amd64")])
    started = runs_by_name(state(admin, repo))
    assert {n: x["status"] for n, x in started.items()} == {
        "hpcci / frontera": "in_progress",
        "hpcci / perlmutter": "in_progress",
    }
    assert started["hpcci / frontera"]["details_url"] == "https://github.com/o/r/actions/runs/1001"

    reporter(env, repo).finish(two_clusters(), ["frontera", "perlmutter"])
    runs = runs_by_name(state(admin, repo))
    assert {n: (x["status"], x["conclusion"]) for n, x in runs.items()} == {
        "hpcci / frontera": ("completed", "success"),
        "hpcci / perlmutter": ("completed", "failure"),
    }
    p = runs["hpcci / perlmutter"]
    assert p["head_sha"] == SHA
    assert p["output"]["title"] == "1/2 smoke tests passed on perlmutter (linux/amd64)"
    assert (
        "| fib-big | linux/amd64 | 5150 | FAILED | 1 | - | 2.0s | - | - | ❌ fail |" in p["output"]["summary"]
    )
    assert "SIF `/scratch/hpcci/images/fib-perlmutter.sif`" in p["output"]["summary"]
    assert "```text\nTraceback\nValueError\n```" in p["output"]["text"]
    assert [(a["path"], a["start_line"]) for a in p["annotations"]] == [("examples/fibonacci/hpcci.yaml", 36)]
    assert runs["hpcci / frontera"]["annotations"] == []


def test_120_failing_tests_are_annotated_in_three_requests(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    tests = [smoke(f"t{i:03d}", "fail", "FAILED", 1, line=100 + i) for i in range(120)]
    outcome = reporter(env, repo).finish(Results(image="i", sha=SHA, clusters=[cluster("frontera", *tests)]))
    st = state(admin, repo)
    (run,) = st["check_runs"]
    assert len(run["annotations"]) == 120
    assert sorted(a["start_line"] for a in run["annotations"]) == list(range(100, 220))
    carrying = [q["annotations"] for q in st["requests"] if q.get("annotations")]
    assert carrying == [50, 50, 20]
    assert outcome.annotation_requests == 3


def test_huge_results_are_truncated_to_github_limits_and_accepted(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    tests = [
        smoke(f"t{i:04d}", "fail", "FAILED", 1, tail="x" * 5000 + "\nlast line", line=None)
        for i in range(2000)
    ]
    reporter(env, repo).finish(Results(image="i", sha=SHA, clusters=[cluster("frontera", *tests)]))
    (run,) = state(admin, repo)["check_runs"]
    assert run["conclusion"] == "failure"
    assert len(run["output"]["summary"]) <= 65535 and "more tests" in run["output"]["summary"]
    assert len(run["output"]["text"]) <= 65535 and "left out" in run["output"]["text"]


def test_reporting_again_updates_its_own_check_run_without_duplicate_annotations(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    results = two_clusters()
    reporter(env, repo).start([("frontera", ""), ("perlmutter", "")])
    for _ in range(3):  # e.g. the finish step re-run, or an `if: always()` step after a finish that worked
        reporter(env, repo).finish(results, ["frontera", "perlmutter"])
    runs = runs_by_name(state(admin, repo))
    assert len(runs) == 2
    assert runs["hpcci / perlmutter"]["conclusion"] == "failure"
    assert len(runs["hpcci / perlmutter"]["annotations"]) == 1


def test_a_rerun_attempt_shows_one_current_check_run_per_cluster(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    """GitHub cannot reopen a completed check run: the re-run's goes on top; the PR shows the latest per name."""
    fixed = two_clusters()
    fixed = Results(
        image=fixed.image, sha=SHA, clusters=[fixed.clusters[0], cluster("perlmutter", smoke("fib"))]
    )
    reporter(env, repo).start([("frontera", ""), ("perlmutter", "")])
    reporter(env, repo).finish(two_clusters())
    reporter(env, repo).start([("frontera", ""), ("perlmutter", "")])  # "Re-run all jobs": same run id
    current = api(env, repo).check_runs_for_ref(SHA, "hpcci / perlmutter")
    assert current[0]["status"] == "in_progress"
    reporter(env, repo).finish(fixed)
    listed = admin.get(f"/repos/{repo}/commits/{SHA}/check-runs").json()  # filter=latest, as the PR shows
    assert {r["name"]: r["conclusion"] for r in listed["check_runs"]} == {
        "hpcci / frontera": "success",
        "hpcci / perlmutter": "success",
    }
    assert all(r["status"] == "completed" for r in state(admin, repo)["check_runs"])


def test_another_workflow_run_gets_its_own_check_run(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    reporter(env, repo).finish(two_clusters())
    other = Reporter(api(env, repo), Target(sha=SHA, run_key="2002"), Lines())
    other.finish(two_clusters())
    assert len(state(admin, repo)["check_runs"]) == 4


def test_a_crashed_deploy_leaves_no_check_run_spinning(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    reporter(env, repo).start([("frontera", ""), ("perlmutter", "")])
    partial = Results(image="i", sha=SHA, clusters=[cluster("frontera", smoke("fib"))])
    reporter(env, repo).crash(["frontera", "perlmutter"], job_status="failure", results=partial)
    runs = runs_by_name(state(admin, repo))
    assert runs["hpcci / frontera"]["conclusion"] == "success"
    assert runs["hpcci / perlmutter"]["status"] == "completed"
    assert runs["hpcci / perlmutter"]["conclusion"] == "failure"
    assert "before perlmutter had results" in runs["hpcci / perlmutter"]["output"]["title"]


def test_a_cancelled_workflow_completes_its_check_runs_as_cancelled(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    reporter(env, repo).start([("frontera", "")])
    reporter(env, repo).crash(["frontera"], job_status="cancelled")
    (run,) = state(admin, repo)["check_runs"]
    assert (run["status"], run["conclusion"]) == ("completed", "cancelled")


def test_finish_completes_started_clusters_that_have_no_results(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    reporter(env, repo).start([("frontera", ""), ("stampede", "")])
    partial = Results(image="i", sha=SHA, clusters=[cluster("frontera", smoke("fib"))])
    reporter(env, repo).finish(partial, ["frontera", "stampede"])
    runs = runs_by_name(state(admin, repo))
    assert all(r["status"] == "completed" for r in runs.values())
    assert runs["hpcci / stampede"]["conclusion"] == "failure"


def test_server_errors_are_retried_and_create_only_one_check_run(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    admin.post(
        "/_standin/faults",
        json={"method": "POST", "path": f"/repos/{repo}/check-runs", "status": 502, "count": 2},
    )
    admin.post(
        "/_standin/faults",
        json={"method": "GET", "path": f"/repos/{repo}/commits/*", "status": 500, "count": 1},
    )
    reporter(env, repo).finish(two_clusters())
    st = state(admin, repo)
    assert len(st["check_runs"]) == 2
    assert [q["status"] for q in st["requests"] if q["method"] == "POST"][:3] == [502, 502, 201]


def test_a_lost_answer_to_an_annotation_batch_does_not_duplicate_it(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    """The PATCH with the first 50 annotations is applied but the client sees a 502: it looks before re-sending."""
    reporter(env, repo).start([("frontera", "")])
    fault = {
        "method": "PATCH",
        "path": f"/repos/{repo}/check-runs/*",
        "status": 502,
        "apply": True,
        "after": 1,
    }
    admin.post("/_standin/faults", json=fault)  # the completing PATCH passes, the first batch is lost
    tests = [smoke(f"t{i:02d}", "fail", "FAILED", 1, line=10 + i) for i in range(60)]
    log = Lines()
    reporter(env, repo, log).finish(Results(image="i", sha=SHA, clusters=[cluster("frontera", *tests)]))
    st = state(admin, repo)
    (run,) = st["check_runs"]
    assert run["conclusion"] == "failure"
    assert len(run["annotations"]) == 60
    assert len({a["start_line"] for a in run["annotations"]}) == 60
    assert [q["status"] for q in st["requests"] if q.get("annotations")] == [502, 200]
    assert any("checking before re-sending" in line for line in log.lines)


def test_a_lost_answer_to_a_create_does_not_duplicate_the_check_run(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    admin.post(
        "/_standin/faults",
        json={"method": "POST", "path": f"/repos/{repo}/check-runs", "status": 502, "apply": True},
    )
    reporter(env, repo).finish(Results(image="i", sha=SHA, clusters=[cluster("frontera", smoke("fib"))]))
    (run,) = state(admin, repo)["check_runs"]
    assert run["conclusion"] == "success"


def test_secondary_rate_limits_are_waited_out(env: dict[str, str], repo: str, admin: httpx.Client) -> None:
    admin.post(
        "/_standin/faults", json={"path": f"/repos/{repo}/*", "status": 403, "retry_after": 1, "count": 1}
    )
    admin.post(
        "/_standin/faults", json={"path": f"/repos/{repo}/*", "status": 429, "retry_after": 1, "count": 1}
    )
    log = Lines()
    reporter(env, repo, log).finish(two_clusters())
    assert len(state(admin, repo)["check_runs"]) == 2
    assert sum("rate limited" in line for line in log.lines) == 2


def test_retries_are_bounded(env: dict[str, str], repo: str, admin: httpx.Client) -> None:
    from hpcci.backends.github.client import GitHubRequestError

    admin.post(
        "/_standin/faults", json={"method": "GET", "path": f"/repos/{repo}/*", "status": 503, "count": 50}
    )
    with pytest.raises(GitHubRequestError, match="HTTP 503") as e:
        reporter(env, repo).finish(two_clusters())
    assert e.value.transient


def test_fork_pull_requests_write_nothing_and_say_so(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    log = Lines()
    outcome = reporter(env, repo, log, from_fork=True).finish(two_clusters())
    assert state(admin, repo)["requests"] == []
    assert outcome.fallback == "pull request from a fork"
    assert any("comes from a fork" in s for s in log.summaries)
    assert any("| fib-big |" in s for s in log.summaries)  # the results are still in the job summary


def test_without_check_run_permission_a_commit_status_per_cluster_is_written(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    admin.post("/_standin/permissions", json={"repo": repo, "checks": "read"})
    outcome = reporter(env, repo).finish(two_clusters())
    st = state(admin, repo)
    assert st["check_runs"] == []
    latest = {s["context"]: s for s in st["statuses"]}
    assert {c: s["state"] for c, s in latest.items()} == {
        "hpcci / frontera": "success",
        "hpcci / perlmutter": "failure",
    }
    assert latest["hpcci / perlmutter"]["description"].startswith("failure: 1/2 smoke tests passed")
    assert outcome.written == {"frontera": "status", "perlmutter": "status"}


def test_a_read_only_token_is_not_a_failure(env: dict[str, str], repo: str, admin: httpx.Client) -> None:
    admin.post("/_standin/permissions", json={"repo": repo, "read_only": True})
    log = Lines()
    outcome = reporter(env, repo, log).finish(two_clusters())
    assert all(w.startswith("skipped") for w in outcome.written.values())
    assert any("read-only" in s for s in log.summaries)


def test_the_pr_comment_is_updated_in_place(env: dict[str, str], repo: str, admin: httpx.Client) -> None:
    for _ in range(2):
        reporter(env, repo, pr_number=7, pr_comment=True).finish(two_clusters())
    (comment,) = state(admin, repo)["comments"]
    assert "hpcci-report" in comment["body"] and "| fib-big |" in comment["body"]


def test_a_github_app_can_report(
    env: dict[str, str], repo: str, admin: httpx.Client, github_app: GitHubApp
) -> None:
    app_id, pem = github_app.app_id, github_app.private_key_pem
    client = RestGitHub(env["GITHUB_API_URL"], repo, AppAuth(app_id, pem), policy=FAST)
    Reporter(client, Target(sha=SHA, run_key="3"), Lines()).finish(two_clusters())
    assert len(state(admin, repo)["check_runs"]) == 2


def test_what_a_github_app_writes_is_its_bot_users(
    env: dict[str, str], repo: str, github_app: GitHubApp
) -> None:
    client = RestGitHub(
        env["GITHUB_API_URL"], repo, AppAuth(github_app.app_id, github_app.private_key_pem), policy=FAST
    )
    written = client.create_comment(7, "hello")
    assert client.bot_login() == "hpcci-standin[bot]" == written["user"]["login"]
    token = RestGitHub(env["GITHUB_API_URL"], repo, TokenAuth(env["GITHUB_TOKEN"]), policy=FAST)
    assert token.create_comment(7, "hi")["user"]["login"] == token.bot_login() == "github-actions[bot]"


def test_the_command_reports_from_the_results_file(
    env: dict[str, str], repo: str, admin: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    for name, value in {
        "GITHUB_REPOSITORY": repo,
        "GITHUB_SHA": SHA,
        "GITHUB_RUN_ID": "4004",
        "GITHUB_EVENT_NAME": "workflow_dispatch",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_WORKSPACE": str(REPO_ROOT),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GITHUB_EVENT_PATH", raising=False)
    results = Results(
        image="127.0.0.1:5000/octo-org/fibonacci",
        sha=SHA,
        clusters=[cluster("local", smoke("fib", "timed_out", "TIMEOUT", None, cluster="local", line=None))],
    )
    records.write(results, tmp_path / "results.json")
    base = ["report", "-c", str(EXAMPLE), "--records", str(tmp_path)]
    assert cli.main([*base, "--phase", "start"]) == 0
    (run,) = state(admin, repo)["check_runs"]
    assert run["status"] == "in_progress" and run["external_id"] == "hpcci:local@4004"
    assert cli.main(base) == 0
    (run,) = state(admin, repo)["check_runs"]
    assert (run["status"], run["conclusion"]) == ("completed", "timed_out")
    (a,) = run["annotations"]
    fib_line = EXAMPLE.read_text(encoding="utf-8").splitlines().index("  - name: fib") + 1
    assert (
        a["path"] == "examples/fibonacci/hpcci.yaml" and a["start_line"] == fib_line
    )  # from the config loader
    assert "| fib | linux/amd64 | 5150 | TIMEOUT |" in summary.read_text(encoding="utf-8")


def test_the_command_cancels_an_open_check_run_after_a_cancelled_job(
    env: dict[str, str], repo: str, admin: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_REPOSITORY", repo)
    monkeypatch.setenv("GITHUB_RUN_ID", "5005")
    monkeypatch.delenv("GITHUB_EVENT_PATH", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    base = ["report", "-c", str(EXAMPLE), "--records", str(tmp_path), "--cluster", "local"]
    base += ["--event", "workflow_dispatch", "--sha", SHA]
    assert cli.main([*base, "--phase", "start"]) == 0
    assert cli.main([*base, "--phase", "crash", "--job-status", "cancelled"]) == 0
    (run,) = state(admin, repo)["check_runs"]
    assert (run["status"], run["conclusion"]) == ("completed", "cancelled")


def test_the_command_starts_nothing_for_events_that_do_not_deploy(
    env: dict[str, str], repo: str, admin: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_REPOSITORY", repo)
    monkeypatch.delenv("GITHUB_EVENT_PATH", raising=False)
    base = ["report", "-c", str(EXAMPLE), "--records", str(tmp_path), "--event", "push", "--sha", SHA]
    assert cli.main([*base, "--ref", "refs/heads/main", "--phase", "start"]) == 0
    assert state(admin, repo)["requests"] == []


# Captured from a real `hpcci deploy` of the fibonacci example on the local stack's Slurm cluster (apptainer there
# is a stand-in); only the line breaks differ.
REAL_RESULTS = r"""
{
  "schema": 1,
  "image": "fib-amd64.tar",
  "clusters": [
    {
      "cluster": "local",
      "platform": "linux/amd64",
      "tests": [
        {
          "cluster": "local",
          "test": "fib",
          "platform": "linux/amd64",
          "job_id": "31",
          "state": "COMPLETED",
          "exit_code": 0,
          "elapsed_s": 0.0,
          "verdict": "pass",
          "reason": "exited with code 0 and the output matches '^55$'",
          "output_tail": "55\n",
          "source_file": "hpcci.yaml",
          "source_line": 30
        }
      ],
      "image_digest": "sha256:8aceb2c21cf73997e9ca971d9acf03eb2b4e6e3cf2c27cfe70fca0151f64906e",
      "tar_sha256": "bb73a264f1ab9ec6743556f7604076b3d58a54d9b71b6ed521a8e07210a21e88",
      "sif_path": "/var/lib/hpcci-stack/cluster/scratch/hpcci/hpcci/images/8aceb2c21cf73997e9ca971d9acf03eb2b4e6e3cf2c27cfe70fca0151f64906e.sif",
      "error": null
    }
  ],
  "ref": "",
  "sha": ""
}
"""


def test_real_results_from_the_local_cluster_complete_with_success(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    results = records.from_json(Results, REAL_RESULTS, source="captured results")
    reporter(env, repo).start([("local", "linux/amd64")])
    reporter(env, repo).finish(results, ["local"])
    (run,) = state(admin, repo)["check_runs"]
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert run["output"]["title"] == "1/1 smoke tests passed on local (linux/amd64)"
    assert "| fib | linux/amd64 | 31 | COMPLETED | 0 |" in run["output"]["summary"]
    assert run["output"].get("text") is None and run["annotations"] == []


def test_a_rate_limit_longer_than_the_bound_fails_at_once_with_what_to_do(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    from hpcci.backends.github.client import GitHubRequestError

    admin.post("/_standin/faults", json={"path": f"/repos/{repo}/*", "status": 429, "retry_after": 3600})
    with pytest.raises(GitHubRequestError, match=r"GitHub asks to wait 3600s.*re-run the job later"):
        reporter(env, repo).finish(two_clusters())


def test_a_github_that_does_not_answer_fails_the_request_instead_of_hanging(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    from hpcci.backends.github.client import GitHubRequestError

    admin.post("/_standin/faults", json={"path": f"/repos/{repo}/*", "status": 200, "delay": 3, "count": 5})
    impatient = RestGitHub(
        env["GITHUB_API_URL"],
        repo,
        TokenAuth(env["GITHUB_TOKEN"]),
        policy=RetryPolicy(attempts=2, backoff=0.05, timeout=0.5),
    )
    with pytest.raises(GitHubRequestError, match=r"no answer within 0\.5s"):
        impatient.check_runs_for_ref(SHA, "hpcci / local")


def test_a_lost_create_on_a_rerun_is_not_mistaken_for_the_old_check_run(
    env: dict[str, str], repo: str, admin: httpx.Client
) -> None:
    reporter(env, repo).finish(two_clusters())  # attempt 1: perlmutter completed as failure
    fixed = Results(image="i", sha=SHA, clusters=[cluster("perlmutter", smoke("fib", cluster="perlmutter"))])
    admin.post(
        "/_standin/faults", json={"method": "POST", "path": f"/repos/{repo}/check-runs", "status": 502}
    )
    reporter(env, repo).finish(fixed)  # attempt 2: the first create is refused with a 502 (not applied)
    listed = admin.get(f"/repos/{repo}/commits/{SHA}/check-runs", params={"check_name": "hpcci / perlmutter"})
    assert [r["conclusion"] for r in listed.json()["check_runs"]] == ["success"]
