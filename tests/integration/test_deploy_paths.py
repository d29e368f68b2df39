"""A deploy whose scratch folder holds a space and a quote: staging, conversion, sbatch and output fetch on the local
stack all take the path whole (issue 11: every #SBATCH value double-quoted, every argv through hpcci.shell).

Needs `scripts/local-stack up docker registry cluster`; skips without them (fails under CI=true).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_support import cluster_config, hpcci, login, make_project, on_login, unique

FIB = {"name": "fib", "command": "python3 /app/fib.py 10", "expect": {"output": "^55$"},
       "resources": {"time": "00:05:00", "memory": "512M"}}  # fmt: skip


@pytest.mark.parametrize("convert_on", ["login", "compute"])
def test_a_scratch_path_with_a_space_and_a_quote_deploys_and_passes(
    fib_tar: Path, tmp_path: Path, convert_on: str
) -> None:
    name = f'{unique("hpcci it")}\'s "dir"'
    folder = f"$SCRATCH/{name}"
    cluster = cluster_config(
        **{"paths.scratch": folder, "paths.image_cache": f"{folder}/images", "runtime.convert_on": convert_on}
    )
    proj = make_project(tmp_path / "proj", [FIB], cluster=cluster)
    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
    fib = proj.tests()["fib"]
    assert done.returncode == 0 and fib["verdict"] == "pass", (done.stderr[-3000:], fib)
    assert fib["output_tail"].strip() == "55"
    remote = login()
    try:
        listed = on_login(remote, ["bash", "-c", 'ls -d -- "$SCRATCH/$1"/runs/*/local/fib.out', "_", name])
        assert f"/{name}/runs/" in listed.stdout, listed.stdout
        on_login(remote, ["bash", "-c", 'rm -rf -- "$SCRATCH/$1"', "_", name])
    finally:
        remote.close()
