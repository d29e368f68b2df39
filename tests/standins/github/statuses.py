"""Commit statuses (create, list, combined state for a ref) and issue comments (list, create, update in place)."""

from __future__ import annotations

from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from .replies import JSON, json_response, timestamp
from .state import State
from .views import APP_SLUG, base, comment_view, find_comment, paginate, repository, status_view


def create_status(state: State, request: Request, *, who: JSON, owner: str, repo: str, sha: str) -> Response:
    state.require(owner, repo, "statuses")
    body = request.get_json()
    now = timestamp()
    st = {
        "id": state.next_id(), "repo": f"{owner}/{repo}", "sha": sha, "state": body["state"],
        "description": body.get("description"), "target_url": body.get("target_url"),
        "context": body.get("context", "default"), "created_at": now, "updated_at": now,
    }  # fmt: skip
    with state.lock:
        state.statuses.append(st)
    return json_response(status_view(request, st), 201)


def statuses_for(state: State, owner: str, repo: str, ref: str) -> list[JSON]:
    """The ref's statuses, newest first."""
    with state.lock:
        return [s for s in reversed(state.statuses) if s["repo"] == f"{owner}/{repo}" and s["sha"] == ref]


def list_statuses(state: State, request: Request, *, who: JSON, owner: str, repo: str, ref: str) -> Response:
    views = [status_view(request, s) for s in statuses_for(state, owner, repo, ref)]
    chunk, headers = paginate(request, views)
    return json_response(chunk, 200, headers)


def combined_status(
    state: State, request: Request, *, who: JSON, owner: str, repo: str, ref: str
) -> Response:
    latest: dict[str, JSON] = {}
    for s in statuses_for(state, owner, repo, ref):
        latest.setdefault(s["context"].lower(), s)
    states = {s["state"] for s in latest.values()}
    combined = (
        "failure"
        if states & {"error", "failure"}
        else "pending"
        if not states or "pending" in states
        else "success"
    )
    b = base(request)
    views = [
        {k: v for k, v in status_view(request, s).items() if k != "creator"} | {"required": None}
        for s in latest.values()
    ]
    chunk, headers = paginate(request, views)
    body = {
        "state": combined, "statuses": chunk, "sha": ref, "total_count": len(views),
        "repository": repository(request, owner, repo),
        "commit_url": f"{b}/repos/{owner}/{repo}/commits/{quote(ref, safe='')}",
        "url": f"{b}/repos/{owner}/{repo}/commits/{quote(ref, safe='')}/status",
    }  # fmt: skip
    return json_response(body, 200, headers)


def list_comments(
    state: State, request: Request, *, who: JSON, owner: str, repo: str, number: int
) -> Response:
    since = request.args.get("since")
    with state.lock:
        items = [
            comment_view(request, c)
            for c in state.comments.values()
            if c["repo"] == f"{owner}/{repo}"
            and c["issue_number"] == number
            and (since is None or c["updated_at"] >= since)
        ]
    chunk, headers = paginate(request, items)
    return json_response(chunk, 200, headers)


def create_comment(
    state: State, request: Request, *, who: JSON, owner: str, repo: str, number: int
) -> Response:
    state.require(owner, repo, "issues")
    body = request.get_json()
    now = timestamp()
    c = {"id": state.next_id(), "repo": f"{owner}/{repo}", "issue_number": number, "body": body["body"],
         "created_at": now, "updated_at": now}  # fmt: skip
    if (
        who["kind"] == "installation"
    ):  # an App writes as its bot user, a workflow token as github-actions[bot]
        c["bot"] = f"{APP_SLUG}[bot]"
    with state.lock:
        state.comments[c["id"]] = c
    return json_response(comment_view(request, c), 201)


def update_comment(
    state: State, request: Request, *, who: JSON, owner: str, repo: str, comment_id: int
) -> Response:
    state.require(owner, repo, "issues")
    body = request.get_json()
    with state.lock:
        c = find_comment(state, owner, repo, comment_id)
        c["body"] = body["body"]
        c["updated_at"] = timestamp()
        return json_response(comment_view(request, c))
