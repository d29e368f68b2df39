"""What triggered a run: the GitHub event, ref and commit, from the Actions environment or the command line."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcci.errors import UsageError


@dataclass(frozen=True)
class GitEvent:
    event_name: str = "push"  # push | pull_request | workflow_dispatch | ...
    ref: str = ""  # refs/heads/main, refs/tags/v1.2.3, refs/pull/7/merge
    sha: str = ""  # the commit the event is about (for PRs: the merge commit)
    repository: str = ""  # owner/name
    pr_number: int | None = None
    pr_head_sha: str | None = None
    pr_from_fork: bool = False
    default_branch: str = "main"
    server_url: str = "https://github.com"
    run_id: str = ""
    run_attempt: str = "1"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_tag(self) -> bool:
        return self.ref.startswith("refs/tags/")

    @property
    def ref_name(self) -> str:
        for prefix in ("refs/heads/", "refs/tags/"):
            if self.ref.startswith(prefix):
                return self.ref[len(prefix) :]
        return self.ref

    @property
    def head_sha(self) -> str:
        """The commit maintainers look at: the PR's head for pull requests, else the event's sha."""
        return self.pr_head_sha or self.sha

    @property
    def run_url(self) -> str | None:
        if self.repository and self.run_id:
            return f"{self.server_url}/{self.repository}/actions/runs/{self.run_id}"
        return None

    @property
    def trigger(self) -> str:
        """The deploy.triggers vocabulary: tag | push | pull_request | workflow_dispatch."""
        if self.event_name == "push":
            return "tag" if self.is_tag else "push"
        if self.event_name in ("pull_request", "pull_request_target"):
            return "pull_request"
        if self.event_name == "issue_comment":  # a trusted `/hpcci deploy` (hpcci trigger): a manual request
            return "workflow_dispatch"
        return self.event_name


def from_environ(env: dict[str, str] | None = None, **overrides: Any) -> GitEvent:
    """Read GITHUB_* variables and the event payload; ``overrides`` (from the command line) win when not None."""
    env = dict(os.environ) if env is None else env
    payload: dict[str, Any] = {}
    path = env.get("GITHUB_EVENT_PATH")
    if path and Path(path).is_file():
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        except ValueError as e:
            raise UsageError(f"{path}: GITHUB_EVENT_PATH is not valid JSON ({e})") from e
    pr = payload.get("pull_request") or {}
    head_repo = ((pr.get("head") or {}).get("repo") or {}).get("full_name")
    base_repo = ((pr.get("base") or {}).get("repo") or {}).get("full_name")
    values: dict[str, Any] = {
        "event_name": env.get("GITHUB_EVENT_NAME", "push"),
        "ref": env.get("GITHUB_REF", ""),
        "sha": env.get("GITHUB_SHA", ""),
        "repository": env.get("GITHUB_REPOSITORY", ""),
        "pr_number": pr.get("number"),
        "pr_head_sha": (pr.get("head") or {}).get("sha"),
        "pr_from_fork": bool(head_repo and base_repo and head_repo != base_repo),
        "default_branch": (payload.get("repository") or {}).get("default_branch") or "main",
        "server_url": env.get("GITHUB_SERVER_URL", "https://github.com"),
        "run_id": env.get("GITHUB_RUN_ID", ""),
        "run_attempt": env.get("GITHUB_RUN_ATTEMPT", "1"),
    }
    pin = env.get("HPCCI_PIN_SHA")  # a trusted `/hpcci deploy` comment's PR head, pinned by `hpcci trigger`
    if pin and env.get("HPCCI_PIN_PR", "").isdigit():
        number = int(env["HPCCI_PIN_PR"])
        values.update(sha=pin, pr_head_sha=pin, pr_number=number, ref=f"refs/pull/{number}/head")
    values.update({k: v for k, v in overrides.items() if v is not None})
    ref = values["ref"]
    if values["pr_number"] is None and ref.startswith("refs/pull/"):
        with contextlib.suppress(IndexError, ValueError):
            values["pr_number"] = int(ref.split("/")[2])
    return GitEvent(**values)


# -- the environment variables hpcci reads: this table is the only place they are named ------------------------------

VARIABLES: dict[str, str] = {
    "GITHUB_ACTIONS": "'true' inside GitHub Actions: log lines become workflow commands",
    "GITHUB_API_URL": "the REST API's base URL (GitHub Enterprise Server sets its own)",
    "GITHUB_EVENT_NAME": "the event that started the workflow",
    "GITHUB_EVENT_PATH": "the event's JSON payload",
    "GITHUB_OUTPUT": "the file a step's outputs are appended to",
    "GITHUB_REF": "the ref the workflow runs for",
    "GITHUB_REPOSITORY": "owner/name of the repository",
    "GITHUB_RUN_ATTEMPT": "the attempt number of a re-run",
    "GITHUB_RUN_ID": "the workflow run's id (job names and the journal carry it)",
    "GITHUB_SERVER_URL": "https://github.com or the Enterprise server (links)",
    "GITHUB_SHA": "the commit the workflow runs for",
    "GITHUB_STEP_SUMMARY": "the file the step summary is appended to",
    "GITHUB_TOKEN": "the job's token (check runs, comments, statuses)",
    "GITHUB_WORKSPACE": "the checkout",
    "HPCCI_BUILDER": "buildx | buildah | docker: overrides build.builder",
    "HPCCI_GITHUB_APP_ID": "a GitHub App's id (instead of GITHUB_TOKEN)",
    "HPCCI_GITHUB_APP_PRIVATE_KEY": "that App's private key (PEM)",
    "HPCCI_REGISTRY_USERNAME": "registry user when hpcci.yaml names none",
    "HPCCI_REGISTRY_PASSWORD": "registry password or token when hpcci.yaml names none",
    "HPCCI_REPLACE_RELEASE": "1/true/yes: like --replace-release",
    "HPCCI_S3_OUTAGE_WINDOW": "seconds an upload waits out an S3 outage (overrides publish.s3.outage_window)",
    "HPCCI_TMPDIR": "where publish writes docker-archive tars",
    "HPCCI_PIN_SHA": "the PR head a trusted /hpcci deploy comment pinned (set by the trigger action)",
    "HPCCI_PIN_PR": "that pull request's number",
    "AWS_SECRET_ACCESS_KEY": "boto3's usual secret (masked in logs when set)",
}


def var(name: str) -> str:
    """The value of one variable of VARIABLES ('' when unset); naming another is a programming error."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not in hpcci.context.VARIABLES: add it there with what it means")
    return os.environ.get(name, "")


def variables() -> dict[str, str]:
    """The variables of VARIABLES that are set, for code that takes an environment mapping."""
    return {k: os.environ[k] for k in VARIABLES if k in os.environ}
