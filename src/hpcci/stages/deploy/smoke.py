"""Smoke tests: follow the submitted jobs to their end and judge each one.

Following polls every job of a deploy with ONE queue call per round (then one history call for the jobs that left
the queue, for their exit codes: the scheduler's queue, then its accounting), at an interval that starts short and
backs off with jitter, tolerating a few failed calls (accounting is briefly unavailable after a controller restart);
the interval starts
over whenever a job changes state (a job that just started may end soon). A deadline or a stop request
(SIGTERM/SIGINT) cancels what is still queued or running, and the result says so. A job stuck pending for a
reason that never clears (an invalid account) is cancelled at once, and one still pending after the cluster's queue
budget (scheduler.max_queue_wait) is cancelled then: the cluster could not run it, an infra verdict (neutral).

Judging (``judge``, the one place a verdict is decided) keeps the scheduler's meaning: exit code and expected output
for finished jobs (with the cluster's report.output none, the output never leaves the cluster: expect.output is
matched there by ``output_match_argv`` and the verdict names the output file instead of quoting it), and every
step of the job (an `srun` that failed fails the test even when the batch script went on and exited 0); timeout,
cancelled, out of memory, node failure, ... each with its own verdict and a sentence a person understands.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from hpcci.backends.schedulers.model import JobState, cancelled_by_hpcci, pending
from hpcci.config.models import PollConfig, SmokeTest
from hpcci.errors import HpcciError
from hpcci.records import Verdict

OUTPUT_TAIL_BYTES = 64 << 10  # read from the job's output file for judging
RESULT_TAIL_CHARS = 4000  # kept in results.json


class JobQuery(Protocol):
    """What following needs from a scheduler (backends.schedulers.jobs.RemoteJobs over the login node)."""

    def query(self, job_ids: Sequence[str]) -> dict[str, JobState]: ...

    def cancel(self, job_ids: Sequence[str]) -> bool: ...


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
    # job id -> its pending reason: cancelled because it waited longer than scheduler.max_queue_wait
    queue_wait: dict[str, str] = field(default_factory=dict)


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
    queue_budget: float | None = None,
    queue_budget_text: str = "",
) -> Followed:
    """Poll until every job ended, the deadline passed, or ``stop`` is set (then cancel what is left)."""
    stop = stop or threading.Event()
    wait = sleep or stop.wait
    active = list(dict.fromkeys(job_ids))
    out = Followed(states={j: pending(j) for j in active})
    interval = poll.initial
    failures = 0
    unknown: dict[str, int] = {}
    pending_since: dict[str, float] = {}
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
                    "check the cluster's scheduler (its queue and accounting commands) and raise scheduler.poll.max_failures if it is flaky"
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
            if st.status == "unknown":
                unknown[j] = unknown.get(j, 0) + 1
                if unknown[j] < unknown_rounds:
                    continue
            out.states[j] = st
            if st.final or st.status == "unknown":
                active.remove(j)
                out.ended_at[j] = clock()
            elif st.status == "pending" and st.hopeless:
                hopeless.append(j)
        for j in _over_budget(active, out, pending_since, clock(), queue_budget):
            _cancel_queued(jobs, j, out, queue_budget_text, info)
            active.remove(j)
        if hopeless:
            for j in hopeless:
                sentence = out.states[j].sentence()
                _cancel(jobs, [j], out, f"{sentence}; hpcci cancelled it instead of waiting", info)
                if out.states[j].needs_fix:
                    out.action_required[j] = f"{sentence}; hpcci cancelled it instead of waiting"
                active.remove(j)
        if not active:
            break
        if changed:
            interval = poll.initial  # a job just started (or moved): its end may be near, look again soon
        pause, interval = backoff(interval, poll, rand)
        wait(max(0.0, min(pause, deadline - clock())))
    return out


def _over_budget(
    active: list[str], out: Followed, since: dict[str, float], now: float, budget: float | None
) -> list[str]:
    """The jobs pending longer than ``budget``, counted from when each was first seen waiting for itself (not
    for the job it depends on, e.g. the image's conversion)."""
    over: list[str] = []
    for j in active:
        st = out.states[j]
        # waiting on its conversion job (a dependency that can never be met is hopeless and cancelled on its own)
        if st.status != "pending" or st.hopeless or st.waits_on_dependency:
            continue
        if budget is not None and now - since.setdefault(j, now) >= budget:
            over.append(j)
    return over


def _cancel_queued(jobs: JobQuery, j: str, out: Followed, budget: str, info: Callable[[str], None]) -> None:
    """Cancel a job over the queue budget: the cluster could not run it in time, so its state is infra."""
    reason = out.states[j].reason or "unknown"
    ok = jobs.cancel([j])
    why = f"queue wait exceeded, jobs pending: {reason}"
    info(f"cancel {j}: {why} (scheduler.max_queue_wait {budget})" + ("" if ok else " (the cancel failed)"))
    what = f"was cancelled by hpcci after waiting longer than scheduler.max_queue_wait ({budget}): {why}"
    out.states[j] = replace(cancelled_by_hpcci(out.states[j]), status="infra", what=what)
    out.queue_wait[j] = reason


def _cancel(jobs: JobQuery, ids: list[str], out: Followed, why: str, info: Callable[[str], None]) -> None:
    ok = jobs.cancel(ids)
    info(
        f"cancel {' '.join(ids)}: {why}"
        + ("" if ok else " (the cancel failed: the jobs may still be queued)")
    )
    for j in ids:
        last = out.states.get(j, pending(j))
        was = last.sentence()
        out.cancelled[j] = why if why.startswith(was) else f"{why} (before that, {was})"
        out.states[j] = cancelled_by_hpcci(last)


# -- judging ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeptOutput:
    """report.output none: the job's output stayed on the cluster; expect.output was matched there (grep -E)."""

    path: str  # the output file on the cluster
    # None: no expect.output to match, or it could not be matched (error says why)
    matched: bool | None = None
    error: str = ""


def output_match_argv(pattern: str, path: str) -> list[str]:
    """expect.output matched on the login node over the whole output file: exit 0 a match, 1 none, 2 an error.
    -q prints nothing (not a byte of the output comes back), -a reads it as text; the pattern is an argument."""
    return ["grep", "-E", "-q", "-a", "-e", pattern, "--", path]


def kept_output(path: str, returncode: int, stderr: str) -> KeptOutput:
    """What ``output_match_argv`` said: grep's own message (the file or the pattern, never the output) on error."""
    if returncode in (0, 1):
        return KeptOutput(path, matched=returncode == 0)
    why = next(
        (ln.strip() for ln in stderr.splitlines() if ln.strip()), f"grep exited with code {returncode}"
    )
    return KeptOutput(path, error=why[:300])


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str


@dataclass(frozen=True)
class Circumstances:
    """What else decides a verdict besides the job's state and output: why it never ran, or why it was cancelled."""

    refused: str | None = None  # the scheduler refused the job (it never ran)
    cluster_error: str | None = None  # the cluster failed around the test (staging, conversion, ...)
    cancelled_why: str | None = None  # hpcci cancelled the job (deadline, stop, a reason that never clears)
    action_required: str | None = (
        None  # ... because it could never start until someone fixes the cluster config
    )


def judge(
    test: SmokeTest, st: JobState | None, output: str | KeptOutput, why: Circumstances = Circumstances()
) -> Judgement:
    """THE verdict on one test: from its job's final state, exit code and output, or from why it never ran."""
    if st is None:  # never submitted
        if why.refused or why.cluster_error:
            return Judgement("error", why.refused or f"not run: {why.cluster_error}")
        return Judgement("skipped", "not run")
    if st.status == "cancelled" and not why.cancelled_why and why.cluster_error:
        return Judgement("error", f"not run: {why.cluster_error}")  # e.g. its conversion job failed
    if why.action_required:
        return Judgement("action_required", why.action_required)
    if why.cancelled_why:
        return Judgement("cancelled", why.cancelled_why)
    return _judge_end(test, st, output)


def _judge_end(test: SmokeTest, st: JobState, output: str | KeptOutput) -> Judgement:
    """A job that ended on its own."""
    if st.status == "timeout":
        return Judgement("timed_out", f"{st.sentence()} (resources.time {test.resources.time})")
    if st.status == "cancelled":
        return Judgement("cancelled", f"{st.sentence()}; it was not stopped by hpcci (someone cancelled it)")
    if st.status == "oom":
        return Judgement("fail", f"{st.sentence()} (resources.memory {test.resources.memory or 'default'})")
    if st.status in ("infra", "unknown"):
        return Judgement("infra", st.sentence())
    if st.status not in ("completed", "failed"):
        return Judgement("error", f"{st.sentence()} (unexpected final state)")
    if st.signal or (st.status == "failed" and st.cause):
        return Judgement("fail", st.sentence())
    want = test.expect
    code = st.exit_code if st.exit_code is not None else (0 if st.status == "completed" else None)
    if st.status == "failed" and code == 0:  # a known Slurm pitfall: FAILED with ExitCode 0:0 is never a pass
        return Judgement("fail", f"{st.sentence()}; a job that ends {st.state} never passes")
    step = failed_step(st, want.exit_code)
    if code != want.exit_code:
        also = f"; {step}" if step else ""
        return Judgement(
            "fail",
            f"the job exited with code {code}, expected {want.exit_code}{also}{_shown(output, 'no output')}",
        )
    if step:
        return Judgement(
            "fail",
            f"{step}, although the batch script exited with code {code} (a command after it hid the failure); "
            "a test fails when any of its steps fails",
        )
    return _judge_output(want.output, code, output)


def failed_step(st: JobState, expected: int) -> str:
    """The first step of the job that failed, as a sentence ('' for none). A step that exits with the test's
    expected (non-zero) exit code is what the test expects; the steps' highest exit code counts when the history
    kept no step lines."""
    for s in st.failed_steps:
        if not (s.status == "failed" and not s.signal and expected and s.exit_code == expected):
            return s.sentence(st.job_id)
    derived = st.derived_exit_code
    if not st.steps and derived not in (None, 0, expected):
        return f"a job step exited with code {derived} (the highest exit code of its steps)"
    return ""


def _judge_output(pattern: str | None, code: int | None, output: str | KeptOutput) -> Judgement:
    if pattern is None:
        return Judgement("pass", f"exited with code {code}")
    if isinstance(output, KeptOutput):
        if output.matched is None:
            return Judgement(
                "error", f"expect.output {pattern!r} could not be matched on the cluster: {output.error}"
            )
        matched = output.matched
    else:
        try:
            matched = re.search(pattern, output, re.MULTILINE) is not None
        except re.error as e:
            return Judgement("error", f"expect.output {pattern!r} is not a valid regular expression: {e}")
    if matched:
        return Judgement("pass", f"exited with code {code} and the output matches {pattern!r}")
    return Judgement(
        "fail",
        f"the job exited with code {code} but its output does not match {pattern!r}"
        + _shown(output, "it printed nothing"),
    )


def _shown(output: str | KeptOutput, empty: str) -> str:
    """The end of a reason: the output's last line, or where it stays on the cluster (report.output none)."""
    if isinstance(output, KeptOutput):
        return f"; the output stays on the cluster (report.output none): {output.path}"
    last = _last_line(output)
    return f"; last output line: {last!r}" if last else f"; {empty}"


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def bounded_tail(text: str, limit: int = RESULT_TAIL_CHARS) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]
