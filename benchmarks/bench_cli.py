"""Cold start of `hpcci --help` against a bare `python -c pass`, side by side (median of N runs)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 15
BIN = Path(sys.executable).parent


def median_seconds(argv: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    python = median_seconds([sys.executable, "-c", "pass"])
    hpcci = median_seconds([str(BIN / "hpcci"), "--help"])
    validate = median_seconds([str(BIN / "hpcci"), "validate", "--help"])
    print("| what | median | vs bare python |")
    print("|---|---|---|")
    print(f"| python -c pass | {python * 1000:.0f} ms | 1.0x |")
    print(f"| hpcci --help | {hpcci * 1000:.0f} ms | {hpcci / python:.1f}x |")
    print(f"| hpcci validate --help | {validate * 1000:.0f} ms | {validate / python:.1f}x |")


if __name__ == "__main__":
    main()
