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

# Rounds to ask again for a job whose history record is incomplete right after it ended (sacct names only the
# batch host, or a step still runs, for a few seconds): about 13 s at the default poll intervals.
SETTLE_ROUNDS = 5


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
        self._allocation: dict[str, str] = {}  # job id -> its nodes as the queue named them while it ran
        self._unsettled: dict[str, int] = {}  # job id -> rounds its ended job's history record was incomplete

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
        for j, st in states.items():
            if st.nodes and st.status not in ("pending", "unknown"):
                self._allocation[j] = st.nodes  # the queue names the whole allocation once the job started
        gone = [j for j in job_ids if j not in states or states[j].final]
        if gone:
            history = sched.parse_history(self._run(sched.history_argv(gone), queue=False))
            for j in gone:
                h = history.get(j)
                if h is not None and h.final and self._settled(h):
                    states[j] = replace(h, nodes=self._allocation.get(j) or h.nodes)
                elif j in states or (h is not None and h.final):
                    # done, but the history has not caught up (no exit code yet, or only part of the record):
                    # ask again next round
                    states[j] = replace(
                        states.get(j) or h or unknown(j), status="running", what="is finishing"
                    )
                else:
                    states[j] = h or unknown(j)
        return states

    def _settled(self, h: JobState) -> bool:
        """The history's record of a job that ended is complete (every node, every step), or was asked for long
        enough: after SETTLE_ROUNDS rounds the last answer is taken as it is."""
        if h.settled:
            return True
        waited = self._unsettled[h.job_id] = self._unsettled.get(h.job_id, 0) + 1
        return waited > SETTLE_ROUNDS

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
