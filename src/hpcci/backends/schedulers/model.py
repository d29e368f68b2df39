"""What the scheduler seam speaks: hpcci's job states, one job as last seen, a batch job's spec, its script template.

Every scheduler backend maps its own state words onto ``Status`` (hpcci's one state vocabulary) and fills in a
sentence a person understands; stages and reports read only these, never a scheduler's words.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Literal

from hpcci.errors import ConfigError

# hpcci's own state model. "infra": the cluster failed (node failure, preemption), not the software under test;
# "unknown": the scheduler has no record of the job.
Status = Literal[
    "pending", "running", "completed", "failed", "timeout", "cancelled", "oom", "infra", "unknown"
]
FINAL: frozenset[Status] = frozenset({"completed", "failed", "timeout", "cancelled", "oom", "infra"})


@dataclass(frozen=True)
class JobStep:
    """One step of a finished job (an `srun` inside the batch script) as the scheduler's history recorded it."""

    step_id: str  # the scheduler's id of the step: '0', '1' (Slurm: JOBID.0)
    name: str  # the command it ran, as the scheduler names it ('sh', 'python3')
    state: str  # the scheduler's word: COMPLETED, FAILED, OUT_OF_MEMORY
    status: Status
    exit_code: int | None = None
    signal: int | None = None

    @property
    def failed(self) -> bool:
        return (
            self.status not in ("completed", "running", "pending")
            or bool(self.exit_code)
            or bool(self.signal)
        )

    def sentence(self, job_id: str) -> str:
        """'job step 41.0 (sh) failed with exit code 3'."""
        what = f"job step {job_id}.{self.step_id}" + (f" ({self.name})" if self.name else "")
        if self.signal:
            return f"{what} was killed by signal {self.signal} (state {self.state})"
        if self.status == "failed" or (self.status == "completed" and self.exit_code):
            return f"{what} failed with exit code {self.exit_code}"
        return f"{what} ended {self.state}" + (f" with exit code {self.exit_code}" if self.exit_code else "")


@dataclass(frozen=True)
class JobState:
    """One job as the scheduler last described it: its own state word, hpcci's status, and what that means."""

    job_id: str
    state: str  # the scheduler's word (COMPLETED, TIMEOUT, ...), kept in results.json
    status: Status
    what: str = (
        ""  # the scheduler's sentence for this state or pending reason: "is waiting for free resources"
    )
    exit_code: int | None = None
    signal: int | None = None
    elapsed_s: float | None = None
    reason: str = ""  # the scheduler's pending reason, '' when none
    nodes: str = ""  # the nodes it ran on, as the scheduler writes them: node[1-2]
    cancelled_by: str = ""  # who cancelled it (a uid), when the scheduler says
    # the scheduler's accounting: submit to start (to the cancel, for a job that never started), and the allocation
    queue_wait_s: float | None = None
    node_count: int | None = None
    cpus: int | None = None  # allocated CPUs (cores or hardware threads, as the site counts them)
    gpus: int | None = None  # allocated GPUs
    hopeless: bool = False  # pending on a reason that never clears by waiting
    needs_fix: bool = False  # ... and only a change of the cluster config (account, QOS, limits) clears it
    waits_on_dependency: bool = False  # pending until the job it depends on ends (that job's outcome decides)
    # a finished job's steps (each srun in the script) and the highest exit code among them, from the history
    steps: tuple[JobStep, ...] = ()
    derived_exit_code: int | None = None
    cause: str = ""  # why the job failed, when the scheduler's words say more than its exit code
    settled: bool = True  # False: the history's record of a job that just ended is still incomplete

    @property
    def failed_steps(self) -> list[JobStep]:
        return [s for s in self.steps if s.failed]

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def sentence(self) -> str:
        """What happened to the job, for a person: 'the job failed with exit code 3'."""
        if self.status == "failed" and self.cause:
            return f"the job failed: {self.cause}"
        if self.status == "failed" and self.signal:
            return f"the job was killed by signal {self.signal}"
        if self.status == "failed" and self.exit_code == 0:
            return f"the job failed (state {self.state}) although it reports exit code 0"
        if self.status == "failed" and self.exit_code is not None:
            return f"the job failed with exit code {self.exit_code}"
        if self.status == "completed" and self.exit_code not in (None, 0):
            return f"the job finished with exit code {self.exit_code}"
        if self.status == "cancelled":
            who = f" (by uid {self.cancelled_by})" if self.cancelled_by else ""
            return f"the job was cancelled{who}"
        return f"the job {self.what}" if self.what else f"the job ended in state {self.state}"


def pending(job_id: str) -> JobState:
    """A job just submitted, before the scheduler has been asked about it."""
    return JobState(job_id, "PENDING", "pending", "is waiting in the queue")


def unknown(job_id: str) -> JobState:
    return JobState(
        job_id, "UNKNOWN", "unknown", "is not known to the scheduler (it has no record of the job)"
    )


def cancelled_by_hpcci(last: JobState) -> JobState:
    """``last`` after hpcci cancelled the job (at the deadline, on a stop, or stuck on a hopeless reason)."""
    return replace(
        last, state="CANCELLED", status="cancelled", what="was cancelled", exit_code=None, signal=None
    )


@dataclass(frozen=True)
class JobSpec:
    """Everything one batch script says. ``body`` lines are already shell-quoted command lines."""

    job_name: str
    output: str
    partition: str | None = None
    account: str | None = None
    reservation: str | None = None
    qos: str | None = None
    nodes: int = 1
    tasks: int = 1
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    time: str = "00:10:00"
    memory: str | None = None
    memory_per_cpu: bool = False  # memory is per CPU (--mem-per-cpu), not per node
    gres: str | None = None
    chdir: str | None = None
    extra: Sequence[str] = ()  # further scheduler directives, as the scheduler writes them
    body: Sequence[str] = ()
    comment: str = ""


def packaged_template(name: str) -> str:
    """A batch script template shipped beside the scheduler backends (backends/schedulers/templates)."""
    return (
        resources.files("hpcci.backends.schedulers")
        .joinpath("templates")
        .joinpath(name)
        .read_text(encoding="utf-8")
    )


def render_template(template: str, directives: Sequence[str], spec: JobSpec) -> str:
    """A batch script from a template (``$directives``, ``$body``, ``$comment``, ``$job_name``).

    Template lines starting with ``##`` are notes for the template's author and never reach the script.
    """
    tpl = string.Template("".join(ln for ln in template.splitlines(keepends=True) if not ln.startswith("##")))
    values = {
        "directives": "\n".join(directives),
        "body": "\n".join(spec.body),
        "comment": spec.comment,
        "job_name": spec.job_name,
    }
    try:
        text = tpl.substitute(values)
    except (KeyError, ValueError) as e:
        raise ConfigError(
            f"batch script template: unknown or malformed placeholder {e}; use $directives, $body, $comment, "
            "$job_name (write $$ for a literal $)"
        ) from e
    return text if text.endswith("\n") else text + "\n"


@dataclass(frozen=True)
class PartitionInfo:
    """One partition (queue) as the scheduler lists it, for `hpcci doctor`."""

    name: str  # without the scheduler's default marker
    state: str  # the scheduler's word: up, down, drain, inactive
    nodes: str  # how many nodes, as the scheduler writes it
    gres: str = ""  # generic resources offered (gpu:4), '' when none
    time_limit: str = ""  # the longest job it takes, as the scheduler writes it
    default: bool = False  # the partition a job without one goes to

    @property
    def up(self) -> bool:
        return self.state == "up"
