"""The workflows' trust rules (issue 19) read from the files as data: pinned third-party actions, checkouts that
keep no token, trusted configuration, one GitHub environment and one concurrency group per cluster."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
ACTIONS = sorted(REPO.glob("actions/**/action.yml"))
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
EXAMPLES = sorted(REPO.glob("examples/*/.github/workflows/*.yml"))
KIT = "octo-org/hpcci/"
PINNED = re.compile(r"^\s*-?\s*uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # v\d+\.\d+\.\d+\s*$")


def load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found = list((doc.get("runs") or {}).get("steps", []))
    for job in (doc.get("jobs") or {}).values():
        found += job.get("steps", [])
    return found


@pytest.mark.parametrize("path", ACTIONS + WORKFLOWS + EXAMPLES, ids=rel)
def test_third_party_actions_are_pinned_by_full_sha_with_their_version(path: Path) -> None:
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\s*-?\s*uses:\s*(\S+)", line)
        if not m or m.group(1).startswith((KIT, "./")):
            continue
        assert PINNED.match(line), f"{rel(path)}: `{line.strip()}` is not `owner/repo@<40 hex> # vX.Y.Z`"


# trigger.yml checks nothing out: no code of the pull request before the permission check.
@pytest.mark.parametrize("path", [p for p in WORKFLOWS if p.name != "trigger.yml"], ids=rel)
def test_checkouts_keep_no_token_in_git_config(path: Path) -> None:
    checkouts = [s for s in steps(load(path)) if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkouts, f"{rel(path)} checks nothing out; the rule found nothing to check"
    for step in checkouts:
        assert (step.get("with") or {}).get("persist-credentials") is False, f"{rel(path)}: {step}"


@pytest.mark.parametrize("name", ["build-and-publish.yml", "deploy.yml"])
def test_every_job_reads_the_configuration_through_the_trusted_source_step(name: str) -> None:
    doc = load(REPO / ".github" / "workflows" / name)
    for job_id, job in doc["jobs"].items():
        uses = [str(s.get("uses", "")) for s in job["steps"]]
        assert uses[0].startswith("actions/checkout@"), f"{name}: jobs.{job_id} starts with {uses[0]}"
        assert uses[1] == f"{KIT}actions/setup/source@v1", (
            f"{name}: jobs.{job_id} does not read trusted config"
        )
        assert not [u for u in uses if "trigger/checkout" in u], (
            f"{name}: jobs.{job_id} checks out the PR's head"
        )
    assert "config-sha" in doc["on"]["workflow_call"]["inputs"]


def test_the_build_context_of_a_pinned_build_is_the_source_steps_tree() -> None:
    doc = load(REPO / ".github" / "workflows" / "build-and-publish.yml")
    (build,) = [s for s in doc["jobs"]["build"]["steps"] if s.get("id") == "build"]
    assert build["with"]["source"] == "${{ steps.source.outputs.source }}"


def test_each_deploy_job_has_its_clusters_environment_and_waits_for_the_last_deploy() -> None:
    job = load(REPO / ".github" / "workflows" / "deploy.yml")["jobs"]["deploy"]
    assert job["environment"] == "${{ fromJSON(needs.clusters.outputs.environments)[matrix.cluster] }}"
    group = job["concurrency"]["group"]
    assert "matrix.cluster" in group and "inputs.pr" in group and "github.event.pull_request.number" in group
    assert job["concurrency"]["cancel-in-progress"] is False


def test_the_comment_workflow_reads_the_config_from_the_trigger_jobs_base_sha() -> None:
    doc = load(REPO / "examples" / "fibonacci" / ".github" / "workflows" / "hpcci-comment.yml")
    for job in ("build", "deploy"):
        assert doc["jobs"][job]["with"]["config-sha"] == "${{ needs.trigger.outputs.base-sha }}"
    trigger = load(REPO / ".github" / "workflows" / "trigger.yml")
    assert "base-sha" in trigger["on"]["workflow_call"]["outputs"]
