"""What a maintainer reads about one cluster's smoke tests: conclusion, title, summary table, failing output, annotations.

Pure functions from Results to text and dicts, shaped for GitHub check runs and within GitHub's limits (summary
and text at most 65535 characters, annotation titles at most 255, messages at most 64 KB, 50 annotations per
request). The same table goes to the job's step summary and, when configured, to a PR comment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from hpcci.accounting import hours_text
from hpcci.records import ClusterResult, Results, TestResult, Usage, Verdict

MAX_OUTPUT_CHARS = 65535  # output.summary and output.text
MAX_TITLE_CHARS = 255  # annotation title (GitHub's prose limit)
MAX_ANNOTATION_BYTES = 64 * 1024  # annotation message and raw_details
MAX_ANNOTATIONS_PER_REQUEST = 50
MAX_STATUS_DESCRIPTION = 140  # commit status description
TAIL_LINES = 40  # lines of a failing test's output shown in the check run text

# Check-run conclusions, most severe first: a cluster's conclusion is its most severe test's.
SEVERITY = ("failure", "timed_out", "action_required", "cancelled", "neutral", "skipped", "success")

# Test verdicts (records.Verdict) -> check-run conclusion: the only thing a conclusion is derived from.
VERDICT_CONCLUSION: dict[Verdict, str] = {
    "pass": "success",
    "fail": "failure",
    "error": "failure",
    "timed_out": "timed_out",
    "cancelled": "cancelled",
    "infra": "neutral",  # node failure, preemption, queue budget: the cluster, not the code
    "action_required": "action_required",  # stuck pending on an invalid account, partition or QOS
    "skipped": "skipped",
}

# Check-run conclusion -> commit status state (the fallback where check runs cannot be written).
STATUS_STATE = {
    "success": "success",
    "skipped": "success",
    "failure": "failure",
    "timed_out": "failure",
    "neutral": "error",
    "cancelled": "error",
    "action_required": "error",
}

VERDICT_LABEL: dict[Verdict, str] = {
    "pass": "✅ pass",
    "fail": "❌ fail",
    "error": "❌ error",
    "timed_out": "⏱️ timed out",
    "cancelled": "🚫 cancelled",
    "infra": "⚠️ cluster problem",
    "action_required": "🔧 action required",
    "skipped": "⏭️ skipped",
}
PASSING_VERDICTS: frozenset[str] = frozenset({"pass", "skipped"})

T = TypeVar("T")


def test_conclusion(t: TestResult) -> str:
    """One test's conclusion, from its verdict alone; a verdict this version does not know never passes."""
    return VERDICT_CONCLUSION.get(t.verdict, "failure")


@dataclass(frozen=True)
class Conclusion:
    conclusion: str  # a check-run conclusion
    reason: str  # one sentence: why


def conclude(cr: ClusterResult) -> Conclusion:
    """The cluster's check-run conclusion and the sentence that explains it."""
    if cr.error is not None:
        return Conclusion("failure", f"the deploy failed on {cr.cluster}: {cr.error}")
    if not cr.tests:
        return Conclusion("skipped", f"no smoke tests ran on {cr.cluster}")
    by = {c: [t for t in cr.tests if test_conclusion(t) == c] for c in SEVERITY}
    # A skipped test neither fails nor passes a cluster: "skipped" only when nothing else ran.
    worst = next((c for c in SEVERITY if by[c] and c != "skipped"), "skipped")
    bad = by[worst]
    names = ", ".join(t.test for t in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    n = len(bad)
    tests = "test" if n == 1 else "tests"
    reasons = {
        "failure": f"{n} smoke {tests} failed: {names}",
        "timed_out": f"{n} smoke {tests} hit the time limit: {names}",
        "action_required": f"{n} smoke {tests} could not start; the cluster config needs a fix: {names}",
        "cancelled": f"{n} smoke {tests} were cancelled: {names}"
        if n > 1
        else f"smoke test {names} was cancelled",
        "neutral": f"the cluster did not run {names} to the end, not the code; re-run",
        "skipped": f"all smoke tests were skipped on {cr.cluster}",
        "success": f"all {n} smoke tests passed" if n > 1 else "the smoke test passed",
    }
    reason = reasons[worst]
    if worst not in ("success", "skipped") and n == 1:
        reason += f" ({bad[0].reason})" if bad[0].reason else ""
    return Conclusion(worst, reason)


def title(cr: ClusterResult) -> str:
    """'3/4 smoke tests passed on frontera (linux/amd64)'."""
    where = f"{cr.cluster} ({cr.platform})" if cr.platform else cr.cluster
    if cr.error is not None and not cr.tests:
        return f"Deploy failed on {where}"
    passed = sum(1 for t in cr.tests if t.verdict == "pass")
    return f"{passed}/{len(cr.tests)} smoke tests passed on {where}"


# -- Markdown -------------------------------------------------------------------------------------------------------


def cell(value: Any) -> str:
    """A value safe inside a Markdown table cell."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ").strip() or "-"


def elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


TABLE_COLUMNS = ("Test", "Platform", "Job", "State", "Exit code", "Queue wait", "Run time", "Nodes", "Core-h")


def _gpus(cr: ClusterResult) -> bool:
    """Whether the table needs a GPU-hours column: some test was allocated GPUs."""
    return any(t.usage and t.usage.gpus for t in cr.tests)


def table_header(cr: ClusterResult) -> str:
    columns = [*TABLE_COLUMNS, *(["GPU-h"] if _gpus(cr) else []), "Verdict"]
    return "| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|"


def label(t: TestResult) -> str:
    """The verdict as the table shows it."""
    return VERDICT_LABEL.get(t.verdict, t.verdict)


def nodes_text(u: Usage | None) -> str:
    """'node1', or '2: node[1-2]' for several nodes."""
    if u is None or not u.nodes:
        return "-"
    return f"{u.node_count}: {u.nodes}" if u.node_count and u.node_count > 1 else u.nodes


def table_row(t: TestResult, *, gpus: bool = False) -> str:
    u = t.usage or Usage()
    exit_code = "-" if t.exit_code is None else str(t.exit_code)
    usage = [elapsed(u.queue_wait_s), elapsed(t.elapsed_s), nodes_text(t.usage), hours_text(u.core_hours)]
    if gpus:
        usage.append(hours_text(u.gpu_hours))
    cells = [t.test, t.platform, t.job_id, t.state, exit_code, *usage, label(t)]
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def usage_line(cr: ClusterResult) -> str:
    """Where the cluster's time and allocation went: staging, conversion, queue wait, run time, core/GPU-hours."""
    u = cr.usage
    waits = [t.usage.queue_wait_s for t in cr.tests if t.usage and t.usage.queue_wait_s is not None]
    runs = [t.elapsed_s for t in cr.tests if t.elapsed_s is not None]
    cached = cr.sif_path and cr.error is None  # converted before: nothing staged or converted this time
    parts = [f"staging {elapsed(u.stage_s)}"] if u.stage_s is not None else ["image cached"] if cached else []
    parts += [f"conversion {elapsed(u.convert_s)}"] if u.convert_s is not None else []
    parts += [f"queue wait up to {elapsed(max(waits))}"] if waits else []
    parts += [f"run time {elapsed(sum(runs))} in all"] if runs else []
    gpu = f" and {hours_text(u.gpu_hours)} GPU-hours" if u.gpu_hours else ""
    jobs = "job" if u.jobs == 1 else "jobs"
    parts += [f"{hours_text(u.core_hours)} core-hours{gpu} allocated to {u.jobs} {jobs}"] if u.jobs else []
    return "**Time and allocation:** " + ("; ".join(parts) if parts else "nothing ran") + "."


def fit_lines(head: str, lines: Sequence[str], tail: str, limit: int, more: str) -> str:
    """head + as many lines as fit + tail within ``limit`` characters; ``more`` (with {n}) says what was left out."""
    out = head
    for i, line in enumerate(lines):
        note = more.format(n=len(lines) - i)
        room_for_note = len(note) + 1 if i < len(lines) - 1 else 0
        if len(out) + 1 + len(line) + len(tail) + 1 + room_for_note > limit:
            out += "\n" + note
            break
        out += "\n" + line
    return truncate(out + ("\n" + tail if tail else ""), limit)


def truncate(text: str, limit: int = MAX_OUTPUT_CHARS, note: str | None = None) -> str:
    """``text`` cut to ``limit`` characters with a note saying so (never more than ``limit``)."""
    if len(text) <= limit:
        return text
    note = (
        note
        or f"\n\n… truncated: {len(text) - limit:,}+ characters left out (GitHub allows {limit:,}); see the job log."
    )
    cut = text[: max(0, limit - len(note))]
    nl = cut.rfind("\n")
    if nl > len(cut) // 2:
        cut = cut[:nl]
    if cut.count("```") % 2:  # do not leave a code block open
        closing = "\n```"
        cut = cut[: max(0, limit - len(note) - len(closing))] + closing
    return (cut + note)[:limit]


def image_line(cr: ClusterResult) -> str:
    """Where the image can be fetched from: a registry reference that pulls, or the S3 object and its sha256."""
    if cr.image_ref.startswith("s3://"):
        sha = f" (sha256 `{cr.tar_sha256.removeprefix('sha256:')}`)" if cr.tar_sha256 else ""
        return f"**Image:** `{cr.image_ref}`{sha}"
    if cr.image_ref:
        return f"**Image:** `{cr.image_ref}`"
    if cr.image_digest:
        return (
            f"**Image:** a local tar, image id `{cr.image_digest}` (not published: no reference fetches it)"
        )
    return ""


def provenance(cr: ClusterResult) -> str:
    """Where the image comes from, then image digest -> tar sha256 -> SIF path and sha256, as far as known."""
    chain = [f"`{cr.image_digest}`" if cr.image_digest else "image digest unknown"]
    chain.append(
        f"tar `sha256:{cr.tar_sha256.removeprefix('sha256:')}`" if cr.tar_sha256 else "no tar (not staged)"
    )
    sif = f" (sha256 `{cr.sif_sha256}`)" if cr.sif_sha256 else ""
    chain.append(f"SIF `{cr.sif_path}`{sif}" if cr.sif_path else "no SIF")
    lines = [image_line(cr), "**Provenance:** " + " → ".join(chain)]
    return "\n\n".join(line for line in lines if line)


def release_line(cr: ClusterResult) -> str | None:
    """'installed as module fibonacci/0.1.0 on frontera (default)', or why not; None when no release was made."""
    if (r := cr.release) is None or r.status not in ("installed", "unchanged"):
        return f"not installed as module {r.module} on {cr.cluster}: {r.reason}" if r else None
    if r.status == "unchanged":
        return f"module {r.module} on {cr.cluster}{' (default)' if r.default else ''}: {r.reason}"
    default = " (default)" if r.default else (f" (not default: {r.reason})" if r.reason else "")
    removed = f"; removed {', '.join(r.removed)} (retention)" if r.removed else ""
    return f"installed as module {r.module} on {cr.cluster}{default}{removed}"


def cluster_failed_it(cr: ClusterResult, t: TestResult) -> bool:
    """The test did not run because the cluster failed around it (its reason is the deploy's error, said once)."""
    return cr.error is not None and (t.job_id is None or cr.error in t.reason)


def summary(cr: ClusterResult, *, limit: int = MAX_OUTPUT_CHARS) -> str:
    """The check run's summary: the conclusion in words (a deploy error, said once), the table, where the time and
    allocation went, provenance, and the reasons for what did not pass."""
    c = conclude(cr)
    head = f"**{c.conclusion.replace('_', ' ')}**: {c.reason}.\n\n{table_header(cr)}"
    gpus = _gpus(cr)
    rows = [table_row(t, gpus=gpus) for t in cr.tests]
    not_run = [cell(t.test) for t in cr.tests if t.verdict != "pass" and cluster_failed_it(cr, t)]
    notes = [
        f"- **{cell(t.test)}** ({t.state}): {t.reason}"
        for t in cr.tests
        if t.verdict != "pass" and t.reason and not cluster_failed_it(cr, t)
    ]
    if not_run:
        notes.insert(0, f"- not run, as the deploy failed: {', '.join(not_run)}")
    tail_parts: list[str] = []
    if line := release_line(cr):
        tail_parts.append(f"**Release:** {line}")
    tail_parts += [usage_line(cr), provenance(cr)]  # before the notes: a long list of notes is what gets cut
    if line := output_line(cr):
        tail_parts.append(line)
    if notes:
        tail_parts.append(
            "\n".join(notes[:50]) + (f"\n- … and {len(notes) - 50} more" if len(notes) > 50 else "")
        )
    tail = truncate("\n" + "\n\n".join(tail_parts), limit // 3)  # the table gets the rest
    more = "| … | {n} more tests: see the job's step summary |" + " |" * (len(TABLE_COLUMNS) + gpus - 1)
    return fit_lines(head, rows, tail, limit, more)


def fence(text: str) -> str:
    """A fenced block that the text inside cannot close."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}text\n{text.rstrip()}\n{ticks}"


def tail_lines(text: str, n: int = TAIL_LINES) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join(lines[-n:])


def failing(cr: ClusterResult) -> list[TestResult]:
    """The tests that did not pass, but for those the cluster's failure kept from running (the summary says why)."""
    return [t for t in cr.tests if t.verdict not in PASSING_VERDICTS and not cluster_failed_it(cr, t)]


def text(cr: ClusterResult, *, limit: int = MAX_OUTPUT_CHARS) -> str | None:
    """The check run's text: the tail of each failing test's output in a fenced block; None when there is none."""
    bad = failing(cr)
    if not bad:
        return None
    budget = max(2000, limit // len(bad))  # every failing test gets its share before any is left out
    blocks = [_block(t, budget) for t in bad]
    more = "… output of {n} more failing tests left out (see the job log)."
    return fit_lines("", blocks, "", limit, more).lstrip("\n")


def _block(t: TestResult, budget: int) -> str:
    """One failing test: heading, reason, and the END of its output (the last lines matter most)."""
    job = f"job {t.job_id}, " if t.job_id else ""
    heading = f"### {t.test} ({job}{t.state})"
    reason = t.reason if len(t.reason) <= 1000 else t.reason[:1000] + "…"
    if t.output_on_cluster:  # report.output none: not a byte of it left the site
        return f"{heading}\n\n{reason}\n\n{kept_on_cluster(t)}\n"
    out = tail_lines(t.output_tail) if t.output_tail.strip() else "(no output)"
    room = budget - len(heading) - len(reason) - 80
    if len(out) > room:
        out = "… (earlier output cut)\n" + out[-max(0, room) :]
    return f"{heading}\n\n{reason}\n\n{fence(out)}\n"


def kept_on_cluster(t: TestResult) -> str:
    return f"The output stays on {t.cluster} (report.output none): `{t.output_on_cluster}`"


def output_line(cr: ClusterResult) -> str:
    """Where the jobs' output is when the cluster keeps it (report.output none); '' when its tails are shown."""
    kept = sorted({t.output_on_cluster.rsplit("/", 1)[0] for t in cr.tests if t.output_on_cluster})
    if not kept:
        return ""
    where = ", ".join(f"`{d}`" for d in kept)
    return f"**Job output:** stays on {cr.cluster} (report.output none), each test's as TEST.out in {where}."


# -- annotations ----------------------------------------------------------------------------------------------------


def _cap_bytes(s: str, n: int) -> str:
    data = s.encode()
    if len(data) <= n:
        return s
    return "…" + data[-(n - 4) :].decode(errors="ignore")


def annotations_for(cr: ClusterResult, *, default_file: str | None = None) -> list[dict[str, Any]]:
    """One annotation per failing test, on the hpcci.yaml line that defines it (tests without a line are left out)."""
    out: list[dict[str, Any]] = []
    for t in failing(cr):
        path = t.source_file or default_file
        if not path or not t.source_line:
            continue
        level = "failure" if test_conclusion(t) in ("failure", "timed_out") else "warning"
        words = label(t).split(" ", 1)[-1]
        a: dict[str, Any] = {
            "path": path,
            "start_line": t.source_line,
            "end_line": t.source_line,
            "annotation_level": level,
            "title": f"{t.test} on {cr.cluster}: {words} ({t.state})"[:MAX_TITLE_CHARS],
            "message": _cap_bytes(t.reason or words, MAX_ANNOTATION_BYTES),
        }
        if t.output_tail.strip():
            a["raw_details"] = _cap_bytes(tail_lines(t.output_tail, 200), MAX_ANNOTATION_BYTES)
        out.append(a)
    return out


def batches(items: Sequence[T], size: int = MAX_ANNOTATIONS_PER_REQUEST) -> list[list[T]]:
    """``items`` in consecutive requests of at most ``size`` (GitHub takes 50 annotations per request)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def annotation_key(a: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies an annotation already on a check run (to never send it twice)."""
    return (a.get("path"), a.get("start_line"), a.get("end_line"), a.get("title"), a.get("message"))


def missing_annotations(
    wanted: Iterable[dict[str, Any]], present: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``wanted`` minus what is already ``present`` (as a multiset: two equal annotations need two)."""
    counts: dict[tuple[Any, ...], int] = {}
    for a in present:
        k = annotation_key(a)
        counts[k] = counts.get(k, 0) + 1
    out = []
    for a in wanted:
        k = annotation_key(a)
        if counts.get(k, 0) > 0:
            counts[k] -= 1
        else:
            out.append(a)
    return out


# -- across clusters ------------------------------------------------------------------------------------------------


def step_summary(
    results: Results, *, check_names: dict[str, str] | None = None, heading: str = "hpcci smoke tests"
) -> str:
    """Markdown for $GITHUB_STEP_SUMMARY and the PR comment: the allocation used in all, one section per cluster."""
    parts = [f"## {heading}"]
    if results.sha:
        parts.append(f"Commit `{results.sha[:12]}`" + (f", image `{results.image}`" if results.image else ""))
    if len(results.clusters) > 1:
        core = sum(cr.usage.core_hours for cr in results.clusters)
        gpu = sum(cr.usage.gpu_hours for cr in results.clusters)
        gpus = f" and {hours_text(gpu)} GPU-hours" if gpu else ""
        parts.append(
            f"**Allocation used on {len(results.clusters)} clusters:** {hours_text(core)} core-hours{gpus}."
        )
    for cr in results.clusters:
        name = (check_names or {}).get(cr.cluster, cr.cluster)
        parts.append(f"### {name}: {title(cr)}")
        parts.append(summary(cr, limit=MAX_OUTPUT_CHARS))
    return "\n\n".join(parts)
