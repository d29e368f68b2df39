"""A cluster problem is one verdict end to end (issue 20 item 12): a test the cluster could not run (here: kept
pending by Slurm's BeginTime past scheduler.max_queue_wait, the infra verdict a node failure also gets) makes a
neutral check run, and `hpcci deploy` exits with the cluster problem's own code and a warning, not exit 70 with an
error annotation on hpcci.yaml.

Needs `scripts/local-stack up docker registry cluster`; skips without them (fails under CI=true).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from deploy_support import Project, cluster_config, hpcci, unique

from hpcci import records as rec
from hpcci.errors import ClusterProblem
from hpcci.stages.report.text import conclude


def test_a_test_the_cluster_could_not_run_exits_as_a_cluster_problem_with_a_warning(
    fib_tar: Path, project: Callable[..., Project]
) -> None:
    config = cluster_config(
        **{"scheduler.max_queue_wait": "00:05", "scheduler.directives": ["--begin=now+1hour"]}
    )
    proj = project([{"name": "later", "command": "true", "resources": {"time": "00:02:00"}}], cluster=config)

    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar), "--run-id", unique("problem"))

    out = done.stdout + done.stderr
    t = proj.tests()["later"]
    assert t["verdict"] == "infra", t
    results = rec.read(rec.Results, proj.records / rec.RECORD_FILES[rec.Results])
    assert conclude(results.clusters[0]).conclusion == "neutral"
    assert done.returncode == ClusterProblem.exit_code, out
    warnings = [ln for ln in done.stderr.splitlines() if ln.startswith("warning: ")]
    assert any("hpcci.yaml:" in ln and "local/later: " in ln for ln in warnings), out
    assert any("a cluster problem, not the code" in ln for ln in warnings), out
    assert not [ln for ln in done.stderr.splitlines() if ln.startswith(("error: ", "hpcci: error"))], out
