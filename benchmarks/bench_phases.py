"""Where the seconds of `scripts/demo` go (warm): per phase, from `hpcci build` to the completed check run.

Plays the demo's pipeline on examples/fibonacci against the local stack (a tag push of v0.1.0 on a fresh commit,
as scripts/demo does): build -> publish -> deploy -> report, each `hpcci` command its own process, as CI runs
them. Every line a command prints is stamped when it arrives; the phases are read from those lines and from the
jobs' own Slurm accounting (submit, start, end):

- build <platform>: `hpcci build`'s lines "building <platform>" to the next platform's (or the end);
- publish: the whole `hpcci publish`;
- deploy start-up: process start to the first line of the cluster (config, publish record, SSH connection);
- connect + plan: to the first staging/cache line (login shell: $SCRATCH, runtime version);
- stage + convert: to the first test submitted (a cache hit: only the cache check);
- submit: the sbatch calls;
- queue / run: the smoke job's Submit->Start and Start->End from sacct;
- poll until known: the job's End to the line saying its verdict;
- release install: that line to the release's line;
- deploy wind-down: to the process's end (records, summary, SSH close);
- report: the whole `hpcci report` (the check run completed).

The first run warms the caches (docker layers, the image cache on the cluster); the last is printed as a Markdown
table with the earlier ones beside it.

Usage (local stack up):  .venv/bin/python benchmarks/bench_phases.py [--runs 2] [--log FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "integration")]  # stack_env, deploy_support
HPCCI = str(REPO / ".venv" / "bin" / "hpcci")


@dataclass
class Run:
    """One pipeline run: every line with the seconds since the run started, and each command's span."""

    t0: float = field(default_factory=time.monotonic)
    lines: list[tuple[float, str, str]] = field(default_factory=list)  # (seconds, command, line)
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    jobs: dict[str, dict[str, float]] = field(default_factory=dict)  # job id -> Submit/Start/End seconds

    def now(self) -> float:
        return time.monotonic() - self.t0

    def command(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]) -> int:
        start = self.now()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.lines.append((self.now(), name, line.rstrip("\n")))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        rc = proc.wait(timeout=1800)
        reader.join(60)
        self.spans[name] = (start, self.now())
        return rc

    def first(self, command: str, pattern: str, after: float = 0.0) -> float | None:
        rx = re.compile(pattern)
        return next((t for t, c, line in self.lines if c == command and t >= after and rx.search(line)), None)


def sacct_times(job_ids: list[str], run: Run, wall0: float) -> None:
    """Submit/Start/End of the jobs from the cluster's accounting, as seconds of ``run`` (wall0: its epoch)."""
    from deploy_support import login, on_login

    remote = login()
    try:
        fmt = "JobID,Submit,Start,End"
        out = on_login(
            remote, ["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", fmt, "--noconvert"]
        ).stdout
        tz = on_login(remote, ["date", "+%z"]).stdout.strip()
    finally:
        remote.close()
    from datetime import datetime

    for line in out.splitlines():
        jid, *stamps = line.split("|")
        when: dict[str, float] = {}
        for key, s in zip(("submit", "start", "end"), stamps, strict=True):
            if s and s not in ("Unknown", "None"):
                epoch = datetime.strptime(s + tz, "%Y-%m-%dT%H:%M:%S%z").timestamp()
                when[key] = epoch - wall0
        run.jobs[jid] = when


def play(work: Path, env: dict[str, str]) -> Run:
    run = Run()
    wall0 = time.time() - run.now()
    for name, argv in [
        ("build", [HPCCI, "build"]),
        ("publish", [HPCCI, "publish"]),
        ("deploy", [HPCCI, "deploy"]),
        ("report", [HPCCI, "report"]),
    ]:
        rc = run.command(name, argv, work, env)
        if rc != 0 and name != "report":
            tail = "\n".join(line for _, c, line in run.lines if c == name)[-3000:]
            raise SystemExit(f"bench_phases: hpcci {name} exited {rc}:\n{tail}")
    ids = sorted(
        {
            m.group(1)
            for _, c, line in run.lines
            if c == "deploy"
            for m in [re.search(r"job (\d+)", line)]
            if m
        }
    )
    if ids:
        sacct_times(ids, run, wall0)
    return run


def phases(run: Run) -> list[tuple[str, float]]:
    """(phase, seconds) in pipeline order, read from the stamped lines and the jobs' accounting."""
    out: list[tuple[str, float]] = []
    b0, b1 = run.spans["build"]
    # "    build linux/amd64 (buildah): 0.9s": the builder's own time per platform
    for _t, _, line in run.lines:
        m = re.match(r"\s+build (linux/\w+) \(\w+\): ([\d.]+)s$", line)
        if m:
            out.append((f"build {m.group(1)}", float(m.group(2))))
    out.append(("build: other (start-up, tags, record)", (b1 - b0) - sum(s for _, s in out)))
    p0, p1 = run.spans["publish"]
    pushed = run.first("publish", r"^\s+push .*: [\d.]+s$") or p0
    out.append(("publish: registry push (both platforms, manifest list)", pushed - p0))
    out.append(("publish: S3 export + upload (platform after platform)", p1 - pushed))
    d0, d1 = run.spans["deploy"]
    first = run.first("deploy", r"^\[local\]") or d0
    staged = run.first("deploy", r"^\[local\] \+ test -s ") or first
    submitted = run.first("deploy", r"submitted as job") or staged
    last_submit = max(
        (t for t, c, line in run.lines if c == "deploy" and "submitted as job" in line), default=submitted
    )
    known = max((t for t, c, line in run.lines if c == "deploy" and "+ sacct -X --noheader --parsable2 --jobs=" in line),
                default=d1)  # fmt: skip
    release0 = run.first("deploy", r"/apps/|release", after=known + 1e-6)
    release1 = run.first("deploy", r"installed as module|release .*not", after=known)
    out.append(("deploy: start-up to the cluster's first line", first - d0))
    out.append(("deploy: connect, login shell, runtime version, folders, re-attach lookup", staged - first))
    out.append(("deploy: stage + convert", submitted - staged))
    out.append(("deploy: submit", last_submit - submitted))
    tests = [j for j in run.jobs.values() if {"submit", "start", "end"} <= set(j)]
    if tests:
        job = max(tests, key=lambda j: j["end"])
        out.append(("queue (Submit->Start, sacct)", max(job["start"] - job["submit"], 0.0)))
        out.append(("run (Start->End, sacct)", job["end"] - job["start"]))
        out.append(("poll until known (End -> the final sacct)", known - job["end"]))
    else:
        out.append(("queue + run + poll (no accounting)", known - last_submit))
    if release0 is not None and release1 is not None:
        out.append(("deploy: SIF checksum (provenance)", release0 - known))
        out.append(("release install", release1 - release0))
    out.append(("deploy: wind-down (records, summary)", d1 - (release1 or known)))
    r0, r1 = run.spans["report"]
    out.append(("report (check run completed)", r1 - r0))
    return out


def prepare(root: Path) -> tuple[Path, dict[str, str]]:
    """A user repository like scripts/demo's: examples/fibonacci committed, a v0.1.0 tag push as CI sees it."""
    work = root / "repo"
    shutil.copytree(REPO / "examples" / "fibonacci", work, symlinks=False)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run(["git", "add", "-A"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-qm", f"bench {time.time()}"], cwd=work, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True, text=True)
    env = dict(os.environ)
    env.update(GITHUB_EVENT_NAME="push", GITHUB_REF="refs/tags/v0.1.0", GITHUB_SHA=sha.stdout.strip(),
               GITHUB_RUN_ID=str(random.randrange(10**6)), HPCCI_REPLACE_RELEASE="1",
               PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")  # fmt: skip
    return work, env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=2, help="the first warms the caches (default 2)")
    p.add_argument("--log", type=Path, help="write every stamped line of the last run here")
    args = p.parse_args()
    from stack_env import read_env

    os.environ.update(read_env(check=True))  # the stack's endpoints, for this process's own SSH (sacct)
    runs: list[list[tuple[str, float]]] = []
    totals: list[float] = []
    last: Run | None = None
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="hpcci-bench-phases-") as d:
            work, env = prepare(Path(d))
            last = play(work, env)
            runs.append(phases(last))
            totals.append(last.spans["report"][1] - last.spans["build"][0])
    assert last is not None
    if args.log:
        args.log.write_text("".join(f"{t:8.2f} {c:8} {line}\n" for t, c, line in last.lines))
    head = " | ".join(f"run {i + 1}" for i in range(len(runs)))
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 shared cores)")
    print(f"| phase | {head} |")
    print("|---|" + "---|" * len(runs))
    for i, (name, _) in enumerate(runs[-1]):
        cells = " | ".join(f"{r[i][1]:.1f} s" if i < len(r) and r[i][0] == name else "-" for r in runs)
        print(f"| {name} | {cells} |")
    cells = " | ".join(f"**{t:.1f} s**" for t in totals)
    print(f"| **total, `hpcci build` to the completed check run** | {cells} |")
    print("(queue and run are from sacct, whole seconds; the other phases from the lines' arrival)")


if __name__ == "__main__":
    main()
