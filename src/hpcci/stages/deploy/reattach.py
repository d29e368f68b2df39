"""Re-attach: a run's jobs that still live (or completed), found in the journal or on the cluster, are followed again.

A deploy of a workflow run that already submitted jobs (a killed runner, a re-run) must not submit them twice: the
journal (stages/journal.py) names them, or, when the runner's disk is gone, the tests' job names find them among
the deploying user's jobs. ``Deployer.submit_tests`` then submits only the tests not found here.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from hpcci.backends.schedulers.jobs import Found, RemoteJobs
from hpcci.config.models import resolve_value
from hpcci.stages.cluster import shell_modules
from hpcci.stages.deploy.journal import Reattached, journaled, moved, reattach
from hpcci.stages.deploy.plan import ClusterPlan

if TYPE_CHECKING:
    from hpcci.stages.deploy.execute import Deployer


def find_reattached(d: Deployer, plan: ClusterPlan) -> Reattached:
    """This run's jobs that still live (or completed), from the journal, else found on the cluster by name."""
    if d.journal is None or (d.identity.fresh and not d.journal.entries(d.cluster.name)):
        return Reattached()
    names = {d.test_job_name(j.test.name): j.index for j in plan.tests}
    # only jobs of the image deployed now: a reused --run-id (or act's fixed run id) must never pass a new image on
    # the strength of an old image's jobs
    digests = {p: image.source.digest for p, image in plan.images.items()}
    entries = [e for e in d.journal.entries(d.cluster.name) if digests.get(e.platform) == e.image_digest]
    jobs = RemoteJobs(d.remote, d.scheduler, shell_modules(d.cluster), d.info)
    converts: dict[str, Found] = {}
    if entries:
        found = journaled(entries, jobs.query([e.job_id for e in entries]))
        where = "the journal"
        for e in entries:
            live = [f for f in found if f.job_id == e.job_id and f.live]
            if e.kind == "convert" and live:
                converts[e.key] = live[0]
    else:
        user = resolve_value(d.cluster.login.user, f"cluster {d.cluster.name}: login.user")
        # a name says which run, not which image: only jobs still queued or running (of a deploy just interrupted)
        # are taken; a finished one may have tested another image under a reused run id, so its test runs again
        found = [f for f in jobs.find(user, list(names)) if f.live]
        where = "the cluster"
    tests = {names[n]: f for n, f in reattach(list(names), found).items()}
    for platform, f in converts.items():
        d.info(f"re-attached to the conversion job {f.job_id} ({platform}, {f.status}) from {where}")
    for j in plan.tests:
        if j.index in tests:
            f = tests[j.index]
            d.info(f"re-attached to job {f.job_id} ({f.status}) of test {j.test.name} from {where}")
            if not entries:  # the journal was gone: it knows the job again (a crash report must find it)
                out = moved(j.output_path, plan.paths.run_dir, f.workdir)
                entry = d.job_entry("test", j.test.name, f.name, j.platform, out, plan.images[j.platform])
                d.journal.add(replace(entry, job_id=f.job_id, submitted_at=time.time()))
    return Reattached(tests, converts, where)
