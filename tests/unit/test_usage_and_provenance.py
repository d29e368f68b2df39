"""Where the time and allocation went: Slurm accounting parsed from real 22.05 output, core-hours, the report's
table and totals, and an image line that names something that can be fetched."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import test_sbatch_scripts as T

from hpcci.accounting import cluster_usage, hours, hours_text, job_usage
from hpcci.backends.schedulers import slurm
from hpcci.backends.schedulers.model import JobState, cancelled_by_hpcci
from hpcci.backends.schedulers.slurm_accounting import gres_gpus_per_node, parse_tres, queue_wait, tres_gpus
from hpcci.process import Completed
from hpcci.records import ClusterResult, ClusterUsage, Results, S3Object, Usage
from hpcci.records import TestResult as SmokeResult
from hpcci.stages.deploy.execute import Staged
from hpcci.stages.deploy.outcome import Progress, image_ref, usage
from hpcci.stages.deploy.plan import ClusterPlan, plan_cluster, plan_lines
from hpcci.stages.deploy.provenance import read_sif_checksums, sif_checksums
from hpcci.stages.deploy.smoke import Followed
from hpcci.stages.report import text as C
from hpcci.stages.sources import ImageSource

DATA = Path(__file__).parent / "data" / "slurm"
DIGEST = "sha256:" + "d" * 64


def sacct() -> dict[str, JobState]:
    return slurm.parse_history((DATA / "sacct_accounting.txt").read_text())


def test_sacct_gives_queue_wait_run_time_and_the_allocation() -> None:
    three_cpus = sacct()["604"]  # submitted 00:37:03, started 00:37:04, ended 00:37:05
    assert (three_cpus.queue_wait_s, three_cpus.elapsed_s) == (1.0, 1.0)
    assert (three_cpus.nodes, three_cpus.node_count, three_cpus.cpus, three_cpus.gpus) == ("node1", 1, 3, 0)


def test_sacct_counts_gpus_and_nodes_of_a_multi_node_job() -> None:
    jobs = sacct()
    assert jobs["603"].gpus == 1 and jobs["603"].cpus == 1
    assert (jobs["609"].nodes, jobs["609"].node_count, jobs["609"].cpus) == ("node[1-2]", 2, 6)


def test_a_timed_out_job_keeps_its_whole_run_time() -> None:
    timeout = sacct()["607"]
    assert timeout.status == "timeout" and timeout.elapsed_s == 70.0 and timeout.queue_wait_s == 0.0


def test_a_job_cancelled_before_it_started_waited_until_the_cancel_and_was_allocated_nothing() -> None:
    held = sacct()["612"]  # Start is the cancel time, NodeList 'None assigned', AllocTRES empty
    assert held.status == "cancelled" and held.cancelled_by == "1001"
    assert held.queue_wait_s == 2.0
    assert (held.nodes, held.node_count, held.cpus, held.gpus) == ("", None, None, None)
    assert job_usage(held).core_hours is None


def test_a_pending_job_has_no_start_so_no_queue_wait_yet() -> None:
    pending = sacct()["613"]  # Start=Unknown
    assert pending.status == "pending" and pending.queue_wait_s is None
    assert queue_wait("2026-11-26T00:44:26", "Unknown") is None
    assert queue_wait("2026-11-26T00:44:26", "None") is None


def test_squeue_gives_the_allocation_of_a_running_job_and_none_for_a_pending_one() -> None:
    jobs = slurm.parse_queue((DATA / "squeue_accounting.txt").read_text())
    gpu = jobs["619"]
    assert (gpu.queue_wait_s, gpu.elapsed_s, gpu.cpus, gpu.gpus, gpu.node_count) == (1.0, 1.0, 1, 1, 1)
    assert jobs["614"].gpus == 0
    held = jobs["612"]  # %S of a pending job is only an estimate ('N/A' here): never a queue wait
    assert held.status == "pending" and held.queue_wait_s is None and held.cpus is None


def test_older_output_without_accounting_columns_still_parses() -> None:
    job = slurm.parse_history("7|COMPLETED|0:0|00:00:03|None|vm\n")["7"]
    assert job.elapsed_s == 3.0 and job.queue_wait_s is None and job.cpus is None


def test_a_job_hpcci_cancelled_keeps_what_it_was_allocated() -> None:
    running = slurm.parse_queue((DATA / "squeue_accounting.txt").read_text())["619"]
    assert cancelled_by_hpcci(running).gpus == 1


@pytest.mark.parametrize(
    ("tres", "gpus"),
    [
        ("billing=1,cpu=1,gres/gpu=1,mem=512M,node=1", 1),
        ("cpu=8,gres/gpu=4,gres/gpu:a100=4,node=1", 4),  # typed ones are tracked besides the total
        ("cpu=8,gres/gpu:a100=2,gres/gpu:v100=1,node=1", 3),  # only typed ones
        ("billing=3,cpu=3,mem=1.50G,node=1", 0),
        ("", 0),
    ],
)
def test_gpus_come_from_alloc_tres(tres: str, gpus: int) -> None:
    assert tres_gpus(parse_tres(tres)) == gpus


def test_alloc_tres_reads_as_a_map() -> None:
    assert parse_tres("billing=3,cpu=3,mem=1.50G,node=1") == {
        "billing": "3", "cpu": "3", "mem": "1.50G", "node": "1"}  # fmt: skip


@pytest.mark.parametrize(
    ("gres", "per_node"), [("gres:gpu:1", 1), ("gres/gpu:a100:2", 2), ("gres:gpu", 1), ("N/A", 0), ("", 0)]
)
def test_squeue_gres_per_node(gres: str, per_node: int) -> None:
    assert gres_gpus_per_node(gres) == per_node


def test_core_hours_are_allocated_cpus_times_run_time() -> None:
    assert hours(3, 1200.0) == 1.0
    assert hours(None, 60.0) is None and hours(4, None) is None
    u = job_usage(replace(sacct()["609"], elapsed_s=1800.0))
    assert u.core_hours == 3.0 and u.gpu_hours == 0.0


def test_cluster_totals_add_up_every_job() -> None:
    jobs = [Usage(core_hours=0.5, gpu_hours=0.25), Usage(core_hours=1.5), Usage()]
    total = cluster_usage(jobs, stage_s=3.0, convert_s=8.0)
    assert (total.core_hours, total.gpu_hours, total.jobs, total.stage_s) == (2.0, 0.25, 3, 3.0)


def test_hours_read_well_small_and_large() -> None:
    assert [hours_text(h) for h in (None, 0.0, 0.00003, 0.000278, 0.5, 1234.5)] == [
        "-", "0", "<0.0001", "0.0003", "0.50", "1,234.5"]  # fmt: skip


# -- the report -------------------------------------------------------------------------------------------------


def smoke(name: str = "fib", gpus: int = 0) -> SmokeResult:
    usage = Usage(queue_wait_s=75.0, run_s=30.0, nodes="node[1-2]", node_count=2, cpus=4, gpus=gpus,
                  core_hours=hours(4, 30.0), gpu_hours=hours(gpus, 30.0))  # fmt: skip
    return SmokeResult("local", name, "linux/amd64", "42", "COMPLETED", 0, 30.0, "pass", "ok", usage=usage)


def cluster(*tests: SmokeResult, **kw: object) -> ClusterResult:
    usage = cluster_usage([t.usage for t in tests if t.usage], stage_s=2.5, convert_s=8.0)
    fields: dict[str, object] = {"image_digest": DIGEST, "tar_sha256": "b" * 64, "sif_path": "/c/d.sif",
                                 "sif_sha256": "e" * 64, "usage": usage, **kw}  # fmt: skip
    return ClusterResult("local", "linux/amd64", list(tests), **fields)  # type: ignore[arg-type]


def test_the_table_shows_queue_wait_run_time_nodes_and_core_hours() -> None:
    s = C.summary(cluster(smoke()))
    assert "| Queue wait | Run time | Nodes | Core-h | Verdict |" in s and "GPU-h" not in s
    assert "| fib | linux/amd64 | 42 | COMPLETED | 0 | 1m15s | 30s | 2: node[1-2] | 0.03 | ✅ pass |" in s


def test_a_gpu_column_appears_when_a_test_had_gpus() -> None:
    s = C.summary(cluster(smoke("cpu"), smoke("gpu", gpus=2)))
    assert "| Core-h | GPU-h | Verdict |" in s
    assert "| 0.03 | 0.02 | ✅ pass |" in s and "| 0.03 | 0 | ✅ pass |" in s


def test_the_summary_says_where_the_clusters_time_and_allocation_went() -> None:
    s = C.summary(cluster(smoke(), smoke("two", gpus=1)))
    assert (
        "**Time and allocation:** staging 2.5s; conversion 8.0s; queue wait up to 1m15s; run time 1m00s in all; "
        "0.07 core-hours and 0.0083 GPU-hours allocated to 2 jobs." in s
    )


def test_totals_fit_github_limits_with_thousands_of_tests() -> None:
    s = C.summary(cluster(*[smoke(f"t{i:05d}", gpus=1) for i in range(3000)]))
    assert len(s) <= C.MAX_OUTPUT_CHARS
    assert "more tests: see the job's step summary |" + " |" * 9 in s  # as many cells as the header
    assert "**Time and allocation:**" in s and "**Provenance:**" in s


def test_the_step_summary_adds_up_the_allocation_of_every_cluster() -> None:
    both = Results(image="img", clusters=[cluster(smoke()), cluster(smoke("gpu", gpus=1))])
    assert "**Allocation used on 2 clusters:** 0.07 core-hours and 0.0083 GPU-hours." in C.step_summary(both)


def test_the_image_line_is_a_pullable_registry_reference() -> None:
    ref = "127.0.0.1:5000/org/fib@sha256:" + "f" * 64
    s = C.summary(cluster(smoke(), image_ref=ref))
    assert f"**Image:** `{ref}`" in s
    assert f"SIF `/c/d.sif` (sha256 `{'e' * 64}`)" in s


def test_the_image_line_of_an_s3_only_publish_is_the_object_and_its_sha256() -> None:
    s = C.summary(cluster(smoke(), image_ref="s3://hpcci/fib/sha256-d/linux-amd64.tar"))
    assert f"**Image:** `s3://hpcci/fib/sha256-d/linux-amd64.tar` (sha256 `{'b' * 64}`)" in s


def test_image_ref_prefers_the_registry_then_s3_and_a_local_tar_has_none() -> None:
    obj = S3Object("hpcci", "fib/x.tar", 1, "b" * 64, "linux/amd64", DIGEST)
    pushed = "reg/org/fib@sha256:" + "f" * 64
    assert image_ref(ImageSource("linux/amd64", DIGEST, s3=obj, registry_ref=pushed)) == pushed
    assert image_ref(ImageSource("linux/amd64", DIGEST, s3=obj)) == "s3://hpcci/fib/x.tar"
    assert image_ref(ImageSource("linux/amd64", DIGEST, local_tar="/tmp/fib.tar")) == ""
    assert image_ref(None) == ""


def test_results_without_usage_still_render() -> None:
    old = ClusterResult("local", "linux/amd64", [replace(smoke(), usage=None)], usage=ClusterUsage())
    assert "| 0 | - | 30s | - | - | ✅ pass |" in C.summary(old)
    assert "**Time and allocation:** run time 30s in all." in C.summary(old)  # no allocation recorded


def test_a_cached_image_says_so_instead_of_staging_times() -> None:
    cached = cluster(smoke(), usage=cluster_usage([smoke().usage or Usage()]))
    assert "**Time and allocation:** image cached; queue wait up to 1m15s;" in C.summary(cached)


# -- the deploy's side: totals from the jobs followed, the SIF's checksum --------------------------------------


def local_plan(**settings: str) -> ClusterPlan:
    source = ImageSource("linux/amd64", T.DIGEST, tar_sha256="ab" * 32, local_tar="/tmp/fib.tar")
    cluster = T.local_cluster(**settings)
    return plan_cluster(T.pipeline(T.FIB), cluster, {"linux/amd64": source}, T.PATHS, "r1", slurm)


def test_a_conversion_job_counts_its_run_time_as_conversion_and_its_allocation_in_the_totals() -> None:
    plan = local_plan(**{"runtime.convert_on": "compute"})
    (image,) = plan.images.values()
    convert = replace(sacct()["604"], job_id="900")  # 3 CPUs for 1 s
    test = replace(sacct()["609"], job_id="901", elapsed_s=1800.0)  # 6 CPUs for half an hour
    done = Progress(
        plan=plan, staged={"linux/amd64": Staged(image, convert_job="900", seconds={"stage": 4.0})}
    )
    done.followed = Followed(states={"900": convert, "901": test})
    total = usage(done, [replace(smoke(), usage=job_usage(test))])
    assert (total.stage_s, total.convert_s, total.jobs) == (4.0, 1.0, 2)
    assert total.core_hours == pytest.approx(3.0 + 3 / 3600)


class Checksums:
    """A login node whose files are a table: `cat` and `sha256sum` answer from it, missing files fail."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = dict(files)  # path -> content (for an image: its sha256)
        self.asked: list[list[str]] = []

    def run(self, argv: list[str], *, timeout: float) -> Completed:
        self.asked.append(argv)
        name, path = argv[0], argv[-1]
        if path not in self.files:
            return Completed(tuple(argv), 1, "", f"{name}: {path}: No such file or directory")
        out = self.files[path] if name == "cat" else f"{self.files[path]}  {path}\n"
        return Completed(tuple(argv), 0, out, "")

    def write_text(self, remote: str, text: str) -> None:
        self.asked.append(["write", remote])
        self.files[remote] = text


def test_an_image_converted_now_is_hashed_and_its_sha256_recorded_beside_it() -> None:
    plan = local_plan()
    (image,) = plan.images.values()
    stale = f"{'0' * 64}  {image.image}\n"  # from an earlier conversion of the same key
    node = Checksums({image.image: "c" * 64, f"{image.image}.sha256": stale})
    assert read_sif_checksums(node, plan, converted={"linux/amd64"}) == {"linux/amd64": "c" * 64}
    (steps,) = sif_checksums(plan).values()
    assert node.asked == [steps.recorded.argv, steps.compute.argv, ["write", f"{image.image}.sha256"]]
    assert node.files[f"{image.image}.sha256"] == f"{'c' * 64}  {image.image}\n"
    printed = "\n".join(plan_lines(plan))
    for step in steps.steps():
        assert step in plan.steps() and "\n".join(step.lines()) in printed


def test_a_cached_image_reads_its_recorded_sha256_instead_of_hashing_it_again() -> None:
    plan = local_plan()
    (image,) = plan.images.values()
    node = Checksums({image.image: "c" * 64, f"{image.image}.sha256": f"{'c' * 64}  {image.image}\n"})
    assert read_sif_checksums(node, plan, converted=()) == {"linux/amd64": "c" * 64}
    assert [argv[0] for argv in node.asked] == ["cat"]


def test_a_cached_image_without_a_recorded_sha256_is_hashed_once() -> None:
    plan = local_plan()
    (image,) = plan.images.values()
    node = Checksums({image.image: "c" * 64})
    assert read_sif_checksums(node, plan, converted=()) == {"linux/amd64": "c" * 64}
    assert read_sif_checksums(node, plan, converted=()) == {"linux/amd64": "c" * 64}
    assert [argv[0] for argv in node.asked] == ["cat", "sha256sum", "write", "cat"]


def test_an_image_that_is_not_there_has_no_checksum_and_no_error() -> None:
    node = Checksums({})
    assert read_sif_checksums(node, local_plan(), converted={"linux/amd64"}) == {}
    assert "write" not in [argv[0] for argv in node.asked]


def test_images_kept_in_a_store_have_no_file_to_hash() -> None:
    assert sif_checksums(local_plan(**{"runtime.type": "podman", "runtime.compression": "gzip"})) == {}
