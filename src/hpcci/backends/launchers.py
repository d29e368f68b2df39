"""The MPI launcher seam: how each launcher starts a test's container on every task, and the table by name.

A launcher renders the argv put in front of the container command, for the test's task count and node layout.
Which one a cluster uses is its config's ``mpi.launcher``; ``mpi.args`` follow the launcher's own options. Each
launcher also names the environment variables its ranks need (``rank_env``): under the hybrid model the MPI inside
the container wires up through what the launcher put in each rank's environment, so a clean container environment
must keep them (backends/runtime.py passes them through).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

LauncherName = Literal[
    "mpirun", "mpiexec", "srun", "ibrun"
]  # the keys of LAUNCHERS (a unit test keeps them equal)


@dataclass(frozen=True)
class Layout:
    """The tasks of one job and how they sit on its nodes (as the batch script asked the scheduler)."""

    tasks: int
    nodes: int = 1
    tasks_per_node: int | None = None
    plugin: str | None = None  # srun's PMI plugin (--mpi=pmix|pmi2), when the cluster names one


def mpirun(layout: Layout) -> list[str]:
    """mpirun (Open MPI, Intel MPI): the task count; the node layout comes from the Slurm allocation."""
    return ["mpirun", "-n", str(layout.tasks)]


def mpiexec(layout: Layout) -> list[str]:
    """mpiexec (MPICH's Hydra and most MPI-standard launchers): task count, and tasks per node when given."""
    per_node = ["-ppn", str(layout.tasks_per_node)] if layout.tasks_per_node else []
    return ["mpiexec", "-n", str(layout.tasks), *per_node]


def srun(layout: Layout) -> list[str]:
    """srun takes tasks and nodes from the job's allocation; the PMI plugin names how it wires up MPI."""
    return ["srun", *([f"--mpi={layout.plugin}"] if layout.plugin else [])]


def ibrun(layout: Layout) -> list[str]:
    """TACC's ibrun reads tasks and nodes from the Slurm allocation: no options (TACC: `ibrun apptainer exec ...`)."""
    return ["ibrun"]


LAUNCHERS: dict[LauncherName, Callable[[Layout], list[str]]] = {
    "mpirun": mpirun,
    "mpiexec": mpiexec,
    "srun": srun,
    "ibrun": ibrun,
}


# What a rank reads from its environment, by launcher, as name prefixes:
# - Open MPI's mpirun: OMPI_* (OMPI_COMM_WORLD_SIZE/RANK..., "defined on every MPI process":
#   https://docs.open-mpi.org/en/v5.0.x/tuning-apps/environment-var.html; OMPI_MCA_* carry the launch's settings,
#   e.g. OMPI_MCA_orte_hnp_uri and the site module's OMPI_MCA_btl_vader_single_copy_mechanism) and PMIX_* (the
#   PMIx server a rank connects back to: PMIX_NAMESPACE, PMIX_RANK, PMIX_SERVER_URI*; without PMIX_NAMESPACE
#   PMIx_Init fails and the rank starts alone as a singleton: open-mpi/ompi#1037). Captured on the local cluster
#   (Open MPI 4.1.4): a rank of `mpirun -n 1 env` holds 31 OMPI_* and 18 PMIX_* variables (no PMI_*, OPAL_*, ORTE_*).
# - Intel MPI's mpirun and MPICH's mpiexec (Hydra): PMI_* (PMI_FD, PMI_RANK, PMI_SIZE), MPI_LOCALRANKID/NRANKS,
#   I_MPI_*, MPICH_*, MPIR_CVAR_*, HYDRA_*.
# - srun: SLURM_* beside PMIX_* (--mpi=pmix) or PMI_* (--mpi=pmi2): Slurm "establish[es] the proper environment
#   for the MPI job" (https://slurm.schedmd.com/mpi_guide.html), and Open MPI takes a direct launch only with the
#   job step's variables (open-mpi/ompi#1037).
# - ibrun (TACC) runs mpirun/mpiexec/srun by the loaded MPI stack (Intel MPI, MVAPICH2's MV2_*): all of them.
# - every launcher: UCX_* and FI_*, the transports' settings (Apptainer's MPI page passes UCX_TLS to the ranks:
#   https://apptainer.org/docs/user/main/mpi.html).
# SLURM_* only for launchers that go through Slurm: with mpirun the container's MPI needs none of them
# (apptainer/singularity#5118: "Don't export all SLURM env vars into the container").
_TRANSPORTS = ("UCX_", "FI_")
_OPEN_MPI = ("OMPI_", "OPAL_", "PMIX_")
_HYDRA = ("PMI_", "MPI_LOCAL", "I_MPI_", "MPICH_", "MPIR_CVAR_", "HYDRA_")
RANK_ENV: dict[LauncherName, tuple[str, ...]] = {
    "mpirun": (*_OPEN_MPI, *_HYDRA, *_TRANSPORTS),
    "mpiexec": (*_OPEN_MPI, *_HYDRA, *_TRANSPORTS),
    "srun": ("SLURM_", *_OPEN_MPI, "PMI_", *_TRANSPORTS),
    "ibrun": ("SLURM_", *_OPEN_MPI, *_HYDRA, "MV2_", *_TRANSPORTS),
}


def rank_env(name: LauncherName) -> tuple[str, ...]:
    """Name prefixes of the environment variables launcher ``name`` gives each rank, which its MPI needs."""
    return RANK_ENV[name]


def launch_argv(name: LauncherName, layout: Layout, args: Sequence[str], command: Sequence[str]) -> list[str]:
    """``command`` started on every task by launcher ``name``, with the cluster's extra ``args``."""
    return [*LAUNCHERS[name](layout), *args, *command]


def probe_argv(name: LauncherName) -> list[str]:
    """A command that succeeds when the launcher is on PATH (`hpcci doctor`); ibrun has no --version."""
    return ["command", "-v", "ibrun"] if name == "ibrun" else [name, "--version"]
