"""The MPI launcher seam: how each launcher starts a test's container on every task, and the table by name.

A launcher renders the argv put in front of the container command, for the test's task count and node layout.
Which one a cluster uses is its config's ``mpi.launcher``; ``mpi.args`` follow the launcher's own options.
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


def launch_argv(name: LauncherName, layout: Layout, args: Sequence[str], command: Sequence[str]) -> list[str]:
    """``command`` started on every task by launcher ``name``, with the cluster's extra ``args``."""
    return [*LAUNCHERS[name](layout), *args, *command]


def probe_argv(name: LauncherName) -> list[str]:
    """A command that succeeds when the launcher is on PATH (`hpcci doctor`); ibrun has no --version."""
    return ["command", "-v", "ibrun"] if name == "ibrun" else [name, "--version"]
