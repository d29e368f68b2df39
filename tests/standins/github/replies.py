"""GitHub-shaped replies: a JSON response, GitHub's error body, and GitHub's timestamp format."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from werkzeug.wrappers import Response

DOCS = "https://docs.github.com/rest"
JSON = dict[str, Any]


class GitHubError(Exception):
    """A request GitHub would answer with an error: raised by any handler, answered by the app."""

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
        return json_response(body, self.status, self.headers)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    r = Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8")
    for k, v in (headers or {}).items():
        r.headers[k] = v
    return r


def timestamp(at: float | None = None) -> str:
    """GitHub's ISO 8601 UTC form (now when ``at`` is None)."""
    moment = datetime.now(timezone.utc) if at is None else datetime.fromtimestamp(at, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
