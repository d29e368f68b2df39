"""What the stand-in remembers (check runs, statuses, comments, tokens, apps, permissions, collaborators, pull
requests, files of commits, branches, faults, requests)."""

from __future__ import annotations

import copy
import itertools
import threading

from .replies import JSON, GitHubError

WRITE_SCOPES = ("checks", "statuses", "issues")
MAX_LOGGED_REQUESTS = 5000


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
            self.collaborators: dict[str, dict[str, str]] = {}  # "owner/repo" -> {login (lower case): level}
            self.pulls: dict[str, dict[int, JSON]] = {}  # "owner/repo" -> {number: {"head_sha", ...}}
            self.trees: dict[str, dict[str, dict[str, bytes]]] = {}  # "owner/repo" -> {sha: {path: content}}
            self.branches: dict[str, dict[str, str]] = {}  # "owner/repo" -> {branch: sha}
            self.faults: list[JSON] = []
            self.requests: list[JSON] = []  # method, path, status of every API request (not admin ones)

    def next_id(self) -> int:
        with self.lock:
            return next(self.ids)

    def log_request(self, entry: JSON) -> None:
        """Remember an API request (the newest MAX_LOGGED_REQUESTS)."""
        with self.lock:
            self.requests.append(entry)
            del self.requests[:-MAX_LOGGED_REQUESTS]

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
                    "collaborators": self.collaborators,
                    "pulls": {repo: list(prs.values()) for repo, prs in self.pulls.items()},
                    "branches": self.branches,
                    "faults": self.faults,
                    "requests": self.requests,
                }
            )

    def require(self, owner: str, repo: str, scope: str) -> None:
        """A write needs the scope's write permission on the repo (a fork PR's token is read-only)."""
        with self.lock:
            perms = self.permissions.get(f"{owner}/{repo}", {})
        if perms.get(scope, "write") != "write":
            raise GitHubError(403, "Resource not accessible by integration")
