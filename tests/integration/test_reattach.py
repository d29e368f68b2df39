"""Re-attach, crash cancel and the queue budget on the local stack: a deploy SIGKILLed while it follows its job.

- killed and run again for the same run: the same Slurm job is followed (sacct counts one job of that name);
- killed, its journal removed, run again: the job is found on the cluster by name; killed again, then
  `hpcci report --phase crash` cancels it (sacct says CANCELLED) and completes the one check run;
- a job kept pending (``--begin=now+1hour``: Slurm's own BeginTime reason) past scheduler.max_queue_wait is
  cancelled and judged neutral with that reason.

Every job a test submitted is cancelled in its teardown, whatever the outcome.
Needs `scripts/local-stack up docker registry cluster github`; skips without them (fails under CI=true).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_support import Project, cluster_config, login, on_login, unique, wait_for

from hpcci import records
from hpcci.backends.ssh.remote import SSHRemote
from hpcci.process import run
from hpcci.stages.deploy.identity import RunIdentity
from hpcci.stages.deploy.journal import JOURNAL_FILE
from hpcci.stages.report.text import conclude

SHA = "c0ffee00" * 5


def sleeper(seconds: int) -> dict[str, Any]:
    return {"name": "slow", "command": ["python3", "-c", f"import time; time.sleep({seconds}); print('slept')"],
            "expect": {"output": "^slept$"}, "resources": {"time": "00:10:00", "memory": "256M"}}  # fmt: skip


@pytest.fixture
def remote() -> Iterator[SSHRemote]:
    r = login()
    yield r
    r.close()


@pytest.fixture
def repo(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A repository of its own on the GitHub stand-in; the deploys and reports of the test run as that one."""
    name = f"octo-org/r-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("GITHUB_REPOSITORY", name)
    for var in (
        "GITHUB_RUN_ID",
        "GITHUB_RUN_ATTEMPT",
        "GITHUB_EVENT_PATH",
        "GITHUB_STEP_SUMMARY",
        "GITHUB_ACTIONS",
    ):
        monkeypatch.delenv(var, raising=False)
    return name


@pytest.fixture
def submitted(remote: SSHRemote) -> Iterator[set[str]]:
    """Job ids a test saw submitted: cancelled afterwards (only these: the cluster is shared)."""
    ids: set[str] = set()
    yield ids
    if ids:
        on_login(remote, ["scancel", *sorted(ids)])


def start(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hpcci", "deploy", *args],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def journal(project: Project) -> list[dict[str, Any]]:
    path = project.records / JOURNAL_FILE
    return json.loads(path.read_text())["jobs"] if path.exists() else []


def job_state(remote: SSHRemote, job_id: str) -> str:
    done = on_login(remote, ["sacct", "-X", "-n", "-P", f"--jobs={job_id}", "--format=State"])
    return done.stdout.strip().split()[0] if done.stdout.strip() else ""


def jobs_named(remote: SSHRemote, name: str) -> list[str]:
    """Every job of that name the accounting knows (finished ones too)."""
    argv = [
        "sacct",
        "-X",
        "-n",
        "-P",
        "--user=hpcci",
        f"--name={name}",
        "--starttime=now-1days",
        "--format=JobIDRaw",
    ]
    return on_login(remote, argv).stdout.split()


def kill_when_running(proc: subprocess.Popen[str], project: Project, remote: SSHRemote, ids: set[str]) -> str:
    """SIGKILL the deploy once its test job runs (the journal has its id); returns the id."""

    def running() -> str | None:
        entries = [e for e in journal(project) if e["kind"] == "test"]
        if entries and job_state(remote, entries[0]["job_id"]) == "RUNNING":
            return str(entries[0]["job_id"])
        return None

    try:
        job_id: str = wait_for(running, timeout=300, interval=1)
    finally:
        ids.update(str(e["job_id"]) for e in journal(project))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    return job_id


def deploy(project: Project, tar: Path, run_id: str, timeout: float = 600) -> Any:
    return run([sys.executable, "-m", "hpcci", "deploy", "--image-tar", str(tar), "--run-id", run_id],
               timeout=timeout, check=False, cwd=str(project.root))  # fmt: skip


def test_a_killed_deploy_run_again_follows_the_same_job(
    fib_tar: Path, project: Callable[..., Project], remote: SSHRemote, repo: str, submitted: set[str]
) -> None:
    proj = project([sleeper(25)])
    run_id = unique("reattach")
    job_id = kill_when_running(
        start(proj, "--image-tar", str(fib_tar), "--run-id", run_id), proj, remote, submitted
    )
    (entry,) = journal(proj)
    name = RunIdentity(repo, run_id).test_job_name("local", "slow")
    assert (entry["job_name"], entry["run"], entry["repo"]) == (name, run_id, repo)

    again = deploy(proj, fib_tar, run_id)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    assert f"re-attached to job {job_id} (running) of test slow from the journal" in out
    assert "submitted as job" not in out
    (slow,) = proj.results()["clusters"][0]["tests"]
    assert (slow["job_id"], slow["verdict"]) == (job_id, "pass")
    assert jobs_named(remote, name) == [job_id]  # one submission in the accounting, not two


def test_without_the_journal_the_job_is_found_on_the_cluster_and_a_crash_cancels_it(
    fib_tar: Path,
    project: Callable[..., Project],
    remote: SSHRemote,
    repo: str,
    submitted: set[str],
    stack_env: dict[str, str],
) -> None:
    proj = project([sleeper(600)])
    run_id = unique("crash")
    report = [sys.executable, "-m", "hpcci", "report", "--event", "workflow_dispatch", "--sha", SHA,
              "--cluster", "local", "--run-id", run_id]  # fmt: skip
    opened = run([*report, "--phase", "start"], timeout=120, check=False, cwd=str(proj.root))
    assert opened.returncode == 0, opened.stderr
    job_id = kill_when_running(
        start(proj, "--image-tar", str(fib_tar), "--run-id", run_id), proj, remote, submitted
    )
    (proj.records / JOURNAL_FILE).unlink()

    again = start(proj, "--image-tar", str(fib_tar), "--run-id", run_id)
    try:
        wait_for(
            lambda: journal(proj), timeout=300, interval=1
        )  # re-attached: the journal knows the job again
    finally:
        again.send_signal(signal.SIGKILL)
        out, _ = again.communicate(timeout=60)
    assert f"re-attached to job {job_id} (running) of test slow from the cluster" in out
    assert [e["job_id"] for e in journal(proj)] == [job_id]
    (proj.records / JOURNAL_FILE).unlink()  # the crash report finds it by name too

    crash = run(
        [*report, "--phase", "crash", "--job-status", "failure"], timeout=300, check=False, cwd=str(proj.root)
    )
    assert crash.returncode == 0, crash.stderr
    assert f"cluster local: cancelled {job_id}" in crash.stderr + crash.stdout
    wait_for(lambda: job_state(remote, job_id).startswith("CANCELLED"), timeout=60)
    name = RunIdentity(repo, run_id).test_job_name("local", "slow")
    assert jobs_named(remote, name) == [job_id]
    state = httpx.get(
        f"{stack_env['GITHUB_API_URL']}/_standin/state",
        params={"repo": repo},
        headers={"Authorization": f"Bearer {stack_env['GITHUB_TOKEN']}"},
        timeout=30,
    ).json()
    (check,) = state["check_runs"]
    assert check["status"] == "completed" and check["name"] == "hpcci / local"


def test_a_job_pending_past_the_queue_budget_is_cancelled_and_neutral(
    fib_tar: Path, project: Callable[..., Project], remote: SSHRemote, repo: str, submitted: set[str]
) -> None:
    config = cluster_config(
        **{"scheduler.max_queue_wait": "00:15", "scheduler.directives": ["--begin=now+1hour"]}
    )
    proj = project([sleeper(1)], cluster=config)
    done = deploy(proj, fib_tar, unique("queue"))
    submitted.update(str(e["job_id"]) for e in journal(proj))
    out = done.stdout + done.stderr
    (slow,) = proj.results()["clusters"][0]["tests"]
    assert done.returncode != 0 and slow["verdict"] == "infra", out
    assert "queue wait exceeded, jobs pending: BeginTime" in slow["reason"]
    wait_for(lambda: job_state(remote, slow["job_id"]).startswith("CANCELLED"), timeout=60)
    results = records.read(records.Results, proj.records / "results.json")
    concluded = conclude(results.clusters[0])  # what the check run says
    assert concluded.conclusion == "neutral" and "jobs pending: BeginTime" in concluded.reason
