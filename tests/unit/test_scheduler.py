"""Slurm states, argv builders and parsers, on output captured from the local stack's real Slurm 22.05."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcci.backends.schedulers import slurm, slurm_reasons
from hpcci.backends.schedulers.model import JobState
from hpcci.durations import duration_seconds
from hpcci.errors import SchedulerError

DATA = Path(__file__).parent / "data" / "slurm"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_squeue_output_gives_each_jobs_state_and_pending_reason() -> None:
    jobs = slurm.parse_queue(read("squeue_mixed.txt"))
    assert jobs["14"].state == slurm.COMPLETED
    assert jobs["15"].state == slurm.FAILED
    assert jobs["16"].state == slurm.RUNNING and jobs["16"].elapsed_s == 5 and jobs["16"].nodes == "vm"
    assert jobs["19"].state == slurm.PENDING and jobs["19"].reason == "DependencyNeverSatisfied"
    assert jobs["20"].reason == "JobHeldUser"
    assert jobs["14"].reason == ""  # 'None' means no reason


def test_sacct_output_gives_exit_codes_and_who_cancelled() -> None:
    jobs = slurm.parse_history(read("sacct_mixed.txt"))
    assert jobs["14"] == slurm.job("14", slurm.COMPLETED, exit_code=0, elapsed_s=0.0, nodes="vm")
    assert jobs["15"].state == slurm.FAILED and jobs["15"].exit_code == 3 and jobs["15"].signal is None
    assert jobs["17"].state == slurm.CANCELLED and jobs["17"].cancelled_by == "1001"
    assert jobs["19"].nodes == ""  # 'None assigned'
    assert jobs["19"].reason == "DependencyNeverSatisfied"


def test_sacct_job_steps_are_left_out() -> None:
    text = (
        "42|FAILED|1:0|00:00:02|None|vm\n42.batch|FAILED|1:0|00:00:02||vm\n42.0|COMPLETED|0:0|00:00:01||vm\n"
    )
    assert list(slurm.parse_history(text)) == ["42"]


def test_sacct_signal_is_kept_apart_from_exit_code() -> None:
    job = slurm.parse_history("7|FAILED|0:9|00:00:01|None|vm\n")["7"]
    assert job.signal == 9
    assert job.sentence() == "the job was killed by signal 9"


def test_slurm_states_map_onto_hpccis_state_model() -> None:
    assert slurm.status(slurm.TIMEOUT) == slurm.status(slurm.DEADLINE) == "timeout"
    assert slurm.status(slurm.PENDING) == "pending" and slurm.status(slurm.COMPLETING) == "running"
    assert {slurm.status(s) for s in (slurm.NODE_FAIL, slurm.BOOT_FAIL, slurm.PREEMPTED)} == {"infra"}
    assert slurm.status(slurm.FAILED) == "failed" and slurm.status(slurm.OUT_OF_MEMORY) == "oom"
    assert slurm.status("SOMETHING_NEW") == "unknown"
    assert slurm.job("1", slurm.TIMEOUT).final and not slurm.job("1", slurm.PENDING).final


@pytest.mark.parametrize(
    ("state", "words"),
    [
        (slurm.job("1", slurm.FAILED, exit_code=3), "failed with exit code 3"),
        (slurm.job("1", slurm.TIMEOUT), "hit its time limit"),
        (slurm.job("1", slurm.OUT_OF_MEMORY), "ran out of memory"),
        (slurm.job("1", slurm.NODE_FAIL), "node failed"),
        (slurm.job("1", slurm.PREEMPTED), "preempted"),
        (slurm.job("1", slurm.BOOT_FAIL), "failed to boot"),
        (slurm.job("1", slurm.DEADLINE), "deadline"),
        (slurm.job("1", slurm.CANCELLED, cancelled_by="1001"), "cancelled (by uid 1001)"),
        (
            slurm.job("1", slurm.PENDING, reason="ReqNodeNotAvail, UnavailableNodes:vm"),
            "nodes that are not available",
        ),
        (slurm.job("1", slurm.PENDING, reason="InvalidAccount"), "account is invalid"),
        (slurm.job("1", slurm.PENDING, reason="SomethingNew"), "Slurm reason: SomethingNew"),
    ],
)
def test_every_state_reads_as_a_sentence(state: JobState, words: str) -> None:
    assert words in state.sentence()
    assert state.sentence().startswith("the job ")


def test_reasons_that_never_clear_are_hopeless() -> None:
    assert slurm_reasons.is_hopeless("InvalidAccount")
    assert slurm_reasons.is_hopeless("DependencyNeverSatisfied")
    assert not slurm_reasons.is_hopeless("Resources")
    assert not slurm_reasons.is_hopeless("ReqNodeNotAvail, UnavailableNodes:vm")


def test_sbatch_parsable_output_gives_the_job_id() -> None:
    assert slurm.parse_submit("1234\n") == "1234"
    assert slurm.parse_submit("1234;cluster2\n") == "1234"


def test_sbatch_without_a_job_id_is_an_error() -> None:
    with pytest.raises(SchedulerError, match="did not print a job id"):
        slurm.parse_submit("Submitted batch job\n")


def test_sbatch_refusing_a_partition_says_what_to_fix() -> None:
    text = slurm.submit_refusal(read("sbatch_bad_partition.stderr"))
    assert "Invalid partition name specified" in text and "partition name in the cluster config" in text


def test_sbatch_refusing_an_account_says_what_to_fix() -> None:
    text = slurm.submit_refusal(read("sbatch_bad_account.stderr"))
    assert "Invalid account" in text and "scheduler.account" in text


def test_sbatch_refusing_a_time_says_what_to_fix() -> None:
    assert "resources.time" in slurm.submit_refusal(read("sbatch_bad_time.stderr"))


def test_argv_builders_poll_all_jobs_in_one_call() -> None:
    assert slurm.queue_argv(["1", "2"]) == [
        "squeue", "--noheader", "--states=all", "--jobs=1,2", "--format=%i|%T|%r|%M|%N|%V|%S|%D|%C|%b",
    ]  # fmt: skip
    assert slurm.history_argv(["3"]) == [
        "sacct", "--noheader", "--parsable2", "--jobs=3",
        "--format=JobIDRaw,State,ExitCode,Elapsed,Reason,NodeList,Submit,Start,End,ElapsedRaw,AllocTRES,NNodes,"
        "AllocCPUS,DerivedExitCode,JobName",
    ]  # fmt: skip
    assert slurm.cancel_argv(["1", "2"]) == ["scancel", "1", "2"]
    assert slurm.submit_argv("/s/x.sbatch") == ["sbatch", "--parsable", "/s/x.sbatch"]


def test_sbatch_with_dependency_kills_dependents_of_a_failed_job() -> None:
    argv = slurm.submit_argv("x.sbatch", dependency=["7", "8"])
    assert "--dependency=afterok:7:8" in argv and "--kill-on-invalid-dep=yes" in argv


def test_a_job_id_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(SchedulerError):
        slurm.queue_argv(["1;reboot"])


def test_durations_parse_in_every_slurm_form() -> None:
    assert duration_seconds("0:05") == 5
    assert duration_seconds("00:01:02") == 62
    assert duration_seconds("1-00:00:01") == 86401
    assert duration_seconds("INVALID") is None
    assert duration_seconds("UNLIMITED") is None


def test_sinfo_lists_partitions_with_gres() -> None:
    parts = slurm.parse_partitions(read("sinfo.txt"))
    assert parts["gpu"].gres == "gpu:1" and parts["cpu"].up and parts["cpu"].time_limit == "4:00:00"
    marked = slurm.parse_partitions("cpu*|up|2|(null)|1:00:00\ngpu|drain|1|gpu:1|4:00:00\n")
    assert marked["cpu"].default and marked["cpu"].gres == "" and not marked["gpu"].up
