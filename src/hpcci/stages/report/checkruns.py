"""Report: the check-run lifecycle (one check run per cluster on the commit maintainers see, never left open).

- start:  an in_progress check run per cluster about to be deployed (started_at, details_url = the workflow run).
- finish: each cluster's check run completed from Results (conclusion, title, summary table, failing output,
          annotations on the hpcci.yaml lines, 50 per request); planned clusters without results are completed too.
- crash:  every check run still queued/in_progress completed with what is known (for `if: always()` steps).

A re-run finds its own check run by external_id (cluster + workflow run id) and updates it instead of creating
another; only where GitHub forbids that (a completed run cannot be reopened or re-concluded) does a new run go on
top, and the PR shows the newest per name. An annotation batch whose PATCH may have been applied (5xx, lost
answer) is re-sent only after the check run's annotations show it is missing. Where check runs cannot be written
(403), a commit status per cluster is written instead; a fork PR's read-only token is said so in the step summary,
never a failure. Those other outputs (statuses, the PR comment, the step summary) are in
hpcci.stages.report.outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from hpcci.backends.github.client import GitHub, GitHubRequestError
from hpcci.records import ClusterResult, Results
from hpcci.stages.report import text as C
from hpcci.stages.report.outputs import Logger, Target, say_fork_pr, summarize, write_pr_comment, write_status

JSON = dict[str, Any]
OPEN_STATUSES = ("queued", "in_progress", "waiting", "requested", "pending")
UNSAFE_ATTEMPTS = 4  # for a write that may have been applied: look, then re-send at most this often


@dataclass
class Reported:
    """What the report did, per cluster: 'check_run <id>', 'status', or 'skipped: why'."""

    written: dict[str, str] = field(default_factory=dict)
    conclusions: dict[str, str] = field(default_factory=dict)
    fallback: str | None = None  # why check runs were not written, when they were not
    annotation_requests: int = 0


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reporter:
    """Starts, finishes or completes after a crash the check runs of one workflow run on one commit."""

    def __init__(
        self, api: GitHub, target: Target, log: Logger, *, clock: Callable[[], str] = now_iso
    ) -> None:
        self.api = api
        self.t = target
        self.log = log
        self.clock = clock
        self.outcome = Reported()
        self._runs: dict[str, JSON | None] = {}

    # -- finding our own check run ---------------------------------------------------------------------------
    def own_run(self, cluster: str, *, refresh: bool = False) -> JSON | None:
        """This workflow run's check run for ``cluster`` (by external_id), newest first; None if there is none."""
        if refresh or cluster not in self._runs:
            runs = self.api.check_runs_for_ref(self.t.sha, self.t.name(cluster))
            mine = [r for r in runs if r.get("external_id") == self.t.external_id(cluster)]
            mine.sort(key=lambda r: int(r["id"]), reverse=True)
            self._runs[cluster] = mine[0] if mine else None
        return self._runs[cluster]

    def _create(self, cluster: str, body: JSON) -> JSON:
        """Create, never twice: after an ambiguous failure, look for the run before creating again."""
        # A completed run this one goes on top of: finding that one is not finding ours.
        older = self._runs.get(cluster)
        older_id = int(older["id"]) if older else 0
        for attempt in range(1, UNSAFE_ATTEMPTS + 1):
            try:
                run = self.api.create_check_run(body, retry_unsafe=False)
                self._runs[cluster] = run
                return run
            except GitHubRequestError as e:
                if not e.transient or attempt == UNSAFE_ATTEMPTS:
                    raise
                self.log.info(
                    f"{self.t.name(cluster)}: create failed ({e.status}); checking whether it was made"
                )
                found = self.own_run(cluster, refresh=True)
                if found is not None and int(found["id"]) > older_id:
                    return found
        raise AssertionError("unreachable")  # pragma: no cover

    # -- start -----------------------------------------------------------------------------------------------
    def start(self, clusters: Sequence[tuple[str, str]]) -> Reported:
        """An in_progress check run per (cluster, platform) about to be deployed."""
        if self._fork_pr():
            return self.outcome
        for cluster, platform in clusters:
            title = f"Deploying and smoke-testing on {cluster}" + (f" ({platform})" if platform else "")
            body: JSON = {
                "name": self.t.name(cluster),
                "status": "in_progress",
                "started_at": self.clock(),
                "external_id": self.t.external_id(cluster),
                "output": {
                    "title": title,
                    "summary": "The image is being staged and the smoke tests submitted.",
                },
            }
            if self.t.details_url:
                body["details_url"] = self.t.details_url
            self._write(cluster, body, conclusion=None, description=title)
        return self.outcome

    # -- finish ----------------------------------------------------------------------------------------------
    def finish(
        self, results: Results, planned: Sequence[str] = (), *, default_file: str | None = None
    ) -> Reported:
        """Complete each cluster's check run from Results; planned clusters without results are completed too."""
        summarize(results, self.t, self.log, default_file)
        if self._fork_pr():
            return self.outcome
        for cr in results.clusters:
            self._complete(cr, default_file)
        have = {cr.cluster for cr in results.clusters}
        missing = [c for c in planned if c not in have]
        if missing:
            self.crash(missing, job_status="failure", results=None, summary=False)
        write_pr_comment(self.api, self.t, self.log, results)
        return self.outcome

    def _complete(self, cr: ClusterResult, default_file: str | None) -> None:
        c = C.conclude(cr)
        self.outcome.conclusions[cr.cluster] = c.conclusion
        output: JSON = {"title": C.title(cr), "summary": C.summary(cr)}
        text = C.text(cr)
        if text:
            output["text"] = text
        body: JSON = {
            "name": self.t.name(cr.cluster),
            "external_id": self.t.external_id(cr.cluster),
            "status": "completed",
            "conclusion": c.conclusion,
            "completed_at": self.clock(),
            "output": output,
        }
        if self.t.details_url:
            body["details_url"] = self.t.details_url
        wanted = C.annotations_for(cr, default_file=default_file)
        self._write(cr.cluster, body, conclusion=c.conclusion, description=C.title(cr), annotations=wanted)

    # -- crash -----------------------------------------------------------------------------------------------
    def crash(
        self,
        clusters: Sequence[str],
        *,
        job_status: str = "failure",
        results: Results | None = None,
        summary: bool = True,
        default_file: str | None = None,
    ) -> Reported:
        """Complete every still-open check run of ``clusters``: from Results where there are some, else with what
        is known (the job failed or was cancelled before results were written)."""
        if self._fork_pr():
            return self.outcome
        known = {cr.cluster: cr for cr in (results.clusters if results else [])}
        conclusion = "cancelled" if job_status == "cancelled" else "failure"
        lines = []
        for cluster in clusters:
            run = self.own_run(cluster) if self.outcome.fallback is None else None
            if run is not None and run.get("status") not in OPEN_STATUSES:
                self.log.info(f"{self.t.name(cluster)}: already completed ({run.get('conclusion')})")
                continue
            if cluster in known:
                self._complete(known[cluster], default_file)
                continue
            if run is None and self.outcome.fallback is None:
                self.log.info(f"{self.t.name(cluster)}: no check run was started; nothing to complete")
                continue
            lines.append(self._complete_without_results(cluster, conclusion, job_status))
        if summary and lines:
            self.log.summary("## hpcci smoke tests\n\n" + "\n".join(lines))
        return self.outcome

    def _complete_without_results(self, cluster: str, conclusion: str, job_status: str) -> str:
        """Complete the check run saying the job stopped before results; its line for the step summary."""
        what = "was cancelled" if conclusion == "cancelled" else "stopped"
        title = f"The deploy {what} before {cluster} had results"
        text = (
            f"**{conclusion}**: the deploy job {what} (job status: {job_status}) before smoke-test results were "
            f"recorded for {cluster}. See the workflow run's log for where it stopped"
            + (f": {self.t.details_url}" if self.t.details_url else "")
            + "."
        )
        body: JSON = {
            "name": self.t.name(cluster),
            "external_id": self.t.external_id(cluster),
            "status": "completed",
            "conclusion": conclusion,
            "completed_at": self.clock(),
            "output": {"title": title, "summary": text},
        }
        self.outcome.conclusions[cluster] = conclusion
        self._write(cluster, body, conclusion=conclusion, description=title)
        return f"- **{self.t.name(cluster)}**: {conclusion} ({title})"

    # -- writing: check run, else commit status --------------------------------------------------------------
    def _write(
        self,
        cluster: str,
        body: JSON,
        *,
        conclusion: str | None,
        description: str,
        annotations: Sequence[JSON] = (),
    ) -> None:
        if self.outcome.fallback is None:
            try:
                self._write_check_run(cluster, body, annotations)
                return
            except GitHubRequestError as e:
                if not e.forbidden:
                    raise
                self.outcome.fallback = f"check runs cannot be written with this token ({e})"
                self.log.warning(
                    f"{self.t.name(cluster)}: GitHub refused the check run (HTTP 403): the token lacks "
                    "`checks: write`"
                    + ("; writing commit statuses instead" if self.t.status_fallback else "")
                )
        if not self.t.status_fallback:
            self.outcome.written[cluster] = "skipped: check runs refused (403) and status_fallback is off"
            return
        self.outcome.written[cluster] = write_status(
            self.api, self.t, self.log, cluster, conclusion, description
        )

    def _write_check_run(self, cluster: str, body: JSON, annotations: Sequence[JSON]) -> None:
        run = self.own_run(cluster)
        if (
            run is not None
            and run.get("status") == "completed"
            and body.get("conclusion") != run.get("conclusion")
        ):
            # GitHub never reopens or re-concludes a completed check run: a re-run puts a new one on top
            # (the PR shows the latest per name); the same conclusion again just refreshes the output.
            self.log.info(
                f"{self.t.name(cluster)}: check run {run['id']} is completed; a new one goes on top"
            )
            run = None
        batches = C.batches(list(annotations))
        first = batches[0] if batches else []
        if run is None:
            create = {**body, "head_sha": self.t.sha}
            if first and create.get("output"):
                create["output"] = {**create["output"], "annotations": first}
            run = self._create(cluster, create)
            present: list[JSON] | None = list(first)  # a new run holds exactly what it was created with
            if first:
                self.outcome.annotation_requests += 1
            self.log.info(f"{self.t.name(cluster)}: check run {run['id']} created ({body.get('status')})")
        else:
            update = {k: v for k, v in body.items() if k != "name"}
            run = self.api.update_check_run(int(run["id"]), update)
            self._runs[cluster] = run
            present = None  # an earlier attempt may have annotated it: look before sending
            self.log.info(f"{self.t.name(cluster)}: check run {run['id']} updated ({update.get('status')})")
        self._send_annotations(cluster, int(run["id"]), body, list(annotations), present)
        self.outcome.written[cluster] = f"check_run {run['id']}"

    def _send_annotations(
        self, cluster: str, run_id: int, body: JSON, wanted: list[JSON], present: list[JSON] | None
    ) -> None:
        """Append the annotations not yet on the check run, 50 per PATCH, never twice."""
        if not wanted:
            return
        if present is None:
            present = self.api.annotations(run_id)
        todo = C.missing_annotations(wanted, present)
        output = body.get("output") or {}
        base = {"title": output.get("title", ""), "summary": output.get("summary", "")}
        for batch in C.batches(todo):
            self._send_batch(cluster, run_id, base, batch)

    def _send_batch(self, cluster: str, run_id: int, base: JSON, batch: list[JSON]) -> None:
        """One PATCH of annotations; after an ambiguous failure, re-send only what the check run lacks."""
        for attempt in range(1, UNSAFE_ATTEMPTS + 1):
            try:
                self.api.update_check_run(
                    run_id, {"output": {**base, "annotations": batch}}, retry_unsafe=False
                )
                self.outcome.annotation_requests += 1
                return
            except GitHubRequestError as e:
                if not e.transient or attempt == UNSAFE_ATTEMPTS:
                    raise
                self.log.info(
                    f"{self.t.name(cluster)}: annotation batch failed ({e.status}); checking before re-sending"
                )
                batch = C.missing_annotations(batch, self.api.annotations(run_id))
                if not batch:
                    return

    # -- a fork PR: no check runs ----------------------------------------------------------------------------
    def _fork_pr(self) -> bool:
        if not self.t.from_fork:
            return False
        if self.outcome.fallback is None:
            self.outcome.fallback = "pull request from a fork"
            say_fork_pr(self.log)
        return True
