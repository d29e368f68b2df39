"""The GitHub stand-in's maintainer-trigger operations (tests/standins/github/maintainers.py), served in-process:
the spec files are the ones SOURCE.md names, and requests GitHub would refuse are refused."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from standins.github.app import make_app

STANDIN = Path(__file__).resolve().parents[1] / "standins" / "github"
REPO = "octo-org/fibonacci"


@pytest.fixture(scope="module")
def gh() -> Iterator[httpx.Client]:
    with httpx.Client(
        transport=httpx.WSGITransport(app=make_app("t")),
        base_url="http://github.test",
        headers={"Authorization": "Bearer t"},
    ) as c:
        yield c


@pytest.mark.parametrize(
    "name",
    ["github-maintainers-subset.json", "github-webhooks-subset.json", "github-deployments-subset.json"],
)
def test_the_spec_files_are_the_ones_source_md_names(name: str) -> None:
    digest = hashlib.sha256((STANDIN / name).read_bytes()).hexdigest()
    assert digest in (STANDIN / "SOURCE.md").read_text(encoding="utf-8")


def test_a_user_nobody_added_has_no_permission(gh: httpx.Client) -> None:
    r = gh.get(f"/repos/{REPO}/collaborators/stranger/permission")
    assert r.status_code == 200 and r.json()["permission"] == "none"


def test_a_reaction_github_does_not_have_is_refused_by_the_schema(gh: httpx.Client) -> None:
    c = gh.post("/_standin/comments", json={"repo": REPO, "issue": 3, "user": "mona", "body": "hi"}).json()
    r = gh.post(f"/repos/{REPO}/issues/comments/{c['id']}/reactions", json={"content": "party"})
    assert r.status_code == 422 and "is not one of" in r.json()["message"]
    assert (
        gh.post(f"/repos/{REPO}/issues/comments/999999/reactions", json={"content": "eyes"}).status_code
        == 404
    )


def test_pull_requests_answer_githubs_schema_and_move_on_push(gh: httpx.Client) -> None:
    pr = {"repo": REPO, "number": 11, "head_sha": "a" * 40, "head_repo": "someone/fibonacci"}
    gh.post("/_standin/pulls", json=pr).raise_for_status()
    first = gh.get(f"/repos/{REPO}/pulls/11").json()  # a response that broke the schema would be a 500
    gh.post("/_standin/pulls", json={**pr, "head_sha": "b" * 40}).raise_for_status()
    assert first["head"]["repo"]["full_name"] == "someone/fibonacci" and first["head"]["repo"]["fork"]
    assert gh.get(f"/repos/{REPO}/pulls/11").json()["head"]["sha"] == "b" * 40
    assert gh.get(f"/repos/{REPO}/pulls/12").status_code == 404


def test_only_a_completed_check_run_can_be_rerequested(gh: httpx.Client) -> None:
    body = {"name": "hpcci / local", "head_sha": "c" * 40, "status": "in_progress"}
    run = gh.post(f"/repos/{REPO}/check-runs", json=body).json()
    assert gh.post(f"/repos/{REPO}/check-runs/{run['id']}/rerequest").status_code == 422
    done = {"conclusion": "failure", "output": {"title": "t", "summary": "s"}}
    gh.patch(f"/repos/{REPO}/check-runs/{run['id']}", json=done).raise_for_status()
    assert gh.post(f"/repos/{REPO}/check-runs/{run['id']}/rerequest").status_code == 201


def test_files_at_a_commit_have_gits_object_ids(gh: httpx.Client) -> None:
    # The ids git gives these files (`git ls-tree` of a repository holding them): a, b, and the tree over both.
    files = {"hpcci.yaml": "x: 1\n", "cluster-configs/local.yaml": "a\n", "cluster-configs/sub/x.yaml": "b"}
    gh.post("/_standin/commits", json={"repo": REPO, "sha": "d" * 40, "files": files}).raise_for_status()
    gh.post("/_standin/branches", json={"repo": REPO, "branch": "main", "sha": "d" * 40}).raise_for_status()

    listing = gh.get(f"/repos/{REPO}/contents/cluster-configs", params={"ref": "main"}).json()
    one = gh.get(f"/repos/{REPO}/contents/cluster-configs/local.yaml", params={"ref": "d" * 40}).json()

    assert [(e["name"], e["type"], e["sha"]) for e in listing] == [
        ("local.yaml", "file", "78981922613b2afb6025042ff6bd878ac1994e85"),
        ("sub", "dir", "92be766f76465435423c29fb1f75e0d41554a30d"),
    ]
    assert (one["sha"], one["encoding"], one["content"]) == (listing[0]["sha"], "base64", "YQo=")
    assert gh.get(f"/repos/{REPO}/contents/nothing.yaml", params={"ref": "d" * 40}).status_code == 404
    assert gh.get(f"/repos/{REPO}/contents/hpcci.yaml", params={"ref": "e" * 40}).status_code == 404


def test_a_branch_answers_its_head_and_moves_on_push(gh: httpx.Client) -> None:
    gh.post("/_standin/branches", json={"repo": REPO, "branch": "dev", "sha": "e" * 40}).raise_for_status()
    first = gh.get(f"/repos/{REPO}/branches/dev").json()  # a response that broke the schema would be a 500
    gh.post("/_standin/branches", json={"repo": REPO, "branch": "dev", "sha": "f" * 40}).raise_for_status()
    assert (first["name"], first["commit"]["sha"]) == ("dev", "e" * 40)
    assert gh.get(f"/repos/{REPO}/branches/dev").json()["commit"]["sha"] == "f" * 40
    assert gh.get(f"/repos/{REPO}/branches/nowhere").status_code == 404
