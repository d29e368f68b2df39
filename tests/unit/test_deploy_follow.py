"""Following jobs to their end and judging them: pure logic on captured Slurm output, with a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hpcci.backends.schedulers import slurm
from hpcci.backends.schedulers.jobs import RemoteJobs
from hpcci.backends.schedulers.model import JobState
from hpcci.config.models import PollConfig, SmokeTest
from hpcci.errors import HpcciError, SchedulerError
from hpcci.process import Completed
from hpcci.stages.deploy.smoke import Circumstances, backoff, follow, judge

DATA = Path(__file__).parent / "data" / "slurm"
POLL = PollConfig(initial=1, max=8, max_failures=2)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


class Script:
    """A scheduler whose answers are a list of rounds; an exception in the list is a failed call."""

    def __init__(self, rounds: Sequence[dict[str, JobState] | Exception]) -> None:
        self.rounds = list(rounds)
        self.queries: list[list[str]] = []
        self.cancelled: list[str] = []

    def query(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        self.queries.append(list(job_ids))
        answer = self.rounds.pop(0) if len(self.rounds) > 1 else self.rounds[0]
        if isinstance(answer, Exception):
            raise answer
        return {j: s for j, s in answer.items() if j in job_ids}

    def cancel(self, job_ids: Sequence[str]) -> bool:
        self.cancelled += job_ids
        return True


def st(job: str, state: str, **kw: Any) -> JobState:
    return slurm.job(job, state, **kw)


def run(script: Script, ids: Sequence[str], *, deadline: float = 1000, stop: threading.Event | None = None):  # type: ignore[no-untyped-def]
    clock = Clock()
    out = follow(script, ids, poll=POLL, deadline=deadline, stop=stop, info=lambda m: None, clock=clock,
                 sleep=clock.sleep, rand=lambda: 0.5, deadline_text="00:20:00")  # fmt: skip
    return out, clock


def test_all_jobs_are_polled_together_until_each_ends() -> None:
    script = Script([
        {"1": st("1", slurm.PENDING), "2": st("2", slurm.RUNNING)},
        {"1": st("1", slurm.RUNNING), "2": st("2", slurm.COMPLETED, exit_code=0)},
        {"1": st("1", slurm.FAILED, exit_code=3)},
    ])  # fmt: skip
    out, _ = run(script, ["1", "2"])
    assert script.queries == [["1", "2"], ["1", "2"], ["1"]]
    assert out.states["1"].exit_code == 3 and out.states["2"].state == slurm.COMPLETED
    assert not out.cancelled and not out.deadline_hit


def test_poll_interval_backs_off_with_jitter_up_to_the_maximum() -> None:
    rounds: list[dict[str, JobState] | Exception] = [{"1": st("1", slurm.RUNNING)}] * 8
    _, clock = run(Script([*rounds, {"1": st("1", slurm.COMPLETED)}]), ["1"])
    assert clock.sleeps == [1, 1.5, 2.25, 3.375, 5.0625, 7.59375, 8, 8]
    pause, nxt = backoff(4, POLL, lambda: 1.0)
    assert pause == pytest.approx(4.8) and nxt == 6  # +20% jitter at most


def test_a_few_failed_scheduler_calls_are_tolerated() -> None:
    flaky = SchedulerError("sacct failed: Connection refused", transient=True)
    script = Script([flaky, flaky, {"1": st("1", slurm.COMPLETED, exit_code=0)}])
    out, _ = run(script, ["1"])
    assert out.states["1"].state == slurm.COMPLETED and out.poll_failures == 2 and out.error is None


def test_too_many_failed_calls_in_a_row_cancel_the_jobs_and_say_why() -> None:
    script = Script([SchedulerError("squeue failed: timeout", transient=True)])
    out, _ = run(script, ["1"])
    assert script.cancelled == ["1"]
    assert out.error is not None and "could not be queried 3 times in a row" in out.error


def test_deadline_cancels_the_remaining_jobs_and_says_so() -> None:
    script = Script([{"1": st("1", slurm.COMPLETED, exit_code=0), "2": st("2", slurm.RUNNING)}])
    out, _ = run(script, ["1", "2"], deadline=5)
    assert out.deadline_hit and script.cancelled == ["2"]
    assert out.states["2"].state == slurm.CANCELLED
    assert out.cancelled["2"].startswith("the deploy deadline (00:20:00) passed; hpcci cancelled the job")
    assert "1" not in out.cancelled


def test_a_stop_request_cancels_the_jobs() -> None:
    stop = threading.Event()
    stop.set()
    script = Script([{"1": st("1", slurm.RUNNING)}])
    out, _ = run(script, ["1"], stop=stop)
    assert out.interrupted and script.cancelled == ["1"] and "SIGTERM/SIGINT" in out.cancelled["1"]


def test_a_job_pending_for_an_invalid_account_is_cancelled_at_once() -> None:
    script = Script([{"1": st("1", slurm.PENDING, reason="InvalidAccount")}])
    out, clock = run(script, ["1"])
    assert script.cancelled == ["1"] and clock.now == 0
    assert "account is invalid" in out.cancelled["1"]


def test_a_job_stuck_on_an_invalid_account_needs_action_and_says_what_to_fix() -> None:
    out, _ = run(Script([{"1": st("1", slurm.PENDING, reason="InvalidAccount")}]), ["1"])
    why = Circumstances(cancelled_why=out.cancelled["1"], action_required=out.action_required["1"])
    v = judge(FIB, out.states["1"], "", why)
    assert v.verdict == "action_required"
    assert "fix scheduler.account in the cluster config" in v.reason and "hpcci cancelled it" in v.reason
    assert v.reason.count("account is invalid") == 1  # said once, not again as "(before that, ...)"


def test_a_job_whose_dependency_failed_is_cancelled_not_action_required() -> None:
    out, _ = run(Script([{"1": st("1", slurm.PENDING, reason="DependencyNeverSatisfied")}]), ["1"])
    assert "1" not in out.action_required
    v = judge(FIB, out.states["1"], "", Circumstances(cancelled_why=out.cancelled["1"]))
    assert v.verdict == "cancelled"


def test_a_job_pending_on_unavailable_nodes_at_the_deadline_says_so() -> None:
    script = Script([{"1": st("1", slurm.PENDING, reason="ReqNodeNotAvail, UnavailableNodes:vm")}])
    out, _ = run(script, ["1"], deadline=3)
    assert "deadline" in out.cancelled["1"] and "nodes that are not available" in out.cancelled["1"]


def test_a_job_no_scheduler_knows_ends_as_unknown_after_a_few_rounds() -> None:
    out, _ = run(Script([{"1": st("1", slurm.UNKNOWN)}]), ["1"])
    assert out.states["1"].state == slurm.UNKNOWN


# -- RemoteJobs on Slurm: squeue then sacct, from real captured output ----------------------------------------------


class CannedRemote:
    host = "login"

    def __init__(self, answers: dict[str, Completed]) -> None:
        self.answers = answers
        self.commands: list[str] = []

    def run(self, argv: Sequence[str], **kw: object) -> Completed:
        script = argv[-1]
        self.commands.append(script)
        for word, done in self.answers.items():
            if word in script:
                return done
        raise AssertionError(script)


def ok(text: str) -> Completed:
    return Completed((), 0, text, "")


def test_jobs_that_left_the_queue_get_their_exit_code_from_sacct() -> None:
    remote = CannedRemote({
        "squeue": ok((DATA / "squeue_mixed.txt").read_text()),
        "sacct": ok((DATA / "sacct_mixed.txt").read_text()),
    })  # fmt: skip
    states = RemoteJobs(remote, slurm).query(["14", "15", "16"])  # type: ignore[arg-type]
    assert states["15"].exit_code == 3 and states["16"].state == slurm.RUNNING
    assert "--jobs=14,15" in remote.commands[1]  # only the ended jobs are asked from sacct


def test_squeue_forgetting_every_job_falls_back_to_sacct() -> None:
    remote = CannedRemote({
        "squeue": Completed((), 1, "", (DATA / "squeue_invalid_job.stderr").read_text()),
        "sacct": ok("14|COMPLETED|0:0|00:00:01|None|vm\n"),
    })  # fmt: skip
    assert RemoteJobs(remote, slurm).query(["14"])["14"].state == slurm.COMPLETED  # type: ignore[arg-type]


def test_sacct_lagging_behind_squeue_keeps_the_job_followed() -> None:
    remote = CannedRemote(
        {"squeue": ok("14|COMPLETED|None|0:00|vm\n"), "sacct": ok("14|RUNNING|0:0|00:00:01|None|vm\n")}
    )
    assert RemoteJobs(remote, slurm).query(["14"])["14"].status == "running"  # type: ignore[arg-type]


def test_sacct_unavailable_is_a_transient_failure() -> None:
    remote = CannedRemote({
        "squeue": ok("14|COMPLETED|None|0:00|vm\n"),
        "sacct": Completed((), 1, "", "sacct: error: Problem talking to the database: Connection refused\n"),
    })  # fmt: skip
    with pytest.raises(HpcciError, match="Problem talking to the database") as e:
        RemoteJobs(remote, slurm).query(["14"])  # type: ignore[arg-type]
    assert e.value.transient


# -- judging ------------------------------------------------------------------------------------------------

FIB = SmokeTest.model_validate(
    {"name": "fib", "command": "python3 /app/fib.py 10", "expect": {"output": "^55$"}}
)


def test_fibonacci_printing_55_passes() -> None:
    v = judge(FIB, st("1", slurm.COMPLETED, exit_code=0), "55\n")
    assert v.verdict == "pass"


def test_wrong_output_fails_and_shows_the_last_line() -> None:
    v = judge(FIB, st("1", slurm.COMPLETED, exit_code=0), "module loaded\n54\n")
    assert v.verdict == "fail" and "does not match '^55$'" in v.reason and "'54'" in v.reason


def test_exit_3_fails_with_its_exit_code() -> None:
    v = judge(FIB, st("1", slurm.FAILED, exit_code=3), "Traceback...\nValueError: boom\n")
    assert (
        v.verdict == "fail"
        and "exited with code 3, expected 0" in v.reason
        and "ValueError: boom" in v.reason
    )


def test_an_expected_nonzero_exit_code_passes() -> None:
    test = SmokeTest.model_validate({"name": "t", "command": "false", "expect": {"exit_code": 1}})
    assert judge(test, st("1", slurm.FAILED, exit_code=1), "").verdict == "pass"


def test_timeout_job_reports_timed_out() -> None:
    v = judge(FIB, st("1", slurm.TIMEOUT), "")
    assert v.verdict == "timed_out" and "time limit" in v.reason and "00:10:00" in v.reason


def test_a_job_slurm_marks_failed_never_passes_even_with_exit_code_0() -> None:
    failed = slurm.parse_history("7|FAILED|0:0|00:00:01|None|vm\n")["7"]  # a known Slurm pitfall
    v = judge(FIB, failed, "55\n")
    assert v.verdict == "fail" and "FAILED" in v.reason


def test_a_timed_out_job_records_no_exit_code() -> None:
    job = slurm.parse_history("8|TIMEOUT|0:0|00:10:01|None|vm\n")["8"]
    assert job.status == "timeout" and job.exit_code is None


def test_a_job_never_submitted_is_an_error_when_refused_and_skipped_otherwise() -> None:
    assert judge(FIB, None, "", Circumstances(refused="Slurm refused it")).verdict == "error"
    assert judge(FIB, None, "", Circumstances(cluster_error="unreachable")).reason == "not run: unreachable"
    assert judge(FIB, None, "").verdict == "skipped"


def test_job_cancelled_by_someone_else_reports_cancelled() -> None:
    v = judge(FIB, st("1", slurm.CANCELLED, cancelled_by="1001"), "")
    assert v.verdict == "cancelled" and "by uid 1001" in v.reason


def test_job_cancelled_by_hpcci_keeps_hpccis_reason() -> None:
    why = Circumstances(cancelled_why="the deploy deadline passed; hpcci cancelled the job")
    v = judge(FIB, st("1", slurm.CANCELLED), "", why)
    assert v == v.__class__("cancelled", "the deploy deadline passed; hpcci cancelled the job")


def test_out_of_memory_fails_and_names_the_memory_setting() -> None:
    v = judge(FIB, st("1", slurm.OUT_OF_MEMORY), "")
    assert v.verdict == "fail" and "resources.memory" in v.reason


@pytest.mark.parametrize("state", [slurm.NODE_FAIL, slurm.BOOT_FAIL, slurm.PREEMPTED])
def test_cluster_failures_are_infra_not_the_softwares_fault(state: str) -> None:
    assert judge(FIB, st("1", state), "").verdict == "infra"


def test_an_invalid_expected_pattern_is_an_error_not_a_crash() -> None:
    test = SmokeTest.model_validate({"name": "t", "command": "true", "expect": {"output": "(unclosed"}})
    assert judge(test, st("1", slurm.COMPLETED, exit_code=0), "x").verdict == "error"


def test_the_interval_starts_over_when_a_job_changes_state() -> None:
    running: dict[str, JobState] | Exception = {"1": st("1", slurm.RUNNING)}
    pending: dict[str, JobState] | Exception = {"1": st("1", slurm.PENDING)}
    script = Script([pending, pending, pending, running, running, {"1": st("1", slurm.COMPLETED)}])
    _, clock = run(script, ["1"])
    assert clock.sleeps == [1, 1.5, 2.25, 1, 1.5]
