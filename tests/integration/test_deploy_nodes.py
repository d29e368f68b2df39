"""hpcci on the local cluster's two compute nodes: an MPI test of 2 nodes x 3 tasks per node runs 6 ranks on 2 hosts
(and its Nodes column names both), and a job lost to a node failure (its node's slurmd stopped) is an infra verdict,
a neutral check run and a cluster problem's exit code with a warning.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from deploy_support import Project, hpcci, journaled_job, login, on_login, unique, wait_for

from hpcci import records as rec
from hpcci.errors import ClusterProblem
from hpcci.process import run
from hpcci.stages.report.text import conclude
from stack_env import LOCAL_STACK

HOSTNAME = ["python3", "-c", "import socket; print('rank on', socket.gethostname())"]


def test_mpi_test_of_two_nodes_by_three_tasks_runs_six_ranks_on_two_hosts(
    fib_tar: Path, project: Callable[..., Project]
) -> None:
    proj = project(
        [{"name": "mpi2x3", "mpi": True, "command": HOSTNAME, "resources": {"nodes": 2, "tasks_per_node": 3}}]
    )
    done = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
    t = proj.tests()["mpi2x3"]
    assert done.returncode == 0 and t["verdict"] == "pass", done.stdout + done.stderr
    hosts = Counter(line.split()[-1] for line in t["output_tail"].splitlines() if line.startswith("rank on "))
    assert sum(hosts.values()) == 6 and len(hosts) == 2, t["output_tail"]
    assert set(hosts.values()) == {3}, hosts
    # the Nodes column names the whole allocation (sacct names only the batch host for a moment after the end)
    assert (t["usage"]["node_count"], t["usage"]["nodes"]) == (2, "node[1-2]"), t["usage"]


def test_a_job_lost_to_a_node_failure_is_infra_and_a_neutral_check_run(
    fib_tar: Path, project: Callable[..., Project], stack_env: dict[str, str]
) -> None:
    name = unique("nodefail")
    proj = project([{"name": name, "command": "sleep 600", "resources": {"time": "00:05:00"}}])
    remote = login()
    stopped: list[str] = []
    stop = threading.Event()

    def stop_its_node() -> None:
        def running_on() -> str:
            jid = journaled_job(proj, name)
            out = (
                on_login(remote, ["squeue", "--noheader", f"--jobs={jid}", "--format=%T|%N"]).stdout
                if jid
                else ""
            )
            state, _, node = out.strip().partition("|")
            return node if state == "RUNNING" and node else ""

        node = wait_for(lambda: stop.is_set() or running_on(), timeout=300)
        if not isinstance(node, str):
            return
        pid_file = Path(stack_env["HPCCI_STACK_DIR"], "run", f"cluster-slurmd-{node}.pid")
        os.kill(int(pid_file.read_text()), signal.SIGTERM)  # a real node failure: its slurmd stops answering
        stopped.append(node)

    watcher = threading.Thread(target=stop_its_node, daemon=True)
    watcher.start()
    try:
        done = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
    finally:
        stop.set()
        watcher.join(30)
        remote.close()
        run([LOCAL_STACK, "up", "cluster"], timeout=300, echo=False)  # the node comes back
    assert stopped, "the job never ran"
    t = proj.tests()[name]
    assert (t["state"], t["verdict"]) == ("NODE_FAIL", "infra"), t
    results = rec.read(rec.Results, proj.records / rec.RECORD_FILES[rec.Results])
    conclusion = conclude(results.clusters[0])
    assert conclusion.conclusion == "neutral", conclusion
    assert "cluster" in conclusion.reason.lower(), conclusion.reason
    # one verdict: the deploy says a cluster problem too (its own exit code, a warning), not a code failure
    assert done.returncode == ClusterProblem.exit_code, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert not [ln for ln in lines if ln.startswith(("error: ", "hpcci: error"))], done.stderr
    assert any(ln.startswith("warning: ") and "cluster problem, not the code" in ln for ln in lines), (
        done.stderr
    )
