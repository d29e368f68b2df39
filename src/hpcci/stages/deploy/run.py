"""Deploy one cluster, start to finish: plan, stage and convert the image, submit the smoke tests, follow, judge.

The steps are planned by stages/plan.py (pure), run by stages/execute.py over the cluster's Remote, followed by
stages/smoke.py through the cluster's scheduler, and recorded by stages/outcomes.py. Whatever fails becomes this
cluster's error: one failing cluster never hides the others'.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable

from hpcci.backends.schedulers import Scheduler
from hpcci.backends.schedulers.jobs import RemoteJobs
from hpcci.backends.ssh.remote import Remote
from hpcci.config.models import Cluster, Pipeline
from hpcci.durations import duration_seconds
from hpcci.errors import DeadlineExceeded, HpcciError, RuntimeConvertError, SchedulerError
from hpcci.process import tail
from hpcci.stages.cluster import remove_argv, shell_modules
from hpcci.stages.deploy import smoke
from hpcci.stages.deploy.execute import Deployer, Presign, Staged
from hpcci.stages.deploy.journal import Journal, Reattached, moved
from hpcci.stages.deploy.outcome import Outcome, Progress, outcome
from hpcci.stages.deploy.plan import ClusterPlan, TestJob
from hpcci.stages.deploy.provenance import read_sif_checksums
from hpcci.stages.deploy.reattach import find_reattached
from hpcci.stages.layers.stage import OpenRegistry
from hpcci.stages.release.plan import ReleaseRequest
from hpcci.stages.release.promote import promote as install_release
from hpcci.stages.sources import ImageSource


def deploy_cluster(
    pipe: Pipeline,
    cluster: Cluster,
    sources: dict[str, ImageSource],
    remote: Remote,
    scheduler: Scheduler,
    *,
    presign: Presign | None,
    open_registry: OpenRegistry | None = None,
    run_id: str,
    deadline: float,
    deadline_text: str,
    stop: threading.Event,
    info: Callable[[str], None],
    mask: Callable[[str], None] = lambda _secret: None,
    journal: Journal | None = None,
    release: ReleaseRequest | None = None,
) -> Outcome:
    """Stage, convert, submit, follow and judge on one cluster, then install a release whose tests all passed
    (stages/promote.py). Never raises: errors become its result."""
    deployer = Deployer(
        pipe, cluster, remote, scheduler, presign=presign, open_registry=open_registry, info=info, stop=stop,
        run_id=run_id, mask=mask, journal=journal,
    )  # fmt: skip
    done = Progress()
    try:
        _deploy(deployer, sources, done, deadline=deadline, deadline_text=deadline_text)
    except Exception as e:  # a bug or an unexpected library error must not hide the other clusters
        done.error = cluster_error(cluster.name, e)
    return promote(outcome(pipe, cluster, sources, done), cluster, remote, release, info)


def _deploy(
    deployer: Deployer,
    sources: dict[str, ImageSource],
    done: Progress,
    *,
    deadline: float,
    deadline_text: str,
) -> None:
    cluster, remote, info = deployer.cluster, deployer.remote, deployer.info
    plan = done.plan = deployer.plan(sources)
    deployer.setup(plan)
    attached = find_reattached(deployer, plan)
    # converted by an earlier attempt of this run: its recorded sha256 is read, not recomputed
    kept: set[str] = set()
    for platform, image in plan.images.items():
        convert = attached.converts.get(platform)
        if convert is not None or not _needs_image(plan, platform, attached):
            # its conversion still runs, or every test of it was re-attached: staging again would duplicate it
            done.staged[platform] = Staged(image, convert_job=convert.job_id if convert else None)
            if convert is None:
                kept.add(platform)
            continue
        done.staged[platform] = deployer.stage_image(image)
    if time.monotonic() > deadline:
        raise DeadlineExceeded(
            f"cluster {cluster.name}: the deploy deadline ({deadline_text}) passed while staging the image; "
            "no job was submitted - raise deploy.deadline or stage faster (staging.method: s3)"
        )
    done.jobs, done.refused = deployer.submit_tests(plan, done.staged, attached)
    convert_jobs = [s.convert_job for s in done.staged.values() if s.convert_job]
    budget = cluster.scheduler.max_queue_wait
    followed = done.followed = smoke.follow(
        RemoteJobs(remote, deployer.scheduler, shell_modules(cluster), info),
        [*convert_jobs, *done.jobs.values()],
        poll=cluster.scheduler.poll,
        deadline=deadline,
        stop=deployer.stop,
        info=info,
        deadline_text=deadline_text,
        queue_budget=duration_seconds(budget) if budget else None,
        queue_budget_text=budget or "",
    )
    for s in done.staged.values():
        if s.convert_job:
            done.error = done.error or _convert_job_error(cluster, s, followed, remote, info)
    for job in plan.tests:
        if job.index in done.jobs:
            path = _output_path(plan, job, attached)
            done.outputs[job.index] = (
                _tail(remote, path, info)
                if cluster.report.output == "tail"
                else _match_on_cluster(remote, job.test.expect.output, path, info)
            )
    if followed.error:
        done.error = done.error or SchedulerError(f"cluster {cluster.name}: {followed.error}")
    converted = [p for p, s in done.staged.items() if not s.cache_hit and p not in kept]
    done.sif_sha256 = read_sif_checksums(remote, plan, converted)


def _needs_image(plan: ClusterPlan, platform: str, attached: Reattached) -> bool:
    """Whether a test to be submitted runs on ``platform`` (a re-attached one already has its image)."""
    return any(j.platform == platform and j.index not in attached.tests for j in plan.tests)


def _output_path(plan: ClusterPlan, job: TestJob, attached: Reattached) -> str:
    """Where the test's job writes: a re-attached job in its own run folder (an earlier attempt's)."""
    found = attached.tests.get(job.index)
    return moved(job.output_path, plan.paths.run_dir, found.workdir) if found else job.output_path


def cluster_error(name: str, e: BaseException) -> HpcciError:
    """Any exception as this cluster's error: one line, prefixed once with "cluster NAME:", never a traceback."""
    prefix = f"cluster {name}: "
    if isinstance(e, HpcciError):
        text = " ".join(str(e).split()) or type(e).__name__
        e.message = text if text.startswith(prefix) else prefix + text
        e.args = (e.message,)
        return e
    text = " ".join(str(e).split())
    out = HpcciError(f"{prefix}internal error: {type(e).__name__}: {text} (please report it)")
    out.__cause__ = e
    return out


def failed_outcome(
    pipe: Pipeline, cluster: Cluster, sources: dict[str, ImageSource], error: HpcciError
) -> Outcome:
    """The outcome of a cluster that failed before its deploy started (e.g. its SSH secret is not set)."""
    return outcome(pipe, cluster, sources, Progress(error=error))


def _tail(remote: Remote, path: str, info: Callable[[str], None]) -> str:
    try:
        return remote.read_tail(path, smoke.OUTPUT_TAIL_BYTES)
    except HpcciError as e:
        info(f"output not read: {e}")  # e names the cluster and the file
        return ""


def _match_on_cluster(
    remote: Remote, pattern: str | None, path: str, info: Callable[[str], None]
) -> smoke.KeptOutput:
    """report.output none: expect.output matched on the login node; nothing of the output is read back."""
    if pattern is None:
        return smoke.KeptOutput(path)
    try:
        done = remote.run(smoke.output_match_argv(pattern, path), timeout=120)
    except HpcciError as e:
        info(f"expect.output not matched: {e}")
        return smoke.KeptOutput(path, error=str(e))
    return smoke.kept_output(path, done.returncode, done.stderr)


def _convert_job_error(
    cluster: Cluster, staged: Staged, followed: smoke.Followed, remote: Remote, info: Callable[[str], None]
) -> HpcciError | None:
    job_id, job = staged.convert_job, staged.plan.convert_job
    assert job_id is not None and job is not None
    st = followed.states.get(job_id)
    if st is not None and st.status == "completed" and not st.exit_code:
        return None
    out_path = job.script.path.rsplit(".", 1)[0] + ".out"
    kept = cluster.report.output == "none"  # not a byte of a job's output leaves the site
    out = (
        f"its output stays on the cluster (report.output none): {out_path}"
        if kept
        else tail(_tail(remote, out_path, info))
    )
    leftovers = [staged.plan.image_tmp] if staged.plan.image_tmp != staged.plan.image else []
    if staged.plan.checksum_file:  # login.mode automation: the job's inputs (the tar, its checksum, the URL)
        leftovers += [staged.plan.tar_tmp, staged.plan.checksum_file, *filter(None, [staged.plan.url_file])]
    for path in leftovers:
        with contextlib.suppress(HpcciError):  # a half-written image is never kept
            remote.run(remove_argv(path), timeout=60, interruptible=False)
    what = st.sentence() if st is not None else "its state is unknown"
    return RuntimeConvertError(
        f"cluster {cluster.name}: the conversion job {job_id} did not succeed ({what}): {out}"
    )


def promote(
    outcome: Outcome,
    cluster: Cluster,
    remote: Remote,
    request: ReleaseRequest | None,
    info: Callable[[str], None],
) -> Outcome:
    """The deploy's outcome with its release installed (or why not) when it was a release tag and the cluster has a
    `release` section; unchanged otherwise. Never raises: a failed install is the outcome's error."""
    if cluster.release is None or request is None:
        return outcome
    result, error = install_release(outcome.result, cluster, remote, request, info)
    return dataclasses.replace(outcome, result=result, error=outcome.error or error)
