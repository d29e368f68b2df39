"""The scheduler seam: the ``Scheduler`` protocol every batch-scheduler backend satisfies, and the table by name.

A backend is one module (``slurm``) that builds its commands and parses their output as pure functions, and maps
its state words onto hpcci's ``Status``. Stages receive a ``Scheduler``; only the composition root (the commands)
picks it from ``SCHEDULERS`` by the cluster config's ``scheduler.type``. A new scheduler (PBS Pro, Flux) is one new
module here plus one entry in ``SCHEDULERS`` and its name in ``SchedulerName``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

from hpcci.backends.schedulers import slurm
from hpcci.backends.schedulers.model import JobSpec, JobState, PartitionInfo, Status

SchedulerName = Literal["slurm"]  # the keys of SCHEDULERS (a unit test keeps the two equal)


class Scheduler(Protocol):
    """What the stages and `hpcci doctor` need from a batch scheduler (a module satisfies it)."""

    NAME: str  # in messages: "Slurm"
    SCRIPT_SUFFIX: str  # of batch script files: ".sbatch"

    def render_script(self, spec: JobSpec, template: str | None = None) -> str: ...

    def submit_argv(self, script: str, dependency: Sequence[str] = ()) -> list[str]: ...

    def parse_submit(self, stdout: str) -> str: ...

    def submit_refusal(self, stderr: str) -> str: ...

    # Following: one call for the jobs the queue knows, one for the jobs that left it (their exit codes).
    def queue_argv(self, job_ids: Iterable[str]) -> list[str]: ...

    def parse_queue(self, text: str) -> dict[str, JobState]: ...

    def queue_forgot_jobs(self, text: str) -> bool: ...

    def history_argv(self, job_ids: Iterable[str]) -> list[str]: ...

    def parse_history(self, text: str) -> dict[str, JobState]: ...

    def cancel_argv(self, job_ids: Iterable[str]) -> list[str]: ...

    # Re-attach and crash cancel without a journal: the user's jobs by exact name, queued then in the history.
    def find_queue_argv(self, user: str, names: Iterable[str]) -> list[str]: ...

    def find_history_argv(self, user: str, names: Iterable[str]) -> list[str]: ...

    def parse_found(self, text: str) -> list[tuple[str, str, Status, str]]: ...

    def status(self, state: str) -> Status: ...

    # `hpcci doctor`: the partitions (queues) and the user's accounts.
    def partitions_argv(self) -> list[str]: ...

    def parse_partitions(self, text: str) -> dict[str, PartitionInfo]: ...

    def accounts_argv(self, user: str) -> list[str]: ...

    def parse_accounts(self, text: str) -> set[str]: ...


SCHEDULERS: dict[SchedulerName, Scheduler] = {"slurm": slurm}
