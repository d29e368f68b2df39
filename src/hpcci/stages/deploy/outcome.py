"""Outcomes: what one cluster's deploy produced, as the records later stages read (ClusterDeploy, ClusterResult)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hpcci.accounting import cluster_usage, job_usage
from hpcci.backends.schedulers.model import JobState, unknown
from hpcci.config.models import Cluster, Pipeline
from hpcci.errors import HpcciError
from hpcci.records import ClusterDeploy, ClusterResult, ClusterUsage, TestResult
from hpcci.stages.deploy import smoke
from hpcci.stages.deploy.execute import Staged
from hpcci.stages.deploy.plan import ClusterPlan, TestJob, tests_for
from hpcci.stages.sources import ImageSource

NOT_RUN = "NOT_RUN"  # the state recorded for a test whose job was never submitted


@dataclass
class Outcome:
    deploy: ClusterDeploy
    result: ClusterResult
    error: HpcciError | None = None


@dataclass
class Progress:
    """How far one cluster's deploy got: what was planned, staged, submitted and seen, and what went wrong."""

    plan: ClusterPlan | None = None
    staged: dict[str, Staged] = field(default_factory=dict)
    jobs: dict[int, str] = field(default_factory=dict)  # test index -> job id
    refused: dict[int, str] = field(default_factory=dict)  # test index -> why the scheduler refused it
    followed: smoke.Followed | None = None
    # test index -> tail of its output, or (report.output none) whether expect.output matched it on the cluster
    outputs: dict[int, str | smoke.KeptOutput] = field(default_factory=dict)
    error: HpcciError | None = None
    sif_sha256: dict[str, str] = field(default_factory=dict)  # platform -> sha256 of its converted image


def test_result(
    pipe: Pipeline, cluster: Cluster, index: int, job: TestJob | None, done: Progress, platform: str
) -> TestResult:
    """One test's record: its job's last state and the verdict ``smoke.judge`` gives it."""
    test = pipe.tests[index]
    job_id = done.jobs.get(index)
    error = str(done.error) if done.error else None
    st: JobState | None = None
    why = smoke.Circumstances(refused=done.refused.get(index), cluster_error=error)
    if job_id is not None and done.followed is not None:
        st = done.followed.states.get(job_id, unknown(job_id))
        cancelled, action = done.followed.cancelled.get(job_id), done.followed.action_required.get(job_id)
        why = smoke.Circumstances(cluster_error=error, cancelled_why=cancelled, action_required=action)
    output = done.outputs.get(index, "")
    verdict = smoke.judge(test, st, output, why)
    return TestResult(
        cluster=cluster.name,
        test=test.name,
        platform=job.platform if job else platform,
        job_id=job_id,
        state=st.state if st else NOT_RUN,
        exit_code=st.exit_code if st else None,
        elapsed_s=st.elapsed_s if st else None,
        verdict=verdict.verdict,
        reason=verdict.reason,
        output_tail=smoke.bounded_tail(output) if isinstance(output, str) else "",
        output_on_cluster=output.path if isinstance(output, smoke.KeptOutput) else "",
        source_file=pipe.source.file,
        source_line=pipe.test_line(index),
        usage=job_usage(st) if st else None,
    )


def image_ref(source: ImageSource | None) -> str:
    """A reference that fetches the image: the registry's platform manifest (pullable), else the S3 object."""
    if source is None:
        return ""
    if source.registry_ref:
        return source.registry_ref
    return f"s3://{source.s3.bucket}/{source.s3.key}" if source.s3 else ""


def usage(done: Progress, tests: list[TestResult]) -> ClusterUsage:
    """The cluster's totals: every test job and conversion job, and the staging and conversion times."""
    staged = list(done.staged.values())
    states = done.followed.states if done.followed else {}
    converts = [states[s.convert_job] for s in staged if s.convert_job and s.convert_job in states]
    jobs = [*(t.usage for t in tests if t.usage), *map(job_usage, converts)]
    stage = [s.seconds["stage"] for s in staged if "stage" in s.seconds]
    convert = [s.seconds["convert"] for s in staged if "convert" in s.seconds and not s.convert_job]
    convert += [st.elapsed_s for st in converts if st.elapsed_s is not None]
    return cluster_usage(
        jobs, stage_s=sum(stage) if stage else None, convert_s=sum(convert) if convert else None
    )


def _platform(done: Progress, sources: dict[str, ImageSource]) -> str:
    images = list(done.plan.images.values()) if done.plan else []
    return images[0].source.platform if images else next(iter(sources), "")


def outcome(pipe: Pipeline, cluster: Cluster, sources: dict[str, ImageSource], done: Progress) -> Outcome:
    """The cluster's deploy record and results, from however far its deploy got."""
    plan = done.plan
    first = next(iter(plan.images.values()), None) if plan else None
    platform = _platform(done, sources)
    source = first.source if first else sources.get(platform)
    by_index = {t.index: t for t in plan.tests} if plan else {}
    indexes = [i for i, _ in tests_for(pipe, cluster.name)]
    tests = [test_result(pipe, cluster, i, by_index.get(i), done, platform) for i in indexes]
    staged = list(done.staged.values())
    error = str(done.error) if done.error else None
    packing = plan.cluster.runtime.packing if plan else None  # chosen from the runtime's version
    deploy = ClusterDeploy(
        cluster=cluster.name,
        login_host=cluster.login.host,
        platform=platform,
        staging=first.staging if first else "",
        tar_path=first.tar if first and first.staging != "registry" else None,
        tar_sha256=next(
            (s.tar_sha256 for s in staged if s.tar_sha256), source.tar_sha256 if source else None
        ),
        sif_path=first.image if first else "",
        image_digest=source.digest if source else "",
        cache_hit=bool(staged) and all(s.cache_hit for s in staged),
        jobs={by_index[i].test.name if i in by_index else str(i): j for i, j in done.jobs.items()},
        error=error,
        image_ref=image_ref(source),
        sif_sha256=done.sif_sha256.get(platform),
        runtime_version=packing.version if packing else None,
        compression=packing.compression if packing else None,
    )
    result = ClusterResult(
        cluster=cluster.name,
        platform=platform,
        tests=tests,
        image_digest=deploy.image_digest,
        tar_sha256=deploy.tar_sha256,
        sif_path=deploy.sif_path or None,
        error=error,
        image_ref=deploy.image_ref,
        sif_sha256=deploy.sif_sha256,
        usage=usage(done, tests),
    )
    return Outcome(deploy, result, done.error)
