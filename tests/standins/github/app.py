"""A GitHub REST API stand-in: the check-runs / statuses / comments / app-installation subset hpcci uses, and the
maintainer-trigger subset (collaborator permission, pulls/get, get-comment, reactions, rerequest, and of the
deployments subset get-branch and get-content).

It is a stand-in, not GitHub: state lives in memory, and only the operations of github-checks-subset.json and
github-maintainers-subset.json exist. What makes it worth testing against:
- every request is validated against GitHub's own OpenAPI description (openapi-core); a request GitHub would
  refuse is refused here (422 with the validation message, 400 for unparsable JSON, 404 for unknown paths);
- every response is validated too: a response that breaks GitHub's schema is a stand-in bug and becomes a 500;
- it keeps state, so tests assert what a maintainer would see (conclusion, title, summary, annotations);
- `Authorization: Bearer|token <token>` must carry the token it was started with, or an installation token it
  issued, or (for the app endpoints) an RS256 JWT signed by a registered app key;
- an admin side under /_standin/ (not part of GitHub's API) shows the state, resets it, sets per-repo token
  permissions (a fork PR's read-only token) and injects faults (5xx, secondary rate limits, 422).

This module is the WSGI application: routing, authentication, faults and validation around each handler. The
handlers live by resource: checks.py, statuses.py (with comments), auth.py (app installations), maintainers.py
(permission, pull requests, reactions, rerequest), contents.py (files at a commit, branches), admin.py.
Only werkzeug, openapi-core and cryptography are needed: it runs in its own small venv (scripts/stack/github.sh).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import admin, auth, checks, contents, maintainers, statuses
from .faults import fault_response, take_fault
from .replies import JSON, GitHubError
from .spec import Validator, load_spec
from .state import State

Handler = Callable[..., Response]  # (state, request, *, who, **path parameters) -> Response

API: dict[str, Handler] = {
    "create_token": auth.create_token,
    "get_installation": auth.get_installation,
    "create_check_run": checks.create_check_run,
    "get_check_run": checks.get_check_run,
    "update_check_run": checks.update_check_run,
    "list_annotations": checks.list_annotations,
    "list_check_runs": checks.list_check_runs,
    "list_statuses": statuses.list_statuses,
    "combined_status": statuses.combined_status,
    "create_status": statuses.create_status,
    "list_comments": statuses.list_comments,
    "create_comment": statuses.create_comment,
    "update_comment": statuses.update_comment,
    "get_comment": maintainers.get_comment,
    "create_reaction": maintainers.create_reaction,
    "get_permission": maintainers.get_permission,
    "get_pull": maintainers.get_pull,
    "rerequest_run": maintainers.rerequest_run,
    "get_branch": contents.get_branch,
    "get_content": contents.get_content,
}
ADMIN: dict[str, Callable[[State, Request], Response]] = {
    "admin_health": admin.admin_health,
    "admin_state": admin.admin_state,
    "admin_reset": admin.admin_reset,
    "admin_faults": admin.admin_faults,
    "admin_permissions": admin.admin_permissions,
    "admin_apps": admin.admin_apps,
    "admin_collaborators": admin.admin_collaborators,
    "admin_pulls": admin.admin_pulls,
    "admin_comments": admin.admin_comments,
    "admin_commits": admin.admin_commits,
    "admin_branches": admin.admin_branches,
}
APP_ENDPOINTS = ("create_token", "get_installation")  # authenticated by an app's JWT

API_RULES = [
    Rule("/app/installations/<int:installation_id>/access_tokens", methods=["POST"], endpoint="create_token"),
    Rule("/repos/<owner>/<repo>/installation", methods=["GET"], endpoint="get_installation"),
    Rule("/repos/<owner>/<repo>/check-runs", methods=["POST"], endpoint="create_check_run"),
    Rule("/repos/<owner>/<repo>/check-runs/<int:run_id>", methods=["GET"], endpoint="get_check_run"),
    Rule("/repos/<owner>/<repo>/check-runs/<int:run_id>", methods=["PATCH"], endpoint="update_check_run"),
    Rule(
        "/repos/<owner>/<repo>/check-runs/<int:run_id>/annotations",
        methods=["GET"],
        endpoint="list_annotations",
    ),
    Rule("/repos/<owner>/<repo>/commits/<path:ref>/check-runs", methods=["GET"], endpoint="list_check_runs"),
    Rule("/repos/<owner>/<repo>/commits/<path:ref>/statuses", methods=["GET"], endpoint="list_statuses"),
    Rule("/repos/<owner>/<repo>/commits/<path:ref>/status", methods=["GET"], endpoint="combined_status"),
    Rule("/repos/<owner>/<repo>/statuses/<sha>", methods=["POST"], endpoint="create_status"),
    Rule("/repos/<owner>/<repo>/issues/<int:number>/comments", methods=["GET"], endpoint="list_comments"),
    Rule("/repos/<owner>/<repo>/issues/<int:number>/comments", methods=["POST"], endpoint="create_comment"),
    Rule(
        "/repos/<owner>/<repo>/issues/comments/<int:comment_id>", methods=["PATCH"], endpoint="update_comment"
    ),
    Rule("/repos/<owner>/<repo>/issues/comments/<int:comment_id>", methods=["GET"], endpoint="get_comment"),
    Rule(
        "/repos/<owner>/<repo>/issues/comments/<int:comment_id>/reactions",
        methods=["POST"],
        endpoint="create_reaction",
    ),
    Rule(
        "/repos/<owner>/<repo>/collaborators/<username>/permission",
        methods=["GET"],
        endpoint="get_permission",
    ),
    Rule("/repos/<owner>/<repo>/pulls/<int:pull_number>", methods=["GET"], endpoint="get_pull"),
    Rule(
        "/repos/<owner>/<repo>/check-runs/<int:run_id>/rerequest", methods=["POST"], endpoint="rerequest_run"
    ),
    Rule("/repos/<owner>/<repo>/branches/<path:branch>", methods=["GET"], endpoint="get_branch"),
    Rule("/repos/<owner>/<repo>/contents/", methods=["GET"], endpoint="get_content", defaults={"path": ""}),
    Rule("/repos/<owner>/<repo>/contents/<path:path>", methods=["GET"], endpoint="get_content"),
]
ADMIN_RULES = [
    Rule("/_standin/health", methods=["GET"], endpoint="admin_health"),
    Rule("/_standin/state", methods=["GET"], endpoint="admin_state"),
    Rule("/_standin/reset", methods=["POST"], endpoint="admin_reset"),
    Rule("/_standin/faults", methods=["POST"], endpoint="admin_faults"),
    Rule("/_standin/permissions", methods=["POST"], endpoint="admin_permissions"),
    Rule("/_standin/apps", methods=["POST"], endpoint="admin_apps"),
    Rule("/_standin/collaborators", methods=["POST"], endpoint="admin_collaborators"),
    Rule("/_standin/pulls", methods=["POST"], endpoint="admin_pulls"),
    Rule("/_standin/comments", methods=["POST"], endpoint="admin_comments"),
    Rule("/_standin/commits", methods=["POST"], endpoint="admin_commits"),
    Rule("/_standin/branches", methods=["POST"], endpoint="admin_branches"),
]
OWNER_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
REPO_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class StandIn:
    """The WSGI application."""

    def __init__(self, token: str, spec: JSON | None = None, *, validate_responses: bool = True) -> None:
        if not token:
            raise ValueError("the stand-in needs a token")
        self.token = token
        self.validator = Validator(spec or load_spec())
        self.validate_responses = validate_responses
        self.state = State()
        self.url_map = Map([r.empty() for r in API_RULES + ADMIN_RULES], strict_slashes=False)  # one per app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, params = adapter.match()
        except HTTPException as e:
            status = e.code or 404
            return GitHubError(status, "Not Found" if status == 404 else (e.name or "Error")).response()
        if endpoint in ADMIN:
            try:
                if endpoint != "admin_health":
                    auth.authenticate(self.state, self.token, request)
                return ADMIN[endpoint](self.state, request)
            except GitHubError as e:
                return e.response()
        response = self.api(request, endpoint, dict(params))
        entry: JSON = {"method": request.method, "path": request.path, "status": response.status_code}
        if endpoint in ("create_check_run", "update_check_run"):
            entry["annotations"] = checks.annotation_count(request)
        self.state.log_request(entry)
        return response

    def api(self, request: Request, endpoint: str, params: dict[str, Any]) -> Response:
        try:
            who = auth.authenticate(self.state, self.token, request, app_endpoint=endpoint in APP_ENDPOINTS)
            fault = take_fault(self.state, request)
            if fault is not None and fault.get("delay"):
                time.sleep(fault["delay"])
            if fault is not None and not fault.get("apply"):
                return fault_response(fault)
            as_validated = one_segment(request, params) if endpoint == "get_content" else request
            self.check_request(as_validated)
            check_names(params)
            response = API[endpoint](self.state, request, who=who, **params)
            if self.validate_responses:
                errors = self.validator.response_errors(as_validated, response)
                if errors:
                    return GitHubError(
                        500, "stand-in bug: response breaks GitHub's schema: " + " | ".join(errors)
                    ).response()
            if fault is not None and fault["status"] != 200:  # applied, but the client sees an error
                return fault_response(fault)
            return response
        except GitHubError as e:
            return e.response()

    def check_request(self, request: Request) -> None:
        if request.method in ("POST", "PATCH", "PUT") and request.get_data():
            try:
                json.loads(request.get_data())
            except ValueError as e:
                raise GitHubError(400, f"Problems parsing JSON: {e}") from e
        errors = self.validator.request_errors(request)
        if errors:
            raise GitHubError(
                422,
                "Invalid request. " + " | ".join(errors),
                errors=[{"resource": "Request", "code": "invalid", "message": m} for m in errors],
            )


def one_segment(request: Request, params: dict[str, Any]) -> Request:
    """repos/get-content's `{path}` spans segments (GitHub's `x-multi-segment`), which openapi-core's path matching
    does not know: the request is validated with the slashes of that parameter encoded."""
    folded = params["path"].replace("/", "%2F")
    prefix = request.path[: len(request.path) - len(params["path"])]
    return Request({**request.environ, "PATH_INFO": prefix + folded})


def check_names(params: dict[str, Any]) -> None:
    """GitHub answers 404 for owner/repo names it cannot have, and 422 for a sha that names no commit."""
    if "owner" in params and not OWNER_RE.match(params["owner"]):
        raise GitHubError(404, "Not Found")
    if "repo" in params and not REPO_RE.match(params["repo"]):
        raise GitHubError(404, "Not Found")
    if "sha" in params and not checks.SHA_RE.match(params["sha"]):
        raise GitHubError(422, f"No commit found for SHA: {params['sha']}")


def make_app(token: str, **kw: Any) -> StandIn:
    return StandIn(token, **kw)
