"""`hpcci trigger`: a `/hpcci deploy` comment deploys only for write/maintain/admin, pinned to the PR head as it was
when the comment was made; anyone else's comment is ignored with a logged reason and writes nothing to GitHub.

GitHub is the stand-in (tests/standins/github), served in-process (httpx's WSGI transport: no socket), so every
request hpcci sends is validated against GitHub's OpenAPI description. Event payloads validate against GitHub's
webhook schemas (github_events).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from github_events import event, issue_comment_created
from hpcci.backends.github.client import RestGitHub, TokenAuth
from hpcci.commands.trigger import Request, decide, link_check_runs, parse_command, reply_comment, request_of
from hpcci.log import Log
from standins.github.app import StandIn, make_app

REPO = "octo-org/fibonacci"
TOKEN = "ghs_unit"
HEAD = "1" * 40
LATER = "2" * 40


@pytest.fixture(scope="module")
def standin() -> StandIn:
    return make_app(TOKEN)  # loading GitHub's description takes a second: one per module, reset per test


@pytest.fixture
def admin(standin: StandIn) -> Iterator[httpx.Client]:
    with httpx.Client(
        transport=httpx.WSGITransport(app=standin),
        base_url="http://github.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        c.post("/_standin/reset").raise_for_status()
        yield c


@pytest.fixture
def api(standin: StandIn) -> Iterator[RestGitHub]:
    gh = RestGitHub(
        api_url="http://github.test",
        repository=REPO,
        auth=TokenAuth(TOKEN),
        transport=httpx.WSGITransport(app=standin),
        sleep=lambda _s: None,
    )
    yield gh
    gh.close()


def setup_pr(admin: httpx.Client, user: str, permission: str | None, body: str = "/hpcci deploy") -> Request:
    """PR 7 from a fork with head HEAD, a comment by ``user`` (with ``permission``, if any), its webhook payload."""
    if permission is not None:
        admin.post("/_standin/collaborators", json={"repo": REPO, "user": user, "permission": permission})
    pr = {
        "repo": REPO,
        "number": 7,
        "head_sha": HEAD,
        "head_repo": "someone/fibonacci",
        "head_ref": "fast-fib",
    }
    assert admin.post("/_standin/pulls", json=pr).status_code == 201
    comment = admin.post(
        "/_standin/comments", json={"repo": REPO, "issue": 7, "user": user, "body": body}
    ).json()
    request = request_of("issue_comment", issue_comment_created(REPO, 7, comment["id"], body, user))
    assert isinstance(request, Request), request
    return request


def state(admin: httpx.Client) -> dict[str, Any]:
    data: dict[str, Any] = admin.get("/_standin/state").json()
    return data


def writes(admin: httpx.Client) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in state(admin)["requests"] if r["method"] != "GET"]


def log() -> tuple[Log, io.StringIO]:
    out = io.StringIO()
    return Log(out, github=False), out


@pytest.mark.parametrize(
    ("body", "clusters"),
    [
        ("/hpcci deploy", ()),
        ("/hpcci deploy local frontera\nplease", ("local", "frontera")),
        ("  /hpcci   deploy local  ", ("local",)),
        ("/hpcci deploy @1a2b3c4 local", ("local",)),
        ("/hpcci deploy @xyz local", None),
        ("/hpcci deploy local; rm -rf /", None),
        ("/hpcci deployed", None),
        ("please /hpcci deploy", None),
        ("", None),
    ],
)
def test_the_command_is_the_first_line_only(body: str, clusters: tuple[str, ...] | None) -> None:
    assert parse_command(body) == clusters


def test_comments_that_are_no_request_say_why() -> None:
    on_issue = issue_comment_created(REPO, 8, 1, "/hpcci deploy", "mona", on_pr=False)
    assert "is an issue, not a pull request" in str(request_of("issue_comment", on_issue))
    chat = issue_comment_created(REPO, 7, 1, "looks good", "mona")
    assert "not a `/hpcci deploy" in str(request_of("issue_comment", chat))
    bot = issue_comment_created(REPO, 7, 1, "/hpcci deploy", "renovate[bot]")
    bot["comment"]["user"]["type"] = "Bot"
    assert "bots never trigger" in str(request_of("issue_comment", bot))
    assert "not a comment" in str(request_of("push", {}))
    # The Re-run button's webhook goes to the app that made the check run, never to a workflow; were it to
    # arrive, it is no request either.
    rerequested = event("webhook-check-run-rerequested", {"action": "rerequested"})
    assert "not a comment" in str(request_of("check_run", rerequested))


@pytest.mark.parametrize("permission", ["write", "maintain", "admin"])
def test_a_trusted_comment_pins_the_head_reacts_and_replies(
    admin: httpx.Client, api: RestGitHub, permission: str
) -> None:
    request = setup_pr(admin, "mona", permission)
    lg, _ = log()

    outcome = decide(api, request, lg)

    assert outcome.pin is not None and outcome.pin.sha == HEAD
    snap = state(admin)
    (comment,) = [c for c in snap["comments"] if c["id"] == request.comment_id]
    assert [r["content"] for r in comment["reactions"]] == ["rocket"]
    replies = [c for c in snap["comments"] if "hpcci-trigger" in c["body"]]
    assert len(replies) == 1 and HEAD[:12] in replies[0]["body"] and "@mona" in replies[0]["body"]


@pytest.mark.parametrize("permission", ["read", "triage", "none", None])
def test_anyone_elses_comment_is_ignored_with_a_reason_and_writes_nothing(
    admin: httpx.Client, api: RestGitHub, permission: str | None
) -> None:
    # author_association says CONTRIBUTOR (the payload); only the permission API decides.
    request = setup_pr(admin, "eve", permission)
    lg, _ = log()

    outcome = decide(api, request, lg)

    assert outcome.pin is None
    assert "@eve has" in outcome.reasons[0] and "nothing deploys" in outcome.reasons[0]
    assert writes(admin) == [], "an untrusted comment made hpcci write to GitHub"


def test_a_push_after_the_comment_does_not_change_what_a_rerun_deploys(
    admin: httpx.Client, api: RestGitHub
) -> None:
    request = setup_pr(admin, "mona", "write")
    first = decide(api, request, log()[0])
    admin.post("/_standin/pulls", json={"repo": REPO, "number": 7, "head_sha": LATER})  # a push to the PR

    again = decide(api, request, log()[0])  # the workflow re-run: the trigger job runs again

    assert first.pin is not None and again.pin is not None
    assert again.pin.sha == HEAD and again.pin.reused
    assert len([c for c in state(admin)["comments"] if "hpcci-trigger" in c["body"]]) == 1


def test_a_comment_naming_the_head_deploys_it(admin: httpx.Client, api: RestGitHub) -> None:
    request = setup_pr(admin, "mona", "write", f"/hpcci deploy @{HEAD[:7]} local")
    assert request.sha == HEAD[:7] and request.clusters == ("local",)
    outcome = decide(api, request, log()[0])
    assert outcome.pin is not None and outcome.pin.sha == HEAD


def test_a_push_between_a_comment_naming_the_head_and_the_trigger_deploys_nothing(
    admin: httpx.Client, api: RestGitHub
) -> None:
    request = setup_pr(admin, "mona", "write", f"/hpcci deploy @{HEAD[:7]}")
    admin.post(
        "/_standin/pulls", json={"repo": REPO, "number": 7, "head_sha": LATER}
    )  # pushed before the job ran

    outcome = decide(api, request, log()[0])

    assert outcome.pin is None and "moved since the comment" in outcome.reasons[0]
    assert writes(admin) == [], "a refused comment made hpcci write to GitHub"


def test_a_pin_written_by_someone_else_is_not_taken(admin: httpx.Client, api: RestGitHub) -> None:
    request = setup_pr(admin, "mona", "write")
    forged = f"<!-- hpcci-trigger comment={request.comment_id} pr=7 sha={LATER} -->"
    admin.post("/_standin/comments", json={"repo": REPO, "issue": 7, "user": "eve", "body": forged})

    outcome = decide(api, request, log()[0])

    assert outcome.pin is not None and outcome.pin.sha == HEAD and not outcome.pin.reused


def test_a_pin_written_by_another_apps_bot_is_not_taken(admin: httpx.Client, api: RestGitHub) -> None:
    request = setup_pr(admin, "mona", "write")
    forged = f"<!-- hpcci-trigger comment={request.comment_id} pr=7 sha={LATER} -->"
    admin.post(
        "/_standin/comments", json={"repo": REPO, "issue": 7, "user": "other-app[bot]", "body": forged}
    )
    assert any(c["user"]["type"] == "Bot" for c in api.comments(7) if "hpcci-trigger" in c["body"])

    outcome = decide(api, request, log()[0])

    assert outcome.pin is not None and outcome.pin.sha == HEAD and not outcome.pin.reused


def test_a_closed_pull_request_does_not_deploy(admin: httpx.Client, api: RestGitHub) -> None:
    request = setup_pr(admin, "mona", "admin")
    admin.post("/_standin/pulls", json={"repo": REPO, "number": 7, "head_sha": HEAD, "state": "closed"})

    outcome = decide(api, request, log()[0])

    assert outcome.pin is None and "is closed" in outcome.reasons[0]


def test_the_reply_links_this_runs_check_runs(
    admin: httpx.Client, api: RestGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_RUN_ID", "4711")
    request = setup_pr(admin, "mona", "write", "/hpcci deploy local")
    decide(api, request, log()[0])
    for external_id, conclusion in (("hpcci:local@1", "failure"), ("hpcci:local@4711", "success")):
        body = {
            "name": "hpcci / local", "head_sha": HEAD, "external_id": external_id, "status": "completed",
            "conclusion": conclusion, "output": {"title": "t", "summary": "s"},
        }  # fmt: skip
        assert admin.post(f"/repos/{REPO}/check-runs", json=body).status_code == 201

    link_check_runs(api, request, ["local"], "hpcci / {cluster}", log()[0])

    found = reply_comment(api.comments(7), request.comment_id, api.bot_login())
    assert found is not None
    assert "| local | [success](" in found[0]["body"] and "[failure]" not in found[0]["body"]


def test_no_code_of_the_pull_request_runs_before_the_permission_check() -> None:
    from ruamel.yaml import YAML

    root = Path(__file__).resolve().parents[2]
    trigger = YAML(typ="safe", pure=True).load((root / ".github/workflows/trigger.yml").read_text())
    steps = [s for job in trigger["jobs"].values() for s in job["steps"]]
    assert not [s for s in steps if "checkout" in str(s.get("uses", ""))], "the trigger job checks out code"
    caller = YAML(typ="safe", pure=True).load(
        (root / "examples/fibonacci/.github/workflows/hpcci-comment.yml").read_text()
    )
    jobs = caller["jobs"]
    assert jobs["build"]["needs"] == "trigger" and "needs.trigger.outputs.sha != ''" in jobs["build"]["if"]
    for job in ("build", "deploy"):
        assert jobs[job]["with"]["sha"] == "${{ needs.trigger.outputs.sha }}", f"{job} does not use the pin"
