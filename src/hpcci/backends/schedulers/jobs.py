"""Jobs on a cluster's scheduler, asked about and cancelled over a Remote (the login node), many jobs per call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from hpcci.backends.schedulers import Scheduler
from hpcci.backends.schedulers.model import JobState, Status, unknown
from hpcci.errors import HpcciError, SchedulerError
from hpcci.shell import login_command

if TYPE_CHECKING:
    from hpcci.backends.ssh.remote import Remote


@dataclass(frozen=True)
class Found:
    """A job found by its name on the cluster (re-attach, crash cancel)."""

    job_id: str
    name: str
    status: Status
    workdir: str = ""

    @property
    def live(self) -> bool:
        return self.status in ("pending", "running")


class RemoteJobs:
    """The queue first (authoritative while a job lives), then the history for jobs that left it (exit codes)."""

    def __init__(
        self,
        remote: Remote,
        scheduler: Scheduler,
        modules: Sequence[str] | None = (),  # None: no login shell (login.mode automation)
        info: Callable[[str], None] | None = None,
    ) -> None:
        self.remote = remote
        self.scheduler = scheduler
        self.modules = None if modules is None else list(modules)
        self.info = info or (lambda _m: None)

    def _argv(self, argv: list[str]) -> list[str]:
        return login_command(argv, self.modules)

    def _run(self, argv: list[str], *, queue: bool) -> str:
        done = self.remote.run(self._argv(argv), timeout=60, echo=" ".join(argv))
        if not done.ok:
            text = (done.stderr or done.stdout).strip()
            if queue and self.scheduler.queue_forgot_jobs(text):
                return ""  # every job has left the queue's memory: the history knows them
            raise SchedulerError(
                f"{argv[0]} failed (exit code {done.returncode}): "
                f"{text.splitlines()[-1] if text else 'no output'}",
                transient=True,
            )
        return done.stdout

    def query(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        sched = self.scheduler
        states = sched.parse_queue(self._run(sched.queue_argv(job_ids), queue=True))
        gone = [j for j in job_ids if j not in states or states[j].final]
        if gone:
            history = sched.parse_history(self._run(sched.history_argv(gone), queue=False))
            for j in gone:
                h = history.get(j)
                if h is not None and h.final:
                    states[j] = h
                elif j in states:
                    # the queue says done but the history has not caught up: ask again next round for the exit code
                    states[j] = replace(states[j], status="running", what="is finishing")
                else:
                    states[j] = h or unknown(j)
        return states

    def find(self, user: str, names: Sequence[str], *, history: bool = True) -> list[Found]:
        """``user``'s jobs named ``names``: queued and running ones, and (``history``) those that ended since."""
        if not names:
            return []
        sched = self.scheduler
        rows = sched.parse_found(self._run(sched.find_queue_argv(user, names), queue=False))
        if history:
            rows += sched.parse_found(self._run(sched.find_history_argv(user, names), queue=False))
        found: dict[str, Found] = {}
        for (
            job_id,
            name,
            status,
            workdir,
        ) in rows:  # the queue's row first: it is the newer word on a live job
            if name in names:
                found.setdefault(job_id, Found(job_id, name, status, workdir))
        return list(found.values())

    def cancel(self, job_ids: Sequence[str]) -> bool:
        if not job_ids:
            return True
        argv = self.scheduler.cancel_argv(job_ids)
        try:
            self.remote.run(
                self._argv(argv),
                timeout=60,
                check=True,
                interruptible=False,  # cancelling is what a stopped deploy must still do
            )
            return True
        except HpcciError as e:
            self.info(f"{' '.join(argv)} failed: {e}")
            return False
