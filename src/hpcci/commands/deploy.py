"""`hpcci deploy`: stage, convert and smoke-test the image on every named cluster, concurrently.

Each cluster runs in its own thread with its own SSH connection and gets its own result: one failing cluster
never hides the others'. Writes .hpcci/deploy.json (DeployRecord), .hpcci/results.json (Results) and the same
results as JUnit XML (.hpcci/results.junit.xml, stages/report/junit.py), and every
job id the moment it is submitted to .hpcci/journal.json (stages/journal.py): the same run deployed again
re-attaches to its jobs instead of submitting them twice. SIGTERM/SIGINT (a cancelled CI run) and the deploy
deadline cancel the jobs already submitted; `--cancel` cancels a crashed run's jobs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from hpcci import context, wiring
from hpcci.commands import common
from hpcci.errors import ClusterProblem, HpcciError, Interrupted, SmokeTestFailed, UsageError
from hpcci.log import Log

if TYPE_CHECKING:
    from hpcci.backends.runtime import Packing
    from hpcci.config.models import Cluster, Pipeline
    from hpcci.records import ClusterDeploy, PublishRecord, Results
    from hpcci.stages.deploy.journal import Journal
    from hpcci.stages.deploy.outcome import Outcome
    from hpcci.stages.release.plan import ReleaseRequest
    from hpcci.stages.sources import ImageSource


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_pipeline_arguments(p)
    common.add_cluster_arguments(p)
    p.add_argument(
        "--image-tar",
        metavar="PATH",
        help="a docker-archive tar (from `docker save`) to upload over SFTP when there is no publish record",
    )
    p.add_argument(
        "--run-id", metavar="ID", type=common.run_id, help="the run's folder on the cluster (default: CI run)"
    )
    p.add_argument("--deadline", metavar="TIME", help="Slurm time (e.g. 00:20:00) overriding deploy.deadline")
    p.add_argument(
        "--cancel",
        action="store_true",
        help="only cancel this run's jobs still queued or running (from the journal, or found on the cluster)",
    )
    p.add_argument(
        "--replace-release",
        action="store_true",
        help="a release tag: install over the same version installed from another image (also: HPCCI_REPLACE_RELEASE=1)",
    )


# -- inputs ------------------------------------------------------------------------------------------------------


def image_sources(
    args: argparse.Namespace, records: Path, log: Log, pipe_image: str = ""
) -> tuple[str, dict[str, ImageSource]]:
    """(image name, platform -> source) from --image-tar and/or .hpcci/publish.json."""
    from hpcci import records as rec
    from hpcci.stages.sources import ImageSource, docker_archive_info, sources_from_publish

    sources: dict[str, ImageSource] = {}
    image = ""
    publish_path = records / rec.RECORD_FILES[rec.PublishRecord]
    if publish_path.exists():
        publish: PublishRecord = rec.read(rec.PublishRecord, publish_path)
        image = publish.image
        sources.update(sources_from_publish(publish))
        log.info(f"image {publish.image}: {len(sources)} platform(s) from {publish_path}")
    if args.image_tar:
        path = Path(args.image_tar)
        if not path.is_file():
            raise UsageError(
                f"--image-tar {path}: no such file; make one with `docker save IMAGE -o FILE.tar`"
            )
        digest, platform = docker_archive_info(path)
        log.info(f"image tar {path}: {platform} {digest}")
        from dataclasses import replace

        local = ImageSource(platform, digest, size=path.stat().st_size, local_tar=str(path))
        have = sources.get(platform)
        sources[platform] = replace(have, local_tar=str(path)) if have else local
    image = image or pipe_image
    if not sources:
        raise UsageError(
            f"nothing to deploy: no {publish_path} (run `hpcci publish`) and no --image-tar FILE (from `docker save`)"
        )
    return image, sources


def run_id_default() -> str:
    run = context.var("GITHUB_RUN_ID")
    if run:
        return f"gh-{run}-{context.var('GITHUB_RUN_ATTEMPT') or '1'}"
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"


# -- one cluster ---------------------------------------------------------------------------------------------------


def connect_and_deploy(
    pipe: Pipeline,
    cluster: Cluster,
    sources: dict[str, ImageSource],
    *,
    run_id: str,
    deadline: float,
    deadline_text: str,
    stop: threading.Event,
    log: Log,
    journal: Journal,
    release: ReleaseRequest | None = None,
) -> Outcome:
    """One cluster with the real backends: its own SSH connection, its scheduler, presigned URLs from the object store."""
    from hpcci.stages.deploy import run as stage

    def info(msg: str) -> None:
        log.info(f"[{cluster.name}] {msg}")

    remote = wiring.make_remote(cluster, log, echo=info, stop=stop)
    try:
        return stage.deploy_cluster(
            pipe, cluster, sources, remote, wiring.make_scheduler(cluster), presign=wiring.presigner(pipe, log),
            open_registry=wiring.registry_opener(pipe, log),
            run_id=run_id, deadline=deadline,
            deadline_text=deadline_text, stop=stop, info=info, mask=log.mask, journal=journal, release=release,
        )  # fmt: skip
    finally:
        remote.close()


# -- the command ----------------------------------------------------------------------------------------------------


def main(args: argparse.Namespace, log: Log) -> int:
    from hpcci import records as rec
    from hpcci.durations import duration_seconds
    from hpcci.files import write_atomic
    from hpcci.stages.deploy import run as stage
    from hpcci.stages.deploy.cancel import cancel_run
    from hpcci.stages.deploy.journal import Journal
    from hpcci.stages.release.plan import release_request
    from hpcci.stages.report import junit

    pipe = common.pipeline(args)
    clusters = common.clusters(args, pipe)
    if not clusters:
        raise UsageError("no cluster to deploy to: pass --cluster NAME or list deploy.clusters in hpcci.yaml")
    records = common.records_dir(args)
    run_id = args.run_id or run_id_default()
    journal = Journal(records, wiring.run_identity(pipe, args.run_id, run_id))
    if args.cancel:
        cancel_run(pipe, clusters, journal, log, lambda c: wiring.cluster_jobs(c, log))
        return 0
    image, sources = image_sources(args, records, log, pipe.image.name)
    deadline_text = args.deadline or pipe.deploy.deadline
    seconds = duration_seconds(deadline_text)
    if seconds is None:
        raise UsageError(f"--deadline {deadline_text!r} is not a Slurm time such as 00:20:00")
    deadline = time.monotonic() + seconds
    replace = args.replace_release or context.var("HPCCI_REPLACE_RELEASE") in ("1", "true", "yes")
    release = release_request(common.event(args), image, run_id, replace=replace)
    _mask_secrets(pipe, log)
    stop = threading.Event()
    outcomes: dict[str, Outcome] = {}

    def work(name: str) -> None:
        try:
            outcomes[name] = connect_and_deploy(
                pipe,
                clusters[name],
                sources,
                run_id=run_id,
                deadline=deadline,
                deadline_text=deadline_text,
                stop=stop,
                log=log,
                journal=journal,
                release=release,
            )
        except Exception as e:  # e.g. its SSH user/key secret is not set: that cluster's error, no traceback
            outcomes[name] = stage.failed_outcome(pipe, clusters[name], sources, stage.cluster_error(name, e))

    log.info(
        f"deploying {image} to {', '.join(clusters)} (run {run_id}, deadline {deadline_text}); "
        f"job ids are journaled in {journal.path}"
    )
    with _stop_on_signals(stop, log):
        threads = [
            threading.Thread(target=work, args=(n,), name=f"deploy-{n}", daemon=True) for n in clusters
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    for n in clusters:
        if n not in outcomes:  # its worker ended without a result: never a silent pass
            why = HpcciError(
                f"cluster {n}: internal error: its deploy ended without a result (please report it)"
            )
            outcomes[n] = stage.failed_outcome(pipe, clusters[n], sources, why)
    ordered = [outcomes[n] for n in clusters]
    rec.write(rec.DeployRecord(image=image, clusters=[o.deploy for o in ordered]), records / "deploy.json")
    results = rec.Results(
        image=image,
        clusters=[o.result for o in ordered],
        ref=context.var("GITHUB_REF"),
        sha=context.var("GITHUB_SHA"),
    )
    rec.write(results, records / "results.json")
    write_atomic(records / junit.FILE, junit.junit_xml(results))  # the same results, for CI test dashboards
    _report(ordered, results, log)
    if stop.is_set():
        raise Interrupted("deploy stopped by SIGTERM/SIGINT; its submitted jobs were cancelled")
    errors = [o.error for o in ordered if o.error is not None]
    if errors:
        for err in errors:
            log.error(str(err))
        return errors[0].exit_code
    if not results.passed:
        err = verdict_error(results, records / "results.json")
        if isinstance(err, ClusterProblem):  # a warning and its own exit code, as the neutral check run says
            log.warning(str(err))
            return err.exit_code
        raise err
    return 0


def verdict_error(results: Results, path: Path) -> SmokeTestFailed:
    """The deploy's error for smoke tests that did not all pass, in the family of the check runs' conclusion: a
    cluster problem (every check run that is not a success is neutral) is not a code failure."""
    from hpcci.stages.report.text import SEVERITY, conclude

    worst = min((conclude(c).conclusion for c in results.clusters), key=SEVERITY.index, default="failure")
    failed = [f"{c.cluster}/{t.test}" for c in results.clusters for t in c.tests if t.verdict != "pass"]
    if worst == "neutral":
        return ClusterProblem(
            f"the cluster did not run the smoke tests to the end (a cluster problem, not the code): "
            f"{', '.join(failed)}; re-run the deploy; see {path}"
        )
    return SmokeTestFailed(f"smoke tests did not pass: {', '.join(failed)}; see {path}")


def _mask_secrets(pipe: Pipeline, log: Log) -> None:
    """The registry password may reach a cluster (registry staging): never let it reach a log."""
    reg = pipe.publish.registry
    if reg is not None and reg.password is not None:
        # not set: only an error if registry staging is used, and then that step says so
        with contextlib.suppress(HpcciError):
            log.mask(reg.password.resolve("publish.registry.password").strip())


def _report(outcomes: list[Outcome], results: Results, log: Log) -> None:
    from hpcci.stages.report.text import step_summary

    for o in outcomes:
        r = o.result
        log.info(headline(o))
        for t in r.tests:
            el = f"{t.elapsed_s:.0f}s" if t.elapsed_s is not None else "-"
            # A cluster error is said once, as the deploy's error below; its tests only say they did not run.
            why = (
                "not run: the cluster failed (the error is below)"
                if r.error and t.job_id is None
                else t.reason
            )
            log.info(f"   {t.verdict.upper():9} {t.test}: {why} [job {t.job_id or '-'}, {t.state}, {el}]")
            if t.verdict != "pass" and not (r.error and t.job_id is None):
                # a cluster problem (neutral check run) is a warning: the code did not fail
                annotate = log.warning if t.verdict == "infra" else log.error
                annotate(f"{r.cluster}/{t.test}: {t.reason}", file=t.source_file, line=t.source_line)
    log.summary(step_summary(results, heading="hpcci deploy"))


def headline(o: Outcome) -> str:
    """A cluster's first summary line: image and SIF, or how far it got when it failed before converting."""
    d, r = o.deploy, o.result
    image = " ".join(x for x in (r.platform, d.image_digest[:19]) if x)
    if d.sif_path:
        return f"== {r.cluster}: {image} -> {d.sif_path}{' (cache hit)' if d.cache_hit else ''}"
    why = "the cluster failed first (the error is below)" if r.error or o.error else "no conversion ran"
    return f"== {r.cluster}: {image or 'no image'}: not converted: {why}"


class _stop_on_signals:
    """SIGTERM/SIGINT set ``stop``: the cluster threads cancel their jobs and finish; a second signal is ignored."""

    def __init__(self, stop: threading.Event, log: Log) -> None:
        self.stop = stop
        self.log = log
        self.old: dict[int, object] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if not self.stop.is_set():
            self.log.warning(f"{signal.Signals(signum).name}: stopping; cancelling the submitted jobs")
        self.stop.set()

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self.old[s] = signal.signal(s, self._handler)

    def __exit__(self, *exc: object) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)  # type: ignore[arg-type]


# -- plan --------------------------------------------------------------------------------------------------------


def _packing(cluster: Cluster, last: ClusterDeploy | None) -> tuple[Packing, str]:
    """The packing a deploy would choose, from the runtime version the last deploy found; and where that came from."""
    from hpcci.backends.runtime import choose_packing
    from hpcci.stages.cluster import runtime

    version = last.runtime_version if last else None
    asked = (
        f"{cluster.runtime.type} {version} is the last deploy's; a deploy asks the runtime again"
        if version
        else "a deploy asks the runtime for its version first"
    )
    conf = cluster.runtime
    return choose_packing(runtime(cluster), conf.compression, conf.convert_cpus, version), asked


def plan_section(ctx: common.PlanContext) -> str:
    """Per cluster: the very steps a deploy runs - remote commands and full batch scripts (nothing is contacted)."""
    from hpcci import records as rec
    from hpcci.stages.deploy.paths import file_tag, unresolved_paths
    from hpcci.stages.deploy.plan import plan_cluster, plan_lines, platforms_needed
    from hpcci.stages.sources import ImageSource, sources_from_publish

    pipe = ctx.pipeline
    publish_path = ctx.records / rec.RECORD_FILES[rec.PublishRecord]
    published = (
        sources_from_publish(rec.read(rec.PublishRecord, publish_path)) if publish_path.exists() else {}
    )
    deploy_path = ctx.records / rec.RECORD_FILES[rec.DeployRecord]
    deployed = (
        {c.cluster: c for c in rec.read(rec.DeployRecord, deploy_path).clusters}
        if deploy_path.exists()
        else {}
    )
    out: list[str] = []
    if not published:
        out.append(
            f"(no {publish_path}: showing SFTP staging of a `docker save` tar with a placeholder digest)"
        )
    for name, cluster in ctx.clusters.items():
        sources = dict(published)
        for platform in platforms_needed(pipe, cluster):
            sources.setdefault(platform, ImageSource(platform, "sha256:" + "0" * 64, local_tar="IMAGE.tar"))
        # the job names and comments a deploy gives the jobs: the run's label (RUN_ID outside a workflow run)
        identity = wiring.run_identity(pipe, None, "RUN_ID")
        scheduler = wiring.make_scheduler(cluster)
        try:
            packing, asked = _packing(cluster, deployed.get(name))
            cluster = cluster.model_copy(update={"runtime": cluster.runtime.with_packing(packing)})
            paths, tag = unresolved_paths(cluster, "RUN_ID"), file_tag("RUN_ID", cluster)
            plan = plan_cluster(pipe, cluster, sources, paths, tag, scheduler, identity)
        except HpcciError as e:
            out.append(f"### cluster {name}\ncannot plan: {e}")
            continue
        login = cluster.login
        out.append(
            f"### cluster {name}: {login.host}:{login.port} ({cluster.runtime.type}, {scheduler.NAME})"
        )
        out.append(f"image packing: {packing.why} ({asked})")
        out += plan_lines(plan)
        judged = (
            "output tail judged against expect"
            if cluster.report.output == "tail"
            else "expect.output matched on the login node with grep -E (report.output none: no output is read)"
        )
        out.append(
            "then: the queue and the history for all jobs in one call each per round, cancel at the deadline "
            f"({pipe.deploy.deadline}) or on SIGTERM/SIGINT, {judged}"
        )
    return "\n".join(out)
