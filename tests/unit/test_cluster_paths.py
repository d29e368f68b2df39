"""Two cluster configs of one machine (same login node, same scratch, same image cache) in one deploy: every file
either writes for the run has its own path (issue 20 item 1), and `hpcci plan` shows the paths a deploy uses."""

from __future__ import annotations

from test_sbatch_scripts import DIGEST, FIB, local_cluster, pipeline

from hpcci.backends.schedulers import slurm
from hpcci.config.models import Cluster
from hpcci.stages.deploy.image_plan import setup_steps
from hpcci.stages.deploy.paths import file_tag, resolve_paths, unresolved_paths
from hpcci.stages.deploy.plan import ClusterPlan, plan_cluster
from hpcci.stages.layers.index import Blob
from hpcci.stages.sources import ImageSource

ENV = {"SCRATCH": "/scratch/u", "HOME": "/home/u"}
BLOB = Blob("sha256:" + "12" * 32, 0, 0, "")
SOURCE = ImageSource("linux/amd64", DIGEST, tar_sha256="ef" * 32, local_tar="/tmp/fib.tar")


def planned(cluster: Cluster, run_id: str = "r1") -> ClusterPlan:
    paths = resolve_paths(cluster, ENV, run_id)
    return plan_cluster(
        pipeline(FIB), cluster, {"linux/amd64": SOURCE}, paths, file_tag(run_id, cluster), slurm
    )


def written(plan: ClusterPlan) -> set[str]:
    """Every path the deploy writes for this run only (the content-addressed tar and image are shared on purpose)."""
    out = {plan.paths.run_dir}
    for job in plan.tests:
        out |= {job.submit.script.path, job.output_path}
    for image in plan.images.values():
        out |= {image.tar_tmp, image.image_tmp}
        if image.convert_job is not None:
            out.add(image.convert_job.script.path)
        if image.layers is not None:
            out |= {image.layers.layout, image.layers.store.partial(BLOB, image.layers.run_id)}
    return out


def test_two_configs_of_one_machine_write_nothing_of_the_run_to_the_same_path() -> None:
    for convert_on, layers in (("login", False), ("compute", False), ("login", True)):
        change = {"runtime.convert_on": convert_on, "staging.layers": layers}
        cpu, gpu = local_cluster(**change), local_cluster(name="local-gpu", **change)
        one, two = planned(cpu), planned(gpu)
        assert (one.images["linux/amd64"].layers is not None) == layers
        assert one.paths.scratch == two.paths.scratch and one.paths.cache == two.paths.cache
        assert not written(one) & written(two), written(one) & written(two)
        assert one.paths.run_dir == "/scratch/u/hpcci/runs/r1/local"  # the run's folder, then the cluster's
        assert two.tests[0].submit.script.path == "/scratch/u/hpcci/runs/r1/local-gpu/fib.sbatch"
        # the converted image is content-addressed: both use (and may both make) the same file
        assert one.images["linux/amd64"].image == two.images["linux/amd64"].image


def test_the_run_folder_keeps_the_run_id_and_the_plan_shows_the_same_layout() -> None:
    cluster = local_cluster()
    assert planned(cluster, "gh-7-1").paths.run_dir.endswith("/runs/gh-7-1/local")
    assert unresolved_paths(cluster, "RUN_ID").run_dir == "$SCRATCH/hpcci/runs/RUN_ID/local"


def test_the_run_s_folder_and_the_cluster_s_in_it_are_both_made_private() -> None:
    paths = planned(local_cluster()).paths
    (mkdir,) = [s.argv for s in setup_steps(paths) if "700" in s.argv]
    assert mkdir == [
        "mkdir",
        "-p",
        "-m",
        "700",
        "--",
        "/scratch/u/hpcci/runs/r1",
        "/scratch/u/hpcci/runs/r1/local",
    ]
