"""Cancelling a run's jobs still queued or running on each cluster, found through the run's journal."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from hpcci.errors import HpcciError
from hpcci.log import Log

if TYPE_CHECKING:
    from hpcci.backends.schedulers.jobs import RemoteJobs
    from hpcci.config.models import Cluster, Pipeline
    from hpcci.stages.deploy.journal import Journal


def cancel_run(
    pipe: Pipeline,
    clusters: dict[str, Cluster],
    journal: Journal,
    log: Log,
    jobs_of: Callable[[Cluster], AbstractContextManager[RemoteJobs]],
) -> dict[str, list[str]]:
    """Cancel the run's jobs still queued or running on each cluster; a cluster that cannot be reached is said."""
    from hpcci.config.models import resolve_value
    from hpcci.stages.deploy.journal import cancel_live
    from hpcci.stages.deploy.plan import tests_for

    cancelled: dict[str, list[str]] = {}
    for name, cluster in clusters.items():
        tests = [t.name for _, t in tests_for(pipe, name)]
        try:
            with jobs_of(cluster) as jobs:
                user = resolve_value(cluster.login.user, f"cluster {name}: login.user")
                ids, where = cancel_live(jobs, journal, name, tests, user)
        except HpcciError as e:
            log.warning(f"cluster {name}: the run's jobs could not be cancelled: {e}")
            continue
        cancelled[name] = ids
        log.info(
            f"cluster {name}: cancelled {', '.join(ids)} (run {journal.identity.run}, found in {where})"
            if ids
            else f"cluster {name}: no job of run {journal.identity.run} is queued or running (according to {where})"
        )
    return cancelled
