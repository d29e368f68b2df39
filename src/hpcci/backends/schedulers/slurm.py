"""Slurm, the scheduler backend: its states mapped onto hpcci's, sbatch scripts, command builders and parsers.

This module is one entry of the scheduler table (backends/schedulers/__init__.py) and satisfies its ``Scheduler``
protocol as a module. Everything here is pure: scripts and argv lists are built as data (printable by `hpcci plan`,
run by the remote runner), and squeue/sacct/sbatch output is parsed from text. Slurm's words keep their meaning all
the way to the check run, each with a sentence a person understands (after psij's _STATE_MAP/_REASONS_MAP and
reframe's slurm_state_completed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from hpcci.backends.schedulers.model import (
    FINAL,
    JobSpec,
    JobState,
    JobStep,
    PartitionInfo,
    Status,
    packaged_template,
    render_template,
)
from hpcci.backends.schedulers.slurm_accounting import NO_NODES, count, history_usage, host_count, queue_usage
from hpcci.backends.schedulers.slurm_directives import directives
from hpcci.backends.schedulers.slurm_reasons import is_hopeless, needs_action, pending_sentence
from hpcci.durations import duration_seconds as slurm_time_seconds
from hpcci.errors import SchedulerError

NAME = "Slurm"
SCRIPT_SUFFIX = ".sbatch"
DEFAULT_TEMPLATE = "slurm.sbatch"

# -- states ---------------------------------------------------------------------------------------------------

PENDING = "PENDING"
CONFIGURING = "CONFIGURING"
RUNNING = "RUNNING"
COMPLETING = "COMPLETING"
SUSPENDED = "SUSPENDED"
REQUEUED = "REQUEUED"
RESIZING = "RESIZING"
STAGE_OUT = "STAGE_OUT"
SIGNALING = "SIGNALING"
STOPPED = "STOPPED"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
TIMEOUT = "TIMEOUT"
CANCELLED = "CANCELLED"
OUT_OF_MEMORY = "OUT_OF_MEMORY"
NODE_FAIL = "NODE_FAIL"
PREEMPTED = "PREEMPTED"
BOOT_FAIL = "BOOT_FAIL"
DEADLINE = "DEADLINE"
REVOKED = "REVOKED"
SPECIAL_EXIT = "SPECIAL_EXIT"
UNKNOWN = "UNKNOWN"  # hpcci's own: the scheduler has no record of the job

# Slurm's state words -> hpcci's status: the one table of what each word means.
STATUS: dict[str, Status] = {
    PENDING: "pending",
    REQUEUED: "pending",
    CONFIGURING: "running",
    RUNNING: "running",
    COMPLETING: "running",
    SUSPENDED: "running",
    RESIZING: "running",
    STAGE_OUT: "running",
    SIGNALING: "running",
    STOPPED: "running",
    COMPLETED: "completed",
    FAILED: "failed",
    SPECIAL_EXIT: "failed",
    TIMEOUT: "timeout",
    DEADLINE: "timeout",
    CANCELLED: "cancelled",
    OUT_OF_MEMORY: "oom",
    NODE_FAIL: "infra",
    PREEMPTED: "infra",
    BOOT_FAIL: "infra",
    REVOKED: "infra",
    UNKNOWN: "unknown",
}

_STATE_SENTENCES = {
    PENDING: "is waiting in the queue",
    CONFIGURING: "is starting (nodes are being configured)",
    RUNNING: "is running",
    COMPLETING: "is finishing",
    SUSPENDED: "was suspended by the scheduler",
    REQUEUED: "was put back in the queue",
    COMPLETED: "finished with exit code 0",
    FAILED: "failed",
    TIMEOUT: "hit its time limit and was stopped by Slurm",
    CANCELLED: "was cancelled",
    OUT_OF_MEMORY: "ran out of memory and was killed (raise resources.memory)",
    NODE_FAIL: "was lost because its node failed (a cluster problem, not your code; re-run it)",
    PREEMPTED: "was preempted by a higher-priority job (a cluster policy, not your code; re-run it)",
    BOOT_FAIL: "could not start because its node failed to boot (a cluster problem; re-run it)",
    DEADLINE: "was stopped because it reached its deadline",
    REVOKED: "was revoked (moved to another cluster of a federation)",
    SPECIAL_EXIT: "ended in a special exit state (requeued and held by the cluster's epilog)",
    UNKNOWN: "is not known to the scheduler (squeue and sacct have no record of it)",
}


def status(state: str) -> Status:
    """hpcci's status for a Slurm state word; a word this table does not know is "unknown"."""
    return STATUS.get(state, "unknown")


# -- parsing ---------------------------------------------------------------------------------------------------


def job(job_id: str, state: str, reason: str = "", **seen: Any) -> JobState:
    """A JobState for a Slurm state word: hpcci's status, Slurm's sentence, and whether a pending reason clears.

    ``seen``: the other JobState fields the output gave (exit_code, signal, elapsed_s, nodes, cancelled_by).
    """
    pending = state == PENDING
    what = pending_sentence(reason) if pending else _STATE_SENTENCES.get(state, "")
    hopeless, needs_fix = pending and is_hopeless(reason), pending and needs_action(reason)
    waits = pending and reason == "Dependency"  # DependencyNeverSatisfied is hopeless instead
    return JobState(
        job_id, state, status(state), what, reason=reason, hopeless=hopeless, needs_fix=needs_fix,
        waits_on_dependency=waits, **seen,
    )  # fmt: skip


def _state_word(raw: str) -> tuple[str, str]:
    """'CANCELLED by 1000' -> ('CANCELLED', '1000'); 'COMPLETED' -> ('COMPLETED', ''); 'CANCELLED+' too."""
    parts = raw.strip().split()
    word = parts[0].rstrip("+") if parts else UNKNOWN
    by = parts[2] if len(parts) >= 3 and parts[1] == "by" else ""
    return word, by


def _exit_pair(raw: str) -> tuple[int | None, int | None]:
    """sacct ExitCode 'code:signal' -> (code, signal)."""
    m = re.fullmatch(r"(\d+):(\d+)", raw.strip())
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


# The accounting columns come after the first ones (their parsing: slurm_accounting.py). squeue: %V submit,
# %S start, %D nodes, %C CPUs, %b GRES per node; sacct: Submit, Start, End, ElapsedRaw, AllocTRES, NNodes, AllocCPUS.
SQUEUE_FORMAT = "%i|%T|%r|%M|%N|%V|%S|%D|%C|%b"
# Then the steps' columns: DerivedExitCode (on the job's line: the highest exit code of its steps) and JobName
# (on a step's line: the command it ran; last, since a name may hold anything).
SACCT_FIELDS = (
    "JobIDRaw,State,ExitCode,Elapsed,Reason,NodeList,Submit,Start,End,ElapsedRaw,AllocTRES,NNodes,AllocCPUS,"
    "DerivedExitCode,JobName"
)
# Steps that are not the user's commands: the batch script itself (its exit code is the job's) and the extern step.
_OWN_STEPS = frozenset({"batch", "extern", "interactive"})
# sacct's ExitCode of a job whose batch step could not open its --output/--error file: slurmd's error 4021 & 127
# (seen on the local stack: FAILED 0:53, the batch step CANCELLED 0:53), not a signal.
_NO_OUTPUT_FILE = 53
NO_OUTPUT_FILE = (
    "Slurm could not open its output file (ExitCode 0:53): the folder of #SBATCH --output is missing or "
    "cannot be written from the compute node"
)


def _row(names: str, sep: str, line: str) -> dict[str, str]:
    """One output line as {column name: value}; columns the line lacks are missing (an older format)."""
    return dict(zip(names.split(sep), (c.strip() for c in line.strip().split("|")), strict=False))


def parse_queue(text: str) -> dict[str, JobState]:
    """Parse `squeue --noheader --format=SQUEUE_FORMAT` output."""
    jobs: dict[str, JobState] = {}
    for line in text.splitlines():
        row = _row(SQUEUE_FORMAT, "|", line)
        job_id = row.get("%i", "")
        if len(row) < 3 or not job_id:
            continue
        state, _ = _state_word(row["%T"])
        reason = row["%r"]
        jobs[job_id] = job(
            job_id,
            state,
            reason="" if reason in ("None", "(null)") else reason,
            elapsed_s=slurm_time_seconds(row["%M"]) if "%M" in row else None,
            nodes=row.get("%N", ""),
            **(queue_usage(row) if status(state) != "pending" else {}),  # %S of a pending job is a guess
        )
    return jobs


def parse_history(text: str) -> dict[str, JobState]:
    """Parse `sacct -n -P -o SACCT_FIELDS` output: a line per job, then a line per step of it (JOBID.STEP)."""
    jobs: dict[str, JobState] = {}
    steps: dict[str, list[JobStep]] = {}
    for line in text.splitlines():
        row = _row(SACCT_FIELDS, ",", line)
        job_id = row.get("JobIDRaw", "")
        if len(row) < 3 or not job_id:
            continue
        if "." in job_id:
            parent, _, step = job_id.partition(".")
            if step not in _OWN_STEPS:
                steps.setdefault(parent, []).append(_step(step, row))
            continue
        jobs[job_id] = _history_job(job_id, row)
    for job_id, found in steps.items():
        st = jobs.get(job_id)
        if st is not None:
            unsettled = st.final and any(s.status in ("pending", "running") for s in found)
            jobs[job_id] = replace(st, steps=tuple(found), settled=st.settled and not unsettled)
    return jobs


def _history_job(job_id: str, row: dict[str, str]) -> JobState:
    state, by = _state_word(row["State"])
    code, sig = _exit_pair(row["ExitCode"])
    reason = row.get("Reason", "")
    ran = status(state) in ("completed", "failed")  # only then is the exit code the program's own
    no_output = ran and state == FAILED and code == 0 and sig == _NO_OUTPUT_FILE
    nodes = "" if row.get("NodeList") == NO_NODES else row.get("NodeList", "")
    seen: dict[str, Any] = {
        "elapsed_s": slurm_time_seconds(row["Elapsed"]) if "Elapsed" in row else None,
        **history_usage(row),
    }
    # Right after a job ends sacct may name only its batch host (and a placeholder name) for a few seconds:
    # the record is complete once its NodeList names every allocated node.
    allocated = count(row.get("NNodes", ""))
    settled = not (status(state) in FINAL and nodes and allocated and host_count(nodes) < allocated)
    return job(
        job_id,
        state,
        exit_code=code if ran else None,
        signal=(sig or None) if ran and not no_output else None,
        reason="" if reason in ("None", "(null)") else reason,
        nodes=nodes,
        cancelled_by=by,
        derived_exit_code=_exit_pair(row.get("DerivedExitCode", ""))[0],
        cause=NO_OUTPUT_FILE if no_output else "",
        settled=settled,
        **seen,
    )


def _step(step_id: str, row: dict[str, str]) -> JobStep:
    state, _ = _state_word(row["State"])
    code, sig = _exit_pair(row["ExitCode"])
    return JobStep(step_id, row.get("JobName", ""), state, status(state), code, sig or None)


def parse_submit(stdout: str) -> str:
    """`sbatch --parsable` prints 'JOBID' or 'JOBID;CLUSTER'."""
    line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job_id = line.split(";")[0].strip()
    if not job_id.isdigit():
        raise SchedulerError(
            f"sbatch did not print a job id (got {stdout.strip()[:200]!r}); check the sbatch output"
        )
    return job_id


def submit_refusal(stderr: str) -> str:
    """The useful part of sbatch's complaint, with what to do about it."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else "no message"
    text = re.sub(r"^sbatch: error: ", "", text)
    low = text.lower()
    if "invalid partition" in low:
        hint = "fix the partition name in the cluster config (see `sinfo -s`)"
    elif "invalid account" in low or "account/partition" in low:
        hint = "fix scheduler.account in the cluster config (see `sacctmgr show assoc user=$USER`)"
    elif "invalid qos" in low:
        hint = "fix scheduler.qos in the cluster config"
    elif "time limit" in low or "--time" in low or "invalid time" in low:
        hint = "lower resources.time in hpcci.yaml"
    elif "gres" in low or "generic resource" in low:
        hint = "fix the partition's gres in the cluster config"
    elif "memory" in low:
        hint = "lower resources.memory in hpcci.yaml"
    else:
        hint = "check the sbatch script shown by `hpcci plan`"
    return f"{text}; {hint}"


# -- commands ------------------------------------------------------------------------------------------------


def _ids(job_ids: Iterable[str]) -> str:
    ids = list(job_ids)
    for j in ids:
        if not re.fullmatch(r"\d+(_\d+)?", j):
            raise SchedulerError(f"{j!r} is not a Slurm job id")
    return ",".join(ids)


def submit_argv(script: str, dependency: Sequence[str] = ()) -> list[str]:
    """sbatch ``script``, to start only after every job of ``dependency`` succeeded (and die if one failed)."""
    argv = ["sbatch", "--parsable"]
    if dependency:
        argv += [f"--dependency=afterok:{':'.join(dependency)}", "--kill-on-invalid-dep=yes"]
    return [*argv, script]


def queue_argv(job_ids: Iterable[str]) -> list[str]:
    return ["squeue", "--noheader", "--states=all", f"--jobs={_ids(job_ids)}", f"--format={SQUEUE_FORMAT}"]


def history_argv(job_ids: Iterable[str]) -> list[str]:
    """The jobs' lines and their steps' (no -X): a failed srun step is a failed test even when the script went on."""
    return ["sacct", "--noheader", "--parsable2", f"--jobs={_ids(job_ids)}", f"--format={SACCT_FIELDS}"]


def cancel_argv(job_ids: Iterable[str]) -> list[str]:
    return ["scancel", *_ids(job_ids).split(",")]


def queue_forgot_jobs(text: str) -> bool:
    """squeue failed only because every job has left its memory (MinJobAge): sacct knows them."""
    return "Invalid job id" in text


def partitions_argv() -> list[str]:
    return ["sinfo", "--noheader", "--format=%R|%a|%D|%G|%l"]


def parse_partitions(text: str) -> dict[str, PartitionInfo]:
    """`sinfo --format=%R|%a|%D|%G|%l` -> {partition: PartitionInfo}; '*' marks the default, '(null)' no gres."""
    out: dict[str, PartitionInfo] = {}
    for line in text.splitlines():
        cols = line.strip().split("|")
        if len(cols) >= 5 and cols[0]:
            name = cols[0].rstrip("*")
            gres = "" if cols[3] == "(null)" else cols[3]
            out[name] = PartitionInfo(name, cols[1], cols[2], gres, cols[4], default=cols[0].endswith("*"))
    return out


def accounts_argv(user: str) -> list[str]:
    return ["sacctmgr", "--noheader", "--parsable2", "show", "associations", f"user={user}", "format=Account"]


def parse_accounts(text: str) -> set[str]:
    return {line.split("|")[0].strip() for line in text.splitlines() if line.strip()}


# -- sbatch scripts --------------------------------------------------------------------------------------------


def default_template() -> str:
    return packaged_template(DEFAULT_TEMPLATE)


def render_script(spec: JobSpec, template: str | None = None) -> str:
    """The sbatch script for ``spec`` from a template (the cluster's own, or hpcci's default)."""
    return render_template(template if template is not None else default_template(), directives(spec), spec)


# -- a run's jobs by name (re-attach and crash cancel without a journal); the path last: it may hold anything --
def _names(names: Iterable[str]) -> str:
    if any(not n or any(c in n for c in ",|\n") for n in names):
        raise SchedulerError(
            f"{list(names)!r}: a Slurm job name to look up must be non-empty, without , | or newline"
        )
    return ",".join(names)


def find_queue_argv(user: str, names: Iterable[str]) -> list[str]:
    return ["squeue", "--noheader", f"--user={user}", f"--name={_names(list(names))}", "--format=%i|%j|%T|%Z"]


def find_history_argv(user: str, names: Iterable[str]) -> list[str]:
    """Finished jobs too, from the last 30 days (GitHub re-runs a workflow run up to 30 days later)."""
    return ["sacct", "-X", "--noheader", "--parsable2", f"--user={user}", f"--name={_names(list(names))}",
            "--starttime=now-30days", "--format=JobIDRaw,JobName,State,WorkDir"]  # fmt: skip


def parse_found(text: str) -> list[tuple[str, str, Status, str]]:
    """(job id, name, hpcci status, working directory) per job row of either command's output."""
    rows = [ln.strip().split("|", 3) for ln in text.splitlines()]
    return [(c[0].strip(), c[1].strip(), status(_state_word(c[2])[0]), c[3].strip() if len(c) > 3 else "")
            for c in rows if len(c) >= 3 and c[0].strip() and "." not in c[0]]  # fmt: skip
