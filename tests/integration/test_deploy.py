"""`hpcci deploy` end to end on the local stack's cluster: a real image staged over SFTP or pulled by the login node
from S3, converted by the apptainer STAND-IN, run as Slurm jobs through the SSH login node, followed and judged.

Needs `scripts/local-stack up docker registry s3 cluster`; skips without them (fails under CI=true).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_support import (
    Project,
    build_fib_tar,
    cluster_config,
    hpcci,
    journaled_job,
    login,
    make_project,
    on_login,
    unique,
    wait_for,
)

from hpcci import records as rec
from hpcci.errors import (
    ConfigError,
    HostKeyError,
    Interrupted,
    RuntimeConvertError,
    SmokeTestFailed,
    TransferError,
)
from hpcci.process import run
from stack_env import skip_or_fail
from swift_cleanup import delete_keys

FIB = {"name": "fib", "command": "python3 /app/fib.py 10", "expect": {"output": "^55$"},
       "resources": {"time": "00:05:00", "memory": "512M"}}  # fmt: skip


# -- the main run: every kind of outcome in one deploy ---------------------------------------------------------


@pytest.fixture(scope="module")
def big_run(fib_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Any]]:
    """One deploy with a passing, GPU, MPI, failing, timing-out and externally cancelled test."""
    cancel_name = unique("cancelme")
    tests: list[dict[str, Any]] = [
        FIB,
        {"name": "gpu", "gpu": True, "expect": {"output": "^gpu=0$"},
         "command": ["python3", "-c", "import os; print('gpu=' + os.environ.get('CUDA_VISIBLE_DEVICES', 'none'))"]},
        {"name": "mpi", "mpi": True, "resources": {"tasks": 3}, "command": "python3 /app/fib_mpi.py 10",
         "expect": {"output": r"^world size 3, ranks 0 1 2: fib\(10\) = 55$"}},  # rank 0 heard from all three
        {"name": "exit3", "command": ["python3", "-c", "import sys; print('about to fail'); sys.exit(3)"]},
        {"name": "slow", "command": "sleep 600", "resources": {"time": "1"}},
        {"name": cancel_name, "command": "sleep 600"},
    ]  # fmt: skip
    proj = make_project(tmp_path_factory.mktemp("big"), tests)
    remote = login()
    stop = threading.Event()

    def cancel_it_from_outside() -> None:
        def job_id() -> str:
            jid = journaled_job(proj, cancel_name)
            done = (
                on_login(remote, ["squeue", "--noheader", f"--jobs={jid}", "--format=%i|%T"]) if jid else None
            )
            lines = [ln for ln in done.stdout.split() if ln.endswith("|RUNNING")] if done else []
            return lines[0].split("|")[0] if lines else ""

        jid = wait_for(lambda: stop.is_set() or job_id(), timeout=300)
        if isinstance(jid, str):
            on_login(remote, ["scancel", jid])

    watcher = threading.Thread(target=cancel_it_from_outside, daemon=True)
    watcher.start()
    try:
        done = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
    finally:
        stop.set()
        watcher.join(10)
        remote.close()
    yield proj, done


def test_fibonacci_prints_55_and_passes(big_run: tuple[Project, Any]) -> None:
    proj, _ = big_run
    fib = proj.tests()["fib"]
    assert fib["verdict"] == "pass", fib
    assert fib["state"] == "COMPLETED" and fib["exit_code"] == 0 and fib["output_tail"].strip() == "55"
    assert fib["source_file"] == "hpcci.yaml" and fib["source_line"]


def test_gpu_test_lands_on_the_gpu_partition_with_the_gpu_flag(big_run: tuple[Project, Any]) -> None:
    proj, _ = big_run
    gpu = proj.tests()["gpu"]
    assert gpu["verdict"] == "pass", gpu  # CUDA_VISIBLE_DEVICES=0 reached the container: --nv and gres worked
    remote = login()
    try:
        done = on_login(
            remote, ["sacct", "-X", "-n", "-P", f"--jobs={gpu['job_id']}", "--format=Partition,AllocTRES"]
        )
    finally:
        remote.close()
    partition, tres = done.stdout.strip().split("|")
    assert partition == "gpu" and "gres/gpu=1" in tres


def test_mpi_test_runs_several_tasks(big_run: tuple[Project, Any]) -> None:
    proj, _ = big_run
    mpi = proj.tests()["mpi"]
    assert mpi["verdict"] == "pass", mpi
    assert mpi["output_tail"].count(" of 3 on ") == 3  # each rank's own line: three ranks of one world


def test_a_test_exiting_3_fails_with_its_exit_code(big_run: tuple[Project, Any]) -> None:
    proj, done = big_run
    t = proj.tests()["exit3"]
    assert (t["state"], t["exit_code"], t["verdict"]) == ("FAILED", 3, "fail")
    assert "exited with code 3, expected 0" in t["reason"] and "about to fail" in t["reason"]
    assert done.returncode == SmokeTestFailed.exit_code


def test_timeout_job_reports_timed_out(big_run: tuple[Project, Any]) -> None:
    proj, _ = big_run
    t = proj.tests()["slow"]
    assert (t["state"], t["verdict"]) == ("TIMEOUT", "timed_out")
    assert "time limit" in t["reason"]


def test_a_job_cancelled_from_outside_reports_cancelled(big_run: tuple[Project, Any]) -> None:
    proj, _ = big_run
    (t,) = [t for name, t in proj.tests().items() if name.startswith("cancelme")]
    assert (t["state"], t["verdict"]) == ("CANCELLED", "cancelled")
    assert "not stopped by hpcci" in t["reason"]


def test_deploy_record_names_the_content_addressed_image(big_run: tuple[Project, Any]) -> None:
    proj, _ = big_run
    record = rec.read(rec.DeployRecord, proj.records / "deploy.json")
    (c,) = record.clusters
    assert c.sif_path.endswith(c.image_digest.removeprefix("sha256:") + ".sif")
    assert set(c.jobs) >= {"fib", "gpu", "mpi", "exit3", "slow"}


# -- cache, deadline, signals --------------------------------------------------------------------------------


def test_redeploy_of_an_unchanged_image_is_a_cache_hit(
    fib_tar: Path, project: Callable[..., Project]
) -> None:
    proj = project([FIB])
    first = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
    assert first.returncode == 0, first.stderr[-2000:]
    run_id = unique("private")
    again = hpcci(proj, "deploy", "--image-tar", str(fib_tar), "--run-id", run_id)
    assert again.returncode == 0, again.stderr[-2000:]
    assert proj.deploy_record()["clusters"][0]["cache_hit"] is True
    remote = login()
    try:  # the run's folder (job scripts, outputs, registry credentials) is private to the deploying user
        mode = on_login(remote, ["stat", "-c", "%a", "--", f"{_scratch(remote)}/hpcci/runs/{run_id}"])
        on_login(remote, ["rm", "-rf", "--", f"{_scratch(remote)}/hpcci/runs/{run_id}"])
    finally:
        remote.close()
    assert mode.stdout.strip() == "700", mode.stdout + mode.stderr
    assert "(cache hit)" in again.stderr
    assert "uploading" not in again.stderr and "converting" not in again.stderr
    assert proj.tests()["fib"]["verdict"] == "pass"


def test_deadline_cancels_the_jobs_and_says_so(fib_tar: Path, project: Callable[..., Project]) -> None:
    proj = project([{"name": "forever", "command": "sleep 600"}])
    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar), "--deadline", "0:20")
    t = proj.tests()["forever"]
    assert (t["state"], t["verdict"]) == ("CANCELLED", "cancelled")
    assert t["reason"].startswith("the deploy deadline (0:20) passed; hpcci cancelled the job")
    assert done.returncode == SmokeTestFailed.exit_code
    remote = login()
    try:
        state = wait_for(lambda: _sacct_state(remote, t["job_id"]).startswith("CANCELLED"), timeout=60)
    finally:
        remote.close()
    assert state


def _scratch(remote: Any) -> str:
    return str(on_login(remote, ["printenv", "SCRATCH"]).stdout.strip())


def _sacct_state(remote: Any, job_id: str) -> str:
    done = on_login(remote, ["sacct", "-X", "-n", "-P", f"--jobs={job_id}", "--format=State"])
    return str(done.stdout.strip())


def test_sigterm_cancels_the_submitted_jobs(fib_tar: Path, project: Callable[..., Project]) -> None:
    name = unique("sigterm")
    proj = project([{"name": name, "command": "sleep 600"}])
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpcci", "deploy", "--image-tar", str(fib_tar)],
        cwd=proj.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    remote = login()
    try:

        def running() -> str:
            jid = journaled_job(proj, name)
            if not jid:
                return ""
            done = on_login(remote, ["squeue", "--noheader", f"--jobs={jid}", "--format=%i|%T"])
            return next((ln.split("|")[0] for ln in done.stdout.split() if ln.endswith("|RUNNING")), "")

        job_id = wait_for(running, timeout=300)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == Interrupted.exit_code, out[-2000:]
        assert wait_for(lambda: _sacct_state(remote, job_id).startswith("CANCELLED"), timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        remote.close()
    t = proj.tests()[name]
    assert t["verdict"] == "cancelled" and "SIGTERM/SIGINT" in t["reason"]


# -- S3 staging: the login node pulls a presigned URL ---------------------------------------------------------


_PUBLISHED: list[
    rec.S3Object
] = []  # removed again (object, and its staged tar/converted image) after the module


@pytest.fixture(scope="module", autouse=True)
def _remove_what_the_tests_published() -> Iterator[None]:
    yield
    if not _PUBLISHED:
        return
    remote = login()
    try:
        for obj in _PUBLISHED:
            delete_keys(obj.bucket, [obj.key])  # its multipart segments too
            hexd = obj.digest.removeprefix("sha256:")
            remote.run(
                ["bash", "-c", f'rm -f -- "$SCRATCH"/hpcci/images/{hexd}.* "$SCRATCH"/hpcci/images/.{hexd}.*']
            )
    finally:
        remote.close()
    _PUBLISHED.clear()


def _publish_to_s3(
    tar: Path, key: str, *, sha256: str | None = None, digest: str | None = None
) -> rec.S3Object:
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    bucket = os.environ.get("HPCCI_S3_BUCKET", "hpcci")
    s3.upload_file(str(tar), bucket, key)
    real = hashlib.sha256(tar.read_bytes()).hexdigest()
    obj = rec.S3Object(
        bucket=bucket, key=key, size=tar.stat().st_size, sha256=sha256 or real, platform="linux/amd64",
        digest=digest or "sha256:" + hashlib.sha256(os.urandom(16)).hexdigest(),
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
    )  # fmt: skip
    _PUBLISHED.append(obj)
    return obj


def _write_publish(proj: Project, obj: rec.S3Object) -> None:
    rec.write(
        rec.PublishRecord(image="hpcci-test/fibonacci", tags=["h4"], s3=[obj]), proj.records / "publish.json"
    )


def test_login_node_pulls_the_published_tar_from_s3(
    fib_tar: Path, project: Callable[..., Project], require: Callable[..., None]
) -> None:
    require("s3")
    proj = project([FIB])
    # a fresh digest, so this deploy really stages and converts instead of hitting the cache
    _write_publish(proj, _publish_to_s3(fib_tar, f"h4-tests/{unique('fib')}.tar"))
    done = hpcci(proj, "deploy")
    assert done.returncode == 0, done.stderr[-3000:]
    assert proj.deploy_record()["clusters"][0]["staging"] == "s3"
    assert "login node pulls s3://" in done.stderr
    assert "X-Amz-Signature" not in done.stderr  # the presigned URL never reaches the log
    assert proj.tests()["fib"]["verdict"] == "pass"


def test_sha256_mismatch_is_refused_and_the_copy_deleted(
    fib_tar: Path, project: Callable[..., Project], require: Callable[..., None]
) -> None:
    require("s3")
    proj = project([FIB])
    obj = _publish_to_s3(fib_tar, f"h4-tests/{unique('bad')}.tar", sha256="0" * 64)
    _write_publish(proj, obj)
    done = hpcci(proj, "deploy")
    assert done.returncode == TransferError.exit_code
    err = proj.cluster_error() or ""
    assert "sha256 is" in err and "0" * 64 in err and "deleted" in err
    assert proj.tests()["fib"]["state"] == "NOT_RUN"
    remote = login()
    try:
        left = on_login(
            remote, ["bash", "-c", f'ls "$SCRATCH"/hpcci/images | grep -c {obj.digest[7:19]} || true']
        )
    finally:
        remote.close()
    assert left.stdout.strip() == "0"  # no temporary, no tar, no image for that digest


def test_conversion_failure_shows_the_runtimes_error(
    tmp_path: Path, project: Callable[..., Project], require: Callable[..., None]
) -> None:
    require("s3")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a docker archive\n" * 100)
    proj = project([FIB])
    _write_publish(proj, _publish_to_s3(junk, f"h4-tests/{unique('junk')}.tar"))
    done = hpcci(proj, "deploy")
    assert done.returncode == RuntimeConvertError.exit_code
    err = proj.cluster_error() or ""
    assert "could not convert the image" in err and "apptainer" in err.lower()
    assert "FATAL" in err or "error" in err.lower()


# -- faults ------------------------------------------------------------------------------------------------------


def _server_fingerprint() -> str:
    known = Path(os.environ["HPCCI_LOCAL_KNOWN_HOSTS"])
    out = run(["ssh-keygen", "-l", "-f", str(known)], timeout=30).stdout
    return out.split()[1]


def test_a_changed_host_key_is_refused_with_both_fingerprints(
    fib_tar: Path, project: Callable[..., Project], tmp_path: Path
) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], timeout=30)
    pub = (tmp_path / "other.pub").read_text().split()
    (tmp_path / "known_hosts").write_text(f"[10.77.0.2]:2222 {pub[0]} {pub[1]}\n")
    proj = project(
        [FIB], cluster=cluster_config(**{"login.known_hosts": {"file": str(tmp_path / "known_hosts")}})
    )
    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
    assert done.returncode == HostKeyError.exit_code
    err = proj.cluster_error() or ""
    assert "CHANGED" in err and _server_fingerprint() in err
    assert "Traceback" not in done.stderr
    # nothing was sent over a connection that never opened: no command is echoed as if it ran
    assert "+ bash -lc" not in done.stdout + done.stderr


def test_an_unknown_host_key_is_refused_and_its_fingerprint_shown(
    fib_tar: Path, project: Callable[..., Project], tmp_path: Path
) -> None:
    (tmp_path / "known_hosts").write_text("# nothing known\n")
    proj = project(
        [FIB], cluster=cluster_config(**{"login.known_hosts": {"file": str(tmp_path / "known_hosts")}})
    )
    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
    assert done.returncode == HostKeyError.exit_code
    assert f"not in login.known_hosts (the server offered ssh-ed25519 {_server_fingerprint()})" in (
        proj.cluster_error() or ""
    )


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"scheduler.partitions.cpu.name": "nosuch"}, "Invalid partition name specified"),
        ({"scheduler.account": "nosuch"}, "Invalid account"),
    ],
)
def test_sbatch_refusing_a_partition_or_account_reaches_the_result(
    fib_tar: Path, project: Callable[..., Project], change: dict[str, str], words: str
) -> None:
    proj = project([FIB], cluster=cluster_config(**change))
    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
    t = proj.tests()["fib"]
    assert t["verdict"] == "error" and t["state"] == "NOT_RUN"
    assert words in t["reason"] and "cluster config" in t["reason"]
    assert done.returncode == SmokeTestFailed.exit_code


FLAKY_SACCT = """#!/bin/sh
# fault injection for hpcci's tests: the first 2 sacct calls fail like an unreachable slurmdbd
n=$(cat "{state}" 2>/dev/null || echo 0); echo $((n + 1)) > "{state}"
if [ "$n" -lt 2 ]; then echo "sacct: error: Problem talking to the database: Connection refused" >&2; exit 1; fi
exec /usr/bin/sacct "$@"
"""
FLAKY_MODULE = """#%Module1.0
## hpcci tests: a sacct that fails its first calls (fault injection)
prepend-path PATH {bin}
"""


def test_sacct_briefly_unavailable_is_tolerated(fib_tar: Path, project: Callable[..., Project]) -> None:
    # The fault-injection module goes into the site's modulefiles (written here as root, like a site admin would):
    # Lmod, the local cluster's `module`, loads modules by name from MODULEPATH only, never by file path.
    name = unique("sacct-flaky")
    modulefile = Path(os.environ["HPCCI_STACK_DIR"], "cluster", "modulefiles", "hpcci-test", name)
    remote = login()
    try:
        base = on_login(remote, ["printenv", "SCRATCH"]).stdout.strip() + "/" + name
        remote.run(["mkdir", "-p", f"{base}/bin"], check=True)
        remote.write_text(f"{base}/bin/sacct", FLAKY_SACCT.format(state=f"{base}/count"), mode=0o755)
        modulefile.parent.mkdir(exist_ok=True)
        modulefile.write_text(FLAKY_MODULE.format(bin=f"{base}/bin"))
        proj = project([FIB], cluster=cluster_config(modules=[f"hpcci-test/{name}"]))
        done = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
        calls = int(remote.run(["cat", f"{base}/count"], check=True).stdout)
    finally:
        modulefile.unlink(missing_ok=True)
        remote.close()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Problem talking to the database" in done.stderr and "tolerated" in done.stderr
    assert calls >= 3
    assert proj.tests()["fib"]["verdict"] == "pass"


# -- conversion inside a job (runtime only on compute nodes) ------------------------------------------------


def test_convert_on_compute_runs_the_conversion_as_a_job_the_tests_depend_on(
    fib_tar: Path, project: Callable[..., Project], require: Callable[..., None]
) -> None:
    require("s3")
    proj = project([FIB], cluster=cluster_config(**{"runtime.convert_on": "compute"}))
    _write_publish(proj, _publish_to_s3(fib_tar, f"h4-tests/{unique('compute')}.tar"))
    done = hpcci(proj, "deploy")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--dependency=afterok:" in done.stderr
    assert proj.tests()["fib"]["verdict"] == "pass"


def test_a_failing_conversion_job_shows_its_output_and_the_tests_do_not_run(
    tmp_path: Path, project: Callable[..., Project], require: Callable[..., None]
) -> None:
    require("s3")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not an image\n" * 100)
    proj = project([FIB], cluster=cluster_config(**{"runtime.convert_on": "compute"}))
    _write_publish(proj, _publish_to_s3(junk, f"h4-tests/{unique('junk')}.tar"))
    done = hpcci(proj, "deploy")
    assert done.returncode == RuntimeConvertError.exit_code
    err = proj.cluster_error() or ""
    assert "the conversion job" in err and "did not succeed" in err
    t = proj.tests()["fib"]
    assert t["verdict"] == "error" and t["reason"].startswith("not run:")


# -- registry staging: the runtime pulls the image itself ---------------------------------------------------


def test_the_runtime_pulls_from_the_registry_with_credentials_kept_off_the_command_line(
    fib_tar: Path, project: Callable[..., Project], require: Callable[..., None]
) -> None:
    require("registry")
    from deploy_support import FIB_TAG

    reg = os.environ.get("HPCCI_REGISTRY", "127.0.0.1:5000")
    user, password = os.environ["HPCCI_REGISTRY_USERNAME"], os.environ["HPCCI_REGISTRY_PASSWORD"]
    ref = f"{reg}/h4-test/fibonacci:{unique('t')}"
    run(["docker", "login", "--username", user, "--password-stdin", reg], input=password, timeout=60)
    run(["docker", "tag", FIB_TAG, ref], timeout=60)
    run(["docker", "push", ref], timeout=300)
    repo_digest = run(
        ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", ref], timeout=60
    ).stdout
    digest = next(d for d in __import__("json").loads(repo_digest) if "/h4-test/" in d).split("@")[1]
    cache = f"$SCRATCH/{unique('h4-registry-cache')}"
    proj = project(
        [FIB],
        cluster=cluster_config(**{"paths.image_cache": cache}),
        registry={"url": reg, "username": {"env": "HPCCI_REGISTRY_USERNAME"},
                  "password": {"env": "HPCCI_REGISTRY_PASSWORD"}, "insecure": True},
    )  # fmt: skip
    rec.write(
        rec.PublishRecord(
            image=ref.rsplit(":", 1)[0], tags=["t"],
            registry=rec.RegistryPublication(refs=[ref], digest=digest, platforms={"linux/amd64": digest}),
        ),
        proj.records / "publish.json",
    )  # fmt: skip
    try:
        done = hpcci(proj, "deploy")
    finally:
        remote = login()
        remote.run(["bash", "-c", f'rm -rf -- "$SCRATCH/{cache.split("/", 1)[1]}"'], timeout=60)
        remote.close()
    assert done.returncode == 0, done.stderr[-3000:]
    assert proj.deploy_record()["clusters"][0]["staging"] == "registry"
    assert f"docker://{ref.rsplit(':', 1)[0]}@{digest}" in done.stderr
    assert password not in done.stderr
    assert proj.tests()["fib"]["verdict"] == "pass"


def test_a_full_tmpdir_fails_the_conversion_and_names_the_setting(
    fib_tar: Path,
    project: Callable[..., Project],
    require: Callable[..., None],
    request: pytest.FixtureRequest,
) -> None:
    require("s3")
    if os.geteuid() != 0:
        skip_or_fail("needs root to mount a small tmpfs as the cluster's TMPDIR")
    remote = login()
    scratch = on_login(remote, ["printenv", "SCRATCH"]).stdout.strip()
    remote.close()
    tiny = Path(scratch) / unique("h4-tinytmp")
    tiny.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(tiny)], timeout=30)
    try:
        shutil.chown(tiny, "hpcci", "hpcci")
        proj = project([FIB], cluster=cluster_config(**{"paths.tmpdir": str(tiny)}))
        _write_publish(proj, _publish_to_s3(fib_tar, f"h4-tests/{unique('tiny')}.tar"))
        done = hpcci(proj, "deploy")
    finally:
        run(["umount", str(tiny)], timeout=60, check=False)
        tiny.rmdir()
    assert done.returncode == RuntimeConvertError.exit_code
    err = proj.cluster_error() or ""
    assert "no space left on device" in err.lower() and f"{tiny} (paths.tmpdir)" in err


def test_one_failing_cluster_never_hides_the_others_results(
    fib_tar: Path, project: Callable[..., Project], tmp_path: Path
) -> None:
    import yaml

    (tmp_path / "known_hosts").write_text("")
    proj = project([FIB])
    bad = cluster_config(name="broken", **{"login.known_hosts": {"file": str(tmp_path / "known_hosts")}})
    (proj.root / "cluster-configs" / "broken.yaml").write_text(yaml.safe_dump(bad))
    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar), "--cluster", "broken", "--cluster", "local")
    clusters = {c["cluster"]: c for c in proj.results()["clusters"]}
    assert set(clusters) == {"broken", "local"}
    assert clusters["local"]["error"] is None and clusters["local"]["tests"][0]["verdict"] == "pass"
    assert "not in login.known_hosts" in clusters["broken"]["error"]
    assert clusters["broken"]["tests"][0]["verdict"] == "error"
    assert done.returncode == HostKeyError.exit_code


def test_a_cluster_whose_ssh_user_secret_is_unset_fails_alone_and_the_deploy_fails(
    fib_tar: Path, project: Callable[..., Project], monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    monkeypatch.delenv("H7_UNSET_SSH_USER", raising=False)
    proj = project([FIB])
    nouser = cluster_config(name="nouser", **{"login.user": {"env": "H7_UNSET_SSH_USER"}})
    (proj.root / "cluster-configs" / "nouser.yaml").write_text(yaml.safe_dump(nouser))
    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar), "--cluster", "nouser", "--cluster", "local")
    clusters = {c["cluster"]: c for c in proj.results()["clusters"]}
    assert set(clusters) == {"nouser", "local"}
    assert clusters["local"]["error"] is None and clusters["local"]["tests"][0]["verdict"] == "pass"
    assert clusters["nouser"]["error"] == (
        "cluster nouser: login.user: environment variable H7_UNSET_SSH_USER is not set; set it (e.g. from a CI secret)"
    )
    assert done.returncode == ConfigError.exit_code
    assert "Traceback" not in done.stderr


def _big_archive(path: Path, mib: int) -> str:
    """A docker-archive-shaped tar with a unique config and ``mib`` MiB of random bytes (slow to upload)."""
    import io
    import json
    import tarfile

    config = json.dumps({"architecture": "amd64", "os": "linux", "hpcci-test": unique("big")}).encode()
    hexd = hashlib.sha256(config).hexdigest()
    blob = path.parent / "big.bin"
    with blob.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    with tarfile.open(path, "w") as tar:
        for name, data in [
            (f"{hexd}.json", config),
            ("manifest.json", json.dumps([{"Config": f"{hexd}.json", "Layers": []}]).encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(blob, arcname="layer.tar")
    blob.unlink()
    return hexd


def test_sigterm_during_the_upload_stops_it_cleanly_and_submits_nothing(
    tmp_path: Path, project: Callable[..., Project]
) -> None:
    tar = tmp_path / "big.tar"
    hexd = _big_archive(tar, 512)
    proj = project([FIB])
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpcci", "deploy", "--image-tar", str(tar)],
        cwd=proj.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "uploading" in line:
                proc.send_signal(signal.SIGTERM)
                break
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        tar.unlink()  # 512 MiB: not left behind in pytest's kept temporary folders
    assert proc.returncode == Interrupted.exit_code, "".join(lines) + out
    t = proj.tests()["fib"]
    assert t["state"] == "NOT_RUN" and t["job_id"] is None
    remote = login()
    try:
        left = on_login(
            remote, ["bash", "-c", f'ls -a "$SCRATCH"/hpcci/images | grep -c {hexd[:16]} || true']
        )
    finally:
        remote.close()
    assert left.stdout.strip() == "0"  # the partial upload was removed


def test_an_aarch64_partition_gets_the_arm64_image(
    tmp_path: Path, project: Callable[..., Project], require: Callable[..., None]
) -> None:
    # the local node is x86_64: the arm64 image runs under QEMU binfmt, as on a real aarch64 node it runs natively
    require("docker", "registry")
    tar = build_fib_tar(tmp_path / "fib-arm64.tar", arch="arm64")
    arm = {"name": "arch", "command": ["python3", "-c", "import platform; print(platform.machine())"],
           "expect": {"output": "^aarch64$"}, "resources": {"partition": "arm"}}  # fmt: skip
    proj = project(
        [arm], cluster=cluster_config(**{"scheduler.partitions.arm": {"name": "cpu", "arch": "aarch64"}})
    )
    done = hpcci(proj, "deploy", "--image-tar", str(tar))
    assert done.returncode == 0, done.stderr[-3000:]
    t = proj.tests()["arch"]
    assert t["verdict"] == "pass" and t["platform"] == "linux/arm64", t
