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

import dataclasses
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hpcci.backends.schedulers.jobs import Found, RemoteJobs
from hpcci.backends.schedulers.model import JobState, Status
from hpcci.errors import SchedulerError, UsageError
from hpcci.files import write_atomic
from hpcci.stages.deploy.identity import RunIdentity

JOURNAL_FILE = "journal.json"
VERSION = 1


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


@dataclass(frozen=True)
class Reattached:
    """Jobs of this run found still alive (or completed): followed instead of submitted again."""

    tests: dict[int, Found] = field(default_factory=dict)  # test index -> job
    converts: dict[str, Found] = field(default_factory=dict)  # platform -> live conversion job
    where: str = ""  # "the journal" or "the cluster"
