"""The deploy journal, the run's identity on its jobs, the re-attach decision and the queue budget (all pure)."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from test_deploy_follow import Clock, Script, st
from test_deploy_steps import SHA, RecordingRemote
from test_sbatch_scripts import DIGEST, FIB, PATHS, local_cluster, pipeline

from hpcci.backends.schedulers import slurm, slurm_directives
from hpcci.backends.schedulers.jobs import Found, RemoteJobs
from hpcci.backends.schedulers.model import JobSpec
from hpcci.config.models import PollConfig, SmokeTest
from hpcci.errors import ConfigError, SchedulerError, UsageError
from hpcci.process import Completed
from hpcci.stages.deploy import journal as jn
from hpcci.stages.deploy.execute import Deployer
from hpcci.stages.deploy.identity import MAX_JOB_NAME, RunIdentity, labelled, run_identity
from hpcci.stages.deploy.journal import Entry, Journal, choose, reattach
from hpcci.stages.deploy.plan import plan_cluster
from hpcci.stages.deploy.reattach import find_reattached
from hpcci.stages.deploy.smoke import Circumstances, follow, judge
from hpcci.stages.sources import ImageSource

RUN = RunIdentity("octo-org/app", "gh-77", "1")


def entry(job_id: str, *, cluster: str = "local", run: str = "gh-77", key: str = "fib") -> Entry:
    return Entry(cluster, "test", key, job_id, RUN.test_job_name(cluster, key), "linux/amd64", DIGEST,
                 f"/s/runs/{run}/{key}.out", "octo-org/app", run, "1", 1.0)  # fmt: skip


# -- the journal on disk -------------------------------------------------------------------------------------------


def test_entries_survive_a_reread_and_another_runs_are_dropped(tmp_path: Path) -> None:
    other = Journal(tmp_path, RunIdentity("octo-org/app", "gh-1"))
    other.add(entry("7", run="gh-1"))
    mine = Journal(tmp_path, RUN)
    assert mine.entries("local") == []  # another run's job is never re-attached
    mine.add(entry("8"))
    mine.add(entry("9", cluster="big"))
    assert [e.job_id for e in Journal(tmp_path, RUN).entries("local")] == ["8"]
    assert [e.job_id for e in mine.entries("big")] == ["9"]
    assert other.entries("local") == []  # the reused workspace's old run is gone from the file
    data = json.loads((tmp_path / jn.JOURNAL_FILE).read_text())
    assert data["version"] == jn.VERSION and len(data["jobs"]) == 2


def test_every_cluster_thread_s_entries_are_kept(tmp_path: Path) -> None:
    j = Journal(tmp_path, RUN)
    threads = [threading.Thread(target=j.add, args=(entry(str(i), cluster=f"c{i}"),)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(int(e.job_id) for c in range(12) for e in j.entries(f"c{c}")) == list(range(12))


def test_a_failed_write_keeps_the_old_journal_whole_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = Journal(tmp_path, RUN)
    j.add(entry("8"))
    before = (tmp_path / jn.JOURNAL_FILE).read_text()

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        j.add(entry("9"))
    assert (tmp_path / jn.JOURNAL_FILE).read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [jn.JOURNAL_FILE]


@pytest.mark.parametrize(
    "text", ["{not json", '{"version": 99, "jobs": []}', '{"version": 1, "jobs": [{"x": 1}]}']
)
def test_a_damaged_journal_is_one_line_that_says_what_to_do(tmp_path: Path, text: str) -> None:
    (tmp_path / jn.JOURNAL_FILE).write_text(text)
    with pytest.raises(UsageError, match="remove"):
        Journal(tmp_path, RUN).entries("local")


# -- the identity ----------------------------------------------------------------------------------------------------


def test_the_label_is_per_repository_run_and_cluster_but_not_attempt() -> None:
    a = RUN.label("local")
    assert a.startswith("hpcci-") and len(a) == 16
    assert RunIdentity("octo-org/app", "gh-77", "2").label("local") == a  # a re-run finds attempt 1's jobs
    assert len({a, RUN.label("big"), RunIdentity("octo-org/other", "gh-77").label("local"),
                RunIdentity("octo-org/app", "gh-78").label("local")}) == 4  # fmt: skip
    assert RUN.test_job_name("local", "fib") == f"{a}-fib"


def test_long_test_names_stay_within_the_limit_and_distinct() -> None:
    one, two = (RUN.test_job_name("local", "t" * 150 + s) for s in ("a", "b"))
    assert len(one) == len(two) == MAX_JOB_NAME and one != two


def test_the_run_is_the_run_id_else_the_github_run_without_its_attempt() -> None:
    env = {"GITHUB_RUN_ID": "77", "GITHUB_RUN_ATTEMPT": "3"}
    assert run_identity("mine", "x", "r", env) == RunIdentity("r", "mine", "3")
    assert run_identity(None, "x", "r", env) == RunIdentity("r", "gh-77", "3")
    assert run_identity(None, "20260101T000000-42", "r", {}) == RunIdentity(
        "r", "20260101T000000-42", "1", fresh=True
    )


def test_the_job_carries_the_identity_in_quoted_directives() -> None:
    spec = JobSpec(
        job_name="hpcci-fib", output="/s/fib.out", comment="hpcci smoke test 'fib' on cluster local"
    )
    text = slurm.render_script(labelled(spec, RunIdentity('o/"q"', "gh-77"), "local"))
    lines = [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]
    label = RunIdentity('o/"q"', "gh-77").label("local")
    assert f'#SBATCH --job-name="{label}-fib"' in lines
    assert '#SBATCH --comment="hpcci run gh-77 (attempt 1) of o/\\"q\\" on local: ' \
        "hpcci smoke test 'fib' on cluster local\"" in lines  # fmt: skip
    with pytest.raises(ConfigError, match="line break"):
        slurm_directives.directives(JobSpec(job_name="j", output="o", comment="a\nb"))


# -- finding jobs on the cluster -------------------------------------------------------------------------------------


def test_find_argv_asks_for_the_user_s_jobs_by_exact_name() -> None:
    assert slurm.find_queue_argv("ci", ["a", "b"]) == [
        "squeue", "--noheader", "--user=ci", "--name=a,b", "--format=%i|%j|%T|%Z"]  # fmt: skip
    history = slurm.find_history_argv("ci", ["a"])
    assert "--name=a" in history and "--user=ci" in history and "--starttime=now-30days" in history
    with pytest.raises(SchedulerError):
        slurm.find_queue_argv("ci", ["a,b"])


def test_parse_found_reads_squeue_and_sacct_rows() -> None:
    text = (
        "12|hpcci-x-fib|RUNNING|/s/runs/r|a\n13|hpcci-x-fib|CANCELLED by 1000|/s\n13.batch|x|COMPLETED|/s\n"
    )
    assert slurm.parse_found(text) == [
        ("12", "hpcci-x-fib", "running", "/s/runs/r|a"),
        ("13", "hpcci-x-fib", "cancelled", "/s"),
    ]


# -- the re-attach decision ------------------------------------------------------------------------------------------


def test_a_live_job_is_followed_before_one_that_completed_and_the_newest_of_each() -> None:
    found = [Found("10", "n", "completed"), Found("11", "n", "running"), Found("9", "n", "pending"),
             Found("12", "n", "completed")]  # fmt: skip
    assert choose(found) == Found("11", "n", "running")
    assert choose([Found("10", "n", "completed"), Found("12", "n", "completed")]) == Found(
        "12", "n", "completed"
    )


@pytest.mark.parametrize("status", ["failed", "timeout", "cancelled", "oom", "infra", "unknown"])
def test_a_job_that_did_not_complete_is_submitted_again(status: Any) -> None:
    assert reattach(["n"], [Found("10", "n", status)]) == {}


def test_only_the_missing_tests_are_submitted() -> None:
    found = [Found("1", "a", "running"), Found("2", "b", "failed"), Found("3", "other", "running")]
    assert reattach(["a", "b", "c"], found) == {"a": Found("1", "a", "running")}


class Cluster(RecordingRemote):
    """A login node whose squeue knows some jobs (by id and by name)."""

    def __init__(self, queue: str, history: str = "") -> None:
        super().__init__()
        self.queue, self.history = queue, history

    def run(self, argv: Sequence[str], **kw: object) -> Completed:
        for word, answer in (("squeue", self.queue), ("sacct", self.history)):
            if word in argv[-1] or argv[0] == word:
                self.done.append(["run", *argv])
                return Completed(tuple(argv), 0, answer, "")
        return super().run(argv, **kw)


def deployer(tmp_path: Path, remote: RecordingRemote) -> tuple[Deployer, Any]:
    pipe = pipeline(FIB, {**FIB, "name": "two"})
    d = Deployer(pipe, local_cluster(), remote, slurm, run_id="r1", info=lambda _m: None,  # type: ignore[arg-type]
                 journal=Journal(tmp_path, RUN))  # fmt: skip
    source = ImageSource("linux/amd64", DIGEST, tar_sha256=SHA, local_tar="/t.tar")
    plan = plan_cluster(pipe, d.cluster, {"linux/amd64": source}, PATHS, "r1", slurm, RUN)
    return d, plan


def test_each_job_id_is_journaled_when_the_scheduler_answers(tmp_path: Path) -> None:
    d, plan = deployer(tmp_path, RecordingRemote())
    staged = {p: d.stage_image(i) for p, i in plan.images.items()}
    jobs, _ = d.submit_tests(plan, staged)
    (fib, two) = Journal(tmp_path, RUN).entries("local")
    assert (fib.job_id, fib.key, fib.job_name, fib.image_digest) == (
        "4242",
        "fib",
        RUN.test_job_name("local", "fib"),
        DIGEST,
    )
    assert f'--job-name="{fib.job_name}"' in plan.tests[0].script  # the name the journal has is the job's
    assert (two.key, two.output) == ("two", plan.tests[1].output_path) and jobs == {0: "4242", 1: "4242"}


def test_a_rerun_follows_the_live_job_from_the_journal_and_submits_the_rest(tmp_path: Path) -> None:
    Journal(tmp_path, RUN).add(entry("500"))
    remote = Cluster("500|RUNNING|None|0:05|node1\n")  # squeue by job id
    d, plan = deployer(tmp_path, remote)
    attached = find_reattached(d, plan)
    assert attached.where == "the journal" and {i: f.job_id for i, f in attached.tests.items()} == {0: "500"}
    jobs, _ = d.submit_tests(plan, {}, attached)
    assert jobs == {0: "500", 1: "4242"}
    assert sum(c[0] == "run" and "sbatch --parsable" in " ".join(c) for c in remote.done) == 1


def test_without_a_journal_the_jobs_are_found_by_name_and_journaled_again(tmp_path: Path) -> None:
    name = RUN.test_job_name("local", "two")
    remote = Cluster(f"600|{name}|PENDING|/s/runs/gh-77-1\n")
    d, plan = deployer(tmp_path, remote)
    attached = find_reattached(d, plan)
    assert attached.where == "the cluster" and {i: f.job_id for i, f in attached.tests.items()} == {1: "600"}
    asked = next(c for c in remote.done if "squeue" in c[-1])
    assert f"--name={RUN.test_job_name('local', 'fib')},{name}" in asked[-1] and "--user=" in asked[-1]
    (again,) = Journal(tmp_path, RUN).entries("local")
    assert (again.job_id, again.output) == ("600", "/s/runs/gh-77-1/two.out")


def test_a_journaled_job_of_another_image_is_not_followed(tmp_path: Path) -> None:
    Journal(tmp_path, RUN).add(dataclasses.replace(entry("500"), image_digest="sha256:" + "9" * 64))
    remote = Cluster("500|COMPLETED|None|0:05|node1\n")
    d, plan = deployer(tmp_path, remote)
    assert find_reattached(d, plan).tests == {}


def test_a_finished_job_found_only_by_name_is_not_followed(tmp_path: Path) -> None:
    name = RUN.test_job_name("local", "two")
    remote = Cluster(f"600|{name}|COMPLETED|/s/runs/gh-77-1\n")  # it may have tested another image
    d, plan = deployer(tmp_path, remote)
    assert find_reattached(d, plan).tests == {}


# -- the queue budget --------------------------------------------------------------------------------------------


def test_a_job_pending_past_the_budget_is_cancelled_and_judged_neutral_with_its_reason() -> None:
    script = Script([{"1": st("1", slurm.PENDING, reason="Priority")}])
    clock = Clock()
    out = follow(script, ["1"], poll=PollConfig(initial=1, max=4), deadline=100, info=lambda m: None,
                 clock=clock, sleep=clock.sleep, rand=lambda: 0.5, queue_budget=10, queue_budget_text="00:10")  # fmt: skip
    assert script.cancelled[0] == "1" and out.queue_wait == {"1": "Priority"} and 10 <= clock.now < 15
    verdict = judge(SmokeTest(name="t", command="true"), out.states["1"], "", Circumstances())
    assert verdict.verdict == "infra" and "queue wait exceeded, jobs pending: Priority" in verdict.reason


def test_waiting_for_the_conversion_job_does_not_count_against_the_budget() -> None:
    waiting = {"1": st("1", slurm.PENDING, reason="Dependency")}
    script = Script([waiting] * 20 + [{"1": st("1", slurm.COMPLETED, exit_code=0)}])
    clock = Clock()
    out = follow(script, ["1"], poll=PollConfig(initial=1, max=4), deadline=1000, info=lambda m: None,
                 clock=clock, sleep=clock.sleep, rand=lambda: 0.5, queue_budget=10)  # fmt: skip
    assert not script.cancelled and out.states["1"].status == "completed" and clock.now > 10


def test_a_made_up_run_id_looks_for_nothing_on_the_cluster(tmp_path: Path) -> None:
    remote = Cluster("")
    pipe = pipeline(FIB)
    fresh = Journal(tmp_path, RunIdentity("o/a", "20260101T000000-42", fresh=True))
    d = Deployer(pipe, local_cluster(), remote, slurm, run_id="r1", info=lambda _m: None, journal=fresh)  # type: ignore[arg-type]
    source = ImageSource("linux/amd64", DIGEST, tar_sha256=SHA, local_tar="/t.tar")
    plan = plan_cluster(pipe, d.cluster, {"linux/amd64": source}, PATHS, "r1", slurm)
    assert find_reattached(d, plan).tests == {} and remote.done == []


def test_the_deploy_action_cancels_the_run_s_jobs_after_a_failure_or_cancel_unless_told_to_leave_them() -> (
    None
):
    import yaml

    action = yaml.safe_load((Path(__file__).resolve().parents[2] / "actions/deploy/action.yml").read_text())
    (step,) = [s for s in action["runs"]["steps"] if "deploy --cancel" in s.get("run", "")]
    assert "(cancelled() || failure())" in step["if"] and "inputs.leave-jobs != 'true'" in step["if"]
    assert action["inputs"]["leave-jobs"]["default"] == "false"
    assert "HPCCI_SECRETS" in step["env"]  # the cluster's key reaches it like the deploy's
    assert action["runs"]["steps"][-1] is step  # after the deploy step, whatever it did


def test_a_crash_cancels_the_journaled_jobs_still_queued_or_running(tmp_path: Path) -> None:
    j = Journal(tmp_path, RUN)
    for job_id in ("500", "501", "502"):
        j.add(entry(job_id))
    queue = "500|RUNNING|None|0:05|node1\n501|PENDING|Priority|0:00|\n"
    remote = Cluster(queue, history="502|COMPLETED|0:0|00:00:01||node1\n")  # 502 left the queue
    jobs = RemoteJobs(remote, slurm, [])  # type: ignore[arg-type]
    assert jn.cancel_live(jobs, j, "local", ["fib"], "ci") == (["500", "501"], "the journal")
    assert any(c[0] == "run" and "scancel 500 501" in " ".join(c) for c in remote.done)


def test_without_a_journal_a_crash_cancels_the_run_s_jobs_found_by_name(tmp_path: Path) -> None:
    name = RUN.test_job_name("local", "fib")
    remote = Cluster(f"700|{name}|RUNNING|/s/runs/gh-77\n")
    jobs = RemoteJobs(remote, slurm, [])  # type: ignore[arg-type]
    assert jn.cancel_live(jobs, Journal(tmp_path, RUN), "local", ["fib"], "ci") == (["700"], "the cluster")
    assert not any("sacct" in " ".join(c) for c in remote.done)  # only the live ones matter: the queue
