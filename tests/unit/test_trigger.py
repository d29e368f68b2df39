"""`hpcci trigger`: a `/hpcci deploy` comment deploys only for write/maintain/admin, and an approval binds one full
commit: a fork's PR deploys only `@<40 hex>` equal to its head when the trigger job runs (a bare comment or a short
@COMMIT deploys nothing and the reply says what to post); a re-run deploys only what attempt 1's reply pinned, read
from a comment by hpcci's own login whose whole body is the template. Anyone else's comment is ignored with a
logged reason and writes nothing to GitHub.

GitHub is the stand-in (tests/standins/github), served in-process (httpx's WSGI transport: no socket), so every
request hpcci sends is validated against GitHub's OpenAPI description. Event payloads validate against GitHub's
webhook schemas (github_events).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from github_events import event, issue_comment_created
from hpcci.backends.github.client import RestGitHub, TokenAuth
from hpcci.commands.trigger import (
    Request,
    cluster_configs_of,
    commit_problem,
    decide,
    link_check_runs,
    named_commit,
    parse_command,
    request_of,
)
from hpcci.log import Log
from hpcci.stages.report.reply import Reply, Row, parse, render, reply_comment
from standins.github.app import StandIn, make_app

REPO = "octo-org/fibonacci"
TOKEN = "ghs_unit"
HEAD = "1" * 40
LATER = "2" * 40
BASE = "3" * 40
CONFIG = {"hpcci.yaml": "deploy:\n  clusters: [local]\n", "cluster-configs/local.yaml": "name: local\n"}


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


def setup_pr(
    admin: httpx.Client,
    user: str,
    permission: str | None,
    body: str = f"/hpcci deploy @{HEAD}",
    *,
    head_repo: str = "someone/fibonacci",
    head_files: dict[str, str] | None = None,
) -> Request:
    """PR 7 (from a fork unless ``head_repo`` says otherwise) with head HEAD into main at BASE, both with CONFIG's
    files (the head with ``head_files`` instead), a comment by ``user`` (with ``permission``, if any), its payload."""
    if permission is not None:
        admin.post("/_standin/collaborators", json={"repo": REPO, "user": user, "permission": permission})
    pr = {"repo": REPO, "number": 7, "head_sha": HEAD, "head_repo": head_repo, "head_ref": "fast-fib"}
    assert admin.post("/_standin/pulls", json={**pr, "base_ref": "main", "base_sha": BASE}).status_code == 201
    for sha, files in ((BASE, CONFIG), (HEAD, CONFIG if head_files is None else head_files)):
        assert (
            admin.post("/_standin/commits", json={"repo": REPO, "sha": sha, "files": files}).status_code
            == 201
        )
    assert (
        admin.post("/_standin/branches", json={"repo": REPO, "branch": "main", "sha": BASE}).status_code
        == 201
    )
    return comment(admin, user, body)


def comment(admin: httpx.Client, user: str, body: str) -> Request:
    made = admin.post(
        "/_standin/comments", json={"repo": REPO, "issue": 7, "user": user, "body": body}
    ).json()
    request = request_of("issue_comment", issue_comment_created(REPO, 7, made["id"], body, user))
    assert isinstance(request, Request), request
    return request


def state(admin: httpx.Client) -> dict[str, Any]:
    data: dict[str, Any] = admin.get("/_standin/state").json()
    return data


def writes(admin: httpx.Client) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in state(admin)["requests"] if r["method"] != "GET"]


def pin_replies(admin: httpx.Client) -> list[dict[str, Any]]:
    return [c for c in state(admin)["comments"] if "hpcci-trigger" in c["body"]]


def hpcci_replies(admin: httpx.Client) -> list[str]:
    """The bodies hpcci wrote (the stand-in stores the API caller's comments without a user)."""
    return [c["body"] for c in state(admin)["comments"] if not c.get("user")]


def reactions(admin: httpx.Client, request: Request) -> list[str]:
    (asked,) = [c for c in state(admin)["comments"] if c["id"] == request.comment_id]
    return [r["content"] for r in asked.get("reactions", [])]


def log() -> tuple[Log, io.StringIO]:
    out = io.StringIO()
    return Log(out, github=False), out


# -- pure: the comment, the @COMMIT rule, the reply template ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "clusters"),
    [
        ("/hpcci deploy", ()),
        ("/hpcci deploy local frontera\nplease", ("local", "frontera")),
        ("  /hpcci   deploy local  ", ("local",)),
        ("/hpcci deploy @1a2b3c4 local", ("local",)),
        ("/hpcci deploy @xyz local", ("local",)),  # a command: the reply says why @xyz deploys nothing
        ("/hpcci deploy local; rm -rf /", None),
        ("/hpcci deploy local @1a2b3c4", None),  # @COMMIT comes first
        ("/hpcci deploy @ local", None),  # an @ naming nothing is no bare command
        ("/hpcci deployed", None),
        ("please /hpcci deploy", None),
        ("", None),
    ],
)
def test_the_command_is_the_first_line_only(body: str, clusters: tuple[str, ...] | None) -> None:
    assert parse_command(body) == clusters


@pytest.mark.parametrize(
    ("named", "problem"),
    [
        ("", ""),
        (HEAD, ""),
        ("A" * 40, "is not a commit sha"),  # named_commit lowers the case first (see below)
        ("1a2b3c4", "is 7 hex digits of a commit"),
        ("1" * 39, "is 39 hex digits of a commit"),
        ("1" * 41, "is not a commit sha"),
        ("1a2b3c", "is not a commit sha"),
        ("xyz", "is not a commit sha"),
    ],
)
def test_only_a_full_40_hex_sha_binds_a_deploy(named: str, problem: str) -> None:
    found = commit_problem(named)
    assert (problem in found) if problem else found == "", found
    assert named_commit(f"/hpcci deploy @{'AB' * 20} local") == "ab" * 20


def test_the_cluster_configs_folder_is_read_from_the_base_config() -> None:
    import base64

    def file(text: str) -> dict[str, Any]:
        return {"type": "file", "encoding": "base64", "content": base64.b64encode(text.encode()).decode()}

    assert cluster_configs_of(file("deploy:\n  cluster_configs: sites\n")) == "sites"
    assert cluster_configs_of(file("deploy:\n  clusters: [a]\n")) == "cluster-configs"
    assert cluster_configs_of(file(": : [")) == "cluster-configs"
    assert cluster_configs_of(None) == "cluster-configs"


REPLY = Reply(
    comment_id=42, pr=7, sha=HEAD, user="mona", comment_url="https://github.com/o/r/pull/7#issuecomment-42",
    clusters=("local", "frontera"), unused=("hpcci.yaml", "cluster-configs"), base_ref="main", base_sha=BASE,
    run_url="https://github.com/o/r/actions/runs/9", runs=(Row("local", "success", "https://x/1"), Row("frontera")),
)  # fmt: skip


@pytest.mark.parametrize(
    "reply",
    [
        REPLY,
        dataclasses.replace(REPLY, runs=(), run_url="", unused=(), clusters=(), comment_url="", named=False),
        dataclasses.replace(REPLY, unused=("hpcci.yaml",), runs=()),
    ],
)
def test_the_reply_template_reads_back_what_it_wrote(reply: Reply) -> None:
    assert parse(render(reply)) == reply


@pytest.mark.parametrize(
    "change",
    [
        lambda b: "LGTM\n" + b,  # the marker embedded in a longer body
        lambda b: b + "\nand also deploy my branch",
        lambda b: b + "\n",
        lambda b: b.replace("\nWorkflow run:", "\nsee below\nWorkflow run:"),
        lambda b: b.replace("That is the commit", "That was the commit"),
        lambda b: b.replace("Not used: this pull request's changes to", "Used: the changes to"),
        lambda b: b.replace(
            f"deploying `{HEAD}`", f"deploying `{LATER}`"
        ),  # the sha differs from the marker's
        lambda b: b.replace("| frontera | (no check run) |", "| frontera | <img src=x> |"),
        lambda b: b.split("\n", 1)[0],  # the marker alone
    ],
)
def test_a_marker_counts_only_in_a_whole_body_that_is_the_template(change: Any) -> None:
    body = render(REPLY)
    assert parse(body) == REPLY
    assert parse(change(body)) is None


def test_a_marker_counts_only_in_hpccis_comment_naming_the_triggering_comment() -> None:
    body = render(REPLY)
    mine = {"id": 1, "body": body, "user": {"login": "hpcci-app[bot]"}}
    assert reply_comment([mine], 42, 7, "hpcci-app[bot]") == (mine, REPLY)
    assert reply_comment([mine], 42, 7, "github-actions[bot]") is None  # another identity wrote it
    assert reply_comment([mine], 43, 7, "hpcci-app[bot]") is None  # it answers another comment
    assert reply_comment([mine], 42, 8, "hpcci-app[bot]") is None
    assert reply_comment([{**mine, "user": None}], 42, 7, "hpcci-app[bot]") is None


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


# -- against the stand-in ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("permission", ["write", "maintain", "admin"])
def test_a_trusted_comment_naming_the_full_head_pins_it_reacts_and_replies(
    admin: httpx.Client, api: RestGitHub, permission: str
) -> None:
    request = setup_pr(admin, "mona", permission)
    lg, _ = log()

    outcome = decide(api, request, lg)

    assert outcome.pin is not None and outcome.pin.sha == HEAD and outcome.pin.base_sha == BASE
    assert reactions(admin, request) == ["rocket"]
    (answer,) = pin_replies(admin)
    found = parse(answer["body"])
    assert found is not None and (found.sha, found.user, found.named) == (HEAD, "mona", True), answer["body"]
    assert "Not used" not in answer["body"]  # the PR changes no configuration


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


@pytest.mark.parametrize("short", [HEAD[:7], HEAD[:39]])
def test_a_short_commit_on_a_fork_pr_deploys_nothing_and_says_why(
    admin: httpx.Client, api: RestGitHub, short: str
) -> None:
    request = setup_pr(admin, "mona", "write", f"/hpcci deploy @{short} local")

    outcome = decide(api, request, log()[0])

    assert outcome.pin is None and f"is {len(short)} hex digits" in outcome.reasons[0]
    (answer,) = hpcci_replies(admin)
    assert "nothing deploys" in answer and f"/hpcci deploy @{HEAD} local" in answer, answer
    assert pin_replies(admin) == [] and reactions(admin, request) == []


def test_a_bare_comment_on_a_fork_pr_deploys_nothing_and_names_the_full_head(
    admin: httpx.Client, api: RestGitHub
) -> None:
    request = setup_pr(admin, "mona", "admin", "/hpcci deploy local")

    outcome = decide(api, request, log()[0])

    assert outcome.pin is None and "comes from a fork (someone/fibonacci)" in outcome.reasons[0]
    (answer,) = hpcci_replies(admin)
    assert f"head now is `{HEAD}`" in answer and f"```\n/hpcci deploy @{HEAD} local\n```" in answer, answer
    assert pin_replies(admin) == [] and reactions(admin, request) == []


def test_a_bare_comment_on_a_same_repository_pr_deploys_its_head(
    admin: httpx.Client, api: RestGitHub
) -> None:
    request = setup_pr(admin, "mona", "write", "/hpcci deploy", head_repo=REPO)

    outcome = decide(api, request, log()[0])

    assert outcome.pin is not None and outcome.pin.sha == HEAD
    (answer,) = pin_replies(admin)
    assert "a pull request from this repository" in answer["body"], answer["body"]


def test_a_push_after_the_comment_does_not_change_what_a_rerun_deploys(
    admin: httpx.Client, api: RestGitHub
) -> None:
    request = setup_pr(admin, "mona", "write")
    first = decide(api, request, log()[0])
    admin.post("/_standin/pulls", json={"repo": REPO, "number": 7, "head_sha": LATER})  # a push to the PR

    again = decide(api, request, log()[0], attempt=2)  # the workflow re-run: the trigger job runs again

    assert first.pin is not None and again.pin is not None
    assert again.pin.sha == HEAD and again.pin.reused
    assert len(pin_replies(admin)) == 1


def test_a_push_between_the_comment_and_the_trigger_deploys_nothing(
    admin: httpx.Client, api: RestGitHub
) -> None:
    request = setup_pr(admin, "mona", "write")
    admin.post(
        "/_standin/pulls", json={"repo": REPO, "number": 7, "head_sha": LATER}
    )  # pushed before the job ran

    outcome = decide(api, request, log()[0])

    assert outcome.pin is None and "moved since the comment" in outcome.reasons[0]
    assert pin_replies(admin) == [] and reactions(admin, request) == []


def test_a_rerun_whose_first_attempt_wrote_no_reply_deploys_nothing(
    admin: httpx.Client, api: RestGitHub
) -> None:
    request = setup_pr(admin, "mona", "write")  # attempt 1 died before it replied

    outcome = decide(api, request, log()[0], attempt=2)

    assert (
        outcome.pin is None and "attempt 2" in outcome.reasons[0] and "nothing deploys" in outcome.reasons[0]
    )
    assert pin_replies(admin) == [] and reactions(admin, request) == []


@pytest.mark.parametrize(
    ("author", "template"),
    [
        ("eve", lambda b: b),  # a person typed the whole template
        ("other-app[bot]", lambda b: b),  # another App's bot
        (
            "github-actions[bot]",
            lambda b: f"Build log of another workflow:\n{b}",
        ),  # embedded in a longer body
        ("github-actions[bot]", lambda b: b.replace("comment=", "comment=9")),  # names another comment
    ],
)
def test_a_rerun_ignores_a_pin_that_is_not_hpccis_reply(
    admin: httpx.Client, api: RestGitHub, author: str, template: Any
) -> None:
    request = setup_pr(admin, "mona", "write")
    forged = render(Reply(comment_id=request.comment_id, pr=7, sha=LATER, user="mona"))
    admin.post(
        "/_standin/comments", json={"repo": REPO, "issue": 7, "user": author, "body": template(forged)}
    )

    outcome = decide(api, request, log()[0], attempt=2)

    assert outcome.pin is None and "attempt 2" in outcome.reasons[0]


def test_a_closed_pull_request_does_not_deploy(admin: httpx.Client, api: RestGitHub) -> None:
    request = setup_pr(admin, "mona", "admin")
    admin.post("/_standin/pulls", json={"repo": REPO, "number": 7, "head_sha": HEAD, "state": "closed"})

    outcome = decide(api, request, log()[0])

    assert outcome.pin is None and "is closed" in outcome.reasons[0]


@pytest.mark.parametrize(
    ("head_files", "unused"),
    [
        ({**CONFIG, "hpcci.yaml": "deploy:\n  clusters: [evil]\n"}, ("hpcci.yaml",)),
        ({**CONFIG, "cluster-configs/local.yaml": "name: local\nlogin: evil\n"}, ("cluster-configs",)),
        ({**CONFIG, "cluster-configs/extra/evil.yaml": "x: 1\n"}, ("cluster-configs",)),
        ({"fib.py": "print(1)\n"}, ("hpcci.yaml", "cluster-configs")),  # removed
        ({**CONFIG, "fib.py": "print(2)\n"}, ()),  # the code changes: it is what deploys
    ],
)
def test_the_reply_says_the_prs_configuration_changes_are_not_used(
    admin: httpx.Client, api: RestGitHub, head_files: dict[str, str], unused: tuple[str, ...]
) -> None:
    request = setup_pr(admin, "mona", "write", head_files=head_files)
    lg, out = log()

    outcome = decide(api, request, lg)

    assert outcome.pin is not None and outcome.pin.base_sha == BASE
    (answer,) = pin_replies(admin)
    found = parse(answer["body"])
    assert found is not None and found.unused == unused, answer["body"]
    if unused:
        assert "Not used: this pull request's changes to `" in answer["body"] and "not used" in out.getvalue()
    assert f"Configuration: as on `main` at `{BASE}`" in answer["body"]


def test_the_base_sha_is_the_base_branchs_head_when_the_job_runs(
    admin: httpx.Client, api: RestGitHub
) -> None:
    request = setup_pr(admin, "mona", "write")
    moved = "4" * 40  # main moved after the PR was opened: pulls/get's base.sha still says BASE
    admin.post("/_standin/commits", json={"repo": REPO, "sha": moved, "files": CONFIG})
    admin.post("/_standin/branches", json={"repo": REPO, "branch": "main", "sha": moved})

    outcome = decide(api, request, log()[0])

    assert outcome.pin is not None and outcome.pin.base_sha == moved


def test_the_reply_links_this_runs_check_runs(
    admin: httpx.Client, api: RestGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_RUN_ID", "4711")
    request = setup_pr(admin, "mona", "write", f"/hpcci deploy @{HEAD} local")
    decide(api, request, log()[0])
    for external_id, conclusion in (("hpcci:local@1", "failure"), ("hpcci:local@4711", "success")):
        body = {
            "name": "hpcci / local", "head_sha": HEAD, "external_id": external_id, "status": "completed",
            "conclusion": conclusion, "output": {"title": "t", "summary": "s"},
        }  # fmt: skip
        assert admin.post(f"/repos/{REPO}/check-runs", json=body).status_code == 201

    link_check_runs(api, request, ["local"], "hpcci / {cluster}", log()[0])

    found = reply_comment(api.comments(7), request.comment_id, 7, api.bot_login())
    assert found is not None, pin_replies(admin)
    assert "| local | [success](" in found[0]["body"] and "[failure]" not in found[0]["body"]
    assert found[1].runs[0].state == "success"


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


def run_main(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    api: RestGitHub,
    request: Request,
    body: str,
    attempt: str,
) -> dict[str, str]:
    """`hpcci trigger` as the action runs it: the event from GITHUB_EVENT_PATH, outputs to GITHUB_OUTPUT."""
    import argparse
    import json

    from hpcci import wiring
    from hpcci.commands import trigger

    payload = issue_comment_created(REPO, 7, request.comment_id, body, request.user)
    (tmp_path / "event.json").write_text(json.dumps(payload), encoding="utf-8")
    out = tmp_path / "output"
    out.write_text("", encoding="utf-8")
    env = {"GITHUB_EVENT_PATH": str(tmp_path / "event.json"), "GITHUB_EVENT_NAME": "issue_comment"}
    for k, v in {**env, "GITHUB_OUTPUT": str(out), "GITHUB_RUN_ATTEMPT": attempt}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(
        wiring, "github_client", lambda *_a: api
    )  # the in-process stand-in instead of $GITHUB_API_URL
    parser = argparse.ArgumentParser()
    trigger.add_arguments(parser)
    assert trigger.main(parser.parse_args(["--config", "./hpcci.yaml"]), log()[0]) == 0
    return dict(line.split("=", 1) for line in out.read_text(encoding="utf-8").splitlines())


def test_the_outputs_name_the_pin_and_the_base_sha(
    admin: httpx.Client, api: RestGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = f"/hpcci deploy @{HEAD} local"
    request = setup_pr(admin, "mona", "write", body)

    outputs = run_main(tmp_path, monkeypatch, api, request, body, "1")

    assert outputs == {"sha": HEAD, "pr": "7", "clusters": "local", "base-sha": BASE}


def test_the_outputs_are_empty_when_nothing_deploys(
    admin: httpx.Client, api: RestGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = "/hpcci deploy local"  # bare, on a fork's PR
    request = setup_pr(admin, "mona", "write", body)

    outputs = run_main(tmp_path, monkeypatch, api, request, body, "1")

    assert outputs == {"sha": "", "pr": "", "clusters": "", "base-sha": ""}


def test_a_run_attempt_that_is_no_number_is_a_usage_error(
    admin: httpx.Client, api: RestGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpcci.errors import UsageError

    request = setup_pr(admin, "mona", "write")
    with pytest.raises(UsageError, match="GITHUB_RUN_ATTEMPT is 'x'"):
        run_main(tmp_path, monkeypatch, api, request, f"/hpcci deploy @{HEAD}", "x")
