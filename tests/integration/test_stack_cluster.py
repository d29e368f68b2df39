"""The local stack's HPC cluster, used the way the kit uses a real one: SSH to the login node as an unprivileged
user (host key verified), Slurm batch jobs with accounting on several compute nodes (each its own host: network
and UTS namespace), and the apptainer STAND-IN (the real Apptainer is not packaged here) converting a
docker-archive tar and running it inside a job.

Needs `scripts/local-stack up cluster`; skips without it (fails under CI=true). The node failure test (last) stops
one node's slurmd as root and runs `scripts/local-stack up cluster` to bring the node back.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import signal
import socket
import tarfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcci.process import run
from stack_env import LOCAL_STACK, skip_or_fail

pytestmark = pytest.mark.integration

ENV_KEYS = (
    "HPCCI_LOCAL_SSH_HOST",
    "HPCCI_LOCAL_SSH_PORT",
    "HPCCI_LOCAL_SSH_USER",
    "HPCCI_LOCAL_SSH_KEY_FILE",
    "HPCCI_LOCAL_KNOWN_HOSTS",
)
TERMINAL = (
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
)
WAIT = 180.0  # guard against a hang only; no test asserts on durations


def _missing(why: str) -> None:
    skip_or_fail(
        f"local stack service 'cluster' is not usable ({why}); start it: scripts/local-stack up cluster"
    )


@pytest.fixture(scope="module")
def cluster_env(stack_env: dict[str, str]) -> dict[str, str]:
    env = {k: stack_env.get(k) or os.environ.get(k, "") for k in ENV_KEYS}
    if not all(env.values()):
        _missing("`scripts/local-stack env` gives no HPCCI_LOCAL_SSH_* settings")
    if not os.access(env["HPCCI_LOCAL_SSH_KEY_FILE"], os.R_OK):
        _missing(f"client key {env['HPCCI_LOCAL_SSH_KEY_FILE']} is not readable")
    try:
        socket.create_connection(
            (env["HPCCI_LOCAL_SSH_HOST"], int(env["HPCCI_LOCAL_SSH_PORT"])), timeout=5
        ).close()
    except OSError as e:
        _missing(f"ssh {env['HPCCI_LOCAL_SSH_HOST']}:{env['HPCCI_LOCAL_SSH_PORT']}: {e}")
    return env


def _connect(env: dict[str, str], known_hosts: str) -> Any:
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        env["HPCCI_LOCAL_SSH_HOST"],
        port=int(env["HPCCI_LOCAL_SSH_PORT"]),
        username=env["HPCCI_LOCAL_SSH_USER"],
        key_filename=env["HPCCI_LOCAL_SSH_KEY_FILE"],
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
        banner_timeout=10,
        auth_timeout=10,
    )
    return client


@pytest.fixture(scope="module")
def ssh(cluster_env: dict[str, str]) -> Iterator[Any]:
    client = _connect(cluster_env, cluster_env["HPCCI_LOCAL_KNOWN_HOSTS"])
    yield client
    client.close()


def remote(ssh: Any, argv: list[str], timeout: float = 60) -> tuple[int, str, str]:
    """Run argv on the login node in a login shell (modules, $SCRATCH), as the kit does."""
    _, out, err = ssh.exec_command(shlex.join(["bash", "-lc", shlex.join(argv)]), timeout=timeout)
    stdout, stderr = out.read().decode(), err.read().decode()
    return out.channel.recv_exit_status(), stdout, stderr


def sh(ssh: Any, script: str, timeout: float = 120) -> str:
    rc, out, err = remote(ssh, ["bash", "-c", script], timeout)
    assert rc == 0, f"remote script failed ({rc}): {err or out}"
    return out


_jobs: list[str] = []  # every job this module submitted: cancelled at the end (a no-op for finished ones)


@pytest.fixture(scope="module")
def workdir(ssh: Any) -> Iterator[str]:
    path = sh(ssh, f'd="$SCRATCH/pytest-{uuid.uuid4().hex[:12]}" && mkdir -p "$d" && echo "$d"').strip()
    yield path
    if _jobs:
        remote(ssh, ["scancel", *_jobs])
    remote(ssh, ["rm", "-rf", path])


def submit(ssh: Any, workdir: str, script: str, *options: str) -> str:
    name = f"job-{uuid.uuid4().hex[:8]}.sh"
    with ssh.open_sftp() as sftp, sftp.open(f"{workdir}/{name}", "w") as f:
        f.write(script)
    rc, out, err = remote(
        ssh,
        [
            "sbatch",
            "--parsable",
            "-A",
            "hpcci",
            "-D",
            workdir,
            "-o",
            f"{workdir}/%j.out",
            *options,
            f"{workdir}/{name}",
        ],
    )
    assert rc == 0, f"sbatch failed: {err}"
    job: str = out.strip().split(";")[0]
    _jobs.append(job)
    return job


def final_state(ssh: Any, job: str) -> tuple[str, str]:
    """(State, ExitCode) from sacct once squeue no longer lists the job and accounting shows a terminal state."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        _, queued, _ = remote(ssh, ["squeue", "-h", "-j", job, "-o", "%T"])
        if not queued.strip():
            _, acct, _ = remote(ssh, ["sacct", "-X", "-n", "-P", "-j", job, "-o", "State,ExitCode"])
            if acct.strip():
                state, code = acct.strip().splitlines()[0].split("|")
                if state.split()[0] in TERMINAL:
                    return state.split()[0], code
        time.sleep(0.5)
    pytest.fail(f"job {job} did not finish within {WAIT:.0f}s")


def output(ssh: Any, workdir: str, job: str) -> str:
    with ssh.open_sftp() as sftp, sftp.open(f"{workdir}/{job}.out") as f:
        data: bytes = f.read()
    return data.decode()


def docker_archive(marker: str) -> bytes:
    """A docker-archive tar of a busybox image (hand-written: manifest.json + config + one layer)."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        _missing("/bin/busybox (package busybox-static) is not installed")
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as layer:
        for d in ("bin", "etc", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            layer.addfile(info)
        layer.add(str(busybox), arcname="bin/busybox")
        for applet in ("sh", "cat", "echo", "id", "env", "ls"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            layer.addfile(info)
        data = marker.encode() + b"\n"
        info = tarfile.TarInfo("etc/hpcci-marker")
        info.size = len(data)
        layer.addfile(info, io.BytesIO(data))
    layer_bytes = layer_buf.getvalue()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin", f"HPCCI_MARKER={marker}"], "Cmd": ["cat", "/etc/hpcci-marker"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": ["hpcci/test:latest"], "Layers": ["layer/layer.tar"]}]
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, blob in (
            ("layer/layer.tar", layer_bytes),
            (config_name, config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return out.getvalue()


@pytest.fixture(scope="module")
def sif(ssh: Any, workdir: str) -> tuple[str, str]:
    """A docker-archive tar staged over SFTP and converted on the login node by the apptainer stand-in."""
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    with ssh.open_sftp() as sftp, sftp.open(f"{workdir}/image.tar", "wb") as f:
        f.write(docker_archive(marker))
    sh(
        ssh,
        f"cd {shlex.quote(workdir)} && module load apptainer && apptainer build image.sif docker-archive://image.tar",
    )
    return f"{workdir}/image.sif", marker


def test_batch_job_completes_and_its_output_is_read_back(ssh: Any, workdir: str) -> None:
    job = submit(ssh, workdir, "#!/bin/bash\necho hello from $SLURM_JOB_ID on $SLURM_JOB_PARTITION\n")
    assert final_state(ssh, job) == ("COMPLETED", "0:0")
    assert output(ssh, workdir, job).strip() == f"hello from {job} on cpu"


def test_job_exiting_3_is_reported_failed_with_exit_code_3(ssh: Any, workdir: str) -> None:
    job = submit(ssh, workdir, "#!/bin/bash\necho about to fail\nexit 3\n")
    assert final_state(ssh, job) == ("FAILED", "3:0")


def test_job_with_unknown_account_is_refused(ssh: Any, workdir: str) -> None:
    rc, _, err = remote(
        ssh, ["sbatch", "--parsable", "-A", "no-such-account", "-D", workdir, "--wrap", "true"]
    )
    assert rc != 0
    assert "Invalid account" in err


def test_gpu_job_sees_cuda_visible_devices(ssh: Any, workdir: str) -> None:
    job = submit(
        ssh,
        workdir,
        "#!/bin/bash\necho CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES\n",
        "-p",
        "gpu",
        "--gres=gpu:1",
    )
    assert final_state(ssh, job) == ("COMPLETED", "0:0")
    assert "CUDA_VISIBLE_DEVICES=0" in output(ssh, workdir, job)


def test_mpi_job_runs_three_ranks(ssh: Any, workdir: str) -> None:
    job = submit(
        ssh,
        workdir,
        "#!/bin/bash\nmodule load openmpi\nmpirun -n 3 sh -c 'echo rank=$OMPI_COMM_WORLD_RANK'\n",
        "-n",
        "3",
    )
    assert final_state(ssh, job) == ("COMPLETED", "0:0")
    assert sorted(output(ssh, workdir, job).split()) == ["rank=0", "rank=1", "rank=2"]


def test_login_shell_has_modules_and_scratch(ssh: Any) -> None:
    out = sh(
        ssh, 'module load apptainer && command -v apptainer && apptainer --version && echo "SCRATCH=$SCRATCH"'
    )
    assert "hpcci-standin" in out
    assert "SCRATCH=/" in out


def test_singularity_module_runs_the_stand_in_under_its_own_name(ssh: Any) -> None:
    out = sh(ssh, "module load singularity && singularity --version")
    assert out.strip() == "singularity version 1.3.6+hpcci-standin"


def test_apptainer_standin_image_is_squashfs_and_runs_in_a_slurm_job(
    ssh: Any, workdir: str, sif: tuple[str, str]
) -> None:
    path, marker = sif
    with ssh.open_sftp() as sftp, sftp.open(path, "rb") as f:
        assert f.read(4) == b"hsqs"
    script = (
        f"#!/bin/bash\nmodule load apptainer\napptainer exec {shlex.quote(path)} cat /etc/hpcci-marker\n"
        f"apptainer exec --cleanenv --env GREETING=hi {shlex.quote(path)} sh -c 'echo $GREETING $HPCCI_MARKER'\n"
        f"apptainer run {shlex.quote(path)}\n"
    )
    job = submit(ssh, workdir, script)
    assert final_state(ssh, job) == ("COMPLETED", "0:0")
    assert output(ssh, workdir, job).split("\n")[:3] == [marker, f"hi {marker}", marker]


def test_apptainer_standin_nv_exposes_the_allocated_gpu(ssh: Any, workdir: str, sif: tuple[str, str]) -> None:
    path, _ = sif
    job = submit(
        ssh,
        workdir,
        f"#!/bin/bash\nmodule load apptainer\n"
        f"apptainer exec --nv {shlex.quote(path)} sh -c 'echo gpu=$HPCCI_STANDIN_GPU'\n",
        "-p",
        "gpu",
        "--gres=gpu:1",
    )
    assert final_state(ssh, job) == ("COMPLETED", "0:0")
    assert "gpu=nv:0" in output(ssh, workdir, job)


def test_apptainer_standin_refuses_to_overwrite_without_force(
    ssh: Any, workdir: str, sif: tuple[str, str]
) -> None:
    path, _ = sif
    rc, _, err = remote(
        ssh,
        [
            "bash",
            "-c",
            f"module load apptainer && apptainer build {shlex.quote(path)} "
            f"docker-archive://{shlex.quote(workdir)}/image.tar",
        ],
    )
    assert rc != 0
    assert "--force" in err
    sh(
        ssh,
        f"module load apptainer && apptainer build --force {shlex.quote(path)} "
        f"docker-archive://{shlex.quote(workdir)}/image.tar",
    )


def test_apptainer_standin_reports_a_bad_tar_clearly(ssh: Any, workdir: str) -> None:
    sh(ssh, f"echo not-a-tar > {shlex.quote(workdir)}/bad.tar")
    rc, _, err = remote(
        ssh,
        [
            "bash",
            "-c",
            f"module load apptainer && apptainer build {shlex.quote(workdir)}/bad.sif "
            f"docker-archive://{shlex.quote(workdir)}/bad.tar",
        ],
    )
    assert rc != 0
    assert err.strip().splitlines()[-1].startswith("FATAL:")
    assert "Traceback" not in err


def test_apptainer_standin_rejects_unknown_options(ssh: Any, sif: tuple[str, str]) -> None:
    rc, _, err = remote(
        ssh, ["bash", "-c", f"module load apptainer && apptainer exec --no-such-flag {sif[0]} true"]
    )
    assert rc != 0
    assert "unknown flag: --no-such-flag" in err


def test_wrong_host_key_is_refused(cluster_env: dict[str, str], tmp_path: Path) -> None:
    import paramiko

    impostor = paramiko.Ed25519Key.from_private_key(io.StringIO(_fresh_ed25519_key(tmp_path)))
    known = tmp_path / "known_hosts"
    host = f"[{cluster_env['HPCCI_LOCAL_SSH_HOST']}]:{cluster_env['HPCCI_LOCAL_SSH_PORT']}"
    known.write_text(f"{host} ssh-ed25519 {impostor.get_base64()}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        _connect(cluster_env, str(known))


def _fresh_ed25519_key(tmp_path: Path) -> str:
    key = tmp_path / "impostor"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], timeout=30, echo=False)
    return key.read_text()


def test_job_over_its_time_limit_ends_timed_out(ssh: Any, workdir: str) -> None:
    job = submit(ssh, workdir, "#!/bin/bash\nsleep 600\n", "--time=00:01:00")
    assert final_state(ssh, job)[0] == "TIMEOUT"


def _registry(require: Callable[..., None], stack_env: dict[str, str]) -> dict[str, str]:
    require("registry")
    return {
        k: stack_env[k] for k in ("HPCCI_REGISTRY_USERNAME", "HPCCI_REGISTRY_PASSWORD", "HPCCI_BASE_IMAGE")
    }


def test_apptainer_standin_pulls_from_the_local_registry_with_credentials(
    ssh: Any, workdir: str, require: Callable[..., None], stack_env: dict[str, str]
) -> None:
    reg = _registry(require, stack_env)
    with ssh.open_sftp() as sftp:
        with sftp.open(f"{workdir}/.registry-password", "w") as f:
            f.write(reg["HPCCI_REGISTRY_PASSWORD"])
        sftp.chmod(f"{workdir}/.registry-password", 0o600)
    script = (
        f"cd {shlex.quote(workdir)} && module load apptainer"
        f" && export APPTAINER_DOCKER_USERNAME={shlex.quote(reg['HPCCI_REGISTRY_USERNAME'])}"
        " && export APPTAINER_DOCKER_PASSWORD=$(cat .registry-password)"
        f" && apptainer pull base.sif docker://{shlex.quote(reg['HPCCI_BASE_IMAGE'])}"
        " && apptainer exec base.sif cat /etc/os-release"
    )
    rc, out, err = remote(ssh, ["bash", "-c", script], timeout=300)
    if rc != 0 and "manifest unknown" in err:
        _missing(f"base image {reg['HPCCI_BASE_IMAGE']} not in the registry")
    assert rc == 0, err
    assert "ID=" in out
    assert reg["HPCCI_REGISTRY_PASSWORD"] not in out + err


def test_apptainer_standin_pull_without_credentials_is_refused(
    ssh: Any, workdir: str, require: Callable[..., None], stack_env: dict[str, str]
) -> None:
    reg = _registry(require, stack_env)
    script = (
        f"cd {shlex.quote(workdir)} && module load apptainer"
        f" && apptainer pull anon.sif docker://{shlex.quote(reg['HPCCI_BASE_IMAGE'])}"
    )
    rc, _, err = remote(ssh, ["bash", "-c", script], timeout=120)
    assert rc != 0
    assert "unauthorized" in err or "authentication required" in err


def test_cancelled_job_is_reported_cancelled(ssh: Any, workdir: str) -> None:
    job = submit(ssh, workdir, "#!/bin/bash\nsleep 600\n")
    rc, _, err = remote(ssh, ["scancel", job])
    assert rc == 0, err
    assert final_state(ssh, job)[0] == "CANCELLED"


def _hostnames(ssh: Any, nodelist: str) -> set[str]:
    return set(sh(ssh, f"scontrol show hostnames {shlex.quote(nodelist)}").split())


def _job_nodes(ssh: Any, job: str) -> str:
    """The job's node list once it runs."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        _, out, _ = remote(ssh, ["squeue", "-h", "-j", job, "-o", "%T %N"])
        state, _, nodes = out.strip().partition(" ")
        if state == "RUNNING" and nodes:
            return nodes
        time.sleep(0.5)
    pytest.fail(f"job {job} did not start within {WAIT:.0f}s")


def test_two_nodes_by_three_tasks_run_six_ranks_on_two_hosts(ssh: Any, workdir: str) -> None:
    script = (
        "#!/bin/bash\nmodule load openmpi\n"
        "srun sh -c 'echo srun $SLURM_PROCID $(hostname)'\n"
        "mpirun sh -c 'echo mpirun $OMPI_COMM_WORLD_RANK $(hostname)'\n"
    )
    job = submit(ssh, workdir, script, "-N", "2", "--ntasks-per-node=3")
    assert final_state(ssh, job) == ("COMPLETED", "0:0")
    _, listed, _ = remote(ssh, ["squeue", "-h", "-t", "all", "-j", job, "-o", "%N"])
    nodes = _hostnames(ssh, listed.strip())
    assert len(nodes) == 2, listed
    lines = [words for words in map(str.split, output(ssh, workdir, job).splitlines()) if len(words) == 3]
    for launcher in ("srun", "mpirun"):
        ranks = {int(rank): host for name, rank, host in lines if name == launcher}
        assert sorted(ranks) == list(range(6)), launcher
        assert Counter(ranks.values()) == dict.fromkeys(nodes, 3), launcher


def test_stopped_slurmd_ends_its_job_as_node_fail_and_up_brings_the_node_back(
    ssh: Any, workdir: str, stack_env: dict[str, str]
) -> None:
    job = submit(ssh, workdir, "#!/bin/bash\nsleep 600\n", "--no-requeue")
    node = _job_nodes(ssh, job)
    pid_file = Path(stack_env["HPCCI_STACK_DIR"], "run", f"cluster-slurmd-{node}.pid")
    if not os.access(pid_file, os.R_OK):
        _missing(f"{pid_file} is not readable: stopping a node's slurmd needs root on the stack's machine")
    pid = int(pid_file.read_text())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "slurmd"
    try:
        os.kill(pid, signal.SIGTERM)
        assert final_state(ssh, job)[0] == "NODE_FAIL"
        assert "DOWN" in sh(ssh, f"scontrol show node {node}")
    finally:
        run([LOCAL_STACK, "up", "cluster"], timeout=300, echo=False)
    assert sh(ssh, f"sinfo -h -n {node} -o %T").split()[0] in ("idle", "mixed", "allocated", "completing")
    again = submit(ssh, workdir, "#!/bin/bash\nhostname\n", "-w", node)
    assert final_state(ssh, again) == ("COMPLETED", "0:0")
    assert output(ssh, workdir, again).strip() == node
