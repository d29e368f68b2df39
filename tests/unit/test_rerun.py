"""A workflow re-run (run_attempt > 1) deploys again only the clusters whose check run of this workflow run did not
succeed; GitHub is the stand-in served in-process (no socket), validating every request."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from hpcci.backends.github.client import RestGitHub, TokenAuth
from hpcci.context import from_environ
from hpcci.stages.report.outputs import Target
from hpcci.stages.report.rerun import still_needed
from standins.github.app import make_app

REPO = "octo-org/fibonacci"
SHA = "3" * 40


@pytest.fixture
def gh() -> Iterator[tuple[httpx.Client, RestGitHub]]:
    app = make_app("t")
    transport = httpx.WSGITransport(app=app)
    admin = httpx.Client(
        transport=transport, base_url="http://gh.test", headers={"Authorization": "Bearer t"}
    )
    api = RestGitHub(api_url="http://gh.test", repository=REPO, auth=TokenAuth("t"), transport=transport)
    yield admin, api
    api.close()
    admin.close()


def check_run(admin: httpx.Client, cluster: str, run_id: str, conclusion: str | None) -> None:
    body: dict[str, object] = {
        "name": f"hpcci / {cluster}",
        "head_sha": SHA,
        "external_id": f"hpcci:{cluster}@{run_id}",
    }
    body |= (
        {"status": "completed", "conclusion": conclusion, "output": {"title": "t", "summary": "s"}}
        if conclusion
        else {"status": "in_progress"}
    )
    admin.post(f"/repos/{REPO}/check-runs", json=body).raise_for_status()


def test_only_clusters_that_did_not_succeed_in_this_workflow_run_deploy_again(
    gh: tuple[httpx.Client, RestGitHub],
) -> None:
    admin, api = gh
    check_run(admin, "ok", "900", "success")
    check_run(admin, "failed", "900", "failure")
    check_run(admin, "killed", "900", None)  # the runner died: still in progress
    check_run(admin, "other-run", "899", "success")  # another workflow run's success does not count
    check_run(admin, "fixed", "900", "failure")
    check_run(admin, "fixed", "900", "success")  # the newest of this run decides
    check_run(admin, "broke", "900", "success")
    check_run(admin, "broke", "900", "failure")
    names = ["ok", "failed", "killed", "other-run", "never-started", "fixed", "broke"]

    selection = still_needed(api, Target(sha=SHA, run_key="900"), names)

    assert selection.deploy == ["failed", "killed", "other-run", "never-started", "broke"]
    assert list(selection.done) == ["ok", "fixed"]
    assert "already succeeded: ok (check run" in selection.why("2")


def test_a_pinned_comment_deploy_reports_on_the_pinned_head_as_a_manual_request() -> None:
    env = {
        "GITHUB_EVENT_NAME": "issue_comment",
        "GITHUB_SHA": "4" * 40,  # the default branch: what GitHub gives an issue_comment run
        "GITHUB_REF": "refs/heads/main",
        "HPCCI_PIN_SHA": SHA,
        "HPCCI_PIN_PR": "7",
    }
    event = from_environ(env)
    assert (event.head_sha, event.sha, event.pr_number) == (SHA, SHA, 7)
    assert event.ref == "refs/pull/7/head" and event.trigger == "workflow_dispatch"
    unpinned = from_environ({k: v for k, v in env.items() if not k.startswith("HPCCI_")})
    assert unpinned.head_sha == "4" * 40
