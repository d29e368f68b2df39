"""A job's steps and its settled record, from real sacct output of the local stack (tests/unit/data/slurm): a failed
srun step fails the test although the batch script went on (issue 20 item 2), FAILED 0:53 says the output file could
not be opened, and the Nodes column names the whole allocation, not the batch host sacct lists at first (item 11).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hpcci.accounting import job_usage
from hpcci.backends.schedulers import slurm
from hpcci.backends.schedulers.jobs import SETTLE_ROUNDS, RemoteJobs
from hpcci.backends.schedulers.model import JobStep
from hpcci.backends.schedulers.slurm_accounting import host_count
from hpcci.config.models import SmokeTest
from hpcci.process import Completed
from hpcci.stages.deploy.smoke import judge

DATA = Path(__file__).parent / "data" / "slurm"
STEPS = (DATA / "sacct_steps.txt").read_text()
PLAIN = SmokeTest.model_validate({"name": "t", "command": "true"})


def test_sacct_without_x_attaches_each_srun_step_to_its_job() -> None:
    jobs = slurm.parse_history(STEPS)
    assert list(jobs) == ["2", "3", "4"]  # steps are not jobs of their own
    assert jobs["2"].state == slurm.COMPLETED and jobs["2"].exit_code == 0
    assert jobs["2"].steps == (JobStep("0", "sh", "FAILED", "failed", 3, None),)  # .batch is the job's own
    assert [s.step_id for s in jobs["2"].failed_steps] == ["0"]
    assert jobs["4"].steps == (JobStep("0", "hostname", "COMPLETED", "completed", 0, None),)
    assert not jobs["4"].failed_steps and jobs["4"].derived_exit_code == 0


def test_a_failed_step_hidden_by_a_later_command_fails_the_test_and_names_the_step() -> None:
    v = judge(PLAIN, slurm.parse_history(STEPS)["2"], "in step\ncleanup\n")
    assert v.verdict == "fail", v
    assert "job step 2.0 (sh) failed with exit code 3" in v.reason, v.reason
    assert "batch script exited with code 0" in v.reason


def test_a_job_whose_steps_all_succeeded_passes() -> None:
    assert judge(PLAIN, slurm.parse_history(STEPS)["4"], "node1\nnode2\n").verdict == "pass"


def test_a_wrong_exit_code_names_the_failed_step_too() -> None:
    text = STEPS.replace("2|COMPLETED|0:0|", "2|FAILED|1:0|", 1)
    v = judge(PLAIN, slurm.parse_history(text)["2"], "")
    assert "exited with code 1, expected 0; job step 2.0 (sh) failed with exit code 3" in v.reason, v.reason


def test_a_step_exiting_with_the_expected_code_is_what_the_test_expects() -> None:
    test = SmokeTest.model_validate({"name": "t", "command": "false", "expect": {"exit_code": 3}})
    text = STEPS.replace("2|COMPLETED|0:0|", "2|FAILED|3:0|", 1)
    assert judge(test, slurm.parse_history(text)["2"], "").verdict == "pass"


def test_without_step_lines_the_steps_highest_exit_code_still_fails_the_test() -> None:
    job_line = STEPS.splitlines()[0].replace("|0:0|h20a-step", "|3:0|h20a-step")
    v = judge(PLAIN, slurm.parse_history(job_line + "\n")["2"], "")
    assert v.verdict == "fail" and "a job step exited with code 3" in v.reason, v.reason


def test_failed_0_53_says_slurm_could_not_open_the_output_file() -> None:
    job = slurm.parse_history(STEPS)["3"]
    assert job.signal is None and job.state == slurm.FAILED
    v = judge(PLAIN, job, "")
    assert v.verdict == "fail" and "could not open its output file" in v.reason, v.reason
    assert "signal" not in v.reason


def test_a_real_signal_is_still_a_signal() -> None:
    v = judge(PLAIN, slurm.parse_history("7|FAILED|0:9|00:00:01|None|vm\n")["7"], "")
    assert v.reason == "the job was killed by signal 9"


def test_hostlists_are_counted_as_slurm_writes_them() -> None:
    assert [host_count(t) for t in ("node1", "node[1-2]", "a[01-03,7],gpu5", "")] == [1, 2, 5, 0]


def test_the_record_sacct_gives_the_moment_a_two_node_job_ends_is_not_settled() -> None:
    early = slurm.parse_history((DATA / "sacct_unsettled.txt").read_text())["14"]
    assert early.final and early.nodes == "node1" and early.node_count == 2
    assert not early.settled
    assert slurm.parse_history(STEPS)["4"].settled


class Rounds:
    """A login node whose squeue and sacct answers change from one round to the next (real captured text)."""

    host = "login"

    def __init__(self, rounds: list[tuple[str, str]]) -> None:
        self.rounds = rounds
        self.round = -1

    def run(self, argv: Sequence[str], **kw: object) -> Completed:
        if "squeue" in argv[-1]:  # each round asks the queue first
            self.round += 1
        queue, history = self.rounds[min(self.round, len(self.rounds) - 1)]
        return Completed((), 0, queue if "squeue" in argv[-1] else history, "")


SETTLED = STEPS.replace("4|", "14|").replace("4.", "14.")
RUNNING_2 = "14|RUNNING|None|0:01|node[1-2]|2026-12-07T22:59:31|2026-12-07T22:59:31|2|2|\n"
UNSETTLED = (DATA / "sacct_unsettled.txt").read_text()


def test_a_two_node_job_is_recorded_on_both_nodes_when_sacct_first_names_one() -> None:
    remote = Rounds(
        [("", UNSETTLED), ("", SETTLED)]
    )  # a short job the queue never showed running: only sacct
    jobs = RemoteJobs(remote, slurm)  # type: ignore[arg-type]
    assert jobs.query(["14"])["14"].status == "running"  # ended, but its record names one node of two
    done = jobs.query(["14"])["14"]
    assert done.state == slurm.COMPLETED and job_usage(done).nodes == "node[1-2]"


def test_the_queue_s_node_list_is_the_allocation_and_an_unsettled_record_is_taken_in_the_end() -> None:
    remote = Rounds([(RUNNING_2, ""), ("", UNSETTLED)])  # sacct never settles
    jobs = RemoteJobs(remote, slurm)  # type: ignore[arg-type]
    states = [jobs.query(["14"])["14"] for _ in range(SETTLE_ROUNDS + 2)]
    assert [s.status for s in states[:-1]] == ["running"] * (SETTLE_ROUNDS + 1)
    assert states[-1].state == slurm.COMPLETED and states[-1].nodes == "node[1-2]"
