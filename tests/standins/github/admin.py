"""The stand-in's own side under /_standin/ (not GitHub's API): health, state, reset, faults, permissions, apps,
and what a maintainer-triggered deploy needs set up: collaborators, pull requests, comments by a user, the files of
a commit and the head of a branch."""

from __future__ import annotations

import json

from werkzeug.wrappers import Request, Response

from .checks import SHA_RE
from .faults import FAULTS
from .maintainers import PERMISSIONS as PERMISSION_LEVELS
from .replies import JSON, GitHubError, json_response, timestamp
from .state import WRITE_SCOPES, State
from .views import INSTALLATION_ID


def admin_health(state: State, request: Request) -> Response:
    return json_response({"ok": True, "stand_in": "github"})


def admin_state(state: State, request: Request) -> Response:
    """Everything; with ?repo=owner/name only that repository's runs, statuses, comments and requests."""
    snap = state.snapshot()
    repo = request.args.get("repo")
    if repo:
        for key in ("check_runs", "statuses", "comments"):
            snap[key] = [x for x in snap[key] if x["repo"] == repo]
        snap["requests"] = [r for r in snap["requests"] if r["path"].startswith(f"/repos/{repo}/")]
    return json_response(snap)


def admin_reset(state: State, request: Request) -> Response:
    state.reset()
    return json_response({"ok": True})


def admin_faults(state: State, request: Request) -> Response:
    """{"method": "PATCH", "path": "/repos/*/check-runs/*", "status": 502, "count": 2, "retry_after": 1,
    "apply": false, "after": 0, "delay": 0}: after `after` matching requests pass, the next `count` get
    `status`; with apply, the request takes effect first (a response lost on the way back); with delay, the
    answer comes that many seconds late (status 200: the normal answer, late)."""
    body = _admin_body(request)
    status = int(body.get("status", 500))
    if status not in FAULTS and not (status == 200 and body.get("delay")):
        raise GitHubError(422, f"status must be one of {sorted(FAULTS)} (or 200 with a delay)")
    fault = {
        "method": str(body.get("method", "*")).upper(), "path": str(body.get("path", "*")), "status": status,
        "remaining": int(body.get("count", 1)), "retry_after": body.get("retry_after"),
        "skip": int(body.get("after", 0)),
        "apply": bool(body.get("apply", False)) or status == 200,
        "delay": min(float(body.get("delay", 0)), 120.0),
    }  # fmt: skip
    with state.lock:
        state.faults.append(fault)
    return json_response(fault, 201)


def admin_permissions(state: State, request: Request) -> Response:
    """{"repo": "octo-org/fibonacci", "checks": "read", "statuses": "write", "issues": "read"}; or
    {"repo": ..., "read_only": true} for a fork PR's token."""
    body = _admin_body(request)
    repo = str(body.get("repo", ""))
    if repo.count("/") != 1:
        raise GitHubError(422, "repo must be owner/name")
    perms = (
        {s: "read" for s in WRITE_SCOPES}
        if body.get("read_only")
        else {s: str(body[s]) for s in WRITE_SCOPES if s in body}
    )
    with state.lock:
        state.permissions[repo] = perms
    return json_response({"repo": repo, "permissions": perms})


def admin_apps(state: State, request: Request) -> Response:
    """{"app_id": "123", "public_key": PEM}: the app whose JWTs the stand-in accepts."""
    body = _admin_body(request)
    app_id, pem = str(body.get("app_id", "")), str(body.get("public_key", ""))
    if not app_id or "PUBLIC KEY" not in pem:
        raise GitHubError(422, "app_id and a PEM public_key are required")
    with state.lock:
        state.apps[app_id] = {"public_key": pem}
    return json_response({"app_id": app_id, "installation_id": INSTALLATION_ID}, 201)


def admin_collaborators(state: State, request: Request) -> Response:
    """{"repo": "octo-org/fibonacci", "user": "mona", "permission": "write"}: what
    collaborators/{user}/permission answers (admin, maintain, write, triage, read, none)."""
    body = _admin_body(request)
    repo, login, level = _repo(body), str(body.get("user", "")), str(body.get("permission", ""))
    if not login or level not in PERMISSION_LEVELS:
        raise GitHubError(422, f"user and a permission in {list(PERMISSION_LEVELS)} are required")
    with state.lock:
        state.collaborators.setdefault(repo, {})[login.lower()] = level
    return json_response({"repo": repo, "user": login, "permission": level}, 201)


def admin_pulls(state: State, request: Request) -> Response:
    """{"repo": ..., "number": 7, "head_sha": SHA, "head_ref": "feature", "head_repo": "someone/fork",
    "base_sha": SHA}: create or move a pull request (a push to its branch moves head_sha)."""
    body = _admin_body(request)
    repo, number = _repo(body), int(body.get("number", 0))
    if number < 1 or not SHA_RE.match(str(body.get("head_sha", ""))):
        raise GitHubError(422, "number and a 40-hex head_sha are required")
    keys = ("head_sha", "head_ref", "head_repo", "base_sha", "base_ref", "title", "state")
    with state.lock:
        pr = state.pulls.setdefault(repo, {}).setdefault(number, {"number": number})
        pr.update({k: str(body[k]) for k in keys if k in body}, updated_at=timestamp())
        return json_response(dict(pr), 201)


def admin_comments(state: State, request: Request) -> Response:
    """{"repo": ..., "issue": 7, "user": "mona", "body": "/hpcci deploy"}: a comment someone made (the API's
    create-comment always writes as the token's bot)."""
    body = _admin_body(request)
    repo, issue, login = _repo(body), int(body.get("issue", 0)), str(body.get("user", ""))
    if issue < 1 or not login:
        raise GitHubError(422, "issue and user are required")
    now, cid = timestamp(), state.next_id()
    c: JSON = {"id": cid, "repo": repo, "issue_number": issue, "body": str(body.get("body", "")),
         "user": login, "author_association": str(body.get("author_association", "NONE")),
         "created_at": now, "updated_at": now}  # fmt: skip
    with state.lock:
        state.comments[cid] = c
    return json_response(c, 201)


def admin_commits(state: State, request: Request) -> Response:
    """{"repo": ..., "sha": SHA, "files": {"hpcci.yaml": "text", ...}}: the files of a commit (what
    repos/get-content answers at that ref)."""
    body = _admin_body(request)
    repo, sha, files = _repo(body), str(body.get("sha", "")), body.get("files")
    if (
        not SHA_RE.match(sha)
        or not isinstance(files, dict)
        or not all(isinstance(v, str) for v in files.values())
    ):
        raise GitHubError(422, "a 40-hex sha and files (path -> text) are required")
    with state.lock:
        state.trees.setdefault(repo, {})[sha] = {str(k).strip("/"): v.encode() for k, v in files.items()}
    return json_response({"repo": repo, "sha": sha, "files": len(files)}, 201)


def admin_branches(state: State, request: Request) -> Response:
    """{"repo": ..., "branch": "main", "sha": SHA}: where a branch points (a push to it moves sha)."""
    body = _admin_body(request)
    repo, branch, sha = _repo(body), str(body.get("branch", "")), str(body.get("sha", ""))
    if not branch or not SHA_RE.match(sha):
        raise GitHubError(422, "a branch and a 40-hex sha are required")
    with state.lock:
        state.branches.setdefault(repo, {})[branch] = sha
    return json_response({"repo": repo, "branch": branch, "sha": sha}, 201)


def _repo(body: JSON) -> str:
    repo = str(body.get("repo", ""))
    if repo.count("/") != 1:
        raise GitHubError(422, "repo must be owner/name")
    return repo


def _admin_body(request: Request) -> JSON:
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError as e:
        raise GitHubError(400, f"Problems parsing JSON: {e}") from e
    if not isinstance(body, dict):
        raise GitHubError(400, "expected a JSON object")
    return body
