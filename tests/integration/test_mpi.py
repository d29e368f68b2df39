"""MPI smoke tests on the local stack's cluster that tell MPI from N copies, under Apptainer's hybrid model: the
host's mpirun (Debian's Open MPI 4.1) starts one container per rank (the apptainer STAND-IN, --cleanenv), and the
Open MPI inside the image (the local base image's, the same packages) wires the ranks up through the variables
the launcher gave each rank, which hpcci passes through the clean environment.

examples/fibonacci's fib_mpi.py gathers every rank's part on rank 0, which prints the world size and the ranks it
heard from. One deploy runs it as MPI, and runs the very same program as three copies that cannot see each other
(each drops the launcher's variables before MPI starts, as --cleanenv did before the pass-through): the example's
expectation passes the first and fails the second.

Needs `scripts/local-stack up docker registry s3 cluster`; skips without them (fails under CI=true).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import REPO, Project, hpcci, login, make_project, on_login

from hpcci.process import Completed


def example_mpi_test() -> dict[str, Any]:
    """The MPI test of examples/fibonacci/hpcci.yaml, as the example ships it."""
    tests = yaml.safe_load((REPO / "examples" / "fibonacci" / "hpcci.yaml").read_text())["tests"]
    (mpi,) = [t for t in tests if t.get("mpi")]
    return dict(mpi)


# The same program, but each rank first drops what the launcher gave it (OMPI_*, PMIX_*), so MPI_Init finds no
# job to join and every rank is a singleton: N independent copies of one program, started by mpirun.
ALONE = (
    "import os, runpy, sys; "
    "[os.environ.pop(k) for k in list(os.environ) if k.startswith(('OMPI_', 'PMIX_'))]; "
    "sys.argv = ['fib_mpi.py', '10']; sys.path.insert(0, '/app'); runpy.run_path('/app/fib_mpi.py')"
)
IMAGE_OPEN_MPI = ["dpkg-query", "--showformat=${Version}\\n", "--show", "libopenmpi3"]


@pytest.fixture(scope="module")
def mpi_run(fib_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Completed]]:
    mpi = example_mpi_test()
    tests = [
        mpi,
        {**copy.deepcopy(mpi), "name": "copies", "command": ["python3", "-c", ALONE]},
        {"name": "open-mpi", "command": IMAGE_OPEN_MPI},
    ]
    proj = make_project(tmp_path_factory.mktemp("mpi"), tests)
    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
    assert (proj.records / "results.json").exists(), done.stdout + done.stderr
    yield proj, done


def test_the_examples_mpi_test_sees_the_world_size_and_every_rank(mpi_run: tuple[Project, Completed]) -> None:
    proj, _ = mpi_run
    t = proj.tests()["mpi"]
    assert t["verdict"] == "pass", t
    assert re.search(r"^world size 3, ranks 0 1 2: fib\(10\) = 55$", t["output_tail"], re.MULTILINE), t
    assert sorted(re.findall(r"^rank (\d) of 3 ", t["output_tail"], re.MULTILINE)) == ["0", "1", "2"]


def test_its_expectation_fails_for_three_copies_that_do_not_see_each_other(
    mpi_run: tuple[Project, Completed],
) -> None:
    proj, done = mpi_run
    t = proj.tests()["copies"]
    assert (t["state"], t["verdict"]) == ("COMPLETED", "fail"), t  # every copy ran and exited 0, alone
    assert t["output_tail"].count("world size 1, ranks 0: fib(10) = 55") == 3, t
    assert "world size 3" not in t["output_tail"]
    assert done.returncode != 0


def test_the_image_has_the_clusters_open_mpi(mpi_run: tuple[Project, Completed]) -> None:
    proj, _ = mpi_run
    t = proj.tests()["open-mpi"]
    remote = login()
    try:
        host = on_login(remote, IMAGE_OPEN_MPI).stdout.strip()
    finally:
        remote.close()
    assert t["verdict"] == "pass" and t["output_tail"].strip() == host, (t, host)
