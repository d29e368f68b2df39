"""What a maintainer-triggered deploy asks GitHub: a collaborator's permission, a pull request's head, one comment,
a reaction to it, and a check run's re-run request (checks/rerequest-run)."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from .checks import find_run
from .replies import JSON, GitHubError, json_response, timestamp
from .spec import example
from .state import State
from .views import base, comment_view, find_comment, repository, user

PERMISSIONS = ("admin", "maintain", "write", "triage", "read", "none")
# GitHub's role_name for each permission level (the finer role; custom roles are not modelled).
ROLES = {"admin": "admin", "maintain": "maintain", "write": "write", "triage": "triage", "read": "read"}


def get_permission(
    state: State, request: Request, *, who: JSON, owner: str, repo: str, username: str
) -> Response:
    """A user the stand-in was told nothing about is no collaborator: GitHub answers 404 for a non-user and
    `none` for a user without access; the stand-in answers `none` (the trigger treats both as "not trusted")."""
    with state.lock:
        level = state.collaborators.get(f"{owner}/{repo}", {}).get(username.lower(), "none")
    collaborator = {**user(request, username, 5000 + len(username)), "type": "User", "role_name": level}
    body = {"permission": level, "role_name": ROLES.get(level, "none"), "user": collaborator}
    return json_response(body)


def get_pull(
    state: State, request: Request, *, who: JSON, owner: str, repo: str, pull_number: int
) -> Response:
    with state.lock:
        pr = state.pulls.get(f"{owner}/{repo}", {}).get(pull_number)
    if pr is None:
        raise GitHubError(404, "Not Found")
    return json_response(pull_view(request, owner, repo, pr))


def pull_view(request: Request, owner: str, repo: str, pr: JSON) -> JSON:
    """GitHub's pull-request example with this PR's number, head and base (head.repo: a fork when it differs)."""
    view = example("pull-request")
    b = base(request)
    n = pr["number"]
    u = f"{b}/repos/{owner}/{repo}"
    view.update(
        number=n, id=100000 + n, state=pr.get("state", "open"), title=pr.get("title", f"PR {n}"),
        url=f"{u}/pulls/{n}", html_url=f"{b}/{owner}/{repo}/pull/{n}", issue_url=f"{u}/issues/{n}",
        comments_url=f"{u}/issues/{n}/comments", commits_url=f"{u}/pulls/{n}/commits",
        review_comments_url=f"{u}/pulls/{n}/comments", statuses_url=f"{u}/statuses/{pr['head_sha']}",
        diff_url=f"{b}/{owner}/{repo}/pull/{n}.diff", patch_url=f"{b}/{owner}/{repo}/pull/{n}.patch",
        merged=False, merged_at=None, merged_by=None, closed_at=None, updated_at=pr["updated_at"],
        requested_teams=[],  # GitHub's example lists a team without the `type` its own schema requires
    )  # fmt: skip
    head_owner, _, head_name = pr.get("head_repo", f"{owner}/{repo}").partition("/")
    for side, (o, r, ref, sha) in {
        "head": (head_owner, head_name, pr.get("head_ref", "feature"), pr["head_sha"]),
        "base": (owner, repo, pr.get("base_ref", "main"), pr.get("base_sha", pr["head_sha"])),
    }.items():
        view[side].update(label=f"{o}:{ref}", ref=ref, sha=sha, user=user(request, o, 9000))
        view[side]["repo"].update(
            {k: v for k, v in repository(request, o, r).items() if k in view[side]["repo"]}, fork=o != owner
        )
    return view


def get_comment(
    state: State, request: Request, *, who: JSON, owner: str, repo: str, comment_id: int
) -> Response:
    with state.lock:
        return json_response(comment_view(request, find_comment(state, owner, repo, comment_id)))


def create_reaction(
    state: State, request: Request, *, who: JSON, owner: str, repo: str, comment_id: int
) -> Response:
    """GitHub answers 200 with the existing reaction when the same user reacts the same way again."""
    state.require(owner, repo, "issues")
    content = request.get_json()["content"]
    with state.lock:
        comment = find_comment(state, owner, repo, comment_id)
        reactions = comment.setdefault("reactions", [])
        for r in reactions:
            if r["content"] == content:
                return json_response(reaction_view(request, r))
        r = {"id": state.next_id(), "content": content, "created_at": timestamp()}
        reactions.append(r)
        return json_response(reaction_view(request, r), 201)


def reaction_view(request: Request, r: JSON) -> JSON:
    return {"id": r["id"], "node_id": f"REA_standin{r['id']}", "user": user(request), **r}


def rerequest_run(
    state: State, request: Request, *, who: JSON, owner: str, repo: str, run_id: int
) -> Response:
    """GitHub sends the check_run `rerequested` webhook to the app that created the run; the stand-in only records
    the request (a run created with the Actions token belongs to GitHub Actions, which re-runs the workflow)."""
    state.require(owner, repo, "checks")
    with state.lock:
        run = find_run(state, owner, repo, run_id)
        if run["status"] != "completed":
            raise GitHubError(422, "This check run is not rerequestable")
        run.setdefault("rerequested", 0)
        run["rerequested"] += 1
    return json_response({}, 201)
