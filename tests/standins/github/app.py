"""A GitHub REST API stand-in: the check-runs / statuses / comments / app-installation subset hpcci uses.

It is a stand-in, not GitHub: state lives in memory, and only the 13 operations of github-checks-subset.json
exist. What makes it worth testing against:
- every request is validated against GitHub's own OpenAPI description (openapi-core); a request GitHub would
  refuse is refused here (422 with the validation message, 400 for unparsable JSON, 404 for unknown paths);
- every response is validated too: a response that breaks GitHub's schema is a stand-in bug and becomes a 500;
- it keeps state, so tests assert what a maintainer would see (conclusion, title, summary, annotations);
- `Authorization: Bearer|token <token>` must carry the token it was started with, or an installation token it
  issued, or (for the app endpoints) an RS256 JWT signed by a registered app key;
- an admin side under /_standin/ (not part of GitHub's API) shows the state, resets it, sets per-repo token
  permissions (a fork PR's read-only token) and injects faults (5xx, secondary rate limits, 422).

Only werkzeug, openapi-core and cryptography are needed: it runs in its own small venv (scripts/stack/github.sh).
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

SPEC_PATH = Path(__file__).with_name("github-checks-subset.json")
DOCS = "https://docs.github.com/rest"
JSON = dict[str, Any]


# -- the OpenAPI description, fixed in memory -------------------------------------------------------------------


def load_spec(path: Path = SPEC_PATH) -> JSON:
    """GitHub's description with the two changes openapi-core needs (see SOURCE.md); the file stays untouched."""
    spec: JSON = json.loads(path.read_text(encoding="utf-8"))
    _fix_schemas(spec)
    # Match requests on any host: the stand-in answers on 127.0.0.1, not api.github.com.
    spec["servers"] = [{"url": "/"}]
    return spec


def _fix_schemas(node: Any) -> None:
    if isinstance(node, dict):
        # GitHub's inline `discriminator` (checks/create) names no schema; openapi-core resolves it as a schema
        # name and then rejects every valid body. The oneOf beside it still carries the rule.
        node.pop("discriminator", None)
        # OpenAPI 3.0 `nullable: true` with an `enum`: JSON Schema still checks null against the enum.
        if node.get("nullable") is True and isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        for value in node.values():
            _fix_schemas(value)
    elif isinstance(node, list):
        for value in node:
            _fix_schemas(value)


class Validator:
    """openapi-core request/response validation against the fixed description."""

    def __init__(self, spec: JSON) -> None:
        from openapi_core import OpenAPI

        self.openapi = OpenAPI.from_dict(spec)

    def request_errors(self, request: Request) -> list[str]:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest

        result = self.openapi.unmarshal_request(WerkzeugOpenAPIRequest(request))
        return [_describe(e) for e in result.errors]

    def response_errors(self, request: Request, response: Response) -> list[str]:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
        from openapi_core.templating.responses.exceptions import ResponseNotFound

        result = self.openapi.unmarshal_response(
            WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response)
        )
        return [_describe(e) for e in result.errors if not isinstance(e, ResponseNotFound)]


def _describe(error: BaseException) -> str:
    """openapi-core nests the useful jsonschema messages in __cause__.schema_errors: keep those (short)."""
    details: list[str] = []
    cause: BaseException | None = error
    while cause is not None:
        for d in getattr(cause, "schema_errors", None) or []:
            details.append(_schema_error(d))
        cause = cause.__cause__
    head = type(error).__name__
    if details:
        return f"{head}: " + "; ".join(details)
    text = str(error)
    return text if len(text) <= 500 else text[:500] + "..."


def _schema_error(d: Any) -> str:
    """One jsonschema error as `path: what`, without echoing a huge value back."""
    where = "/".join(str(p) for p in d.absolute_path) or "(body)"
    message = str(d.message)
    if len(message) > 200:
        message = f"fails {d.validator} {json.dumps(d.validator_value, default=str)[:120]}"
    if d.context:  # oneOf / anyOf: say why each alternative failed
        message += " (" + "; ".join(str(c.message)[:200] for c in d.context[:6]) + ")"
    return f"{where}: {message}"


# -- errors -------------------------------------------------------------------------------------------------------


class GitHubError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def response(self) -> Response:
        body: JSON = {"message": self.message, "documentation_url": DOCS, "status": str(self.status)}
        if self.errors is not None:
            body["errors"] = self.errors
        return _json_response(body, self.status, self.headers)


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    r = Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8")
    for k, v in (headers or {}).items():
        r.headers[k] = v
    return r


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- state -------------------------------------------------------------------------------------------------------

WRITE_SCOPES = ("checks", "statuses", "issues")


class State:
    """Everything the stand-in remembers, behind one lock (the server is threaded)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.ids = itertools.count(1)
            self.check_runs: dict[int, JSON] = {}  # id -> stored run (with "repo" and "annotations")
            self.statuses: list[JSON] = []  # stored statuses, oldest first (with "repo" and "sha")
            self.comments: dict[int, JSON] = {}  # id -> stored comment (with "repo" and "issue_number")
            self.tokens: dict[str, JSON] = {}  # installation token -> {"expires_at", "installation_id"}
            self.apps: dict[str, JSON] = {}  # app id -> {"public_key": PEM, "installation_id"}
            self.permissions: dict[str, dict[str, str]] = {}  # "owner/repo" -> {"checks": "read", ...}
            self.faults: list[JSON] = []
            self.requests: list[JSON] = []  # method, path, status of every API request (not admin ones)

    def next_id(self) -> int:
        with self.lock:
            return next(self.ids)

    def snapshot(self) -> JSON:
        with self.lock:
            return copy.deepcopy(
                {
                    "check_runs": list(self.check_runs.values()),
                    "statuses": self.statuses,
                    "comments": list(self.comments.values()),
                    "installation_tokens": len(self.tokens),
                    "apps": sorted(self.apps),
                    "permissions": self.permissions,
                    "faults": self.faults,
                    "requests": self.requests,
                }
            )


# -- the app -----------------------------------------------------------------------------------------------------

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
]
ADMIN_RULES = [
    Rule("/_standin/health", methods=["GET"], endpoint="admin_health"),
    Rule("/_standin/state", methods=["GET"], endpoint="admin_state"),
    Rule("/_standin/reset", methods=["POST"], endpoint="admin_reset"),
    Rule("/_standin/faults", methods=["POST"], endpoint="admin_faults"),
    Rule("/_standin/permissions", methods=["POST"], endpoint="admin_permissions"),
    Rule("/_standin/apps", methods=["POST"], endpoint="admin_apps"),
]

FAULTS: dict[int, tuple[str, dict[str, str]]] = {
    500: ("Server Error", {}),
    502: ("Server Error", {}),
    503: ("Service Unavailable", {}),
    403: (
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        {"x-ratelimit-remaining": "4000"},
    ),
    429: ("You have exceeded a secondary rate limit. Please wait a few minutes before you try again.", {}),
    422: ("Validation Failed", {}),
}
INSTALLATION_ID = 4242
MAX_LOGGED_REQUESTS = 5000
OWNER_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
REPO_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
SHA_RE = re.compile(r"^[0-9a-f]{40}$")  # the stand-in knows no commits: a full sha is the best it can check


class StandIn:
    """The WSGI application."""

    def __init__(self, token: str, spec: JSON | None = None, *, validate_responses: bool = True) -> None:
        if not token:
            raise ValueError("the stand-in needs a token")
        self.token = token
        self.validator = Validator(spec or load_spec())
        self.validate_responses = validate_responses
        self.state = State()
        self.url_map = Map(API_RULES + ADMIN_RULES, strict_slashes=False)

    # -- WSGI ---------------------------------------------------------------------------------------------------
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
        if endpoint.startswith("admin_"):
            try:
                if endpoint != "admin_health":
                    self.authenticate(request)
                return getattr(self, endpoint)(request)
            except GitHubError as e:
                return e.response()
        response = self.api(request, endpoint, params)
        entry: JSON = {"method": request.method, "path": request.path, "status": response.status_code}
        if endpoint in ("create_check_run", "update_check_run"):
            entry["annotations"] = _annotation_count(request)
        with self.state.lock:
            self.state.requests.append(entry)
            del self.state.requests[:-MAX_LOGGED_REQUESTS]
        return response

    def api(self, request: Request, endpoint: str, params: dict[str, Any]) -> Response:
        try:
            who = self.authenticate(request, app_endpoint=endpoint in ("create_token", "get_installation"))
            fault = self.take_fault(request)
            if fault is not None and fault.get("delay"):
                time.sleep(fault["delay"])
            if fault is not None and not fault.get("apply"):
                return self.fault_response(fault)
            self.check_request(request)
            self.check_names(params)
            handler = getattr(self, endpoint)
            response: Response = handler(request, who=who, **params)
            if self.validate_responses:
                errors = self.validator.response_errors(request, response)
                if errors:
                    return GitHubError(
                        500, "stand-in bug: response breaks GitHub's schema: " + " | ".join(errors)
                    ).response()
            if fault is not None and fault["status"] != 200:  # applied, but the client sees an error
                return self.fault_response(fault)
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

    @staticmethod
    def check_names(params: dict[str, Any]) -> None:
        """GitHub answers 404 for owner/repo names it cannot have, and 422 for a sha that names no commit."""
        if "owner" in params and not OWNER_RE.match(params["owner"]):
            raise GitHubError(404, "Not Found")
        if "repo" in params and not REPO_RE.match(params["repo"]):
            raise GitHubError(404, "Not Found")
        if "sha" in params and not SHA_RE.match(params["sha"]):
            raise GitHubError(422, f"No commit found for SHA: {params['sha']}")

    # -- auth ---------------------------------------------------------------------------------------------------
    def authenticate(self, request: Request, *, app_endpoint: bool = False) -> JSON:
        header = request.headers.get("Authorization", "")
        m = re.match(r"^(?:[Bb]earer|token)\s+(\S+)$", header)
        if not m:
            raise GitHubError(401, "Requires authentication")
        token = m.group(1)
        if secrets.compare_digest(token, self.token):
            return {"kind": "token"}
        with self.state.lock:
            issued = self.state.tokens.get(token)
        if issued is not None:
            if issued["expires"] < time.time():
                raise GitHubError(401, "Bad credentials")
            return {"kind": "installation", **issued}
        if token.count(".") == 2:
            app_id = self.verify_jwt(token)
            if not app_endpoint:
                raise GitHubError(
                    403,
                    "A JSON web token could not be decoded"
                    if not app_id
                    else "Resource not accessible by integration",
                )
            return {"kind": "app", "app_id": app_id}
        raise GitHubError(401, "Bad credentials")

    def verify_jwt(self, token: str) -> str:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            head_b64, payload_b64, sig_b64 = token.split(".")
            header = json.loads(_b64decode(head_b64))
            payload = json.loads(_b64decode(payload_b64))
            signature = _b64decode(sig_b64)
        except ValueError as e:
            raise GitHubError(401, "A JSON web token could not be decoded") from e
        app_id = str(payload.get("iss", ""))
        with self.state.lock:
            app = self.state.apps.get(app_id)
        if header.get("alg") != "RS256" or app is None:
            raise GitHubError(401, f"Integration not found (no app {app_id!r} registered with the stand-in)")
        key = serialization.load_pem_public_key(app["public_key"].encode())
        try:
            key.verify(signature, f"{head_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
        except InvalidSignature as e:
            raise GitHubError(401, "A JSON web token could not be decoded (bad signature)") from e
        now = time.time()
        if not (
            float(payload.get("iat", now + 1)) <= now + 60 and now < float(payload.get("exp", 0)) <= now + 660
        ):
            raise GitHubError(
                401,
                "'Expiration time' claim ('exp') must be a numeric value representing the future time at which "
                "the assertion expires (at most 10 minutes after 'iat')",
            )
        return app_id

    def require(self, owner: str, repo: str, scope: str) -> None:
        """A write needs the scope's write permission on the repo (a fork PR's token is read-only)."""
        with self.state.lock:
            perms = self.state.permissions.get(f"{owner}/{repo}", {})
        if perms.get(scope, "write") != "write":
            raise GitHubError(403, "Resource not accessible by integration")

    # -- faults -------------------------------------------------------------------------------------------------
    def take_fault(self, request: Request) -> JSON | None:
        with self.state.lock:
            for fault in self.state.faults:
                if fault["method"] in ("*", request.method) and fnmatch.fnmatchcase(
                    request.path, fault["path"]
                ):
                    if fault["skip"] > 0:  # let this many matching requests through first
                        fault["skip"] -= 1
                        return None
                    fault["remaining"] -= 1
                    if fault["remaining"] <= 0:
                        self.state.faults.remove(fault)
                    return dict(fault)
        return None

    def fault_response(self, fault: JSON) -> Response:
        status = int(fault["status"])
        message, headers = FAULTS[status]
        headers = dict(headers)
        if status in (403, 429) and fault.get("retry_after") is not None:
            headers["retry-after"] = str(fault["retry_after"])
        errors = (
            [{"resource": "CheckRun", "code": "custom", "message": "injected by the stand-in"}]
            if status == 422
            else None
        )
        return GitHubError(status, message, errors=errors, headers=headers).response()

    # -- response building --------------------------------------------------------------------------------------
    @staticmethod
    def base(request: Request) -> str:
        return request.host_url.rstrip("/")

    def user(self, request: Request, login: str = "github-actions[bot]", uid: int = 41898282) -> JSON:
        b = self.base(request)
        quoted = login.replace("[", "%5B").replace("]", "%5D")  # GitHub's own URLs quote "[bot]"
        u = f"{b}/users/{quoted}"
        return {
            "login": login, "id": uid, "node_id": f"MDM6Qm90{uid}", "avatar_url": f"{b}/avatars/{uid}",
            "gravatar_id": "", "url": u, "html_url": f"{b}/{quoted}", "followers_url": f"{u}/followers",
            "following_url": f"{u}/following{{/other_user}}", "gists_url": f"{u}/gists{{/gist_id}}",
            "starred_url": f"{u}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{u}/subscriptions",
            "organizations_url": f"{u}/orgs", "repos_url": f"{u}/repos", "events_url": f"{u}/events{{/privacy}}",
            "received_events_url": f"{u}/received_events", "type": "Bot", "site_admin": False,
        }  # fmt: skip

    def app_object(self, request: Request) -> JSON:
        b = self.base(request)
        return {
            "id": 15368, "slug": "github-actions", "node_id": "MDM6QXBwMTUzNjg=", "client_id": "Iv1.standin",
            "owner": self.user(request, "github", 9919), "name": "GitHub Actions (stand-in)",
            "description": "Automate your workflow from idea to production", "external_url": f"{b}/features/actions",
            "html_url": f"{b}/apps/github-actions", "created_at": "2018-07-30T09:30:17Z",
            "updated_at": "2024-04-10T20:33:16Z", "permissions": {"checks": "write", "statuses": "write"},
            "events": ["check_run", "check_suite"],
        }  # fmt: skip

    def run_view(self, request: Request, run: JSON) -> JSON:
        b = self.base(request)
        repo = run["repo"]
        return {
            "id": run["id"], "node_id": f"CR_standin{run['id']}", "head_sha": run["head_sha"], "name": run["name"],
            "external_id": run["external_id"], "url": f"{b}/repos/{repo}/check-runs/{run['id']}",
            "html_url": f"{b}/{repo}/runs/{run['id']}", "details_url": run["details_url"],
            "status": run["status"], "conclusion": run["conclusion"], "started_at": run["started_at"],
            "completed_at": run["completed_at"],
            "output": {
                "title": run["output"].get("title"), "summary": run["output"].get("summary"),
                "text": run["output"].get("text"), "annotations_count": len(run["annotations"]),
                "annotations_url": f"{b}/repos/{repo}/check-runs/{run['id']}/annotations",
            },
            "check_suite": {"id": run["check_suite_id"]}, "app": self.app_object(request), "pull_requests": [],
        }  # fmt: skip

    def status_view(self, request: Request, st: JSON) -> JSON:
        b = self.base(request)
        return {
            "url": f"{b}/repos/{st['repo']}/statuses/{st['sha']}", "avatar_url": f"{b}/avatars/41898282",
            "id": st["id"], "node_id": f"SC_standin{st['id']}", "state": st["state"],
            "description": st["description"], "target_url": st["target_url"], "context": st["context"],
            "created_at": st["created_at"], "updated_at": st["updated_at"], "creator": self.user(request),
        }  # fmt: skip

    def comment_view(self, request: Request, c: JSON) -> JSON:
        b = self.base(request)
        repo = c["repo"]
        return {
            "id": c["id"], "node_id": f"IC_standin{c['id']}", "url": f"{b}/repos/{repo}/issues/comments/{c['id']}",
            "html_url": f"{b}/{repo}/issues/{c['issue_number']}#issuecomment-{c['id']}", "body": c["body"],
            "user": self.user(request), "created_at": c["created_at"], "updated_at": c["updated_at"],
            "issue_url": f"{b}/repos/{repo}/issues/{c['issue_number']}", "author_association": "NONE",
        }  # fmt: skip

    @staticmethod
    def paginate(request: Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        per_page = max(1, min(100, int(request.args.get("per_page", 30))))
        page = max(1, int(request.args.get("page", 1)))
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []
        if page * per_page < len(items):
            q = request.args.to_dict()
            q.update(page=str(page + 1), per_page=str(per_page))
            links.append(f'<{request.base_url}?{"&".join(f"{k}={v}" for k, v in q.items())}>; rel="next"')
        return chunk, ({"Link": ", ".join(links)} if links else {})

    # -- check runs ---------------------------------------------------------------------------------------------
    def create_check_run(self, request: Request, *, who: JSON, owner: str, repo: str) -> Response:
        self.require(owner, repo, "checks")
        body = request.get_json()
        if not SHA_RE.match(body["head_sha"]):
            raise GitHubError(422, f"No commit found for SHA: {body['head_sha']}")
        run_id = self.state.next_id()
        run: JSON = {
            "id": run_id, "repo": f"{owner}/{repo}", "name": body["name"], "head_sha": body["head_sha"],
            "external_id": body.get("external_id", ""), "details_url": body.get("details_url"),
            "status": "queued", "conclusion": None, "started_at": body.get("started_at") or _now(),
            "completed_at": None, "output": {}, "annotations": [], "check_suite_id": 1000 + run_id,
            "updates": 0,
        }  # fmt: skip
        self.apply_update(run, body)
        with self.state.lock:
            self.state.check_runs[run_id] = run
        return _json_response(self.run_view(request, run), 201)

    def find_run(self, owner: str, repo: str, run_id: int) -> JSON:
        with self.state.lock:
            run = self.state.check_runs.get(run_id)
        if run is None or run["repo"] != f"{owner}/{repo}":
            raise GitHubError(404, "Not Found")
        return run

    def get_check_run(self, request: Request, *, who: JSON, owner: str, repo: str, run_id: int) -> Response:
        with self.state.lock:
            return _json_response(self.run_view(request, self.find_run(owner, repo, run_id)))

    def update_check_run(
        self, request: Request, *, who: JSON, owner: str, repo: str, run_id: int
    ) -> Response:
        self.require(owner, repo, "checks")
        body = request.get_json()
        with self.state.lock:
            run = self.find_run(owner, repo, run_id)
            self.apply_update(run, body)
            run["updates"] += 1
            return _json_response(self.run_view(request, run))

    def apply_update(self, run: JSON, body: JSON) -> None:
        """GitHub's rules: a conclusion completes the run; output replaces title/summary/text, APPENDS annotations."""
        if body.get("conclusion") == "stale":
            raise GitHubError(422, "Invalid request. Only GitHub can set the conclusion to `stale`.")
        if body.get("status") == "completed" and not body.get("conclusion") and not run["conclusion"]:
            raise GitHubError(422, "Invalid request. `conclusion` is required when `status` is `completed`.")
        output = body.get("output")
        if output is not None:
            if "title" not in output or ("summary" not in output and not run["output"].get("summary")):
                raise GitHubError(
                    422, "Invalid request. For 'properties/output', title and summary are required.",
                    errors=[{"resource": "CheckRun", "field": "output", "code": "missing_field"}],
                )  # fmt: skip
            for a in output.get("annotations") or []:
                problem = _annotation_problem(a)
                if problem:
                    raise GitHubError(422, f"Invalid request. Annotation {problem}")
        for key in ("name", "details_url", "external_id"):
            if key in body:
                run[key] = body[key]
        if run["status"] == "completed" and run["conclusion"]:
            # GitHub: once completed, a check run's status and conclusion cannot change (a re-run needs a new
            # check run); the output can still be updated. github.com/orgs/community/discussions/24761
            body = {
                k: v
                for k, v in body.items()
                if k not in ("status", "conclusion", "started_at", "completed_at")
            }
        for key in ("started_at", "status"):
            if key in body:
                run[key] = body[key]
        if body.get("conclusion"):
            run["conclusion"] = body["conclusion"]
            run["status"] = "completed"
            run["completed_at"] = body.get("completed_at") or _now()
        elif run["status"] != "completed":
            run["conclusion"] = None
            run["completed_at"] = None
        if output is not None:
            for key in ("title", "summary", "text"):
                if key in output:
                    run["output"][key] = output[key]
            for a in output.get("annotations") or []:
                run["annotations"].append(dict(a))

    def list_annotations(
        self, request: Request, *, who: JSON, owner: str, repo: str, run_id: int
    ) -> Response:
        b = self.base(request)
        with self.state.lock:
            run = self.find_run(owner, repo, run_id)
            items = [
                {
                    "path": a["path"],
                    "blob_href": f"{b}/{run['repo']}/blob/{run['head_sha']}/{a['path']}",
                    "start_line": a["start_line"],
                    "end_line": a["end_line"],
                    "start_column": a.get("start_column"),
                    "end_column": a.get("end_column"),
                    "annotation_level": a["annotation_level"],
                    "title": a.get("title"),
                    "message": a["message"],
                    "raw_details": a.get("raw_details"),
                }
                for a in run["annotations"]
            ]
        chunk, headers = self.paginate(request, items)
        return _json_response(chunk, 200, headers)

    def list_check_runs(self, request: Request, *, who: JSON, owner: str, repo: str, ref: str) -> Response:
        name = request.args.get("check_name")
        status = request.args.get("status")
        latest = request.args.get("filter", "latest") == "latest"
        with self.state.lock:
            runs = [
                r for r in self.state.check_runs.values()
                if r["repo"] == f"{owner}/{repo}" and r["head_sha"] == ref
                and (name is None or r["name"] == name) and (status is None or r["status"] == status)
            ]  # fmt: skip
            runs.sort(key=lambda r: r["id"], reverse=True)
            if latest:
                seen: set[str] = set()
                runs = [r for r in runs if not (r["name"] in seen or seen.add(r["name"]))]  # type: ignore[func-returns-value]
            views = [self.run_view(request, r) for r in runs]
        chunk, headers = self.paginate(request, views)
        return _json_response({"total_count": len(views), "check_runs": chunk}, 200, headers)

    # -- statuses -----------------------------------------------------------------------------------------------
    def create_status(self, request: Request, *, who: JSON, owner: str, repo: str, sha: str) -> Response:
        self.require(owner, repo, "statuses")
        body = request.get_json()
        now = _now()
        st = {
            "id": self.state.next_id(), "repo": f"{owner}/{repo}", "sha": sha, "state": body["state"],
            "description": body.get("description"), "target_url": body.get("target_url"),
            "context": body.get("context", "default"), "created_at": now, "updated_at": now,
        }  # fmt: skip
        with self.state.lock:
            self.state.statuses.append(st)
        return _json_response(self.status_view(request, st), 201)

    def statuses_for(self, owner: str, repo: str, ref: str) -> list[JSON]:
        with self.state.lock:
            return [
                s for s in reversed(self.state.statuses) if s["repo"] == f"{owner}/{repo}" and s["sha"] == ref
            ]

    def list_statuses(self, request: Request, *, who: JSON, owner: str, repo: str, ref: str) -> Response:
        views = [self.status_view(request, s) for s in self.statuses_for(owner, repo, ref)]
        chunk, headers = self.paginate(request, views)
        return _json_response(chunk, 200, headers)

    def combined_status(self, request: Request, *, who: JSON, owner: str, repo: str, ref: str) -> Response:
        latest: dict[str, JSON] = {}
        for s in self.statuses_for(owner, repo, ref):
            latest.setdefault(s["context"].lower(), s)
        states = {s["state"] for s in latest.values()}
        state = (
            "failure"
            if states & {"error", "failure"}
            else "pending"
            if not states or "pending" in states
            else "success"
        )
        b = self.base(request)
        views = [
            {k: v for k, v in self.status_view(request, s).items() if k != "creator"} | {"required": None}
            for s in latest.values()
        ]
        chunk, headers = self.paginate(request, views)
        body = {
            "state": state, "statuses": chunk, "sha": ref, "total_count": len(views),
            "repository": self.repository(request, owner, repo),
            "commit_url": f"{b}/repos/{owner}/{repo}/commits/{quote(ref, safe='')}",
            "url": f"{b}/repos/{owner}/{repo}/commits/{quote(ref, safe='')}/status",
        }  # fmt: skip
        return _json_response(body, 200, headers)

    def repository(self, request: Request, owner: str, repo: str) -> JSON:
        b = self.base(request)
        u = f"{b}/repos/{owner}/{repo}"
        keys = [
            "archive",
            "assignees",
            "blobs",
            "branches",
            "collaborators",
            "comments",
            "commits",
            "compare",
            "contents",
            "contributors",
            "deployments",
            "downloads",
            "events",
            "forks",
            "git_commits",
            "git_refs",
            "git_tags",
            "hooks",
            "issue_comment",
            "issue_events",
            "issues",
            "keys",
            "labels",
            "languages",
            "merges",
            "milestones",
            "notifications",
            "pulls",
            "releases",
            "stargazers",
            "statuses",
            "subscribers",
            "subscription",
            "tags",
            "teams",
            "trees",
        ]
        out: JSON = {f"{k}_url": f"{u}/{k.replace('_', '/')}" for k in keys}
        out.update(
            id=1296269, node_id="R_standin", name=repo, full_name=f"{owner}/{repo}", private=False,
            owner=self.user(request, owner, 9000), html_url=f"{b}/{owner}/{repo}", description=None, fork=False, url=u,
        )  # fmt: skip
        return out

    # -- issue comments -----------------------------------------------------------------------------------------
    def list_comments(self, request: Request, *, who: JSON, owner: str, repo: str, number: int) -> Response:
        since = request.args.get("since")
        with self.state.lock:
            items = [
                self.comment_view(request, c)
                for c in self.state.comments.values()
                if c["repo"] == f"{owner}/{repo}"
                and c["issue_number"] == number
                and (since is None or c["updated_at"] >= since)
            ]
        chunk, headers = self.paginate(request, items)
        return _json_response(chunk, 200, headers)

    def create_comment(self, request: Request, *, who: JSON, owner: str, repo: str, number: int) -> Response:
        self.require(owner, repo, "issues")
        body = request.get_json()
        now = _now()
        c = {"id": self.state.next_id(), "repo": f"{owner}/{repo}", "issue_number": number, "body": body["body"],
             "created_at": now, "updated_at": now}  # fmt: skip
        with self.state.lock:
            self.state.comments[c["id"]] = c
        return _json_response(self.comment_view(request, c), 201)

    def update_comment(
        self, request: Request, *, who: JSON, owner: str, repo: str, comment_id: int
    ) -> Response:
        self.require(owner, repo, "issues")
        body = request.get_json()
        with self.state.lock:
            c = self.state.comments.get(comment_id)
            if c is None or c["repo"] != f"{owner}/{repo}":
                raise GitHubError(404, "Not Found")
            c["body"] = body["body"]
            c["updated_at"] = _now()
            return _json_response(self.comment_view(request, c))

    # -- GitHub App installations -------------------------------------------------------------------------------
    def installation(self, request: Request, app_id: str) -> JSON:
        b = self.base(request)
        iid = INSTALLATION_ID
        return {
            "id": iid, "account": self.user(request, "octo-org", 9000), "repository_selection": "selected",
            "access_tokens_url": f"{b}/app/installations/{iid}/access_tokens",
            "repositories_url": f"{b}/installation/repositories", "html_url": f"{b}/settings/installations/{iid}",
            "app_id": int(app_id) if app_id.isdigit() else 1, "target_id": 9000, "target_type": "Organization",
            "permissions": {"checks": "write", "statuses": "write", "issues": "write", "metadata": "read"},
            "events": [], "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
            "single_file_name": None, "app_slug": "hpcci-standin", "suspended_by": None, "suspended_at": None,
        }  # fmt: skip

    def get_installation(self, request: Request, *, who: JSON, owner: str, repo: str) -> Response:
        if who["kind"] != "app":
            raise GitHubError(401, "A JSON web token could not be decoded")
        return _json_response(self.installation(request, who["app_id"]))

    def create_token(self, request: Request, *, who: JSON, installation_id: int) -> Response:
        if who["kind"] != "app":
            raise GitHubError(401, "A JSON web token could not be decoded")
        if installation_id != INSTALLATION_ID:
            raise GitHubError(404, "Not Found")
        token = "ghs_" + secrets.token_urlsafe(27)
        expires = time.time() + 3600
        with self.state.lock:
            self.state.tokens[token] = {
                "expires": expires,
                "installation_id": installation_id,
                "app_id": who["app_id"],
            }
        body = {
            "token": token,
            "expires_at": datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": {"checks": "write", "statuses": "write", "issues": "write", "metadata": "read"},
            "repository_selection": "selected",
        }
        return _json_response(body, 201)

    # -- admin (/_standin/, not part of GitHub's API) -----------------------------------------------------------
    def admin_health(self, request: Request) -> Response:
        return _json_response({"ok": True, "stand_in": "github"})

    def admin_state(self, request: Request) -> Response:
        """Everything; with ?repo=owner/name only that repository's runs, statuses, comments and requests."""
        snap = self.state.snapshot()
        repo = request.args.get("repo")
        if repo:
            for key in ("check_runs", "statuses", "comments"):
                snap[key] = [x for x in snap[key] if x["repo"] == repo]
            snap["requests"] = [r for r in snap["requests"] if r["path"].startswith(f"/repos/{repo}/")]
        return _json_response(snap)

    def admin_reset(self, request: Request) -> Response:
        self.state.reset()
        return _json_response({"ok": True})

    def admin_faults(self, request: Request) -> Response:
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
        with self.state.lock:
            self.state.faults.append(fault)
        return _json_response(fault, 201)

    def admin_permissions(self, request: Request) -> Response:
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
        with self.state.lock:
            self.state.permissions[repo] = perms
        return _json_response({"repo": repo, "permissions": perms})

    def admin_apps(self, request: Request) -> Response:
        """{"app_id": "123", "public_key": PEM}: the app whose JWTs the stand-in accepts."""
        body = _admin_body(request)
        app_id, pem = str(body.get("app_id", "")), str(body.get("public_key", ""))
        if not app_id or "PUBLIC KEY" not in pem:
            raise GitHubError(422, "app_id and a PEM public_key are required")
        with self.state.lock:
            self.state.apps[app_id] = {"public_key": pem}
        return _json_response({"app_id": app_id, "installation_id": INSTALLATION_ID}, 201)


def _admin_body(request: Request) -> JSON:
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError as e:
        raise GitHubError(400, f"Problems parsing JSON: {e}") from e
    if not isinstance(body, dict):
        raise GitHubError(400, "expected a JSON object")
    return body


def _annotation_problem(a: JSON) -> str | None:
    """GitHub's prose-only rules (not in the schema)."""
    if len(a.get("title") or "") > 255:
        return "title is longer than 255 characters"
    for key in ("message", "raw_details"):
        if len((a.get(key) or "").encode()) > 64 * 1024:
            return f"{key} is larger than 64 KB"
    if a["start_line"] < 1 or a["end_line"] < a["start_line"]:
        return "lines must satisfy 1 <= start_line <= end_line"
    if ("start_column" in a or "end_column" in a) and a["start_line"] != a["end_line"]:
        return "columns are only allowed when start_line == end_line"
    return None


def _annotation_count(request: Request) -> int:
    """How many annotations a check-run request carried (for tests that count batches)."""
    try:
        body = json.loads(request.get_data() or b"{}")
        return len(((body.get("output") or {}).get("annotations")) or [])
    except (ValueError, AttributeError, TypeError):
        return 0


def _b64decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def make_app(token: str, **kw: Any) -> StandIn:
    return StandIn(token, **kw)
