"""report.output none on the local stack (issue 22 item 3): a test whose output holds a marker string passes, one
fails (its output does not match expect.output) and one exits wrongly, judged on the login node, while the marker
appears nowhere on GitHub (the stand-in's whole state for the repository), in no record and in no log, though it
is in the output files on the cluster.

Needs `scripts/local-stack up docker registry cluster github`; skips without them (fails under CI=true).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import xmlschema
from deploy_support import Project, cluster_config, login, on_login

from hpcci.process import Completed, run

XSD = Path(__file__).resolve().parents[1] / "unit" / "data" / "junit" / "junit-10.xsd"


def _hpcci(proj: Project, env: dict[str, str], *args: str) -> Completed:
    return run([sys.executable, "-m", "hpcci", *args], timeout=900, check=False, cwd=str(proj.root), env=env)


def test_output_none_judges_on_the_cluster_and_nothing_of_the_output_leaves_it(
    fib_tar: Path, project: Callable[..., Project], require: Callable[..., None], stack_env: dict[str, str]
) -> None:
    require("github")
    marker = f"SITE-PRIVATE-{uuid.uuid4().hex}"
    say = f"echo {marker}; echo result="
    tests: list[dict[str, Any]] = [
        {"name": "ok", "command": ["sh", "-c", say + "ok"], "expect": {"output": "^result=ok$"}},
        {"name": "bad", "command": ["sh", "-c", say + "bad"], "expect": {"output": "^result=ok$"}},
        {"name": "code", "command": ["sh", "-c", say + "ok; exit 3"], "expect": {"output": "^result=ok$"}},
    ]
    proj = project(tests, cluster=cluster_config(**{"report.output": "none"}))
    repo = f"octo-org/r-{uuid.uuid4().hex[:12]}"
    summary = proj.root / "summary.md"
    env = {"GITHUB_REPOSITORY": repo, "GITHUB_SHA": "feedc0de" * 5, "GITHUB_RUN_ID": "2201",
           "GITHUB_EVENT_NAME": "workflow_dispatch", "GITHUB_REF": "refs/heads/main",
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ACTIONS": "true"}  # fmt: skip

    deploy = _hpcci(proj, env, "deploy", "--image-tar", str(fib_tar))
    report = _hpcci(proj, env, "report", "--phase", "finish")

    t = proj.tests()
    assert {n: r["verdict"] for n, r in t.items()} == {"ok": "pass", "bad": "fail", "code": "fail"}, (
        t, deploy.stderr[-3000:])  # fmt: skip
    assert deploy.returncode == 70, deploy.stderr[-3000:]
    assert "code 3, expected 0" in t["code"]["reason"] and "does not match" in t["bad"]["reason"]
    for r in t.values():
        assert r["output_tail"] == "" and r["output_on_cluster"].endswith(f"/{r['test']}.out"), r
    # the marker is really in the output the deploy judged: on the cluster, where it stays
    remote = login()
    try:
        cat = on_login(remote, ["cat", "--", t["bad"]["output_on_cluster"]])
    finally:
        remote.close()
    assert marker in cat.stdout and "result=bad" in cat.stdout, cat

    assert report.returncode == 0, report.stderr[-3000:]
    with httpx.Client(base_url=stack_env["GITHUB_API_URL"], timeout=30,
                      headers={"Authorization": f"Bearer {stack_env['GITHUB_TOKEN']}"}) as admin:  # fmt: skip
        state = admin.get("/_standin/state", params={"repo": repo})
    state.raise_for_status()
    (check,) = state.json()["check_runs"]
    assert check["conclusion"] == "failure", check
    assert "stays on local (report.output none)" in json.dumps(check), check
    records = {p.name: p.read_text(errors="replace") for p in proj.records.iterdir() if p.is_file()}
    assert {"results.json", "results.junit.xml", "deploy.json"} <= set(records), sorted(records)
    xmlschema.XMLSchema(XSD).validate(records["results.junit.xml"])  # the deploy's own file, as CI reads it
    places = {"github": state.text, "summary": summary.read_text(), **records,
              "deploy log": deploy.stdout + deploy.stderr, "report log": report.stdout + report.stderr}  # fmt: skip
    assert [where for where, text in places.items() if marker in text] == []
