"""`hpcci report`: smoke-test results as GitHub check runs (one per cluster), a job summary and annotations.

hpcci report --phase start     in_progress check runs for the clusters about to be deployed
hpcci report                   complete them from .hpcci/results.json (--phase finish)
hpcci report --phase crash     complete whatever is still open (an `if: always()` step; --job-status), and
                               first cancel the run's jobs still queued or running (unless --leave-jobs)
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from hpcci import context, wiring
from hpcci.commands import common
from hpcci.errors import UsageError
from hpcci.log import Log

if TYPE_CHECKING:
    from hpcci.config.models import Pipeline
    from hpcci.context import GitEvent
    from hpcci.records import Results
    from hpcci.stages.report.outputs import Target


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_pipeline_arguments(p)
    common.add_event_arguments(p)
    common.add_cluster_arguments(p)
    p.add_argument(
        "--phase",
        choices=["start", "finish", "crash"],
        default="finish",
        help="start: in_progress check runs before the deploy; finish (default): complete them from the results; "
        "crash: complete any still open (for `if: always()` steps)",
    )
    p.add_argument(
        "--job-status",
        choices=["success", "failure", "cancelled"],
        default="failure",
        help="with --phase crash: the job's status (${{ job.status }}); cancelled gives cancelled check runs",
    )
    p.add_argument(
        "--leave-jobs",
        action="store_true",
        help="with --phase crash: leave the run's queued and running jobs alone (default: cancel them)",
    )
    p.add_argument(
        "--run-id",
        metavar="ID",
        type=common.run_id,
        help="with --phase crash: the deploy's --run-id (default: the GitHub run)",
    )
    p.add_argument("--api-url", help=f"GitHub API (default: $GITHUB_API_URL or {wiring.DEFAULT_API_URL})")
    g = p.add_argument_group("auth (default: $GITHUB_TOKEN)")
    g.add_argument(
        "--app-id", help="GitHub App id (default: $HPCCI_GITHUB_APP_ID); with the app's private key"
    )
    g.add_argument(
        "--app-private-key-file",
        metavar="FILE",
        help="the GitHub App's private key (.pem); default: the PEM text in $HPCCI_GITHUB_APP_PRIVATE_KEY",
    )


# -- the pieces main() composes (pure where possible) ---------------------------------------------------------------


def target(pipe: Pipeline, event: GitEvent, sha: str) -> Target:
    from hpcci.stages.report.outputs import Target

    return Target(
        sha=sha,
        run_key=event.run_id,
        check_name=pipe.report.check_name,
        details_url=event.run_url,
        status_fallback=pipe.report.status_fallback,
        pr_number=event.pr_number,
        pr_comment=pipe.report.pr_comment,
        from_fork=event.pr_from_fork,
    )


def planned_clusters(args: argparse.Namespace, pipe: Pipeline) -> list[str]:
    return list(args.clusters or pipe.deploy.clusters)


def platform_of(args: argparse.Namespace, pipe: Pipeline, name: str) -> str:
    """The cluster's platform from its default partition's arch ('' when its config cannot be read here)."""
    from hpcci.config.load import load_clusters
    from hpcci.errors import ConfigError
    from hpcci.platforms import machine_platform

    try:
        cluster = load_clusters(pipe, [name], common.base_dir(args))[name]
    except ConfigError:
        return ""
    part = cluster.scheduler.partitions.get(cluster.scheduler.default_partition)
    return machine_platform(part.arch) if part else ""


def workspace_path(path: str, workspace: Path) -> str:
    """A path as GitHub annotations want it: relative to the repository root."""
    p = Path(path)
    if not p.is_absolute():
        p = (Path.cwd() / p).resolve()
    try:
        return p.relative_to(workspace.resolve()).as_posix()
    except ValueError:
        return path


def locate_tests(results: Results, pipe: Pipeline, config_file: str, workspace: Path) -> Results:
    """Every test result with its hpcci.yaml file:line (from the loader when the deploy did not record it)."""
    lines = {t.name: pipe.test_line(i) for i, t in enumerate(pipe.tests)}
    default = workspace_path(config_file, workspace)
    clusters = []
    for cr in results.clusters:
        tests = [
            dataclasses.replace(
                t,
                source_file=workspace_path(t.source_file, workspace) if t.source_file else default,
                source_line=t.source_line or lines.get(t.test),
            )
            for t in cr.tests
        ]
        clusters.append(dataclasses.replace(cr, tests=tests))
    return dataclasses.replace(results, clusters=clusters)


def cancel_jobs(args: argparse.Namespace, pipe: Pipeline, log: Log) -> None:
    """The crash phase's first duty: no job of a crashed run keeps running (or waits to run) unseen."""
    from hpcci.errors import ConfigError
    from hpcci.stages.deploy.cancel import cancel_run
    from hpcci.stages.deploy.journal import Journal

    if args.leave_jobs:
        log.info("report: --leave-jobs: the run's queued and running jobs are left alone")
        return
    if not (args.run_id or context.var("GITHUB_RUN_ID")):
        log.info("report: no run to cancel jobs of (pass the deploy's --run-id)")
        return
    try:
        clusters = common.clusters(args, pipe)
    except ConfigError as e:
        log.warning(f"report: the run's jobs could not be cancelled: {e}")
        return
    journal = Journal(common.records_dir(args), wiring.run_identity(pipe, args.run_id))
    cancel_run(pipe, clusters, journal, log, lambda c: wiring.cluster_jobs(c, log))


def main(args: argparse.Namespace, log: Log) -> int:
    from hpcci import records
    from hpcci.stages.report.checkruns import Reporter
    from hpcci.stages.report.outputs import say_fork_pr, summarize

    pipe = common.pipeline(args)
    event = common.event(args)
    results_path = common.records_dir(args) / records.RECORD_FILES[records.Results]
    results = records.read(records.Results, results_path) if results_path.exists() else None
    planned = planned_clusters(args, pipe)
    no_deploy = event.trigger not in pipe.deploy.triggers
    if args.phase == "crash" and not no_deploy:
        cancel_jobs(args, pipe, log)
    if no_deploy and (args.phase == "start" or (args.phase == "finish" and results is None)):
        log.info(
            f"report: the deploy does not run on {event.trigger} events (deploy.triggers); no check runs"
        )
        return 0
    if results is not None and args.clusters:  # a matrix job reports its own cluster only
        results = dataclasses.replace(results, clusters=[c for c in results.clusters if c.cluster in planned])
    workspace = Path(context.var("GITHUB_WORKSPACE") or Path.cwd())
    default_file = workspace_path(args.config, workspace)
    if results is not None:
        results = locate_tests(results, pipe, args.config, workspace)
    sha = event.head_sha or (results.sha if results else "")
    repository = event.repository or context.var("GITHUB_REPOSITORY")
    api = wiring.github_client(args, log, repository) if not event.pr_from_fork else None
    if api is None and not event.pr_from_fork:
        if context.var("GITHUB_ACTIONS") == "true":
            raise UsageError(
                "report: no GITHUB_TOKEN; pass it to the step (env: GITHUB_TOKEN: ${{ github.token }}) with "
                "`permissions: checks: write`, or configure a GitHub App"
            )
        log.warning("report: no GITHUB_TOKEN (or GitHub App): writing the summary only, no check runs")
    elif api is not None and (not sha or not repository):
        raise UsageError(
            "report: no commit sha or repository; pass --sha and --repository, or run inside GitHub Actions"
        )
    tgt = target(pipe, event, sha)
    if api is None:
        if results is not None:
            summarize(results, tgt, log, default_file)
        if event.pr_from_fork:
            say_fork_pr(log)
        return 0
    reporter = Reporter(api, tgt, log)
    try:
        with log.step(f"report ({args.phase}) on {sha[:12] or '(no sha)'}"):
            if args.phase == "start":
                outcome = reporter.start([(c, platform_of(args, pipe, c)) for c in planned])
            elif args.phase == "crash":
                outcome = reporter.crash(
                    planned or [cr.cluster for cr in (results.clusters if results else [])],
                    job_status=args.job_status,
                    results=results,
                    default_file=default_file,
                )
            elif results is None:
                log.warning(f"report: {results_path} does not exist; completing open check runs as failed")
                outcome = reporter.crash(planned, job_status="failure")
            else:
                outcome = reporter.finish(results, planned, default_file=default_file)
    finally:
        if api is not None:
            api.close()
    for cluster, how in outcome.written.items():
        log.info(
            f"report: {cluster}: {how}"
            + (f" ({outcome.conclusions[cluster]})" if cluster in outcome.conclusions else "")
        )
    return 0


def plan_section(ctx: common.PlanContext) -> str:
    """Which check runs `hpcci report` would write, on which commit; touches nothing."""
    pipe, ev = ctx.pipeline, ctx.event
    names = list(ctx.clusters) or list(pipe.deploy.clusters)
    sha = ev.head_sha or "(the commit of the event)"
    if ev.pr_from_fork:
        return (
            "pull request from a fork: read-only token, no deploy; the step summary says so (no check runs)"
        )
    if ev.trigger not in pipe.deploy.triggers:
        return f"no check runs: the deploy does not run on {ev.trigger} events (deploy.triggers: {', '.join(pipe.deploy.triggers)})"
    lines = [
        f"check runs on {sha} ({'PR head' if ev.pr_head_sha else 'tagged commit' if ev.is_tag else 'the event commit'}):"
    ]
    for name in names:
        check = pipe.report.check_name.format(cluster=name)
        lines.append(
            f"  {check!r}: start in_progress, finish with the smoke-test conclusion "
            f"(external_id hpcci:{name}@{ev.run_id or 'local'})"
        )
    if ev.run_url:
        lines.append(f"details_url: {ev.run_url}")
    if pipe.report.status_fallback:
        lines.append(
            "if check runs are refused (403): one commit status per cluster, context = the check name"
        )
    if pipe.report.pr_comment and ev.pr_number:
        lines.append(f"one comment on PR #{ev.pr_number}, updated in place")
    return "\n".join(lines)
