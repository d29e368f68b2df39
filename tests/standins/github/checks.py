"""Check runs: create, get, update (GitHub's completion and annotation rules), list for a ref, list annotations."""

from __future__ import annotations

import json
import re

from werkzeug.wrappers import Request, Response

from .replies import JSON, GitHubError, json_response, timestamp
from .state import State
from .views import annotation_view, paginate, run_view

SHA_RE = re.compile(r"^[0-9a-f]{40}$")  # the stand-in knows no commits: a full sha is the best it can check


def create_check_run(state: State, request: Request, *, who: JSON, owner: str, repo: str) -> Response:
    state.require(owner, repo, "checks")
    body = request.get_json()
    if not SHA_RE.match(body["head_sha"]):
        raise GitHubError(422, f"No commit found for SHA: {body['head_sha']}")
    run_id = state.next_id()
    run: JSON = {
        "id": run_id, "repo": f"{owner}/{repo}", "name": body["name"], "head_sha": body["head_sha"],
        "external_id": body.get("external_id", ""), "details_url": body.get("details_url"),
        "status": "queued", "conclusion": None, "started_at": body.get("started_at") or timestamp(),
        "completed_at": None, "output": {}, "annotations": [], "check_suite_id": 1000 + run_id,
        "updates": 0,
    }  # fmt: skip
    apply_update(run, body)
    with state.lock:
        state.check_runs[run_id] = run
    return json_response(run_view(request, run), 201)


def find_run(state: State, owner: str, repo: str, run_id: int) -> JSON:
    with state.lock:
        run = state.check_runs.get(run_id)
    if run is None or run["repo"] != f"{owner}/{repo}":
        raise GitHubError(404, "Not Found")
    return run


def get_check_run(
    state: State, request: Request, *, who: JSON, owner: str, repo: str, run_id: int
) -> Response:
    with state.lock:
        return json_response(run_view(request, find_run(state, owner, repo, run_id)))


def update_check_run(
    state: State, request: Request, *, who: JSON, owner: str, repo: str, run_id: int
) -> Response:
    state.require(owner, repo, "checks")
    body = request.get_json()
    with state.lock:
        run = find_run(state, owner, repo, run_id)
        apply_update(run, body)
        run["updates"] += 1
        return json_response(run_view(request, run))


def apply_update(run: JSON, body: JSON) -> None:
    """GitHub's rules: a conclusion completes the run; output replaces title/summary/text, APPENDS annotations."""
    if body.get("conclusion") == "stale":
        raise GitHubError(422, "Invalid request. Only GitHub can set the conclusion to `stale`.")
    if body.get("status") == "completed" and not body.get("conclusion") and not run["conclusion"]:
        raise GitHubError(422, "Invalid request. `conclusion` is required when `status` is `completed`.")
    output = body.get("output")
    if output is not None:
        check_output(run, output)
    for key in ("name", "details_url", "external_id"):
        if key in body:
            run[key] = body[key]
    if run["status"] == "completed" and run["conclusion"]:
        # GitHub: once completed, a check run's status and conclusion cannot change (a re-run needs a new
        # check run); the output can still be updated. github.com/orgs/community/discussions/24761
        body = {
            k: v for k, v in body.items() if k not in ("status", "conclusion", "started_at", "completed_at")
        }
    for key in ("started_at", "status"):
        if key in body:
            run[key] = body[key]
    if body.get("conclusion"):
        run["conclusion"] = body["conclusion"]
        run["status"] = "completed"
        run["completed_at"] = body.get("completed_at") or timestamp()
    elif run["status"] != "completed":
        run["conclusion"] = None
        run["completed_at"] = None
    if output is not None:
        for key in ("title", "summary", "text"):
            if key in output:
                run["output"][key] = output[key]
        for a in output.get("annotations") or []:
            run["annotations"].append(dict(a))


def check_output(run: JSON, output: JSON) -> None:
    """An output needs a title and a summary (kept from before, or sent); annotations follow GitHub's prose rules."""
    if "title" not in output or ("summary" not in output and not run["output"].get("summary")):
        raise GitHubError(
            422, "Invalid request. For 'properties/output', title and summary are required.",
            errors=[{"resource": "CheckRun", "field": "output", "code": "missing_field"}],
        )  # fmt: skip
    for a in output.get("annotations") or []:
        problem = annotation_problem(a)
        if problem:
            raise GitHubError(422, f"Invalid request. Annotation {problem}")


def annotation_problem(a: JSON) -> str | None:
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


def annotation_count(request: Request) -> int:
    """How many annotations a check-run request carried (for tests that count batches)."""
    try:
        body = json.loads(request.get_data() or b"{}")
        return len(((body.get("output") or {}).get("annotations")) or [])
    except (ValueError, AttributeError, TypeError):
        return 0


def list_annotations(
    state: State, request: Request, *, who: JSON, owner: str, repo: str, run_id: int
) -> Response:
    with state.lock:
        run = find_run(state, owner, repo, run_id)
        items = [annotation_view(request, run, a) for a in run["annotations"]]
    chunk, headers = paginate(request, items)
    return json_response(chunk, 200, headers)


def list_check_runs(
    state: State, request: Request, *, who: JSON, owner: str, repo: str, ref: str
) -> Response:
    name = request.args.get("check_name")
    status = request.args.get("status")
    latest = request.args.get("filter", "latest") == "latest"
    with state.lock:
        runs = [
            r for r in state.check_runs.values()
            if r["repo"] == f"{owner}/{repo}" and r["head_sha"] == ref
            and (name is None or r["name"] == name) and (status is None or r["status"] == status)
        ]  # fmt: skip
        runs.sort(key=lambda r: r["id"], reverse=True)
        if latest:  # the newest run of each name
            newest: dict[str, JSON] = {}
            for r in runs:
                newest.setdefault(r["name"], r)
            runs = list(newest.values())
        views = [run_view(request, r) for r in runs]
    chunk, headers = paginate(request, views)
    return json_response({"total_count": len(views), "check_runs": chunk}, 200, headers)
