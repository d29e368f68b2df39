"""The GitHub API stand-in of the local stack: it checks requests against GitHub's OpenAPI description, keeps
state, authenticates, injects faults, and survives a short schemathesis run.

Each test works in its own repository (octo-org/t-<random>), so tests never disturb each other or other users of
the running stand-in.
"""

from __future__ import annotations

import hashlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpcci.process import run
from stack_env import GitHubApp

STANDIN = Path(__file__).resolve().parents[1] / "standins" / "github"
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def gh(require: Any, stack_env: dict[str, str]) -> Iterator[httpx.Client]:
    require("github")
    with httpx.Client(
        base_url=stack_env["GITHUB_API_URL"],
        headers={
            "Authorization": f"Bearer {stack_env['GITHUB_TOKEN']}",
            "Accept": "application/vnd.github+json",
        },
        timeout=30,
    ) as client:
        yield client


@pytest.fixture
def repo() -> str:
    return f"octo-org/t-{uuid.uuid4().hex[:12]}"


def state(gh: httpx.Client, repo: str) -> dict[str, Any]:
    r = gh.get("/_standin/state", params={"repo": repo})
    r.raise_for_status()
    data: dict[str, Any] = r.json()
    return data


def create(gh: httpx.Client, repo: str, **body: Any) -> httpx.Response:
    return gh.post(f"/repos/{repo}/check-runs", json={"name": "hpcci / local", "head_sha": SHA, **body})


def test_the_openapi_file_is_the_one_source_md_names() -> None:
    digest = hashlib.sha256((STANDIN / "github-checks-subset.json").read_bytes()).hexdigest()
    assert digest in (STANDIN / "SOURCE.md").read_text(encoding="utf-8")


def test_requests_without_the_token_are_refused(gh: httpx.Client, repo: str) -> None:
    assert httpx.post(f"{str(gh.base_url).rstrip('/')}/repos/{repo}/check-runs", json={}).status_code == 401
    r = gh.post(f"/repos/{repo}/check-runs", json={}, headers={"Authorization": "token not-the-token"})
    assert r.status_code == 401 and r.json()["message"] == "Bad credentials"


def test_a_completed_check_run_without_conclusion_is_refused_with_the_schema_message(
    gh: httpx.Client, repo: str
) -> None:
    r = create(gh, repo, status="completed")
    assert r.status_code == 422
    assert "'conclusion' is a required property" in r.json()["message"]


def test_github_limits_in_the_schema_are_enforced(gh: httpx.Client, repo: str) -> None:
    too_long = create(gh, repo, output={"title": "t", "summary": "s" * 65536})
    assert (
        too_long.status_code == 422 and "output/summary: fails maxLength 65535" in too_long.json()["message"]
    )
    a = {"path": "hpcci.yaml", "start_line": 1, "end_line": 1, "annotation_level": "failure", "message": "m"}
    too_many = create(gh, repo, output={"title": "t", "summary": "s", "annotations": [a] * 51})
    assert too_many.status_code == 422 and "maxItems 50" in too_many.json()["message"]
    bad_level = create(
        gh, repo, output={"title": "t", "summary": "s", "annotations": [{**a, "annotation_level": "x"}]}
    )
    assert bad_level.status_code == 422


def test_prose_rules_are_enforced_too(gh: httpx.Client, repo: str) -> None:
    a = {"path": "hpcci.yaml", "start_line": 1, "end_line": 1, "annotation_level": "failure", "message": "m"}
    r = create(gh, repo, output={"title": "t", "summary": "s", "annotations": [{**a, "title": "x" * 256}]})
    assert r.status_code == 422 and "255" in r.json()["message"]
    assert create(gh, repo, conclusion="stale").status_code == 422
    assert create(gh, repo, head_sha="main").status_code == 422  # not a commit sha


def test_unparsable_json_is_a_400(gh: httpx.Client, repo: str) -> None:
    r = gh.post(f"/repos/{repo}/check-runs", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "Problems parsing JSON" in r.json()["message"]


def test_unknown_paths_are_404(gh: httpx.Client) -> None:
    assert gh.get("/repos/octo-org/x/pulls").status_code == 404


def test_updates_append_annotations_and_complete_the_run(gh: httpx.Client, repo: str) -> None:
    run = create(gh, repo, status="in_progress", external_id="local@1").json()
    assert run["status"] == "in_progress" and run["conclusion"] is None
    a = {"path": "hpcci.yaml", "start_line": 3, "end_line": 3, "annotation_level": "failure", "message": "m"}
    for _ in range(2):
        out = {"title": "t", "summary": "s", "annotations": [a]}
        assert gh.patch(f"/repos/{repo}/check-runs/{run['id']}", json={"output": out}).status_code == 200
    done = gh.patch(f"/repos/{repo}/check-runs/{run['id']}", json={"conclusion": "success"}).json()
    assert done["status"] == "completed" and done["completed_at"]
    assert done["output"]["annotations_count"] == 2
    listed = gh.get(f"/repos/{repo}/commits/{SHA}/check-runs", params={"check_name": "hpcci / local"}).json()
    assert [r["id"] for r in listed["check_runs"]] == [run["id"]]
    assert len(gh.get(f"/repos/{repo}/check-runs/{run['id']}/annotations").json()) == 2


def test_url_fields_are_built_from_the_request_host(
    gh: httpx.Client, repo: str, stack_env: dict[str, str]
) -> None:
    other = stack_env["GITHUB_API_URL"].replace("127.0.0.1", "localhost")
    r = create(gh, repo)
    assert r.json()["url"].startswith(str(gh.base_url).rstrip("/"))
    r2 = httpx.get(r.json()["url"].replace(str(gh.base_url).rstrip("/"), other), headers=gh.headers)
    assert r2.json()["url"].startswith(other)


def test_injected_faults_hit_the_next_matching_requests_only(gh: httpx.Client, repo: str) -> None:
    fault = {"method": "POST", "path": f"/repos/{repo}/check-runs", "status": 502, "count": 2}
    assert gh.post("/_standin/faults", json=fault).status_code == 201
    assert [create(gh, repo).status_code for _ in range(3)] == [502, 502, 201]
    assert len(state(gh, repo)["check_runs"]) == 1


def test_secondary_rate_limit_fault_carries_retry_after(gh: httpx.Client, repo: str) -> None:
    fault = {"path": f"/repos/{repo}/*", "status": 403, "retry_after": 3}
    gh.post("/_standin/faults", json=fault)
    r = create(gh, repo)
    assert r.status_code == 403 and r.headers["retry-after"] == "3"
    assert "secondary rate limit" in r.json()["message"]


def test_an_applied_fault_changes_state_but_answers_with_an_error(gh: httpx.Client, repo: str) -> None:
    gh.post("/_standin/faults", json={"path": f"/repos/{repo}/check-runs", "status": 500, "apply": True})
    assert create(gh, repo).status_code == 500
    assert len(state(gh, repo)["check_runs"]) == 1


def test_a_read_only_token_cannot_write_check_runs(gh: httpx.Client, repo: str) -> None:
    gh.post("/_standin/permissions", json={"repo": repo, "read_only": True})
    r = create(gh, repo)
    assert r.status_code == 403 and r.json()["message"] == "Resource not accessible by integration"
    assert gh.get(f"/repos/{repo}/commits/{SHA}/check-runs").status_code == 200


def test_statuses_and_the_combined_state(gh: httpx.Client, repo: str) -> None:
    for state_, ctx in (("success", "hpcci / a"), ("failure", "hpcci / b")):
        r = gh.post(f"/repos/{repo}/statuses/{SHA}", json={"state": state_, "context": ctx})
        assert r.status_code == 201
    combined = gh.get(f"/repos/{repo}/commits/{SHA}/status").json()
    assert combined["state"] == "failure" and combined["total_count"] == 2


def test_comments_are_created_and_updated_in_place(gh: httpx.Client, repo: str) -> None:
    c = gh.post(f"/repos/{repo}/issues/7/comments", json={"body": "one"}).json()
    gh.patch(f"/repos/{repo}/issues/comments/{c['id']}", json={"body": "two"})
    assert [x["body"] for x in gh.get(f"/repos/{repo}/issues/7/comments").json()] == ["two"]


def test_a_github_app_gets_an_installation_token(gh: httpx.Client, repo: str, github_app: GitHubApp) -> None:
    from hpcci.backends.github.client import app_jwt

    app_id, pem = github_app.app_id, github_app.private_key_pem
    jwt = {"Authorization": f"Bearer {app_jwt(app_id, pem)}"}
    installation = gh.get(f"/repos/{repo}/installation", headers=jwt).json()
    token = gh.post(f"/app/installations/{installation['id']}/access_tokens", headers=jwt)
    assert token.status_code == 201
    r = gh.post(
        f"/repos/{repo}/check-runs",
        json={"name": "n", "head_sha": SHA},
        headers={"Authorization": f"token {token.json()['token']}"},
    )
    assert r.status_code == 201
    assert gh.get(f"/repos/{repo}/installation", headers={"Authorization": "Bearer a.b.c"}).status_code == 401


def test_schemathesis_finds_no_schema_violations(gh: httpx.Client, stack_env: dict[str, str]) -> None:
    """About 1,000 generated requests; status_code_conformance is left out (GitHub documents few 4xx)."""
    st = Path(sys.executable).with_name("st")
    token = stack_env["GITHUB_TOKEN"]
    done = run(
        [
            str(st),
            "run",
            str(STANDIN / "github-checks-subset.json"),
            "--base-url",
            stack_env["GITHUB_API_URL"],
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--exclude-checks",
            "status_code_conformance",
            "--hypothesis-max-examples",
            "60",
            "--hypothesis-suppress-health-check",
            "all",
            "--hypothesis-derandomize",
        ],
        timeout=300,
        check=False,
        echo=False,  # the argv carries the token
    )
    output = (done.stdout + done.stderr).replace(token, "***")
    assert done.returncode == 0, output[-4000:]
    assert "response_schema_conformance" in output


def test_a_completed_check_run_keeps_its_conclusion(gh: httpx.Client, repo: str) -> None:
    run = create(gh, repo, conclusion="failure").json()
    out = {"title": "new title", "summary": "s"}
    r = gh.patch(f"/repos/{repo}/check-runs/{run['id']}", json={"status": "in_progress", "output": out})
    assert (r.json()["status"], r.json()["conclusion"]) == ("completed", "failure")
    assert r.json()["output"]["title"] == "new title"
