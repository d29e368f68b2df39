"""The MPI launcher table: each launcher's argv for a task count and node layout, and the names config accepts."""

from __future__ import annotations

from typing import get_args

import pytest

from hpcci.backends.launchers import (
    LAUNCHERS,
    RANK_ENV,
    LauncherName,
    Layout,
    launch_argv,
    probe_argv,
    rank_env,
)
from hpcci.backends.schedulers import SCHEDULERS, SchedulerName
from hpcci.config.models import MpiConfig

RUN = ["apptainer", "exec", "/img.sif", "hello"]


def test_mpirun_gets_the_task_count() -> None:
    assert launch_argv("mpirun", Layout(tasks=4, nodes=2), [], RUN) == ["mpirun", "-n", "4", *RUN]


def test_mpiexec_gets_the_task_count_and_tasks_per_node() -> None:
    layout = Layout(tasks=4, nodes=2, tasks_per_node=2)
    assert launch_argv("mpiexec", layout, [], RUN) == ["mpiexec", "-n", "4", "-ppn", "2", *RUN]
    assert launch_argv("mpiexec", Layout(tasks=3), [], RUN) == ["mpiexec", "-n", "3", *RUN]


def test_srun_reads_the_allocation_and_takes_its_pmi_plugin() -> None:
    assert launch_argv("srun", Layout(tasks=4, plugin="pmix"), [], RUN) == ["srun", "--mpi=pmix", *RUN]
    assert launch_argv("srun", Layout(tasks=4), ["--cpu-bind=cores"], RUN) == [
        "srun",
        "--cpu-bind=cores",
        *RUN,
    ]


def test_ibrun_takes_everything_from_the_allocation_as_tacc_documents() -> None:
    assert launch_argv("ibrun", Layout(tasks=56, nodes=1), [], RUN) == ["ibrun", *RUN]
    assert probe_argv("ibrun") == ["command", "-v", "ibrun"] and probe_argv("srun") == ["srun", "--version"]


def test_the_config_accepts_exactly_the_table_names() -> None:
    assert set(get_args(LauncherName)) == set(LAUNCHERS)
    assert set(get_args(SchedulerName)) == set(SCHEDULERS)


def test_a_pmi_plugin_is_only_for_srun() -> None:
    assert MpiConfig(launcher="srun", plugin="pmi2").plugin == "pmi2"
    with pytest.raises(ValueError, match="srun's option"):
        MpiConfig(launcher="mpirun", plugin="pmix")


def test_every_launcher_names_what_its_ranks_need_to_find_each_other() -> None:
    assert set(RANK_ENV) == set(LAUNCHERS)
    assert {"OMPI_", "PMIX_"} <= set(rank_env("mpirun"))  # Open MPI 4.1 wires up through PMIx
    assert {"SLURM_", "PMIX_", "PMI_"} <= set(rank_env("srun"))  # --mpi=pmix and --mpi=pmi2
    assert {"PMI_", "HYDRA_"} <= set(rank_env("mpiexec"))  # MPICH's Hydra: PMI_FD, PMI_RANK, PMI_SIZE
    assert {"MV2_", "I_MPI_", "SLURM_"} <= set(rank_env("ibrun"))


def test_mpirun_ranks_get_no_slurm_variables() -> None:
    assert not any(p.startswith("SLURM") for p in rank_env("mpirun") + rank_env("mpiexec"))
