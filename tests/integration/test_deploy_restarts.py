"""`hpcci deploy` while the local cluster's daemons are restarted under it (issue 5, item 7: fault cases).

- slurmctld is stopped (TERM, as an admin restart does) while a smoke-test job runs and started again with
  `scripts/local-stack up cluster`: following tolerates the failed squeue calls and the job ends COMPLETED.
- the login node's sshd (its listener and every connection it serves) is stopped while the image tar is being
  uploaded over SFTP and started again: the upload resumes and the staged bytes are verified, or the deploy fails
  with one line - never is a partial tar used or left under its final name.

The daemons are stopped by the pid `scripts/local-stack` recorded ($HPCCI_STACK_DIR/run/cluster-NAME.pid, checked
against its .start file so a reused pid is never signalled) and always brought back, whatever the outcome.
These tests restart shared daemons: run them when no other test uses the local cluster.
Needs `scripts/local-stack up docker registry cluster`; skips without them (fails under CI=true).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deploy_support import FIB_TAG, journaled_job, login, make_project, on_login, unique, wait_for

from hpcci.errors import TransferError
from hpcci.process import run
from stack_env import LOCAL_STACK

STACK_DIR = Path(os.environ.get("HPCCI_STACK_DIR", "/var/lib/hpcci-stack"))


# -- the stack's daemons, by their recorded pid ------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name (state first), or None when the pid is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(") ", 1)[1].split()


def _gone(pid: int) -> bool:
    st = _stat(pid)
    return st is None or st[0] in ("Z", "X")  # a zombie has stopped; init reaps it a little later


def daemon_pid(name: str) -> int:
    """The live pid recorded for cluster-NAME, checked against the start time recorded with it."""
    pid = int((STACK_DIR / "run" / f"cluster-{name}.pid").read_text())
    start = (STACK_DIR / "run" / f"cluster-{name}.start").read_text().strip()
    st = _stat(pid)
    assert st is not None and st[19] == start and not _gone(pid), f"cluster-{name} (pid {pid}) is not running"
    return pid


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for k in kids:
            out += [k, *_descendants(k)]
    return out


def stop_daemon(name: str, *, with_children: bool = False) -> int:
    """TERM the recorded cluster-NAME (and, with_children, every process it forked); wait until they all stopped
    and init reaped them (a zombie would still look alive to `local-stack up`). Returns the pid."""
    pid = daemon_pid(name)
    victims = [pid, *(_descendants(pid) if with_children else [])]
    for p in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    wait_for(lambda: all(_gone(p) for p in victims), timeout=30, interval=0.1)
    wait_for(lambda: _stat(pid) is None, timeout=60, interval=0.2)
    return pid


def stack_up_cluster() -> None:
    done = run([LOCAL_STACK, "up", "cluster"], timeout=180, check=False)
    assert done.returncode == 0, f"scripts/local-stack up cluster failed: {done.stderr[-2000:]}"


def cluster_status() -> tuple[bool, str]:
    done = run([LOCAL_STACK, "status", "cluster"], timeout=120, check=False, echo=False)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


@pytest.fixture
def cluster_restored(require: Callable[..., None]) -> Iterator[None]:
    """The cluster is up before the test, and brought back after it whatever happened."""
    require("cluster")
    yield
    if not cluster_status()[0]:
        stack_up_cluster()
    up, why = cluster_status()
    assert up, f"the local cluster did not come back: {why}"


# -- deploys watched while they run ----------------------------------------------------------------------------


class Deploy:
    """`hpcci deploy` as its own process; its merged output read line by line as it comes."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hpcci", "deploy", *args],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def said(self, words: str) -> str:
        return next((ln for ln in list(self.lines) if words in ln), "")

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float) -> int:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(30)
        self._reader.join(30)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


# -- slurmctld restarted while a job runs ------------------------------------------------------------------------


# pytest-timeout: its own waits add up to 660 s (the job running, the failed poll, the deploy)
@pytest.mark.timeout(900)
def test_slurmctld_restarted_while_a_job_runs_is_tolerated_and_the_job_completes(
    fib_tar: Path, tmp_path: Path, cluster_restored: None
) -> None:
    name = unique("ctld-restart")
    test = {"name": name, "expect": {"output": "^survived the restart$"}, "resources": {"time": "00:05:00"},
            "command": ["python3", "-c", "import time; time.sleep(30); print('survived the restart')"]}  # fmt: skip
    proj = make_project(tmp_path / "proj", [test], deadline="00:05:00")
    deploy = Deploy(proj.root, "--image-tar", str(fib_tar))
    remote = login()
    try:

        def running() -> str:
            jid = journaled_job(proj, name)
            if not jid:
                return ""
            done = on_login(remote, ["squeue", "--noheader", f"--jobs={jid}", "--format=%i|%T"])
            return next((ln.split("|")[0] for ln in done.stdout.split() if ln.endswith("|RUNNING")), "")

        job_id = wait_for(lambda: deploy.proc.poll() is not None or running(), timeout=240)
        assert isinstance(job_id, str), f"the job never ran:\n{deploy.output[-3000:]}"
        old = stop_daemon("slurmctld")
        # down until hpcci has seen a failed poll, so the tolerance is really exercised (squeue waits for the
        # controller MessageTimeout seconds before it gives up)
        wait_for(lambda: deploy.said("tolerated") or deploy.proc.poll() is not None, timeout=120)
        stack_up_cluster()
        assert daemon_pid("slurmctld") != old  # a new controller, recovered from its saved state
        rc = deploy.wait(timeout=300)
    finally:
        deploy.kill()
        remote.close()
    out = deploy.output
    assert rc == 0, out[-3000:]
    failed_poll = deploy.said("tolerated")
    assert "squeue failed" in failed_poll and "/5, retrying" in failed_poll, out[-3000:]
    t = proj.tests()[name]
    assert (t["job_id"], t["state"], t["exit_code"], t["verdict"]) == (job_id, "COMPLETED", 0, "pass"), t
    assert t["output_tail"].strip() == "survived the restart"
    assert "Traceback" not in out
    up, why = cluster_status()
    assert up, why


# -- sshd stopped mid-upload -------------------------------------------------------------------------------------

BLOB_MIB = 160  # + the fibonacci image's ~120 MB: a tar of about 290 MB, five 64 MiB upload pieces


def _unique_image(tmp: Path, local_images: set[str]) -> tuple[Path, str, str]:
    """An image never deployed before (fresh digest: no cache hit) holding BLOB_MIB MiB of random bytes in /blob.
    Returns (its docker-save tar, its digest hex, the blob's sha256)."""
    ctx = tmp / "ctx"
    ctx.mkdir()
    blob = hashlib.sha256()
    with (ctx / "blob").open("wb") as f:
        for _ in range(BLOB_MIB):
            chunk = os.urandom(1 << 20)
            blob.update(chunk)
            f.write(chunk)
    (ctx / "Dockerfile").write_text(f"FROM {FIB_TAG}\nCOPY blob /blob\nLABEL hpcci.test={unique('drop')}\n")
    repository = "hpcci-test/upload-drop"
    local_images.add(repository)
    ref = f"{repository}:{unique('t')}"
    run(["docker", "build", "-q", "-t", ref, str(ctx)], timeout=600, env={"DOCKER_BUILDKIT": "0"})
    (ctx / "blob").unlink()
    image_id = run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], timeout=60).stdout.strip()
    tar = tmp / "upload.tar"
    run(["docker", "save", ref, "-o", str(tar)], timeout=300)
    return tar, image_id.removeprefix("sha256:"), blob.hexdigest()


def _written(path: Path) -> int:
    """Bytes really written to a sparse file (the upload truncates the temporary file to full size first)."""
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return -1


@pytest.fixture
def slow_link() -> Iterator[None]:
    """Throttle the host -> login node link (tc tbf on the host side of the veth pair) to ~20 MB/s, so the upload
    is still running when sshd is stopped: on a quiet machine an unthrottled 290 MB upload finishes first."""
    dev = "hpcci-veth0"
    run(["tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", "160mbit", "burst", "256kb", "latency", "200ms"],
        timeout=30)  # fmt: skip
    try:
        yield
    finally:
        run(["tc", "qdisc", "del", "dev", dev, "root"], timeout=30, check=False)


def test_sshd_stopped_mid_upload_resumes_or_fails_cleanly_never_using_a_partial_tar(
    fib_tar: Path, tmp_path: Path, cluster_restored: None, local_images: set[str], slow_link: None
) -> None:
    tar, key, blob_sha = _unique_image(tmp_path, local_images)
    size = tar.stat().st_size
    tar_sha = hashlib.sha256(tar.read_bytes()).hexdigest()
    test = {"name": "blob", "expect": {"output": f"^{blob_sha}$"},
            "resources": {"time": "00:05:00", "memory": "1G"},
            "command": ["python3", "-c", "import hashlib; print(hashlib.sha256(open('/blob', 'rb').read()).hexdigest())"],
            }  # fmt: skip
    proj = make_project(tmp_path / "proj", [test], deadline="00:05:00")
    deploy = Deploy(proj.root, "--image-tar", str(tar))
    images, left = "", ""
    try:
        line = wait_for(lambda: deploy.said("(SFTP)") or deploy.proc.poll() is not None, timeout=240)
        assert isinstance(line, str), f"no SFTP upload started:\n{deploy.output[-3000:]}"
        part = Path(
            line.split(" -> ", 1)[1].split(" (SFTP)", 1)[0].strip()
        )  # the login node's disk is this one
        images = str(part.parent)
        # mid-upload: a quarter of the bytes written (the final name does not exist yet)
        wait_for(lambda: _written(part) >= size // 4 or _written(part) < 0, timeout=120, interval=0.02)
        assert 0 <= _written(part) < size, "the upload finished before sshd could be stopped"
        assert not (part.parent / f"{key}.tar").exists()
        stop_daemon("sshd", with_children=True)  # the listener and every connection it served
        stack_up_cluster()
        rc = deploy.wait(timeout=300)
    finally:
        deploy.kill()
        if not cluster_status()[0]:
            stack_up_cluster()
        if images:
            remote = login()
            try:
                left = on_login(
                    remote, ["bash", "-c", f'ls -a -- "{images}" | grep -F {key[:16]} || true']
                ).stdout
                on_login(remote, ["bash", "-c", f'rm -f -- "{images}"/{key}.* "{images}"/.{key}.*'])
            finally:
                remote.close()
        tar.unlink(missing_ok=True)
    out = deploy.output
    at = out.find("Traceback")
    assert at < 0, f"a traceback reached the deploy's output:\n{out[max(0, at - 300) : at + 2500]}"
    assert "upload interrupted" in out, out[-3000:]  # the drop was seen by the upload itself
    t = proj.tests()["blob"]
    if rc == 0:
        # resumed: the staged bytes were checked before the rename, and the container sees the exact blob
        resumed = out.index("resuming")
        assert out.index(f"+ sha256sum -- {part}", resumed) < out.index(f"+ mv -f -- {part} ", resumed)
        assert proj.deploy_record()["clusters"][0]["tar_sha256"] == tar_sha
        assert (t["state"], t["verdict"]) == ("COMPLETED", "pass"), t
        assert t["output_tail"].strip() == blob_sha
        # converted (its sha256 kept beside it), the tar removed, no temporary left
        assert left.split() == [f"{key}.sif", f"{key}.sif.sha256"]
    else:
        # failed: one line saying what failed, nothing submitted, nothing under the final names
        assert rc == TransferError.exit_code, out[-3000:]
        err = proj.cluster_error() or ""
        assert "\n" not in err and "upload" in err, err
        assert t["state"] == "NOT_RUN" and t["job_id"] is None
        assert f"{key}.tar" not in left.split() and f"{key}.sif" not in left.split()
    up, why = cluster_status()
    assert up, why
