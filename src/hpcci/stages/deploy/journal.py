"""The deploy journal: every job a workflow run submitted, on disk the moment the scheduler answers, and re-attach.

A job's id is worth more than anything else a deploy learns: without it a crashed runner leaves jobs nobody
cancels, and a re-run submits them again (charged twice). So each id goes to .hpcci/journal.json at once
(temp file, fsync, rename), with its cluster, test, platform, image digest and the run's identity. The job also
carries that identity on the cluster: its name is ``hpcci-<hash of repo, run, cluster>-<test>`` (its comment says
it in words), so the jobs are found by name when the runner's disk is gone.

Re-attach (``reattach``, pure): for each job the plan would submit, a live job of the same run is followed instead,
and so is one that completed; a job that failed, timed out or was cancelled is submitted again (that is what a
re-run is for).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hpcci.backends.schedulers import Scheduler
from hpcci.backends.schedulers.jobs import Found, RemoteJobs
from hpcci.backends.schedulers.model import JobSpec, JobState, Status
from hpcci.errors import SchedulerError, UsageError

JOURNAL_FILE = "journal.json"
VERSION = 1
MAX_JOB_NAME = 100  # Slurm keeps longer names, but squeue's and sacct's columns and people read them


@dataclass(frozen=True)
class RunIdentity:
    """A workflow run as the jobs carry it: repository and run (a re-run's attempt is the same run)."""

    repo: str
    run: str
    attempt: str = "1"
    fresh: bool = False  # a run id made up for this deploy: no job of it can exist yet (nothing to look for)

    def label(self, cluster: str) -> str:
        """The prefix of every job name of this run on ``cluster``: unambiguous per repository, run and cluster."""
        digest = hashlib.sha256(f"{self.repo}\n{self.run}\n{cluster}".encode()).hexdigest()
        return f"hpcci-{digest[:10]}"

    def job_name(self, cluster: str, name: str) -> str:
        """``name`` (the plan's own job name, e.g. hpcci-fib) under this run's label."""
        suffix = name.removeprefix("hpcci-")
        full = f"{self.label(cluster)}-{suffix}"
        if len(full) <= MAX_JOB_NAME:
            return full
        return f"{full[: MAX_JOB_NAME - 9]}-{hashlib.sha256(suffix.encode()).hexdigest()[:8]}"

    def test_job_name(self, cluster: str, test: str) -> str:
        """The name a test's job carries (the plan names it hpcci-TEST; Labelled puts the run's label first)."""
        return self.job_name(cluster, f"hpcci-{test}")

    def comment(self, cluster: str, what: str) -> str:
        repo = f" of {self.repo}" if self.repo else ""
        return f"hpcci run {self.run} (attempt {self.attempt}){repo} on {cluster}: {what}"[:250]


def run_identity(run_id: str | None, default_run: str, repo: str, env: Mapping[str, str]) -> RunIdentity:
    """The run to journal and re-attach to: --run-id, else the GitHub run (without its attempt), else this deploy."""
    attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
    if run_id:
        return RunIdentity(repo, run_id, attempt)
    if env.get("GITHUB_RUN_ID"):
        return RunIdentity(repo, f"gh-{env['GITHUB_RUN_ID']}", attempt)
    return RunIdentity(repo, default_run, attempt, fresh=True)


# -- the journal on disk ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One submitted job."""

    cluster: str
    kind: Literal["test", "convert"]
    key: str  # the test's name, or the platform of a conversion job
    job_id: str
    job_name: str
    platform: str
    image_digest: str
    output: str  # the job's output file on the cluster
    repo: str
    run: str
    attempt: str
    submitted_at: float  # unix time


def write_atomic(path: Path, text: str) -> None:
    """``text`` at ``path`` whole or not at all: a temp file in the same folder, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_entries(path: Path) -> list[Entry]:
    """Every entry of the journal at ``path`` ([] when there is none)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise UsageError(
            f"{path}: not a readable hpcci journal ({e}); remove it to look on the cluster"
        ) from e
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("jobs"), list):
        raise UsageError(
            f"{path}: not an hpcci journal of version {VERSION}; remove it to look on the cluster"
        )
    try:
        return [Entry(**e) for e in data["jobs"]]
    except TypeError as e:
        raise UsageError(f"{path}: a journal entry is malformed ({e}); remove the file") from e


class Journal:
    """The jobs of one run in ``folder``/journal.json; safe to add to from every cluster's thread."""

    def __init__(self, folder: Path, identity: RunIdentity) -> None:
        self.path = folder / JOURNAL_FILE
        self.identity = identity
        self._lock = threading.Lock()

    def _mine(self, e: Entry) -> bool:
        return (e.repo, e.run) == (self.identity.repo, self.identity.run)

    def entries(self, cluster: str) -> list[Entry]:
        """This run's jobs on ``cluster``, oldest first."""
        return [e for e in read_entries(self.path) if self._mine(e) and e.cluster == cluster]

    def add(self, entry: Entry) -> None:
        """Append ``entry``; another run's entries (a reused workspace) are dropped."""
        with self._lock:
            kept = [e for e in read_entries(self.path) if self._mine(e)]
            jobs = [dataclasses.asdict(e) for e in [*kept, entry]]
            write_atomic(self.path, json.dumps({"version": VERSION, "jobs": jobs}, indent=1) + "\n")


# -- re-attach (pure) ----------------------------------------------------------------------------------------------


def reusable(status: Status) -> bool:
    """A job worth following instead of submitting again: it still lives, or it completed."""
    return status in ("pending", "running", "completed")


def choose(candidates: Iterable[Found]) -> Found | None:
    """Of one job name's jobs, the one to follow: the newest live one, else the newest that completed."""
    ranked = sorted((c for c in candidates if reusable(c.status)), key=lambda c: (c.live, int(c.job_id)))
    return ranked[-1] if ranked else None


def reattach(names: Sequence[str], found: Iterable[Found]) -> dict[str, Found]:
    """Job name -> the job to follow instead of submitting; a name missing from the result is submitted."""
    by_name: dict[str, list[Found]] = {}
    for f in found:
        by_name.setdefault(f.name, []).append(f)
    chosen = {n: choose(by_name.get(n, [])) for n in names}
    return {n: f for n, f in chosen.items() if f is not None}


def moved(path: str, run_dir: str, workdir: str) -> str:
    """``path`` under this deploy's ``run_dir`` as it is under a re-attached job's own folder (an earlier attempt's)."""
    if not workdir or not path.startswith(run_dir + "/"):
        return path
    return workdir + path[len(run_dir) :]


def journaled(entries: Iterable[Entry], states: Mapping[str, JobState]) -> list[Found]:
    """The journal's jobs with the states the scheduler gave them now."""
    out: list[Found] = []
    for e in entries:
        st = states.get(e.job_id)
        if st is not None:
            out.append(Found(e.job_id, e.job_name, st.status, e.output.rsplit("/", 1)[0]))
    return out


def cancel_live(
    jobs: RemoteJobs, journal: Journal, cluster: str, tests: Sequence[str], user: str
) -> tuple[list[str], str]:
    """Cancel this run's queued and running jobs on ``cluster``: (their ids, where they were found).

    From the journal when it has the cluster's jobs, else by the tests' job names among ``user``'s queued jobs.
    """
    entries = journal.entries(cluster)
    if entries:
        ids = [e.job_id for e in entries]
        states = jobs.query(ids)
        live, where = (
            [j for j in ids if j in states and states[j].status in ("pending", "running")],
            "the journal",
        )
    else:
        names = [journal.identity.test_job_name(cluster, t) for t in tests]
        live, where = [f.job_id for f in jobs.find(user, names, history=False) if f.live], "the cluster"
    live = list(dict.fromkeys(live))
    if live and not jobs.cancel(live):
        raise SchedulerError(f"cluster {cluster}: cancelling {' '.join(live)} failed")
    return live, where


# -- the identity on the cluster ---------------------------------------------------------------------------------


class Labelled:
    """``scheduler`` whose batch scripts carry the run's identity: job name and comment (everything else as is)."""

    def __init__(self, scheduler: Scheduler, identity: RunIdentity, cluster: str) -> None:
        self.inner, self.identity, self.cluster = scheduler, identity, cluster
        self.NAME, self.SCRIPT_SUFFIX = scheduler.NAME, scheduler.SCRIPT_SUFFIX

    def render_script(self, spec: JobSpec, template: str | None = None) -> str:
        name = self.identity.job_name(self.cluster, spec.job_name)
        comment = self.identity.comment(self.cluster, spec.comment or spec.job_name)
        return self.inner.render_script(dataclasses.replace(spec, job_name=name, comment=comment), template)

    def submit_argv(self, script: str, dependency: Sequence[str] = ()) -> list[str]:
        return self.inner.submit_argv(script, dependency)

    def parse_submit(self, stdout: str) -> str:
        return self.inner.parse_submit(stdout)

    def submit_refusal(self, stderr: str) -> str:
        return self.inner.submit_refusal(stderr)

    def queue_argv(self, job_ids: Iterable[str]) -> list[str]:
        return self.inner.queue_argv(job_ids)

    def parse_queue(self, text: str) -> dict[str, JobState]:
        return self.inner.parse_queue(text)

    def queue_forgot_jobs(self, text: str) -> bool:
        return self.inner.queue_forgot_jobs(text)

    def history_argv(self, job_ids: Iterable[str]) -> list[str]:
        return self.inner.history_argv(job_ids)

    def parse_history(self, text: str) -> dict[str, JobState]:
        return self.inner.parse_history(text)

    def cancel_argv(self, job_ids: Iterable[str]) -> list[str]:
        return self.inner.cancel_argv(job_ids)

    def find_queue_argv(self, user: str, names: Iterable[str]) -> list[str]:
        return self.inner.find_queue_argv(user, names)

    def find_history_argv(self, user: str, names: Iterable[str]) -> list[str]:
        return self.inner.find_history_argv(user, names)

    def parse_found(self, text: str) -> list[tuple[str, str, Status, str]]:
        return self.inner.parse_found(text)

    def status(self, state: str) -> Status:
        return self.inner.status(state)

    def partitions_argv(self) -> list[str]:
        return self.inner.partitions_argv()

    def parse_partitions(self, text: str) -> dict[str, dict[str, str]]:
        return self.inner.parse_partitions(text)

    def accounts_argv(self, user: str) -> list[str]:
        return self.inner.accounts_argv(user)

    def parse_accounts(self, text: str) -> set[str]:
        return self.inner.parse_accounts(text)


@dataclass(frozen=True)
class Reattached:
    """Jobs of this run found still alive (or completed): followed instead of submitted again."""

    tests: dict[int, Found] = field(default_factory=dict)  # test index -> job
    converts: dict[str, Found] = field(default_factory=dict)  # platform -> live conversion job
    where: str = ""  # "the journal" or "the cluster"
