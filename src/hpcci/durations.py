"""Durations as batch schedulers write them ([D-]HH:MM:SS and its short forms): text -> seconds, no scheduler needed.

Config values (deploy.deadline, a test's time, max_queue_wait) and what a scheduler reports (elapsed times) use this
one grammar; the Slurm backend reads its own output with it, nothing here knows Slurm.
"""

from __future__ import annotations

import re


def duration_seconds(text: str) -> float | None:
    """A duration in any form a scheduler writes or reads -> seconds; None for '', 'INVALID', 'UNLIMITED'.

    Limits: 'MM', 'MM:SS', 'HH:MM:SS', 'D-HH', 'D-HH:MM', 'D-HH:MM:SS'; elapsed times (queue and accounting columns)
    the same, with fractions of a second in the last field ('MM:SS.mmm').
    """
    days, dash, clock = text.strip().rpartition("-")
    parts = clock.split(":")
    if (dash and not days.isdigit()) or len(parts) > 3 or not re.fullmatch(r"(\d+:){0,2}\d+(\.\d+)?", clock):
        return None
    numbers = [float(p) for p in parts]
    weights = (3600, 60, 1) if dash else {1: (60,), 2: (60, 1), 3: (3600, 60, 1)}[len(numbers)]
    return int(days or 0) * 86400 + sum(n * w for n, w in zip(numbers, weights, strict=False))
