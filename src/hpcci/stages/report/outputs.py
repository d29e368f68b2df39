"""Report outputs beside check runs: the step summary, commit statuses (where check runs are refused), the PR
comment, and the fork-PR note.

The check-run lifecycle (hpcci.stages.report.checkruns) decides when each is written; these functions only write them.
Each returns what it wrote (or why it wrote nothing) for the report's Reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from hpcci.backends.github.client import GitHub, GitHubRequestError
from hpcci.records import Results
from hpcci.stages.report import text as C

JSON = dict[str, Any]
COMMENT_MARKER = "<!-- hpcci-report -->"
MAX_COMMENT = 65536  # GitHub's limit on an issue comment's body


class Logger(Protocol):
    """What the report needs from hpcci.log.Log."""

    def info(self, msg: str) -> None: ...

    def warning(
        self, msg: str, *, file: str | None = None, line: int | None = None, title: str | None = None
    ) -> None: ...

    def error(
        self, msg: str, *, file: str | None = None, line: int | None = None, title: str | None = None
    ) -> None: ...

    def summary(self, markdown: str) -> None: ...


@dataclass(frozen=True)
class Target:
    """Where and under which names the check runs go."""

    sha: str  # GitEvent.head_sha: the PR head, the tagged commit, or the pushed commit
    run_key: str  # the workflow run id (the same across re-run attempts): external_id = cluster@run_key
    check_name: str = "hpcci / {cluster}"
    details_url: str | None = None
    status_fallback: bool = True
    pr_number: int | None = None
    pr_comment: bool = False
    from_fork: bool = False

    def name(self, cluster: str) -> str:
        return self.check_name.format(cluster=cluster)

    def external_id(self, cluster: str) -> str:
        return f"hpcci:{cluster}@{self.run_key or 'local'}"


def summarize(results: Results, target: Target, log: Logger, default_file: str | None = None) -> None:
    """The results table in the job's step summary, and an ::error/::warning annotation per failing test."""
    names = {cr.cluster: target.name(cr.cluster) for cr in results.clusters}
    log.summary(C.step_summary(results, check_names=names))
    for cr in results.clusters:
        for t in C.failing(cr):
            level = log.error if C.test_conclusion(t) in ("failure", "timed_out") else log.warning
            level(
                f"{t.test} on {cr.cluster}: {t.reason}",
                file=t.source_file or default_file,
                line=t.source_line,
                title=f"{target.name(cr.cluster)}: {t.test}",
            )
        if cr.error:
            log.error(f"{cr.cluster}: {cr.error}", title=target.name(cr.cluster))


def say_fork_pr(log: Logger) -> None:
    """A fork PR's token is read-only and it gets no secrets: no deploy, no check runs, and the summary says why."""
    log.summary(
        "> **hpcci**: this pull request comes from a fork. Its token is read-only and it gets no secrets, so "
        "hpcci did not deploy to the clusters and wrote no check runs. A maintainer can run the deploy after "
        "merging, or with `workflow_dispatch` on the PR's head."
    )
    log.info("pull request from a fork: no check runs written (read-only token); said so in the step summary")


def status_body(target: Target, cluster: str, conclusion: str | None, description: str) -> JSON:
    """A commit status standing in for the cluster's check run: pending while it runs, else its conclusion."""
    state = "pending" if conclusion is None else C.STATUS_STATE.get(conclusion, "error")
    d = description if conclusion is None else f"{conclusion.replace('_', ' ')}: {description}"
    if len(d) > C.MAX_STATUS_DESCRIPTION:
        d = d[: C.MAX_STATUS_DESCRIPTION - 1] + "…"
    body: JSON = {"state": state, "context": target.name(cluster), "description": d}
    if target.details_url:
        body["target_url"] = target.details_url
    return body


def write_status(
    api: GitHub, target: Target, log: Logger, cluster: str, conclusion: str | None, description: str
) -> str:
    """Write the commit status; 'status', or 'skipped: why' when the token may not write statuses either."""
    body = status_body(target, cluster, conclusion, description)
    name = target.name(cluster)
    try:
        api.create_status(target.sha, body)
    except GitHubRequestError as e:
        if not e.forbidden:
            raise
        log.warning(
            f"{name}: GitHub refused the commit status too (HTTP 403): the token is read-only; "
            "results are in this job's summary only"
        )
        log.summary(
            f"> **{name}**: this job's token may not write check runs or commit statuses "
            "(read-only); the results above are the report."
        )
        return "skipped: commit statuses refused too (403)"
    log.info(f"{name}: commit status {body['state']} written")
    return "status"


def write_pr_comment(api: GitHub, target: Target, log: Logger, results: Results) -> None:
    """One comment per PR, updated in place on every run (found by its marker)."""
    if not (target.pr_comment and target.pr_number):
        return
    names = {cr.cluster: target.name(cr.cluster) for cr in results.clusters}
    body = C.truncate(COMMENT_MARKER + "\n" + C.step_summary(results, check_names=names), MAX_COMMENT)
    try:
        mine = [c for c in api.comments(target.pr_number) if COMMENT_MARKER in (c.get("body") or "")]
        if mine:
            api.update_comment(int(mine[-1]["id"]), body)
        else:
            api.create_comment(target.pr_number, body)
    except GitHubRequestError as e:
        if not e.forbidden:
            raise
        log.warning(
            f"PR #{target.pr_number}: GitHub refused the comment (HTTP 403); results are in the summary"
        )
