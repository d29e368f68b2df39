"""Slurm's accounting fields, parsed: submit and start times, allocated TRES (CPUs, GPUs, nodes), GRES per node.

Pure text-in functions for slurm.py's squeue and sacct parsers (a row is {column name: value}). What Slurm 22.05
prints: times as '2026-11-26T00:44:32' in the cluster's local time (the difference of two is all hpcci uses, so the
zone does not matter); sacct Start 'Unknown' while a job is pending, and for a job cancelled before it started the
cancel time, with NodeList 'None assigned' and an empty AllocTRES; AllocTRES 'billing=1,cpu=1,gres/gpu=1,mem=512M,
node=1'; squeue %S is only an estimate while a job is pending, and %b is the GRES per node ('gres:gpu:1').
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

NO_NODES = "None assigned"  # sacct's NodeList for a job that never got an allocation


def timestamp(text: str) -> datetime | None:
    """A Slurm time -> datetime; None for 'Unknown', 'None', 'N/A' or a format this does not read."""
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None


def queue_wait(submit: str, start: str) -> float | None:
    """Seconds from submit to start; None while the job has not started (or a time is unreadable)."""
    t0, t1 = timestamp(submit), timestamp(start)
    return max(0.0, (t1 - t0).total_seconds()) if t0 and t1 else None


def parse_tres(text: str) -> dict[str, str]:
    """AllocTRES 'billing=1,cpu=1,gres/gpu=1,mem=512M,node=1' -> {'billing': '1', 'cpu': '1', ...}."""
    pairs = (item.partition("=") for item in text.strip().split(",") if "=" in item)
    return {name.strip(): value.strip() for name, _, value in pairs}


def tres_gpus(tres: dict[str, str]) -> int:
    """GPUs in a TRES map: 'gres/gpu', or the sum of typed ones ('gres/gpu:a100') when only those are tracked."""
    if "gres/gpu" in tres:
        return count(tres["gres/gpu"]) or 0
    return sum(count(v) or 0 for k, v in tres.items() if k.startswith("gres/gpu:"))


def gres_gpus_per_node(text: str) -> int:
    """squeue %b 'gres:gpu:1', 'gres/gpu:a100:2' (comma-separated, per node) -> GPUs per node; 0 for none."""
    total = 0
    for item in text.strip().replace("gres/", "gres:").split(","):
        parts = item.split(":")
        if parts[:2] != ["gres", "gpu"]:
            continue
        total += (count(parts[-1]) or 1) if len(parts) > 2 else 1  # 'gres:gpu' alone is one
    return total


def host_count(nodelist: str) -> int:
    """How many hosts a Slurm hostlist names: 'node1' 1, 'node[1-2]' 2, 'a[01-03,7],gpu5' 5; 0 for none."""
    total = 0
    for name in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", nodelist.strip()):
        ranges = re.findall(r"\[([^\]]*)\]", name)
        n = 1
        for spec in ranges:
            n *= sum(_range_size(part) for part in spec.split(","))
        total += n
    return total


def _range_size(part: str) -> int:
    lo, dash, hi = part.partition("-")
    if dash and lo.isdigit() and hi.isdigit():
        return max(0, int(hi) - int(lo) + 1)
    return 1


def count(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


def queue_usage(row: dict[str, str]) -> dict[str, Any]:
    """JobState accounting fields from squeue's %V %S %D %C %b, for a job that started."""
    if "%b" not in row:
        return {}
    node_count = count(row["%D"])
    return {
        "queue_wait_s": queue_wait(row["%V"], row["%S"]),
        "node_count": node_count,
        "cpus": count(row["%C"]),
        "gpus": gres_gpus_per_node(row["%b"]) * (node_count or 1),
    }


def history_usage(row: dict[str, str]) -> dict[str, Any]:
    """JobState accounting fields from sacct's named columns; a job that never started is allocated nothing (it
    waited until it was cancelled: its Start is the cancel time)."""
    if "AllocCPUS" not in row:
        return {}
    usage: dict[str, Any] = {"queue_wait_s": queue_wait(row["Submit"], row["Start"])}
    elapsed = count(row["ElapsedRaw"])
    if elapsed is not None:
        usage["elapsed_s"] = float(elapsed)  # whole seconds, more exact than Elapsed for long jobs
    if row["NodeList"] not in ("", NO_NODES):
        tres = parse_tres(row["AllocTRES"])
        usage["node_count"] = count(tres.get("node", "")) or count(row["NNodes"])
        usage["cpus"] = count(tres.get("cpu", "")) or count(row["AllocCPUS"])
        usage["gpus"] = tres_gpus(tres)
    return usage
