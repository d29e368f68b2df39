"""Deploy figures, side by side in one run, printed as a Markdown table (issue 5, point 8).

- Staging a 1 GiB file to the local cluster's login node: OpenSSH scp against hpcci's SFTP upload (1 and N
  parallel streams) and against the login node pulling the same file from S3 through a presigned URL (curl),
  each followed by the remote sha256 check hpcci always does.
- A re-deploy of an unchanged image (cache hit: no transfer, no conversion): `hpcci deploy` wall time next to
  the smoke job's own elapsed time.
- hpcci's overhead from a job's end to its result being known (the job prints a high-resolution timestamp as its
  last act; the follow loop notes when it saw the job end), median of several jobs.
- One cluster against three deployed concurrently (three cluster configs on the local cluster, each with its own
  image cache, so each stages and converts).

Usage (local stack up: docker registry s3 cluster):
    .venv/bin/python benchmarks/bench_deploy.py [--size-mib 1024] [--runs 2] [--jobs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "integration")]  # stack_env, deploy_support
MiB = 1 << 20
RUN = uuid.uuid4().hex[:8]


def stack_env() -> None:
    """The local stack's endpoints and credentials (tests/stack_env.py), unless the caller already exported them."""
    if os.environ.get("HPCCI_LOCAL_SSH_KEY_FILE"):
        return
    from stack_env import read_env

    os.environ.update(read_env(check=True))


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rate(size: int, seconds: float) -> str:
    return f"{size / MiB / seconds:.0f} MiB/s"


# -- staging ----------------------------------------------------------------------------------------------------


def bench_staging(size_mib: int, runs: int, streams: int) -> list[tuple[str, str, str]]:
    from deploy_support import login, on_login

    from hpcci.backends.objectstore import S3Settings, make_store
    from hpcci.log import Log
    from hpcci.process import run

    key = os.environ["HPCCI_LOCAL_SSH_KEY_FILE"]
    known = os.environ["HPCCI_LOCAL_KNOWN_HOSTS"]
    host, port, user = (
        os.environ[k] for k in ("HPCCI_LOCAL_SSH_HOST", "HPCCI_LOCAL_SSH_PORT", "HPCCI_LOCAL_SSH_USER")
    )
    import shutil

    need = 6 * size_mib * MiB + (
        4 << 30
    )  # local blob, 4 remote copies at most one at a time + S3, and headroom
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < need:
        raise SystemExit(
            f"bench_deploy: {free >> 30} GiB free, staging {size_mib} MiB needs {need >> 30} GiB"
        )
    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    blob = work / "blob.bin"
    with blob.open("wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MiB))
    size = blob.stat().st_size
    remote = login()
    scratch = on_login(remote, ["printenv", "SCRATCH"]).stdout.strip() + f"/bench-{RUN}"
    remote.run(["mkdir", "-p", scratch], check=True)

    def verify(path: str) -> None:
        remote.run(["sha256sum", path], check=True, timeout=600)

    rows: list[tuple[str, str, str]] = []
    results: dict[str, list[float]] = {}

    def scp() -> None:
        run(["scp", "-q", "-i", key, "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
             "-P", port, str(blob), f"{user}@{host}:{scratch}/scp.bin"], timeout=1800, echo=False)  # fmt: skip
        verify(f"{scratch}/scp.bin")

    def sftp(n: int) -> Any:
        def go() -> None:
            remote.put(blob, f"{scratch}/sftp{n}.bin", streams=n)
            verify(f"{scratch}/sftp{n}.bin")

        return go

    store = make_store(S3Settings(bucket=os.environ.get("HPCCI_S3_BUCKET", "hpcci"),
                                  endpoint_url=os.environ["AWS_ENDPOINT_URL"], path_style=True))  # fmt: skip
    s3key = f"bench/{RUN}/blob.bin"
    store.upload_file(blob, s3key, metadata={}, log=Log())
    cluster_side = make_store(
        S3Settings(bucket=store.bucket, endpoint_url="http://10.77.0.1:8080", path_style=True)
    )

    def s3_pull() -> None:
        # exactly what `hpcci deploy` runs: curl | tee TMP | sha256sum, the URL on stdin
        from hpcci.shell import Pipe, login_argv

        url = cluster_side.presign_get(s3key)
        curl = ["curl", "--fail", "--silent", "--show-error", "--config", "-"]
        pipe = Pipe(curl, ["tee", "--", f"{scratch}/s3.bin"], ["sha256sum"])
        remote.run(login_argv([pipe]), stdin=f'url = "{url}"\n', check=True, timeout=1800)

    cases = [
        ("OpenSSH scp", scp, "scp.bin"),
        ("hpcci SFTP, 1 stream", sftp(1), "sftp1.bin"),
        (f"hpcci SFTP, {streams} streams", sftp(streams), f"sftp{streams}.bin"),
        ("hpcci S3 pull (login node: curl, tee, sha256sum in one pass)", s3_pull, "s3.bin"),
    ]
    try:
        for _ in range(runs):
            for name, fn, copy in cases:
                results.setdefault(name, []).append(timed(fn))
                remote.run(["rm", "-f", "--", f"{scratch}/{copy}"])  # one remote copy at a time
    finally:
        remote.run(["rm", "-rf", "--", scratch])
        remote.close()
        shutil.rmtree(work, ignore_errors=True)
        try:
            from swift_cleanup import delete_keys

            delete_keys(store.bucket, [s3key])  # its multipart segments too
        except Exception as e:  # the S3 server may refuse when the disk is full: say what is left behind
            print(f"bench_deploy: could not delete s3://{store.bucket}/{s3key}: {e}", file=sys.stderr)
    base = statistics.median(results["OpenSSH scp"])
    for name, times in results.items():
        med = statistics.median(times)
        rows.append((f"stage {size_mib} MiB + remote sha256: {name}", f"{med:.1f} s ({rate(size, med)})",
                     f"{base / med:.2f}x scp"))  # fmt: skip
    return rows


# -- deploys ---------------------------------------------------------------------------------------------------


def bench_cache_hit(tar: Path, root: Path) -> list[tuple[str, str, str]]:
    from deploy_support import hpcci, make_project

    fib = {"name": "fib", "command": "python3 /app/fib.py 10", "expect": {"output": "^55$"}}
    proj = make_project(root / "cache", [fib])
    first = hpcci(proj, "deploy", "--image-tar", str(tar))
    assert first.returncode == 0, first.stderr[-2000:]
    t0 = time.perf_counter()
    again = hpcci(proj, "deploy", "--image-tar", str(tar))
    wall = time.perf_counter() - t0
    assert again.returncode == 0 and proj.deploy_record()["clusters"][0]["cache_hit"], again.stderr[-2000:]
    job = proj.tests()["fib"]["elapsed_s"]
    return [("re-deploy, unchanged image (cache hit), `hpcci deploy` wall", f"{wall:.1f} s",
             f"job itself {job:.0f} s (sacct, 1 s resolution)")]  # fmt: skip


def bench_overhead(tar: Path, root: Path, jobs: int) -> list[tuple[str, str, str]]:
    """Job end (its last act prints time.time()) to hpcci knowing the final state, per job; median."""
    from deploy_support import cluster_config, make_project

    from hpcci.backends.remote import SSHRemote
    from hpcci.backends.schedulers import slurm
    from hpcci.backends.schedulers.jobs import RemoteJobs
    from hpcci.config_load import load_cluster, load_pipeline
    from hpcci.stages import smoke
    from hpcci.stages.execute import Deployer
    from hpcci.stages.sources import ImageSource, docker_archive_info

    tests = [{"name": f"t{i}", "command": ["python3", "-c", f"import time; time.sleep({2 + i}); print(repr(time.time()))"]}
             for i in range(jobs)]  # fmt: skip
    proj = make_project(root / "overhead", tests, cluster=cluster_config())
    pipe = load_pipeline(proj.root / "hpcci.yaml")
    cluster = load_cluster(proj.root / "cluster-configs" / "local.yaml")
    digest, platform = docker_archive_info(tar)
    sha = hashlib.sha256(tar.read_bytes()).hexdigest()
    src = {platform: ImageSource(platform, digest, tar_sha256=sha, local_tar=str(tar))}
    remote = SSHRemote(cluster.name, cluster.login)
    d = Deployer(pipe, cluster, remote, slurm, info=lambda m: None, run_id=f"bench-{RUN}")
    plan = d.plan(src)
    d.setup(plan)
    staged = {p: d.stage_image(i) for p, i in plan.images.items()}
    submitted, _ = d.submit_tests(plan, staged)
    clock_offset = time.time() - time.monotonic()
    out = smoke.follow(RemoteJobs(remote, slurm, plan.modules), list(submitted.values()), poll=cluster.scheduler.poll,
                       deadline=time.monotonic() + 600, info=lambda m: None)  # fmt: skip
    lags = []
    for job in plan.tests:
        jid = submitted[job.index]
        printed = float(remote.read_tail(job.output_path, 1000).strip().splitlines()[-1])
        lags.append(out.ended_at[jid] + clock_offset - printed)
    remote.close()
    p = cluster.scheduler.poll
    return [(f"job end -> result known (median of {jobs}; poll {p.initial:g}s..{p.max:g}s)",
             f"{statistics.median(lags):.2f} s", f"min {min(lags):.2f} s, max {max(lags):.2f} s")]  # fmt: skip


def bench_concurrency(tar: Path, root: Path) -> list[tuple[str, str, str]]:
    import yaml
    from deploy_support import cluster_config, hpcci, make_project

    fib = {"name": "fib", "command": "python3 /app/fib.py 10", "expect": {"output": "^55$"}}

    def project(name: str, n: int) -> Any:
        proj = make_project(root / name, [fib])
        for i in range(n):
            cfg = cluster_config(name=f"c{i}", **{"paths.image_cache": f"$SCRATCH/bench-{RUN}-{name}-{i}"})
            (proj.root / "cluster-configs" / f"c{i}.yaml").write_text(yaml.safe_dump(cfg))
        return proj

    times: dict[tuple[int, str], float] = {}
    projects = {n: project(f"conc{n}", n) for n in (1, 3)}
    for kind in ("fresh", "cached"):  # fresh: every cluster stages and converts; cached: all cache hits
        for n, proj in projects.items():
            args = [a for i in range(n) for a in ("--cluster", f"c{i}")]
            t0 = time.perf_counter()
            done = hpcci(proj, "deploy", "--image-tar", str(tar), *args)
            times[n, kind] = time.perf_counter() - t0
            assert done.returncode == 0, done.stderr[-3000:]
    from deploy_support import login

    remote = login()
    remote.run(["bash", "-c", f'rm -rf -- "$SCRATCH"/bench-{RUN}-*'], timeout=120)
    remote.close()
    return [
        ("deploy to 1 cluster (stage + convert + job)", f"{times[1, 'fresh']:.1f} s", ""),
        ("deploy to 3 clusters concurrently (each stages + converts on the same 2 cores)",
         f"{times[3, 'fresh']:.1f} s", f"{times[3, 'fresh'] / times[1, 'fresh']:.2f}x one"),
        ("deploy to 1 cluster, image cached", f"{times[1, 'cached']:.1f} s", ""),
        ("deploy to 3 clusters concurrently, images cached", f"{times[3, 'cached']:.1f} s",
         f"{times[3, 'cached'] / times[1, 'cached']:.2f}x one"),
    ]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--jobs", type=int, default=5)
    p.add_argument("--only", choices=["staging", "cache", "overhead", "concurrency"], action="append")
    args = p.parse_args()
    stack_env()
    from deploy_support import build_fib_tar

    root = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    only = args.only or ["staging", "cache", "overhead", "concurrency"]
    rows: list[tuple[str, str, str]] = []
    tar = build_fib_tar(root / "fib.tar") if set(only) - {"staging"} else None
    if "staging" in only:
        rows += bench_staging(args.size_mib, args.runs, args.streams)
    if tar and "cache" in only:
        rows += bench_cache_hit(tar, root)
    if tar and "overhead" in only:
        rows += bench_overhead(tar, root, args.jobs)
    if tar and "concurrency" in only:
        rows += bench_concurrency(tar, root)
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"\n<!-- bench_deploy.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"load {load:.1f} -->")  # fmt: skip
    print("| measurement | result | compared |\n|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")


if __name__ == "__main__":
    main()
