"""Two cluster configs of one machine in one deploy (issue 20 item 1): `local` and a copy share the login node, the
scratch folder and the image cache; each keeps its own job scripts and results, and each check run says its own.

Needs `scripts/local-stack up docker registry cluster`; skips without them (fails under CI=true).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from deploy_support import Project, cluster_config, hpcci, unique

from hpcci import records as rec
from hpcci.errors import SmokeTestFailed
from hpcci.stages.report.text import conclude

# A non-empty file bound into the copy's containers only (its runtime.binds); the Apptainer stand-in leaves an
# empty mount point behind in the image it unpacked, so the test looks at the content.
MARK = "/opt/hpcci-copy-marker"
# One test, one name, on both clusters: it prints which cluster config's container it ran in, and fails in the copy's.
WHICH = ["sh", "-c", f'if [ -s {MARK} ]; then echo "ran as copy"; exit 3; fi; echo "ran as local"']


def test_two_configs_sharing_login_node_and_scratch_keep_their_own_results(
    fib_tar: Path, project: Callable[..., Project]
) -> None:
    test = unique("which")
    proj = project([{"name": test, "command": WHICH, "expect": {"output": "^ran as local$"}}])
    copy = cluster_config(name="local-copy", **{"runtime.binds": [f"/etc/os-release:{MARK}"]})
    (proj.root / "cluster-configs" / "local-copy.yaml").write_text(yaml.safe_dump(copy))
    pipeline = yaml.safe_load((proj.root / "hpcci.yaml").read_text())
    pipeline["deploy"]["clusters"] = ["local", "local-copy"]
    (proj.root / "hpcci.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))

    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar), "--run-id", unique("shared"))

    results = rec.read(rec.Results, proj.records / rec.RECORD_FILES[rec.Results])
    by = {c.cluster: c for c in results.clusters}
    local, other = by["local"].tests[0], by["local-copy"].tests[0]
    assert (local.verdict, local.output_tail.strip()) == ("pass", "ran as local"), (
        local,
        done.stderr[-3000:],
    )
    assert (other.verdict, other.exit_code, other.output_tail.strip()) == ("fail", 3, "ran as copy"), other
    assert local.job_id != other.job_id
    assert conclude(by["local"]).conclusion == "success"
    assert conclude(by["local-copy"]).conclusion == "failure" and "exited with code 3" in other.reason
    assert done.returncode == SmokeTestFailed.exit_code, done.stderr[-3000:]
