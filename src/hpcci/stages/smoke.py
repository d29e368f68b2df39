"""Smoke tests: follow the submitted jobs to their end and judge each one.

Following polls every job of a deploy with ONE squeue call per round (then one sacct call for the jobs that
left the queue, for their exit codes), at an interval that starts short and backs off with jitter, tolerating a
few failed calls (sacct is briefly unavailable after a slurmctld restart); the interval starts over whenever a
job changes state (a job that just started may end soon). A deadline or a stop request
(SIGTERM/SIGINT) cancels what is still queued or running, and the result says so. A job stuck PENDING for a
reason that never clears (an invalid account) is cancelled at once.

Judging keeps Slurm's meaning: exit code and expected output for finished jobs; TIMEOUT, CANCELLED,
OUT_OF_MEMORY, NODE_FAIL, ... each with its own verdict and a sentence a person understands.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hpcci.backends import scheduler as slurm
from hpcci.backends.remote import Remote
from hpcci.backends.scheduler import JobState
from hpcci.config import PollConfig, SmokeTest
from hpcci.errors import HpcciError, SchedulerError
from hpcci.shell import login_argv

OUTPUT_TAIL_BYTES = 64 << 10  # read from the job's output file for judging
RESULT_TAIL_CHARS = 4000  # kept in results.json


class JobQuery(Protocol):
    """What following needs from a scheduler."""

    def query(self, job_ids: Sequence[str]) -> dict[str, JobState]: ...

    def cancel(self, job_ids: Sequence[str]) -> bool: ...


class SlurmJobs:
    """squeue first (authoritative while a job lives), sacct for jobs that left the queue (exit codes)."""

    def __init__(
        self, remote: Remote, modules: Sequence[str] = (), info: Callable[[str], None] | None = None
    ) -> None:
        self.remote = remote
        self.modules = list(modules)
        self.info = info or (lambda _m: None)

    def _run(self, argv: list[str], what: str) -> str:
        done = self.remote.run(login_argv([argv], modules=self.modules), timeout=60, echo=" ".join(argv))
        if not done.ok:
            text = (done.stderr or done.stdout).strip()
            if what == "squeue" and "Invalid job id" in text:
                return ""  # every job has left squeue's memory (MinJobAge): sacct knows them
            raise SchedulerError(
                f"{what} failed (exit code {done.returncode}): {text.splitlines()[-1] if text else 'no output'}",
                transient=True,
            )
        return done.stdout

    def query(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        states = slurm.parse_squeue(self._run(slurm.squeue_argv(job_ids), "squeue"))
        gone = [j for j in job_ids if j not in states or states[j].final]
        if gone:
            acct = slurm.parse_sacct(self._run(slurm.sacct_argv(gone), "sacct"))
            for j in gone:
                a = acct.get(j)
                if a is not None and a.final:
                    states[j] = a
                elif j in states:
                    # squeue says done but sacct has not caught up yet: ask again next round for the exit code
                    states[j] = JobState(j, slurm.COMPLETING, nodes=states[j].nodes)
                else:
                    states[j] = a or JobState(j, slurm.UNKNOWN)
        return states

    def cancel(self, job_ids: Sequence[str]) -> bool:
        if not job_ids:
            return True
        try:
            self.remote.run(
                login_argv([slurm.scancel_argv(job_ids)], modules=self.modules),
                timeout=60,
                check=True,
                interruptible=False,  # cancelling is what a stopped deploy must still do
            )
            return True
        except HpcciError as e:
            self.info(f"scancel {' '.join(job_ids)} failed: {e}")
            return False


@dataclass
class Followed:
    """The last state of every job, and why hpcci cancelled some of them."""

    states: dict[str, JobState]
    cancelled: dict[str, str] = field(default_factory=dict)  # job id -> sentence
    deadline_hit: bool = False
    interrupted: bool = False
    poll_failures: int = 0
    ended_at: dict[str, float] = field(default_factory=dict)  # job id -> monotonic time its end was seen
    # job id -> what to fix: cancelled while PENDING on a reason that never clears (invalid account, QOS, ...)
    action_required: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # following gave up (the scheduler could not be queried)


def backoff(interval: float, poll: PollConfig, rand: Callable[[], float]) -> tuple[float, float]:
    """(sleep now, next interval): grows by half each round up to poll.max, with +-20% jitter."""
    sleep = interval * (0.8 + 0.4 * rand())
    return min(sleep, poll.max), min(interval * 1.5, poll.max)


def follow(
    jobs: JobQuery,
    job_ids: Iterable[str],
    *,
    poll: PollConfig,
    deadline: float,
    stop: threading.Event | None = None,
    info: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] | None = None,
    rand: Callable[[], float] = random.random,
    deadline_text: str = "",
    unknown_rounds: int = 5,
) -> Followed:
    """Poll until every job ended, the deadline passed, or ``stop`` is set (then scancel what is left)."""
    stop = stop or threading.Event()
    wait = sleep or stop.wait
    active = list(dict.fromkeys(job_ids))
    out = Followed(states={j: JobState(j, slurm.PENDING) for j in active})
    interval = poll.initial
    failures = 0
    unknown: dict[str, int] = {}
    while active:
        if stop.is_set():
            out.interrupted = True
            _cancel(
                jobs, active, out, "the deploy was stopped (SIGTERM/SIGINT); hpcci cancelled the job", info
            )
            break
        if clock() >= deadline:
            out.deadline_hit = True
            why = f"the deploy deadline{f' ({deadline_text})' if deadline_text else ''} passed"
            _cancel(jobs, active, out, why + "; hpcci cancelled the job", info)
            break
        try:
            seen = jobs.query(active)
            failures = 0
        except HpcciError as e:
            failures += 1
            out.poll_failures += 1
            if failures > poll.max_failures:
                out.error = (
                    f"the scheduler could not be queried {failures} times in a row ({e}); hpcci cancelled the jobs; "
                    "check the cluster's Slurm (squeue/sacct) and raise scheduler.poll.max_failures if it is flaky"
                )
                _cancel(jobs, active, out, f"hpcci could not follow the job: {e}", info)
                break
            info(f"poll failed ({e}); tolerated {failures}/{poll.max_failures}, retrying")
            seen = {}
        hopeless: list[str] = []
        changed = False
        for j in list(active):
            st = seen.get(j)
            if st is None:
                continue
            changed = changed or st.state != out.states[j].state
            if st.state == slurm.UNKNOWN:
                unknown[j] = unknown.get(j, 0) + 1
                if unknown[j] < unknown_rounds:
                    continue
            out.states[j] = st
            if st.final or st.state == slurm.UNKNOWN:
                active.remove(j)
                out.ended_at[j] = clock()
            elif st.state == slurm.PENDING and slurm.is_hopeless(st.reason):
                hopeless.append(j)
        if hopeless:
            for j in hopeless:
                sentence = out.states[j].sentence()
                _cancel(jobs, [j], out, f"{sentence}; hpcci cancelled it instead of waiting", info)
                if slurm.needs_action(out.states[j].reason):
                    out.action_required[j] = f"{sentence}; hpcci cancelled it instead of waiting"
                active.remove(j)
        if not active:
            break
        if changed:
            interval = poll.initial  # a job just started (or moved): its end may be near, look again soon
        pause, interval = backoff(interval, poll, rand)
        wait(max(0.0, min(pause, deadline - clock())))
    return out


def _cancel(jobs: JobQuery, ids: list[str], out: Followed, why: str, info: Callable[[str], None]) -> None:
    ok = jobs.cancel(ids)
    info(
        f"scancel {' '.join(ids)}: {why}" + ("" if ok else " (scancel failed: the jobs may still be queued)")
    )
    for j in ids:
        last = out.states.get(j, JobState(j, slurm.PENDING))
        was = last.sentence()
        out.cancelled[j] = why if why.startswith(was) else f"{why} (before that, {was})"
        out.states[j] = JobState(
            j, slurm.CANCELLED, elapsed_s=last.elapsed_s, reason=last.reason, nodes=last.nodes
        )


# -- judging ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    verdict: str  # pass | fail | error | timed_out | cancelled | infra | action_required
    reason: str


def judge(
    test: SmokeTest,
    st: JobState,
    output: str,
    *,
    cancelled_why: str | None = None,
    action_required: str | None = None,
) -> Verdict:
    """The verdict on one test from its job's final state, exit code and output.

    ``action_required``: the job could never start until someone fixes the cluster config (e.g. its account).
    """
    want = test.expect
    if action_required:
        return Verdict("action_required", action_required)
    if cancelled_why:
        return Verdict("cancelled", cancelled_why)
    if st.state == slurm.TIMEOUT:
        return Verdict("timed_out", f"{st.sentence()} (resources.time {test.resources.time})")
    if st.state == slurm.DEADLINE:
        return Verdict("timed_out", st.sentence())
    if st.state == slurm.CANCELLED:
        return Verdict("cancelled", f"{st.sentence()}; it was not stopped by hpcci (someone ran scancel)")
    if st.state == slurm.OUT_OF_MEMORY:
        return Verdict("fail", f"{st.sentence()} (resources.memory {test.resources.memory or 'default'})")
    if slurm.is_infra(st.state) or st.state == slurm.UNKNOWN:
        return Verdict("infra", st.sentence())
    if st.state not in (slurm.COMPLETED, slurm.FAILED):
        return Verdict("error", f"{st.sentence()} (unexpected final state)")
    if st.signal:
        return Verdict("fail", st.sentence())
    code = st.exit_code if st.exit_code is not None else (0 if st.state == slurm.COMPLETED else None)
    if code != want.exit_code:
        last = _last_line(output)
        shown = f"; last output line: {last!r}" if last else "; no output"
        return Verdict("fail", f"the job exited with code {code}, expected {want.exit_code}{shown}")
    if want.output is not None:
        try:
            matched = re.search(want.output, output, re.MULTILINE) is not None
        except re.error as e:
            return Verdict("error", f"expect.output {want.output!r} is not a valid regular expression: {e}")
        if not matched:
            last = _last_line(output)
            return Verdict(
                "fail",
                f"the job exited with code {code} but its output does not match {want.output!r}"
                + (f"; last output line: {last!r}" if last else "; it printed nothing"),
            )
        return Verdict("pass", f"exited with code {code} and the output matches {want.output!r}")
    return Verdict("pass", f"exited with code {code}")


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def bounded_tail(text: str, limit: int = RESULT_TAIL_CHARS) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]
