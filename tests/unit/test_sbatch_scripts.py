"""sbatch scripts rendered from hpcci.yaml tests and the cluster config (what `hpcci plan` shows and sbatch gets)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from hpcci.backends.schedulers import slurm, slurm_directives
from hpcci.backends.schedulers.model import JobSpec
from hpcci.config.load import load_cluster
from hpcci.config.models import Cluster, Pipeline
from hpcci.errors import ConfigError
from hpcci.stages.deploy.paths import Paths
from hpcci.stages.deploy.plan import plan_cluster
from hpcci.stages.sources import ImageSource

ROOT = Path(__file__).resolve().parents[2]
PATHS = Paths("/scratch/u/hpcci", "/scratch/u/hpcci/images", "/scratch/u/tmp", "/scratch/u/hpcci/runs/r1")
DIGEST = "sha256:" + "ab" * 32


def local_cluster(**changes: Any) -> Cluster:
    cluster = load_cluster(ROOT / "cluster-configs" / "local.yaml")
    if changes:
        data = cluster.model_dump()
        for dotted, value in changes.items():
            node = data
            *path, last = dotted.split(".")
            for p in path:
                node = node[p]
            node[last] = value
        cluster = Cluster.model_validate(data)
    return cluster


def pipeline(*tests: dict[str, Any]) -> Pipeline:
    return Pipeline.model_validate({"image": {"name": "reg/org/fib"}, "tests": list(tests)})


def scripts(pipe: Pipeline, cluster: Cluster | None = None) -> dict[str, str]:
    source = ImageSource("linux/amd64", DIGEST, local_tar="/tmp/x.tar")
    plan = plan_cluster(pipe, cluster or local_cluster(), {"linux/amd64": source}, PATHS, "r1", slurm)
    return {t.test.name: t.script for t in plan.tests}


def sbatch_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]


def body_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def launched(line: str) -> str:
    """An MPI test's launch line without the host shell that passes the rank's MPI variables (which must be there)."""
    words = shlex.split(line)
    i = words.index("hpcci-pass-env")
    assert words[i - 3 : i - 1] == ["sh", "-c"]
    return shlex.join(words[: i - 3] + words[i + 1 :])


FIB = {
    "name": "fib",
    "command": "python3 /app/fib.py 10",
    "resources": {"time": "00:05:00", "memory": "512M"},
}


def test_fibonacci_script_matches_the_seeds_by_hand_script() -> None:
    text = scripts(pipeline(FIB))["fib"]
    assert text.startswith("#!/bin/bash\n")
    assert sbatch_lines(text) == [
        '#SBATCH --job-name="hpcci-fib"',
        '#SBATCH --output="/scratch/u/hpcci/runs/r1/fib.out"',
        '#SBATCH --partition="cpu"',
        '#SBATCH --account="hpcci"',
        '#SBATCH --nodes="1"',
        '#SBATCH --ntasks="1"',
        '#SBATCH --time="00:05:00"',
        '#SBATCH --mem="512M"',
        '#SBATCH --chdir="/scratch/u/hpcci/runs/r1"',
        "#SBATCH --comment=\"hpcci smoke test 'fib' on cluster local\"",
        "#SBATCH --no-requeue",
    ]
    assert body_lines(text) == [
        "module load apptainer",
        f"apptainer exec --cleanenv /scratch/u/hpcci/images/{'ab' * 32}.sif python3 /app/fib.py 10",
    ]


def test_gpu_test_lands_on_the_gpu_partition_with_gres_and_the_gpu_flag() -> None:
    text = scripts(pipeline({"name": "g", "command": "nvidia-smi", "gpu": True}))["g"]
    assert '#SBATCH --partition="gpu"' in text and '#SBATCH --gres="gpu:1"' in text
    assert body_lines(text)[-1].startswith("apptainer exec --nv --cleanenv ")


def test_rocm_clusters_get_the_rocm_flag() -> None:
    text = scripts(
        pipeline({"name": "g", "command": "rocminfo", "gpu": True}),
        local_cluster(**{"runtime.gpu": "amd"}),
    )
    assert "apptainer exec --rocm" in text["g"]


def test_mpi_test_runs_the_host_mpirun_around_the_container() -> None:
    test = {"name": "mpi", "command": ["python3", "/app/fib.py", "5"], "mpi": True, "resources": {"tasks": 3}}
    text = scripts(pipeline(test))["mpi"]
    assert '#SBATCH --ntasks="3"' in text
    loads, run = body_lines(text)[:2], shlex.split(body_lines(text)[2])
    assert loads == ["module load openmpi", "module load apptainer"]
    # the launcher starts a host shell per rank that hands the rank's MPI variables to the clean container env
    assert run[:5] == ["mpirun", "-n", "3", "sh", "-c"] and "APPTAINERENV_$n" in run[5]
    assert run[6:] == [
        "hpcci-pass-env", "apptainer", "exec", "--cleanenv", f"/scratch/u/hpcci/images/{'ab' * 32}.sif",
        "python3", "/app/fib.py", "5",
    ]  # fmt: skip


def test_only_mpi_tests_pass_the_launchers_variables_into_the_container() -> None:
    text = scripts(pipeline({"name": "plain", "command": "true", "resources": {"tasks": 3}}))["plain"]
    assert body_lines(text)[-1].startswith("apptainer exec --cleanenv ") and "hpcci-pass-env" not in text


def test_srun_launcher_takes_its_task_count_from_slurm() -> None:
    test = {
        "name": "mpi",
        "command": "hello",
        "mpi": True,
        "resources": {"tasks": 4, "nodes": 2, "tasks_per_node": 2},
    }
    text = scripts(pipeline(test), local_cluster(**{"mpi.launcher": "srun", "mpi.args": ["--mpi=pmix"]}))[
        "mpi"
    ]
    assert '#SBATCH --ntasks-per-node="2"' in text and '#SBATCH --nodes="2"' in text
    assert launched(body_lines(text)[-1]).startswith("srun --mpi=pmix apptainer exec")


def test_reservation_qos_and_extra_directives_are_written() -> None:
    cluster = local_cluster(
        **{
            "scheduler.reservation": "train",
            "scheduler.qos": "debug",
            "scheduler.directives": ["--exclusive"],
        }
    )
    lines = sbatch_lines(scripts(pipeline(FIB), cluster)["fib"])
    assert '#SBATCH --reservation="train"' in lines and '#SBATCH --qos="debug"' in lines
    assert lines[-1] == "#SBATCH --exclusive"


def test_binds_env_and_cleanenv_come_from_cluster_and_test() -> None:
    test = {"name": "b", "command": "true", "binds": ["/data:/data"], "env": {"OMP_NUM_THREADS": "2"}}
    cluster = local_cluster(**{"runtime.binds": ["/scratch"], "runtime.cleanenv": False})
    line = body_lines(scripts(pipeline(test), cluster)["b"])[-1]
    assert line == (
        "env APPTAINERENV_OMP_NUM_THREADS=2 apptainer exec --bind /scratch --bind /data:/data "
        f"{PATHS.cache}/{'ab' * 32}.sif true"
    )


def test_test_commands_are_quoted_into_the_script() -> None:
    test = {"name": "q", "command": ["sh", "-c", "echo $HOME; exit 3"]}
    assert body_lines(scripts(pipeline(test))["q"])[-1].endswith("sh -c 'echo $HOME; exit 3'")


def test_a_user_template_replaces_the_default() -> None:
    spec = JobSpec(job_name="j", output="o", body=["echo hi"])
    text = slurm.render_script(spec, "#!/bin/sh\n$directives\n# site prologue\n$body\n# cost: $$5\n")
    assert (
        text
        == '#!/bin/sh\n#SBATCH --job-name="j"\n#SBATCH --output="o"\n#SBATCH --nodes="1"\n#SBATCH --ntasks="1"\n'
        '#SBATCH --time="00:10:00"\n#SBATCH --no-requeue\n# site prologue\necho hi\n# cost: $5\n'
    )


def test_a_template_with_an_unknown_placeholder_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"\$directives, \$body"):
        slurm.render_script(JobSpec(job_name="j", output="o"), "$directives $nope")


def test_a_directive_with_a_line_break_is_refused() -> None:
    with pytest.raises(ConfigError, match="line break"):
        slurm_directives.directives(JobSpec(job_name="j", output="o", partition='cpu\n#SBATCH --account="x"'))


def test_the_default_template_ships_with_the_package() -> None:
    assert "$directives" in slurm.default_template() and "$body" in slurm.default_template()


def test_the_template_notes_stay_in_the_template_and_the_script_says_how_to_override_it() -> None:
    assert "Placeholders: $directives" in slurm.default_template()  # documented where authors look
    text = scripts(pipeline(FIB))["fib"]
    assert "Placeholders" not in text and "##" not in text
    comments = [ln for ln in text.splitlines()[1:] if ln.startswith("#") and not ln.startswith("#SBATCH")]
    assert comments == [
        "# hpcci smoke test 'fib' on cluster local",
        "# Rendered by hpcci; set scheduler.template in the cluster config to use your own template.",
    ]


def test_a_cluster_can_name_its_own_template_next_to_its_config(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load((ROOT / "cluster-configs" / "local.yaml").read_text())
    data["scheduler"]["template"] = "site.sbatch"
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "site.sbatch").write_text(
        "#!/bin/bash\n$directives\n#SBATCH --exclusive\nsource /etc/site-prologue\n$body\n"
    )
    text = scripts(pipeline(FIB), load_cluster(tmp_path / "local.yaml"))["fib"]
    assert text.startswith('#!/bin/bash\n#SBATCH --job-name="hpcci-fib"\n')
    assert "#SBATCH --exclusive\nsource /etc/site-prologue\nmodule load apptainer\n" in text


def test_a_missing_template_names_the_setting(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load((ROOT / "cluster-configs" / "local.yaml").read_text())
    data["scheduler"]["template"] = "nope.sbatch"
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"scheduler.template: cannot read .*nope.sbatch"):
        scripts(pipeline(FIB), load_cluster(tmp_path / "local.yaml"))


def test_a_command_with_an_unbalanced_quote_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="balance its quotes or write it as a list"):
        scripts(pipeline({"name": "q", "command": "echo 'oops"}))


@pytest.mark.parametrize(("name", "runtime"), [("frontera", "apptainer"), ("stampede2", "singularity")])
def test_tacc_clusters_launch_mpi_containers_with_ibrun(name: str, runtime: str) -> None:
    test = {"name": "mpi", "command": "hello", "mpi": True, "resources": {"tasks": 4, "nodes": 2}}
    cluster = load_cluster(ROOT / "cluster-configs" / f"{name}.yaml")
    assert launched(body_lines(scripts(pipeline(test), cluster)["mpi"])[-1]).startswith(
        f"ibrun {runtime} exec"
    )


def test_two_nodes_of_three_tasks_make_six_ranks() -> None:
    test = {"name": "mpi", "command": "hello", "mpi": True, "resources": {"nodes": 2, "tasks_per_node": 3}}
    text = scripts(pipeline(test))["mpi"]
    lines = sbatch_lines(text)
    assert {'#SBATCH --nodes="2"', '#SBATCH --ntasks="6"', '#SBATCH --ntasks-per-node="3"'} <= set(lines)
    assert launched(body_lines(text)[-1]).startswith("mpirun -n 6 apptainer exec")


def test_a_test_that_does_not_fit_the_partitions_cpus_is_a_config_error_at_plan() -> None:
    test = {"name": "mpi", "command": "hello", "resources": {"tasks_per_node": 8}}
    with pytest.raises(
        ConfigError, match=r"asks for 8 CPUs on a node .* partition 'cpu' of cluster local has 4"
    ):
        scripts(pipeline(test), local_cluster(**{"scheduler.partitions.cpu.cpus": 4}))


def test_directive_values_are_double_quoted_so_spaces_and_quotes_survive() -> None:
    from hpcci.backends.schedulers.slurm_directives import directives

    run = '/s/it\'s a "run" 100%'
    lines = directives(
        JobSpec(job_name="j", output=f"{run}/j.out", chdir=run, extra=["--constraint=a b", "-C x"])
    )
    assert lines == [
        '#SBATCH --job-name="j"',
        '#SBATCH --output="/s/it\'s a \\"run\\" 100%%/j.out"',
        '#SBATCH --nodes="1"',
        '#SBATCH --ntasks="1"',
        '#SBATCH --time="00:10:00"',
        '#SBATCH --chdir="/s/it\'s a \\"run\\" 100%"',
        "#SBATCH --no-requeue",
        '#SBATCH --constraint="a b"',
        "#SBATCH -C x",
    ]


def test_gpu_tests_load_the_runtimes_gpu_modules_and_partitions_their_own() -> None:
    cluster = local_cluster(
        **{"runtime.gpu_modules": ["cuda12.2/toolkit"], "scheduler.partitions.gpu.modules": ["nvhpc"]}
    )
    out = scripts(pipeline(FIB, {"name": "g", "command": "nvidia-smi", "gpu": True}), cluster)
    assert body_lines(out["g"])[:3] == [
        "module load nvhpc",
        "module load apptainer",
        "module load cuda12.2/toolkit",
    ]
    assert [ln for ln in body_lines(out["fib"]) if ln.startswith("module")] == ["module load apptainer"]
