"""`hpcci deploy`: stage, convert and smoke-test the image on every named cluster, concurrently.

Each cluster runs in its own thread with its own SSH connection and gets its own result: one failing cluster
never hides the others'. Writes .hpcci/deploy.json (DeployRecord) and .hpcci/results.json (Results).
SIGTERM/SIGINT (a cancelled CI run) and the deploy deadline cancel the jobs already submitted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from hpcci.commands import common
from hpcci.errors import DeadlineExceeded, HpcciError, Interrupted, SmokeTestFailed, UsageError
from hpcci.log import Log

if TYPE_CHECKING:
    from hpcci.backends.remote import Remote
    from hpcci.config import Cluster, Pipeline
    from hpcci.records import ClusterDeploy, ClusterResult, PublishRecord, S3Object
    from hpcci.stages.deploy import ClusterPlan, ImageSource, Staged
    from hpcci.stages.smoke import Followed


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_pipeline_arguments(p)
    common.add_cluster_arguments(p)
    p.add_argument(
        "--image-tar",
        metavar="PATH",
        help="a docker-archive tar (from `docker save`) to upload over SFTP when there is no publish record",
    )
    p.add_argument(
        "--run-id", metavar="ID", help="names this deploy's folder on the cluster (default: CI run id)"
    )
    p.add_argument("--deadline", metavar="TIME", help="Slurm time (e.g. 00:20:00) overriding deploy.deadline")


# -- inputs ------------------------------------------------------------------------------------------------------


def image_sources(
    args: argparse.Namespace, records: Path, log: Log, pipe_image: str = ""
) -> tuple[str, dict[str, ImageSource]]:
    """(image name, platform -> source) from --image-tar and/or .hpcci/publish.json."""
    from hpcci import records as rec
    from hpcci.stages.deploy import ImageSource, docker_archive_info, sources_from_publish

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
    run = os.environ.get("GITHUB_RUN_ID")
    if run:
        return f"gh-{run}-{os.environ.get('GITHUB_RUN_ATTEMPT', '1')}"
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"


# -- one cluster ---------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    deploy: ClusterDeploy
    result: ClusterResult
    error: HpcciError | None = None


def deploy_cluster(
    pipe: Pipeline,
    cluster: Cluster,
    sources: dict[str, ImageSource],
    *,
    run_id: str,
    deadline: float,
    deadline_text: str,
    stop: threading.Event,
    log: Log,
) -> Outcome:
    """Everything for one cluster; never raises (errors become this cluster's result)."""
    from hpcci.backends.remote import SSHRemote
    from hpcci.stages import smoke
    from hpcci.stages.deploy import Deployer

    def info(msg: str) -> None:
        log.info(f"[{cluster.name}] {msg}")

    remote = SSHRemote(cluster.name, cluster.login, echo=info, mask=log.mask, stop=stop)

    deployer = Deployer(
        pipe, cluster, remote, presign=presigner(pipe, log), info=info, stop=stop, run_id=run_id
    )
    plan: ClusterPlan | None = None
    staged: dict[str, Staged] = {}
    jobs: dict[int, str] = {}
    refused: dict[int, str] = {}
    followed: smoke.Followed | None = None
    outputs: dict[int, str] = {}
    error: HpcciError | None = None
    try:
        plan = deployer.plan(sources)
        for platform, image in plan.images.items():
            staged[platform] = deployer.stage_image(plan, image)
        if time.monotonic() > deadline:
            raise DeadlineExceeded(
                f"cluster {cluster.name}: the deploy deadline ({deadline_text}) passed while staging the image; "
                "no job was submitted - raise deploy.deadline or stage faster (staging.method: s3)"
            )
        jobs, refused = deployer.submit_tests(plan, staged)
        convert_jobs = [s.convert_job for s in staged.values() if s.convert_job]
        followed = smoke.follow(
            smoke.SlurmJobs(remote, plan.modules, info),
            [*convert_jobs, *jobs.values()],
            poll=cluster.scheduler.poll,
            deadline=deadline,
            stop=stop,
            info=info,
            deadline_text=deadline_text,
        )
        for s in staged.values():
            if s.convert_job:
                error = error or _convert_job_error(cluster, s, followed, remote, info)
        for job in plan.tests:
            if job.index in jobs:
                outputs[job.index] = _tail(remote, job.output_path, info)
        if followed.error:
            from hpcci.errors import SchedulerError

            error = error or SchedulerError(f"cluster {cluster.name}: {followed.error}")
    except HpcciError as e:
        error = e
    except Exception as e:  # a bug or an unexpected library error must not hide the other clusters
        error = HpcciError(
            f"cluster {cluster.name}: internal error: {type(e).__name__}: {e} (please report it)"
        )
    finally:
        remote.close()
    return _outcome(pipe, cluster, sources, plan, staged, jobs, refused, followed, outputs, error)


def presigner(pipe: Pipeline, log: Log) -> Callable[[S3Object, str | None], str]:
    """Presigned GETs made for the endpoint as the cluster reaches it (the URL signs the Host header)."""

    def presign(obj: S3Object, endpoint: str | None) -> str:
        from dataclasses import replace

        from hpcci.backends.objectstore import S3Settings, make_store
        from hpcci.commands.publish import s3_settings

        base = s3_settings(pipe, log) if pipe.publish.s3 else S3Settings(bucket=obj.bucket, path_style=True)
        settings = replace(base, bucket=obj.bucket, endpoint_url=endpoint, region=obj.region or base.region)
        url = make_store(settings).presign_get(obj.key)
        log.mask(url.split("?", 1)[-1])  # the signature is a credential for an hour
        return url

    return presign


def _tail(remote: Remote, path: str, info: Callable[[str], None]) -> str:
    from hpcci.stages.smoke import OUTPUT_TAIL_BYTES

    try:
        return remote.read_tail(path, OUTPUT_TAIL_BYTES)
    except HpcciError as e:
        info(f"cannot read {path}: {e}")
        return ""


def _convert_job_error(
    cluster: Cluster, staged: Staged, followed: Followed, remote: Remote, info: Callable[[str], None]
) -> HpcciError | None:
    from hpcci.backends import scheduler as slurm
    from hpcci.errors import RuntimeConvertError
    from hpcci.process import tail

    job_id = staged.convert_job
    assert job_id is not None and staged.plan.convert_script_path is not None
    st = followed.states.get(job_id)
    if st is not None and st.state == slurm.COMPLETED and not st.exit_code:
        return None
    out = _tail(remote, staged.plan.convert_script_path.removesuffix(".sbatch") + ".out", info)
    if staged.plan.image_tmp != staged.plan.image:
        with contextlib.suppress(HpcciError):
            remote.run(
                ["rm", "-f", "--", staged.plan.image_tmp], timeout=60, interruptible=False
            )  # a half-written image is never kept
    what = st.sentence() if st is not None else "its state is unknown"
    return RuntimeConvertError(
        f"cluster {cluster.name}: the conversion job {job_id} did not succeed ({what}): {tail(out)}"
    )


def _outcome(
    pipe: Pipeline,
    cluster: Cluster,
    sources: dict[str, ImageSource],
    plan: ClusterPlan | None,
    staged: dict[str, Staged],
    jobs: dict[int, str],
    refused: dict[int, str],
    followed: Followed | None,
    outputs: dict[int, str],
    error: HpcciError | None,
) -> Outcome:
    from hpcci.backends import scheduler as slurm
    from hpcci.records import ClusterDeploy, ClusterResult, TestResult
    from hpcci.stages import smoke
    from hpcci.stages.deploy import tests_for

    images = list(plan.images.values()) if plan else []
    first = images[0] if images else None
    platform = first.source.platform if first else next(iter(sources), "")
    source = first.source if first else sources.get(platform)
    tests_by_index = {t.index: t for t in plan.tests} if plan else {}
    names = {i: t.test.name for i, t in tests_by_index.items()}
    results: list[TestResult] = []
    for index, test in tests_for(pipe, cluster.name):
        job = tests_by_index.get(index)
        job_id = jobs.get(index)
        line = pipe.test_line(index)
        test_platform = job.platform if job else platform
        if job_id is None or followed is None:
            why = refused.get(index) or (f"not run: {error}" if error else "not run")
            verdict = "error" if index in refused or error else "skipped"
            results.append(
                TestResult(
                    cluster=cluster.name,
                    test=test.name,
                    platform=test_platform,
                    job_id=job_id,
                    state=slurm.NOT_RUN,
                    exit_code=None,
                    elapsed_s=None,
                    verdict=verdict,
                    reason=why,
                    source_file=pipe.source.file,
                    source_line=line,
                )
            )
            continue
        st = followed.states.get(job_id, slurm.JobState(job_id, slurm.UNKNOWN))
        cancelled = followed.cancelled.get(job_id)
        output = outputs.get(index, "")
        if st.state == slurm.CANCELLED and not cancelled and error is not None:
            v = smoke.Verdict("error", f"not run: {error}")
        else:
            v = smoke.judge(test, st, output, cancelled_why=cancelled)
        results.append(
            TestResult(
                cluster=cluster.name,
                test=test.name,
                platform=test_platform,
                job_id=job_id,
                state=st.state,
                exit_code=st.exit_code,
                elapsed_s=st.elapsed_s,
                verdict=v.verdict,
                reason=v.reason,
                output_tail=smoke.bounded_tail(output),
                source_file=pipe.source.file,
                source_line=line,
            )
        )
    any_staged = list(staged.values())
    deploy = ClusterDeploy(
        cluster=cluster.name,
        login_host=cluster.login.host,
        platform=platform,
        staging=first.staging if first else "",
        tar_path=first.tar if first and first.staging != "registry" else None,
        tar_sha256=next(
            (s.tar_sha256 for s in any_staged if s.tar_sha256), source.tar_sha256 if source else None
        ),
        sif_path=first.image if first else "",
        image_digest=source.digest if source else "",
        cache_hit=bool(any_staged) and all(s.cache_hit for s in any_staged),
        jobs={names.get(i, str(i)): j for i, j in jobs.items()},
        error=str(error) if error else None,
    )
    result = ClusterResult(
        cluster=cluster.name,
        platform=platform,
        tests=results,
        image_digest=deploy.image_digest,
        tar_sha256=deploy.tar_sha256,
        sif_path=deploy.sif_path or None,
        error=str(error) if error else None,
    )
    return Outcome(deploy, result, error)


# -- the command ----------------------------------------------------------------------------------------------------


def main(args: argparse.Namespace, log: Log) -> int:
    from hpcci import records as rec
    from hpcci.config import slurm_time_seconds

    pipe = common.pipeline(args)
    clusters = common.clusters(args, pipe)
    if not clusters:
        raise UsageError("no cluster to deploy to: pass --cluster NAME or list deploy.clusters in hpcci.yaml")
    records = common.records_dir(args)
    image, sources = image_sources(args, records, log, pipe.image.name)
    run_id = args.run_id or run_id_default()
    deadline_text = args.deadline or pipe.deploy.deadline
    try:
        deadline = time.monotonic() + slurm_time_seconds(deadline_text)
    except ValueError as e:
        raise UsageError(f"--deadline {deadline_text!r} is not a Slurm time such as 00:20:00") from e
    stop = threading.Event()
    outcomes: dict[str, Outcome] = {}

    def work(name: str) -> None:
        outcomes[name] = deploy_cluster(
            pipe,
            clusters[name],
            sources,
            run_id=run_id,
            deadline=deadline,
            deadline_text=deadline_text,
            stop=stop,
            log=log,
        )

    log.info(f"deploying {image} to {', '.join(clusters)} (run {run_id}, deadline {deadline_text})")
    with _stop_on_signals(stop, log):
        threads = [
            threading.Thread(target=work, args=(n,), name=f"deploy-{n}", daemon=True) for n in clusters
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    ordered = [outcomes[n] for n in clusters if n in outcomes]
    rec.write(rec.DeployRecord(image=image, clusters=[o.deploy for o in ordered]), records / "deploy.json")
    results = rec.Results(
        image=image,
        clusters=[o.result for o in ordered],
        ref=os.environ.get("GITHUB_REF", ""),
        sha=os.environ.get("GITHUB_SHA", ""),
    )
    rec.write(results, records / "results.json")
    _report(ordered, log)
    if stop.is_set():
        raise Interrupted("deploy stopped by SIGTERM/SIGINT; its submitted jobs were cancelled")
    errors = [o.error for o in ordered if o.error is not None]
    if errors:
        for err in errors:
            log.error(str(err))
        return errors[0].exit_code
    if not results.passed:
        failed = [f"{c.cluster}/{t.test}" for c in results.clusters for t in c.tests if t.verdict != "pass"]
        raise SmokeTestFailed(
            f"smoke tests did not pass: {', '.join(failed)}; see {records / 'results.json'}"
        )
    return 0


def _report(outcomes: list[Outcome], log: Log) -> None:
    rows = [
        "| cluster | test | verdict | state | exit | job | elapsed | reason |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        r = o.result
        hit = " (cache hit)" if o.deploy.cache_hit else ""
        log.info(f"== {r.cluster}: {r.platform} {o.deploy.image_digest[:19]} -> {o.deploy.sif_path}{hit}")
        if r.error:
            log.info(f"   cluster error: {r.error}")
        for t in r.tests:
            el = f"{t.elapsed_s:.0f}s" if t.elapsed_s is not None else "-"
            log.info(
                f"   {t.verdict.upper():9} {t.test}: {t.reason} [job {t.job_id or '-'}, {t.state}, {el}]"
            )
            if t.verdict != "pass":
                log.error(f"{r.cluster}/{t.test}: {t.reason}", file=t.source_file, line=t.source_line)
            rows.append(
                f"| {r.cluster} | {t.test} | {t.verdict} | {t.state} | {t.exit_code if t.exit_code is not None else '-'}"
                f" | {t.job_id or '-'} | {el} | {t.reason.replace('|', '/')} |"
            )
    log.summary("### hpcci deploy\n\n" + "\n".join(rows))


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


def plan_section(ctx: common.PlanContext) -> str:
    """Per cluster: the exact remote commands and the full sbatch scripts (nothing is contacted)."""
    from hpcci import records as rec
    from hpcci.backends.remote import command_line, login_argv
    from hpcci.stages.deploy import (
        ARCH_PLATFORM,
        ImageSource,
        curl_config,
        plan_cluster,
        platforms_needed,
        sources_from_publish,
        stage_s3_argv,
        unresolved_paths,
    )

    pipe = ctx.pipeline
    publish_path = ctx.records / rec.RECORD_FILES[rec.PublishRecord]
    published = (
        sources_from_publish(rec.read(rec.PublishRecord, publish_path)) if publish_path.exists() else {}
    )
    out: list[str] = []
    if not published:
        out.append(
            f"(no {publish_path}: showing SFTP staging of a `docker save` tar with a placeholder digest)"
        )
    for name, cluster in ctx.clusters.items():
        sources = dict(published)
        for platform in platforms_needed(pipe, cluster):
            if platform not in sources:
                sources[platform] = ImageSource(platform, "sha256:" + "0" * 64, local_tar="IMAGE.tar")
        try:
            plan = plan_cluster(pipe, cluster, sources, unresolved_paths(cluster, "RUN_ID"), "RUN_ID")
        except HpcciError as e:
            out.append(f"### cluster {name}\ncannot plan: {e}")
            continue
        login = cluster.login
        out.append(f"### cluster {name}: {login.host}:{login.port} ({cluster.runtime.type}, Slurm)")
        out.append(
            f"paths (variables resolved in a login shell at deploy time): scratch {plan.paths.scratch}, "
            f"image cache {plan.paths.cache}, tmpdir {plan.paths.tmpdir}, jobs {plan.paths.run_dir}"
        )
        for platform, image in plan.images.items():
            arch = [k for k, v in ARCH_PLATFORM.items() if v == platform]
            out.append(
                f"\nimage {platform} ({', '.join(arch)}) {image.source.digest}: staging {image.staging}"
            )
            out.append(f"+ {command_line(image.exists_argv)}    # cached already? then skip to the tests")
            if image.staging == "s3":
                out.append(
                    f"+ {command_line(stage_s3_argv(image, max_time=600))}  <<< "
                    f"{curl_config('PRESIGNED-URL').strip()}"
                )
            elif image.staging == "sftp":
                out.append(
                    f"  sftp put {image.source.local_tar} -> {image.tar_tmp} "
                    f"({cluster.staging.streams} parallel streams)"
                )
            if image.staging != "registry":
                out.append(
                    f"+ {command_line(['sha256sum', '--', image.tar_tmp])}    # must equal "
                    f"{image.source.tar_sha256 or 'the tar sha256'}"
                )
                out.append(f"+ {command_line(['mv', '-f', '--', image.tar_tmp, image.tar])}")
            if image.convert_script:
                out.append(f"conversion job {image.convert_script_path} (tests depend on it: afterok):")
                out.append(image.convert_script.rstrip("\n"))
            else:
                out.append(_shown(image.convert_argv))
        for job in plan.tests:
            from hpcci.backends import scheduler as slurm

            out.append(
                f"\ntest {job.test.name} ({job.platform}, partition {job.partition}): {job.script_path}"
            )
            out.append("```bash\n" + job.script.rstrip("\n") + "\n```")
            out.append(_shown(login_argv([slurm.sbatch_argv(job.script_path)], modules=cluster.modules)))
        out.append(
            "then: squeue/sacct for all jobs in one call per round, scancel at the deadline "
            f"({pipe.deploy.deadline}) or on SIGTERM/SIGINT, output tail judged against expect"
        )
    return "\n".join(out)


def _shown(argv: list[str]) -> str:
    """A remote command for `hpcci plan`: login-shell scripts shown line by line, everything else as one line."""
    from hpcci.backends.remote import command_line

    if argv[:2] == ["bash", "-lc"]:
        body = "\n".join(f"    {line}" for line in argv[2].splitlines())
        return f"+ bash -lc SCRIPT   # one argument; SCRIPT is:\n{body}"
    return f"+ {command_line(argv)}"
