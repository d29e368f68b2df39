"""Maintainers in control from the pull request, run by act against the local stack:

- a `/hpcci deploy @<40 hex> local` comment by a user with write permission (examples/fibonacci/.github/workflows/
  hpcci-comment.yml, a real issue_comment.created payload) builds, publishes and deploys exactly that commit of a
  fork's pull request, reacts to the comment and lists the check run in a reply, which also says that the fork's
  change to hpcci.yaml is not used; after a push to the PR, a Re-run keeps that commit;
- on a fork's pull request, `@<7 hex>` and a bare `/hpcci deploy` deploy nothing (no build, no deploy, no check run);
  the reply says why and names the head's full sha and the comment to post; a push between the comment and the
  trigger job deploys nothing either;
- attempt 2 of a workflow run whose attempt 1 wrote no reply deploys nothing, whatever pin markers other people,
  other bots or other workflows wrote;
- the same comment by a user with read permission triggers nothing (no build, no deploy, no check run, no reaction,
  no reply) and the log says why;
- a workflow re-run (github.run_attempt 2, same run id) deploys again only the cluster whose check run of that
  workflow run did not succeed, and adds no check run for the one that did.

GitHub is this checkout's stand-in (tests/standins/github, with the maintainers subset), started here on a free
port, so the tests do not depend on which stand-in version the shared stack runs. Every event payload validates
against GitHub's webhook schemas (github_events).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from act_harness import REPO, ActRun, UserRepo, make_user_repo

from github_events import event, issue_comment_created, repository
from hpcci.stages.report.reply import Reply, render
from stack_env import read_env

COMMENT_WORKFLOW = ".github/workflows/hpcci-comment.yml"
STANDIN = REPO / "tests" / "standins" / "github" / "serve.py"


class GitHub:
    """This checkout's GitHub stand-in, served for the test session; its admin side sets up users and PRs."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def admin(self, what: str, **body: Any) -> dict[str, Any]:
        r = self.http.post(f"/_standin/{what}", json=body)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def state(self, repo: str) -> dict[str, Any]:
        r = self.http.get("/_standin/state", params={"repo": repo})
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def runs(self, repo: str, sha: str) -> list[dict[str, Any]]:
        return [r for r in self.state(repo)["check_runs"] if r["head_sha"] == sha]

    def comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        """The comments on pull request ``number`` (the stand-in serves every test of the module)."""
        return [c for c in self.state(repo)["comments"] if c["issue_number"] == number]


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory, stack: dict[str, str]) -> Iterator[GitHub]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token_file = tmp_path_factory.mktemp("github") / "token"
    token = f"ghs_e2e{uuid.uuid4().hex}"
    token_file.write_text(token, encoding="utf-8")
    argv = [sys.executable, str(STANDIN), "--port", str(port), "--token-file", str(token_file)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gh = GitHub(f"http://127.0.0.1:{port}", token)
    try:
        for _ in range(100):
            try:
                if gh.http.get("/_standin/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail(f"the GitHub stand-in did not start on port {port}")
        yield gh
    finally:
        gh.http.close()
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(token_file.parent, ignore_errors=True)


@pytest.fixture
def repo(github: GitHub, kit: Path, tmp_path: Path) -> UserRepo:
    """The user's repository, its workflows talking to this module's stand-in."""

    def stack() -> dict[str, str]:
        return {**read_env(check=True), "GITHUB_API_URL": github.url, "GITHUB_TOKEN": github.token}

    return make_user_repo(tmp_path / "fibonacci", stack, kit)


def open_fork_pr(repo: UserRepo, github: GitHub, *, fork_config: bool = False) -> tuple[int, str]:
    """A pull request from someone's fork into main, its head checked out (act runs the working tree); (number,
    head). The stand-in learns both commits' files and main's head (the trigger reads them through its API).
    ``fork_config``: the fork also edits hpcci.yaml."""
    base = repo.head()
    repo.git("checkout", "-q", "-b", "fast-fib")
    repo.edit("fib.py", "fib_num = int(sys.argv[1])", "fib_num = int(sys.argv[1])  # from a fork")
    if fork_config:
        repo.edit("hpcci.yaml", "# hpcci pipeline for the fibonacci example", "# a fork's hpcci pipeline")
    head = repo.commit("a contribution from a fork")
    number = 5000 + int(head[:3], 16)  # its own pr-N image tag
    for sha in (base, head):
        github.admin("commits", repo=repo.repository, sha=sha, files=repo.files_at(sha))
    github.admin("branches", repo=repo.repository, branch="main", sha=base)
    pr = {"repo": repo.repository, "number": number, "head_sha": head, "head_repo": "someone/fibonacci"}
    github.admin("pulls", **pr, head_ref="fast-fib", base_ref="main", base_sha=base)
    return number, head


def comment(repo: UserRepo, github: GitHub, number: int, user: str, body: str) -> dict[str, Any]:
    """The comment in the stand-in and GitHub's issue_comment.created payload for it."""
    made = github.admin("comments", repo=repo.repository, issue=number, user=user, body=body)
    return issue_comment_created(repo.repository, number, made["id"], body, user)


def hpcci_replies(github: GitHub, repo: UserRepo, number: int) -> list[str]:
    """What hpcci wrote on the PR (the stand-in keeps no user for the API caller's own comments)."""
    return [c["body"] for c in github.comments(repo.repository, number) if not c.get("user")]


def run_env() -> dict[str, str]:
    return {"GITHUB_RUN_ID": str(7_000_000 + uuid.uuid4().int % 1_000_000), "GITHUB_RUN_ATTEMPT": "1"}


DEPLOY_STEPS = {"Build", "Publish", "Deploy and smoke-test"}


def test_a_maintainers_full_sha_comment_deploys_exactly_that_commit(repo: UserRepo, github: GitHub) -> None:
    number, head = open_fork_pr(repo, github, fork_config=True)
    github.admin("collaborators", repo=repo.repository, user="mona", permission="write")
    payload = comment(repo, github, number, "mona", f"/hpcci deploy @{head} local")
    env = run_env()

    result = repo.act("issue_comment", payload, workflow=COMMENT_WORKFLOW, env=env)

    assert result.ok, result.tail()
    assert result.steps_run() >= DEPLOY_STEPS, result.steps_run()
    (run,) = github.runs(repo.repository, head)
    assert (run["name"], run["status"], run["conclusion"]) == ("hpcci / local", "completed", "success"), run
    assert run["external_id"] == f"hpcci:local@{env['GITHUB_RUN_ID']}"
    comments = github.comments(repo.repository, number)
    (asked,) = [c for c in comments if c["id"] == payload["comment"]["id"]]
    assert [r["content"] for r in asked.get("reactions", [])] == ["rocket"]
    (answer,) = [c for c in comments if "hpcci-trigger" in c["body"]]
    assert f"sha={head}" in answer["body"] and "| local | [success](" in answer["body"], answer["body"]
    assert "Not used: this pull request's changes to `hpcci.yaml`." in answer["body"], answer["body"]
    assert f"base-sha={repo.git('rev-parse', 'main')}" in result.output, "the trigger named no base-sha"

    # A push after the trigger job, then Re-run: attempt 2 keeps the pinned commit; the pushed one never runs.
    repo.edit("fib.py", "# from a fork", "# from a fork, pushed after the deploy")
    pushed = repo.commit("pushed after the maintainer's comment")
    github.admin("pulls", repo=repo.repository, number=number, head_sha=pushed)
    repo.git(
        "reset", "-q", "--hard", head
    )  # act runs the working tree: what a checkout of the pinned sha fetches
    again = repo.act(
        "issue_comment", payload, workflow=COMMENT_WORKFLOW, env={**env, "GITHUB_RUN_ATTEMPT": "2"}
    )

    assert again.ok, again.tail()
    assert f"keeping the pinned commit {head}" in again.output, again.tail()
    assert github.runs(repo.repository, pushed) == []
    assert github.runs(repo.repository, head) == [run], "the deploy that succeeded was touched again"


def assert_nothing_deployed(result: ActRun, github: GitHub, repo: UserRepo, *shas: str) -> None:
    assert result.ok, result.tail()
    ran = result.steps_run()
    assert not DEPLOY_STEPS & ran, ran
    for sha in shas:
        assert github.runs(repo.repository, sha) == []


@pytest.mark.parametrize("named", ["short", "bare"])
def test_a_fork_pr_deploys_only_a_full_sha_and_the_reply_says_which(
    repo: UserRepo, github: GitHub, named: str
) -> None:
    number, head = open_fork_pr(repo, github)
    github.admin("collaborators", repo=repo.repository, user="mona", permission="maintain")
    body = f"/hpcci deploy @{head[:7]} local" if named == "short" else "/hpcci deploy local"
    payload = comment(repo, github, number, "mona", body)

    result = repo.act("issue_comment", payload, workflow=COMMENT_WORKFLOW, env=run_env())

    assert_nothing_deployed(result, github, repo, head)
    why = "is 7 hex digits of a commit" if named == "short" else "comes from a fork (someone/fibonacci)"
    assert why in result.output, result.tail()
    (answer,) = hpcci_replies(github, repo, number)
    assert "nothing deploys" in answer and f"head now is `{head}`" in answer, answer
    assert f"```\n/hpcci deploy @{head} local\n```" in answer and "hpcci-trigger" not in answer, answer


def test_a_push_between_the_comment_and_the_trigger_deploys_nothing(repo: UserRepo, github: GitHub) -> None:
    number, head = open_fork_pr(repo, github)
    github.admin("collaborators", repo=repo.repository, user="mona", permission="write")
    payload = comment(repo, github, number, "mona", f"/hpcci deploy @{head}")
    repo.edit("fib.py", "# from a fork", "# from a fork, pushed after the review")
    pushed = repo.commit("pushed after the maintainer's comment")
    github.admin("pulls", repo=repo.repository, number=number, head_sha=pushed)

    result = repo.act("issue_comment", payload, workflow=COMMENT_WORKFLOW, env=run_env())

    assert_nothing_deployed(result, github, repo, head, pushed)
    assert "moved since the comment" in result.output, result.tail()


def test_a_rerun_whose_first_attempt_wrote_no_reply_deploys_nothing(repo: UserRepo, github: GitHub) -> None:
    number, head = open_fork_pr(repo, github)
    github.admin("collaborators", repo=repo.repository, user="mona", permission="write")
    payload = comment(repo, github, number, "mona", f"/hpcci deploy @{head} local")
    # Attempt 1 died before it replied. Others wrote the marker: a person, another App's bot, and another
    # workflow of the repository (github-actions[bot] too) inside a longer comment.
    forged = render(
        Reply(comment_id=payload["comment"]["id"], pr=number, sha=head, user="mona", clusters=("local",))
    )
    for user, text in (
        ("eve", forged),
        ("other-app[bot]", forged),
        ("github-actions[bot]", f"CI log:\n{forged}"),
    ):
        github.admin("comments", repo=repo.repository, issue=number, user=user, body=text)

    result = repo.act(
        "issue_comment", payload, workflow=COMMENT_WORKFLOW, env={**run_env(), "GITHUB_RUN_ATTEMPT": "2"}
    )

    assert_nothing_deployed(result, github, repo, head)
    assert "this is attempt 2 of the workflow run and no reply of hpcci's pins a commit" in result.output


def test_anyone_elses_comment_triggers_nothing(repo: UserRepo, github: GitHub) -> None:
    number, head = open_fork_pr(repo, github)
    github.admin("collaborators", repo=repo.repository, user="eve", permission="read")
    payload = comment(repo, github, number, "eve", "/hpcci deploy")

    result = repo.act("issue_comment", payload, workflow=COMMENT_WORKFLOW, env=run_env())

    assert result.ok, result.tail()
    assert "@eve has 'read' permission" in result.output and "nothing deploys" in result.output
    ran = result.steps_run()
    assert not {"Build", "Publish", "Deploy and smoke-test"} & ran, ran
    assert github.runs(repo.repository, head) == []
    comments = github.comments(repo.repository, number)
    assert len(comments) == 1, comments
    assert [c for c in comments if c.get("reactions") or "hpcci-trigger" in c["body"]] == []


def test_a_rerun_deploys_again_only_the_cluster_that_did_not_succeed(repo: UserRepo, github: GitHub) -> None:
    # Two clusters: the second is the local one again, but its SSH key is found only where the runner says
    # (HPCCI_COPY_SSH): attempt 1 runs on a runner without it, and fails there; the maintainer presses Re-run.
    configs = repo.path / "cluster-configs"
    local = (configs / "local.yaml").read_text(encoding="utf-8")
    copy_config = local.replace("name: local\n", "name: local-copy\n", 1).replace(
        '{file: "${HPCCI_STACK_DIR}/cluster/ssh/id_ed25519"}', '{file: "${HPCCI_COPY_SSH}/id_ed25519"}', 1
    )
    assert "HPCCI_COPY_SSH" in copy_config
    (configs / "local-copy.yaml").write_text(copy_config, encoding="utf-8")
    repo.edit("hpcci.yaml", "clusters: [local]", "clusters: [local, local-copy]")
    repo.edit(
        "hpcci.yaml", "triggers: [tag, workflow_dispatch]", "triggers: [tag, workflow_dispatch, pull_request]"
    )
    base = repo.commit("deploy pull requests to two clusters")
    repo.git("checkout", "-q", "-b", "feature")
    head = repo.commit("a change")
    payload = pull_request_synchronize(repo, 7, head, base)
    env = run_env()

    first = repo.act("pull_request", payload, env=env)
    after_first = {r["id"]: r for r in github.runs(repo.repository, head)}
    key_dir = str(Path(repo.stack["HPCCI_STACK_DIR"]) / "cluster" / "ssh")
    again = repo.act(
        "pull_request", payload, env={**env, "GITHUB_RUN_ATTEMPT": "2", "HPCCI_COPY_SSH": key_dir}
    )

    assert not first.ok, "attempt 1 passed although local-copy's key was missing"
    conclusions = {r["name"]: r["conclusion"] for r in after_first.values()}
    assert conclusions == {"hpcci / local": "success", "hpcci / local-copy": "failure"}, after_first
    assert again.ok, again.tail()
    assert "already succeeded: local (check run" in again.output, again.tail()
    runs = github.runs(repo.repository, head)
    (local_run,) = [r for r in runs if r["name"] == "hpcci / local"]
    assert local_run == after_first[local_run["id"]], "the cluster that succeeded was touched again"
    copies = sorted((r for r in runs if r["name"] == "hpcci / local-copy"), key=lambda r: r["id"])
    assert [r["conclusion"] for r in copies] == ["failure", "success"], copies


def pull_request_synchronize(repo: UserRepo, number: int, head: str, base: str) -> dict[str, Any]:
    same = repository(repo.repository)
    values = {
        "action": "synchronize",
        "number": number,
        "before": base,
        "after": head,
        "pull_request": {
            "number": number,
            "head": {"sha": head, "ref": "feature", "repo": same},
            "base": {"sha": base, "ref": "main", "repo": same},
        },
        "repository": same,
    }
    return event("webhook-pull-request-synchronize", values)
