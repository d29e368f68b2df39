"""Injected faults: 5xx, secondary rate limits and 422 for the requests a fault's method and path match."""

from __future__ import annotations

import fnmatch

from werkzeug.wrappers import Request, Response

from .replies import JSON, GitHubError
from .state import State

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


def take_fault(state: State, request: Request) -> JSON | None:
    """The fault this request gets (a copy), counting it down; None when no fault matches (yet)."""
    with state.lock:
        for fault in state.faults:
            if fault["method"] in ("*", request.method) and fnmatch.fnmatchcase(request.path, fault["path"]):
                if fault["skip"] > 0:  # let this many matching requests through first
                    fault["skip"] -= 1
                    return None
                fault["remaining"] -= 1
                if fault["remaining"] <= 0:
                    state.faults.remove(fault)
                return dict(fault)
    return None


def fault_response(fault: JSON) -> Response:
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
