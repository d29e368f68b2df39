"""Re-runs of a workflow run (github.run_attempt > 1): which clusters still need a deploy.

A check run made with the workflow's GITHUB_TOKEN belongs to GitHub Actions: its Re-run button re-runs the
workflow run (same run id, run_attempt + 1); the check_run `rerequested` webhook goes only to the app that made
the run, so no workflow can receive it. The run id is in every check run's external_id (hpcci:<cluster>@<run id>),
so a later attempt finds what earlier attempts concluded: a cluster whose newest check run of this workflow run
succeeded is not deployed again; every other cluster is (its check run is updated while still open, and a
completed one gets one new run on top: GitHub never reopens a completed check run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hpcci.backends.github.client import GitHub
from hpcci.stages.report.outputs import Target

JSON = dict[str, Any]


@dataclass(frozen=True)
class Selection:
    deploy: list[str]
    done: dict[str, str]  # cluster -> the check run (id and url) that already succeeded in an earlier attempt

    def why(self, attempt: str) -> str:
        if not self.done:
            return f"re-run (attempt {attempt}): no cluster succeeded in an earlier attempt; deploying all"
        kept = ", ".join(f"{c} ({run})" for c, run in self.done.items())
        again = ", ".join(self.deploy) or "none"
        return f"re-run (attempt {attempt}): already succeeded: {kept}; deploying again: {again}"


def newest_own_run(runs: Sequence[JSON], external_id: str) -> JSON | None:
    mine = [r for r in runs if r.get("external_id") == external_id]
    return max(mine, key=lambda r: int(r["id"])) if mine else None


def own_run(api: GitHub, target: Target, cluster: str) -> JSON | None:
    """The newest check run of the target's workflow run for ``cluster`` (by external_id), if any."""
    return newest_own_run(
        api.check_runs_for_ref(target.sha, target.name(cluster)), target.external_id(cluster)
    )


def still_needed(api: GitHub, target: Target, names: Sequence[str]) -> Selection:
    """The clusters whose check run of the target's workflow run did not succeed (or does not exist)."""
    deploy: list[str] = []
    done: dict[str, str] = {}
    for cluster in names:
        run = own_run(api, target, cluster)
        if run is not None and run.get("status") == "completed" and run.get("conclusion") == "success":
            done[cluster] = f"check run {run['id']}"
        else:
            deploy.append(cluster)
    return Selection(deploy, done)
