"""Where a deploy's time and allocation went: each job's usage from the scheduler's accounting, per-cluster totals.

Allocation used is what the scheduler allocated times how long it was held (core-hours = allocated CPUs x run
time, GPU-hours likewise): what a site charges, whatever the job did with it. Pure functions; the report's
Markdown for them is in conclusions.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from hpcci.backends.schedulers.model import JobState
from hpcci.records import ClusterUsage, Usage

HOUR = 3600.0


def hours(count: int | None, seconds: float | None) -> float | None:
    """``count`` (CPUs or GPUs) held for ``seconds``, in hours; None when either is unknown."""
    if count is None or seconds is None:
        return None
    return count * seconds / HOUR


def job_usage(st: JobState) -> Usage:
    """One job's usage as the scheduler last described it."""
    return Usage(
        queue_wait_s=st.queue_wait_s,
        run_s=st.elapsed_s,
        nodes=st.nodes,
        node_count=st.node_count,
        cpus=st.cpus,
        gpus=st.gpus,
        core_hours=hours(st.cpus, st.elapsed_s),
        gpu_hours=hours(st.gpus, st.elapsed_s),
    )


def cluster_usage(
    jobs: Iterable[Usage], *, stage_s: float | None = None, convert_s: float | None = None
) -> ClusterUsage:
    """A cluster's totals over all its jobs (tests and conversion jobs), with its staging and conversion times."""
    seen = list(jobs)
    return ClusterUsage(
        stage_s=stage_s,
        convert_s=convert_s,
        core_hours=sum(u.core_hours or 0.0 for u in seen),
        gpu_hours=sum(u.gpu_hours or 0.0 for u in seen),
        jobs=len(seen),
    )


def hours_text(value: float | None) -> str:
    """0.000278 -> '0.0003', 1.234 -> '1.23', 1234.5 -> '1,234.5'; None -> '-'."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if value < 0.01:
        return f"{value:.4f}" if value >= 0.0001 else "<0.0001"
    return f"{value:.2f}" if value < 100 else f"{value:,.1f}"
