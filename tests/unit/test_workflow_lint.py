"""Lint the composite actions and workflows as data: GitHub's published schemas plus the kit's own rules.

The schemas are the GitHub workflow and action schemas that check-jsonschema vendors (from SchemaStore), read
from its package data and applied in-process. The kit's rules (STYLE.md rule 7): no `${{ }}` expression inside
a `run:` script (inputs and event data reach scripts only through `env:`), explicit least `permissions:`,
documented inputs and outputs, secrets masked before anything prints, check runs completed `if: always()`.
(actionlint is not used: its PyPI package downloads the binary from GitHub while installing, which fails offline.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
ACTIONS = sorted(REPO.glob("actions/**/action.yml"))
STAGE_ACTIONS = [REPO / "actions" / name / "action.yml" for name in ("build", "publish", "deploy", "report")]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
EXAMPLE_WORKFLOWS = sorted(REPO.glob("examples/*/.github/workflows/*.yml"))
ALL_WORKFLOWS = WORKFLOWS + EXAMPLE_WORKFLOWS
KIT = "octo-org/hpcci"  # how users (and the reusable workflows) reference this repository

# Files whose steps all `uses:` an action (wrappers, reusable and adoption workflows): no `run:` step to lint.
ONLY_USES = {
    "actions/build/buildx/action.yml",
    "actions/setup/cache/action.yml",
    "actions/report/artifact/action.yml",
    ".github/workflows/build-and-publish.yml",
    ".github/workflows/deploy.yml",
    ".github/workflows/trigger.yml",
    "examples/fibonacci/.github/workflows/hpcci.yml",
    "examples/fibonacci/.github/workflows/hpcci-comment.yml",
}
# Files that reference no part of the kit: the remote-action wrappers, the pinned checkout and the project's CI.
NO_KIT_REFERENCES = {
    "actions/build/buildx/action.yml",
    "actions/trigger/checkout/action.yml",
    "actions/setup/source/action.yml",
    "actions/setup/cache/action.yml",
    "actions/report/artifact/action.yml",
    ".github/workflows/ci.yml",
}

EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def load(path: Path) -> Any:
    # YAML 1.2, as GitHub reads it: `on:` stays a string key (PyYAML would turn it into True).
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def vendored_schema(name: str) -> dict[str, Any]:
    import check_jsonschema

    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / f"{name}.json"
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def steps_of(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, step) for every step of an action or a workflow."""
    if "runs" in doc:
        for i, step in enumerate(doc["runs"].get("steps", [])):
            yield f"runs.steps[{i}]", step
    for job_id, job in (doc.get("jobs") or {}).items():
        for i, step in enumerate(job.get("steps", [])):
            yield f"jobs.{job_id}.steps[{i}]", step


def uses_of(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for where, step in steps_of(doc):
        if "uses" in step:
            yield where, step["uses"]
    for job_id, job in (doc.get("jobs") or {}).items():
        if "uses" in job:
            yield f"jobs.{job_id}", job["uses"]


def run_steps(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, step) for the `run:` steps of ``path``: some in every file except those whose steps all `uses:`."""
    found = [(where, step) for where, step in steps_of(load(path)) if "run" in step]
    assert bool(found) == (rel(path) not in ONLY_USES), (
        f"{rel(path)}: {len(found)} run steps; ONLY_USES says it has {'none' if rel(path) in ONLY_USES else 'some'}"
    )
    return found


def expressions_in_run_scripts(path: Path, steps: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [
        f'{rel(path)}: {where}.run contains ${{{{{m.strip()}}}}}; pass it through env: and use "$NAME"'
        for where, step in steps
        for m in EXPRESSION.findall(str(step.get("run", "")))
    ]


def test_the_files_exist() -> None:
    assert {rel(p) for p in STAGE_ACTIONS} <= {rel(p) for p in ACTIONS}
    names = {p.name for p in WORKFLOWS}
    assert {"build-and-publish.yml", "deploy.yml", "ci.yml"} <= names
    assert EXAMPLE_WORKFLOWS, "examples/*/.github/workflows/ holds the users' adoption workflow"


@pytest.mark.parametrize("path", ACTIONS, ids=rel)
def test_action_follows_githubs_action_schema(path: Path) -> None:
    import jsonschema

    errors = sorted(
        jsonschema.Draft7Validator(vendored_schema("github-actions")).iter_errors(load(path)), key=str
    )
    assert not errors, "\n".join(f"{rel(path)}: {'.'.join(map(str, e.path))}: {e.message}" for e in errors)


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=rel)
def test_workflow_follows_githubs_workflow_schema(path: Path) -> None:
    import jsonschema

    errors = sorted(
        jsonschema.Draft7Validator(vendored_schema("github-workflows")).iter_errors(load(path)), key=str
    )
    assert not errors, "\n".join(f"{rel(path)}: {'.'.join(map(str, e.path))}: {e.message}" for e in errors)


@pytest.mark.parametrize("path", ACTIONS + ALL_WORKFLOWS, ids=rel)
def test_no_expression_inside_run_scripts(path: Path) -> None:
    """`${{ inputs.x }}` or `${{ github.event.* }}` pasted into a script is shell injection; use env: instead."""
    bad = expressions_in_run_scripts(path, run_steps(path))
    assert not bad, "\n".join(bad)


def test_the_expression_rule_flags_an_expression_in_a_script() -> None:
    step = {"run": 'echo "${{ github.event.pull_request.title }}"\necho ok'}
    (bad,) = expressions_in_run_scripts(REPO / "x.yml", [("jobs.j.steps[0]", step)])
    assert "${{github.event.pull_request.title}}" in bad


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=rel)
def test_workflow_sets_least_permissions(path: Path) -> None:
    doc = load(path)
    assert isinstance(doc.get("permissions"), dict) and doc["permissions"], (
        f"{rel(path)}: set `permissions:` explicitly (least needed)"
    )
    scopes = [doc["permissions"]] + [
        job["permissions"] for job in doc["jobs"].values() if isinstance(job.get("permissions"), dict)
    ]
    for scope in scopes:
        for name, level in scope.items():
            # checks: write is what reporting needs, statuses: write its fallback when check runs are refused,
            # issues: write the `/hpcci deploy` trigger's reaction and reply comment; nothing uses OIDC (id-token).
            allowed = {"read", "none"} | ({"write"} if name in ("checks", "statuses", "issues") else set())
            assert level in allowed, f"{rel(path)}: permission {name}: {level} is more than the kit needs"
    for job_id, job in doc["jobs"].items():
        assert job.get("permissions") != "write-all", f"{rel(path)}: jobs.{job_id} asks for write-all"


@pytest.mark.parametrize("path", ACTIONS, ids=rel)
def test_action_inputs_and_outputs_are_documented_and_used(path: Path) -> None:
    doc = load(path)
    text = path.read_text(encoding="utf-8")
    for kind in ("inputs", "outputs"):
        for name, spec in (doc.get(kind) or {}).items():
            assert spec.get("description"), f"{rel(path)}: {kind}.{name} has no description"
    declared = set(doc.get("inputs") or {})
    assert declared, f"{rel(path)}: every kit action takes inputs; the rule found none"
    used = set(re.findall(r"inputs\.([A-Za-z0-9_-]+)", text))
    assert used <= declared, f"{rel(path)}: uses undeclared inputs {sorted(used - declared)}"
    assert declared <= used, f"{rel(path)}: declares inputs it never uses {sorted(declared - used)}"


@pytest.mark.parametrize("path", ACTIONS, ids=rel)
def test_action_is_composite_and_runs_bash(path: Path) -> None:
    doc = load(path)
    assert doc["runs"]["using"] == "composite", f"{rel(path)}: the kit's actions are composite"
    for where, step in run_steps(path):
        assert step.get("shell") == "bash", f"{rel(path)}: {where} needs `shell: bash`"


@pytest.mark.parametrize("path", STAGE_ACTIONS, ids=rel)
def test_stage_action_masks_secrets_first_then_installs_the_kit_from_its_own_path(path: Path) -> None:
    steps = [step for _, step in steps_of(load(path))]
    assert 'secrets.py" mask' in steps[0].get("run", ""), f"{rel(path)}: the first step must mask the secrets"
    installs = [s for s in steps if "$GITHUB_ACTION_PATH/../setup/install.sh" in s.get("run", "")]
    assert installs, f"{rel(path)}: install the kit from $GITHUB_ACTION_PATH (actions/setup/install.sh)"


@pytest.mark.parametrize("path", STAGE_ACTIONS, ids=rel)
def test_secrets_reach_the_command_through_env_only(path: Path) -> None:
    carriers = {
        f"{where}.env.{name}"
        for where, step in steps_of(load(path))
        for name, value in (step.get("env") or {}).items()
        if "secrets" in str(value) or "token" in str(value)
    }
    assert carriers, f"{rel(path)}: no step passes the secrets (or the token) through env:"
    wrong = {c for c in carriers if c.rpartition(".")[2] not in ("HPCCI_SECRETS", "GITHUB_TOKEN")}
    assert not wrong, f"{rel(path)}: secrets reach {sorted(wrong)}"


@pytest.mark.parametrize("path", ACTIONS + ALL_WORKFLOWS, ids=rel)
def test_kit_references_point_at_files_in_this_repository(path: Path) -> None:
    refs = [(where, uses) for where, uses in uses_of(load(path)) if uses.startswith(f"{KIT}/")]
    assert bool(refs) == (rel(path) not in NO_KIT_REFERENCES), (
        f"{rel(path)}: {len(refs)} references to the kit; NO_KIT_REFERENCES says otherwise"
    )
    for where, uses in refs:
        target, _, ref = uses[len(KIT) + 1 :].partition("@")
        assert ref == "v1", f"{rel(path)}: {where} uses {uses}; the kit's own references are @v1"
        file = REPO / target if target.endswith((".yml", ".yaml")) else REPO / target / "action.yml"
        assert file.is_file(), f"{rel(path)}: {where} uses {uses}, but {rel(file)} does not exist"


OPTIONAL = {  # wrap remote actions
    "actions/build/buildx/action.yml",
    "actions/setup/cache/action.yml",
    "actions/report/artifact/action.yml",
}


def test_remote_actions_are_only_behind_optional_wrapper_actions() -> None:
    """act and offline runners fetch every remote action of a job or composite action, even for a skipped step:
    the remote ones (docker/*, actions/cache) live in small wrapper actions that are used only under an `if:`."""
    remote = {
        (rel(path), where, uses)
        for path in ACTIONS + WORKFLOWS
        for where, uses in uses_of(load(path))
        if not (uses.startswith(f"{KIT}/") or uses.startswith("actions/checkout@"))
    }
    outside = {r for r in remote if r[0] not in OPTIONAL}
    assert not outside, f"remote actions used directly: {sorted(outside)}"
    assert {r[0] for r in remote} == OPTIONAL, "each optional wrapper exists because it wraps a remote action"
    wrapped = [
        (rel(path), where, step)
        for path in ACTIONS
        for where, step in steps_of(load(path))
        if f"{step.get('uses', '').removeprefix(f'{KIT}/').partition('@')[0]}/action.yml" in OPTIONAL
    ]
    assert {w[0] for w in wrapped} >= {
        "actions/build/action.yml",
        "actions/setup/action.yml",
        "actions/report/action.yml",
    }, wrapped
    for file, where, step in wrapped:
        assert step.get("if"), f"{file}: {where} uses {step['uses']} without an `if:`"


def test_build_action_sets_up_buildx_only_where_asked_or_on_github_hosted_runners() -> None:
    steps = [s for _, s in steps_of(load(REPO / "actions" / "build" / "action.yml"))]
    (buildx,) = [s for s in steps if s.get("uses", "").startswith(f"{KIT}/actions/build/buildx@")]
    assert "inputs.setup-buildx == 'true'" in buildx["if"]
    assert "runner.environment == 'github-hosted'" in buildx["if"]


def test_check_runs_are_completed_whatever_happened() -> None:
    completing = [
        (rel(path), where, step)
        for path in ACTIONS + ALL_WORKFLOWS
        for where, step in steps_of(load(path))
        if step.get("uses", "").startswith(f"{KIT}/actions/report@")
        and step.get("with", {}).get("phase") != "start"
    ]
    assert ".github/workflows/deploy.yml" in {c[0] for c in completing}, "the deploy workflow completes them"
    for file, where, step in completing:
        assert "always()" in str(step.get("if", "")), f"{file}: {where} needs `if: always()`"


def test_reusable_workflows_are_called_workflows_with_outputs() -> None:
    build = load(REPO / ".github" / "workflows" / "build-and-publish.yml")
    deploy = load(REPO / ".github" / "workflows" / "deploy.yml")
    assert {"image", "digest", "tags", "publish-record"} <= set(build["on"]["workflow_call"]["outputs"])
    assert "publish-record" in deploy["on"]["workflow_call"]["inputs"]
    assert "matrix" in deploy["jobs"]["deploy"]["strategy"], "deploy runs one job (one check run) per cluster"


def test_adoption_workflow_is_short_and_calls_the_reusable_workflows() -> None:
    (path,) = [p for p in EXAMPLE_WORKFLOWS if p.name == "hpcci.yml"]
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    assert len(lines) <= 20, f"{rel(path)} is {len(lines)} lines; the adoption workflow stays about 15"
    called = {job["uses"] for job in load(path)["jobs"].values()}
    assert called == {
        f"{KIT}/.github/workflows/build-and-publish.yml@v1",
        f"{KIT}/.github/workflows/deploy.yml@v1",
    }


def test_ci_runs_the_projects_test_script() -> None:
    doc = load(REPO / ".github" / "workflows" / "ci.yml")
    scripts = " ".join(str(s.get("run", "")) for job in doc["jobs"].values() for s in job["steps"])
    assert ".ci/run" in scripts


README = REPO / "README.md"
ADOPTION = REPO / "examples" / "fibonacci" / ".github" / "workflows" / "hpcci.yml"


def test_readme_quotes_the_adoption_workflow_verbatim() -> None:
    """The README's snippet is the file the end-to-end tests run, byte for byte."""
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("## The workflow") :]
    blocks = re.findall(r"```ya?ml\n(.*?)```", section, re.DOTALL)
    assert blocks, "README: the workflow section has no ```yaml block"
    assert blocks[0] == ADOPTION.read_text(encoding="utf-8"), (
        f"README's workflow differs from {rel(ADOPTION)}"
    )
