"""Each shipped cluster config renders, in `hpcci plan`'s batch scripts, the lines its site documents (the seeds'
how-tos and the pages named in each config's comments)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hpcci.backends.schedulers import slurm
from hpcci.config.load import load_cluster
from hpcci.config.models import Cluster, Pipeline
from hpcci.errors import ConfigError
from hpcci.stages.deploy.paths import resolve_paths
from hpcci.stages.deploy.plan import plan_cluster
from hpcci.stages.sources import ImageSource

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "cd" * 32
# The login shell's variables, as a deploy resolves them before it writes any script.
ENV = {"HOME": "/home/u", "USER": "u", "SCRATCH": "/scratch/u", "WORK": "/work/u"}
FIB = {"name": "fib", "command": "python3 /app/fib.py 10", "resources": {"memory": "100M"}}
MPI = {"name": "mpi", "command": "/opt/mpitest", "mpi": True, "resources": {"nodes": 2, "tasks_per_node": 3}}
GPU = {"name": "gpu", "command": "nvidia-smi", "gpu": True}


def cluster(name: str) -> Cluster:
    return load_cluster(ROOT / "cluster-configs" / f"{name}.yaml")


def scripts(name: str, *tests: dict[str, Any]) -> dict[str, list[str]]:
    """test name -> the lines of its sbatch script on cluster ``name``, as `hpcci plan` shows them."""
    c = cluster(name)
    pipe = Pipeline.model_validate({"image": {"name": "reg/org/app"}, "tests": list(tests)})
    sources = {p: ImageSource(p, DIGEST, local_tar="/tmp/x.tar") for p in ("linux/amd64", "linux/arm64")}
    plan = plan_cluster(pipe, c, sources, resolve_paths(c, ENV, "r1"), "r1", slurm)
    return {t.test.name: t.script.splitlines() for t in plan.tests}


PASS_ENV = re.compile(r"sh -c '.*' hpcci-pass-env ")


def launched(commands: list[str]) -> list[str]:
    """The commands, the MPI launch line without the host shell that passes the ranks' MPI variables (required)."""
    assert PASS_ENV.search(commands[-1]), commands[-1]
    return [*commands[:-1], PASS_ENV.sub("", commands[-1])]


def commands(lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln and not ln.startswith("#")]


@pytest.mark.parametrize(("name", "runtime", "module"), [("frontera", "apptainer", "tacc-apptainer"),
                                                         ("stampede2", "singularity", "tacc-singularity")])  # fmt: skip
def test_tacc_runs_mpi_containers_with_ibrun_under_its_allocation(
    name: str, runtime: str, module: str
) -> None:
    lines = scripts(name, MPI)["mpi"]
    assert '#SBATCH --account="MY-ALLOCATION"' in lines
    assert '#SBATCH --nodes="2"' in lines and '#SBATCH --ntasks-per-node="3"' in lines
    assert launched(commands(lines)) == [f"module load {module}", f"ibrun {runtime} exec --cleanenv "
                               f"/work/u/hpcci/images/{'cd' * 32}.sif /opt/mpitest"]  # fmt: skip


def test_tacc_converts_on_a_compute_node_and_gives_gpu_nodes_whole() -> None:
    c = cluster("frontera")
    assert c.runtime.convert_on == "compute" and c.scheduler.reservation is None
    lines = scripts("frontera", GPU)["gpu"]
    assert '#SBATCH --partition="rtx"' in lines
    assert not [ln for ln in lines if "--gres" in ln]  # TACC's scripts: `-p rtx`, no GRES
    assert commands(lines)[-1].startswith("apptainer exec --nv ")


def test_a_reservation_reaches_the_script_when_set_for_a_training() -> None:
    c = cluster("frontera").model_dump()
    c["scheduler"]["reservation"] = "my_reservation"
    pipe = Pipeline.model_validate({"image": {"name": "reg/org/app"}, "tests": [FIB]})
    source = {"linux/amd64": ImageSource("linux/amd64", DIGEST, local_tar="/tmp/x.tar")}
    model = Cluster.model_validate(c)
    plan = plan_cluster(pipe, model, source, resolve_paths(model, ENV, "r1"), "r1", slurm)
    assert '#SBATCH --reservation="my_reservation"' in plan.tests[0].script.splitlines()


def test_the_training_cluster_runs_two_nodes_of_three_ranks_as_the_seeds_do() -> None:
    lines = scripts("training", MPI)["mpi"]
    assert {'#SBATCH --account="def-sponsor00"', '#SBATCH --nodes="2"', '#SBATCH --ntasks="6"',
            '#SBATCH --ntasks-per-node="3"'} <= set(lines)  # fmt: skip
    assert launched(commands(lines)) == ["module load gcc", "module load openmpi", "module load apptainer",
                               "mpirun -n 6 apptainer exec --cleanenv "
                               f"/project/def-sponsor00/hpcci-ci/images/{'cd' * 32}.sif /opt/mpitest"]  # fmt: skip


def test_the_training_cluster_is_reached_through_an_alliance_automation_node() -> None:
    c = cluster("training")
    assert c.login.mode == "automation" and c.login.host.startswith("robot.")
    assert all(p.startswith("/") and "$" not in p for p in (c.paths.scratch, c.paths.image_cache))


def test_the_training_cluster_asks_memory_per_cpu() -> None:
    assert '#SBATCH --mem-per-cpu="100M"' in scripts("training", FIB)["fib"]


def test_riviera_loads_slurm_singularity_and_the_cuda_modules_for_gpu_tests() -> None:
    out = scripts("riviera", FIB, GPU)
    assert '#SBATCH --partition="short-gpu"' in out["gpu"] and '#SBATCH --gres="gpu:1"' in out["gpu"]
    assert commands(out["gpu"])[:-1] == ["module load slurm", "module load singularity",
                                         "module load cuda12.2/blas", "module load cuda12.2/fft",
                                         "module load cuda12.2/toolkit"]  # fmt: skip
    assert commands(out["gpu"])[-1].startswith("singularity exec --nv ")
    assert commands(out["fib"])[:-1] == ["module load slurm", "module load singularity"]


def test_riviera_moves_tmpdir_into_the_users_folder_and_converts_on_a_compute_node() -> None:
    c = cluster("riviera")
    assert c.paths.tmpdir == "$HOME/hpcci/tmp" and c.runtime.convert_on == "compute"


def test_discovery_runs_the_seeds_fibonacci_job_with_apptainer_from_the_head_node() -> None:
    c = cluster("discovery")
    assert c.runtime.type == "apptainer" and c.runtime.convert_on == "login" and not c.runtime.modules
    lines = scripts(
        "discovery", {**FIB, "resources": {"memory": "100M", "cpus_per_task": 1, "time": "00:01:00"}}
    )
    assert {'#SBATCH --nodes="1"', '#SBATCH --ntasks="1"', '#SBATCH --cpus-per-task="1"', '#SBATCH --mem="100M"',
            '#SBATCH --time="00:01:00"'} <= set(lines["fib"])  # fmt: skip
    assert commands(lines["fib"]) == [f"apptainer exec --cleanenv /home/u/hpcci/images/{'cd' * 32}.sif python3 "
                                      "/app/fib.py 10"]  # fmt: skip


@pytest.mark.parametrize("name", ["stampede2", "training", "discovery"])
def test_a_gpu_test_on_a_site_without_a_gpu_partition_is_a_config_error_naming_the_fix(name: str) -> None:
    with pytest.raises(ConfigError, match=r"hpcci.yaml:.*test 'gpu' needs a GPU partition.*`clusters:`"):
        scripts(name, FIB, GPU)


@pytest.mark.parametrize("path", sorted((ROOT / "cluster-configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_plans_the_example_cpu_and_mpi_tests(path: Path) -> None:
    out = scripts(path.stem, FIB, MPI)
    assert set(out) == {"fib", "mpi"}


@pytest.mark.parametrize("name", ["frontera", "stampede2"])
def test_tacc_jobs_carry_only_the_options_its_submission_filter_accepts(name: str) -> None:
    # TACC's user guides ("Common sbatch Options"): -N and -t required; --mem "Not available. If you attempt to
    # use this option, the scheduler will not accept your job."; --array not available; --export to be avoided
    c = cluster(name)
    pipe = Pipeline.model_validate({"image": {"name": "reg/org/app"}, "tests": [FIB, MPI]})
    source = {"linux/amd64": ImageSource("linux/amd64", DIGEST, local_tar="/tmp/x.tar")}
    plan = plan_cluster(pipe, c, source, resolve_paths(c, ENV, "r1"), "r1", slurm)
    (image,) = plan.images.values()
    assert image.convert_job is not None
    for text in [image.convert_job.script.text, *(t.script for t in plan.tests)]:
        options = [ln.split("=", 1)[0] for ln in text.splitlines() if ln.startswith("#SBATCH ")]
        assert {"#SBATCH --nodes", "#SBATCH --ntasks", "#SBATCH --time"} <= set(options), text
        refused = [o for o in options if o.split()[1] in ("--mem", "--mem-per-cpu", "--array", "--export")]
        assert not refused, text


def test_frontera_sends_one_and_two_node_jobs_to_its_small_queue() -> None:
    # Table 6: jobs of one or two nodes go to `small`; `normal` has a lower limit of three nodes
    out = scripts("frontera", FIB, MPI)
    assert '#SBATCH --partition="small"' in out["fib"] and '#SBATCH --partition="small"' in out["mpi"]
    big = {**MPI, "name": "big", "resources": {"nodes": 4, "partition": "normal"}}
    assert '#SBATCH --partition="normal"' in scripts("frontera", big)["big"]
