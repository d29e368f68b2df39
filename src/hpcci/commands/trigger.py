"""`hpcci trigger`: a maintainer's `/hpcci deploy [cluster ...]` pull-request comment, checked and pinned.

hpcci trigger            (an issue_comment workflow's first job) decide whether the comment deploys: the commenter's
                         permission on the repository must be write, maintain or admin (asked from GitHub's API, never
                         read from author_association); the PR's head sha is pinned now, so a push after the comment
                         does not change what runs. Reacts to the comment, answers with a reply comment, and writes
                         the outputs sha, pr and clusters (sha empty: nothing deploys; the log says why).
hpcci trigger --links    (after the deploy) the reply comment lists the check runs of this workflow run.

A re-run of the workflow finds the reply comment (by its marker) and keeps the sha pinned there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcci import wiring
from hpcci.commands import common
from hpcci.errors import UsageError
from hpcci.log import Log

if TYPE_CHECKING:
    from hpcci.backends.github.client import Maintainers

JSON = dict[str, Any]
TRUSTED = ("admin", "maintain", "write")
# `/hpcci deploy [@COMMIT] [cluster ...]`: @COMMIT (7-40 hex) names the head the maintainer reviewed
COMMAND = re.compile(
    r"^/hpcci[ \t]+deploy(?:[ \t]+@(?P<sha>[0-9a-f]{7,40}))?(?P<clusters>(?:[ \t]+[A-Za-z0-9][A-Za-z0-9_.-]*)*)[ \t]*$"
)
MARKER = re.compile(
    r"<!-- hpcci-trigger comment=(?P<comment>\d+) pr=(?P<pr>\d+) sha=(?P<sha>[0-9a-f]{40}) -->"
)
REACTION = "rocket"


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_pipeline_arguments(p)
    p.add_argument(
        "--links",
        action="store_true",
        help="after the deploy: list this workflow run's check runs in the reply comment",
    )
    p.add_argument("--api-url", help="GitHub API (default: $GITHUB_API_URL or https://api.github.com)")
    p.add_argument(
        "--app-id", help="GitHub App id (default: $HPCCI_GITHUB_APP_ID); with the app's private key"
    )
    p.add_argument("--app-private-key-file", metavar="FILE", help="the GitHub App's private key (.pem)")


# -- pure: what the comment asks, and whether it may ---------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A `/hpcci deploy` comment on a pull request."""

    repository: str
    pr: int
    comment_id: int
    comment_url: str
    user: str
    clusters: tuple[str, ...] = ()
    sha: str = ""  # @COMMIT of the comment: deploy only if the head still is that commit


@dataclass(frozen=True)
class Pin:
    """What deploys: the PR head as it was when the comment was made."""

    request: Request
    sha: str
    reused: bool = False  # found in the reply comment of an earlier attempt of this workflow run


@dataclass
class Outcome:
    pin: Pin | None = None
    reasons: list[str] = field(default_factory=list)


def _command(body: str) -> re.Match[str] | None:
    first = (body or "").strip().splitlines()[0] if (body or "").strip() else ""
    return COMMAND.match(first.strip())


def parse_command(body: str) -> tuple[str, ...] | None:
    """The cluster names of a `/hpcci deploy [@COMMIT] [cluster ...]` first line (() = deploy.clusters); None
    otherwise."""
    m = _command(body)
    return tuple(m.group("clusters").split()) if m else None


def named_commit(body: str) -> str:
    """The @COMMIT a `/hpcci deploy` comment names ("" when it names none)."""
    m = _command(body)
    return (m.group("sha") or "") if m else ""


def request_of(event_name: str, payload: JSON) -> Request | str:
    """The request a webhook payload carries, or why it carries none (every reason is logged)."""
    if event_name != "issue_comment":
        return f"a {event_name or 'unknown'} event is not a comment"
    if payload.get("action") != "created":
        return f"the comment was {payload.get('action')}, not created: only new comments deploy"
    issue, comment = payload.get("issue") or {}, payload.get("comment") or {}
    if not issue.get("pull_request"):
        return f"#{issue.get('number')} is an issue, not a pull request"
    clusters = parse_command(str(comment.get("body") or ""))
    if clusters is None:
        return "the comment is not a `/hpcci deploy [cluster ...]` command"
    user = comment.get("user") or {}
    if user.get("type") == "Bot":
        return f"{user.get('login')} is a bot: bots never trigger deploys"
    return Request(
        repository=str((payload.get("repository") or {}).get("full_name") or ""),
        pr=int(issue["number"]),
        comment_id=int(comment["id"]),
        comment_url=str(comment.get("html_url") or ""),
        user=str(user.get("login") or ""),
        clusters=clusters,
        sha=named_commit(str(comment.get("body") or "")),
    )


def reply_comment(comments: list[JSON], comment_id: int, author: str) -> tuple[JSON, str] | None:
    """The reply comment to ``comment_id`` (by its marker) and the sha it pinned, if an attempt made one. Only a
    comment by ``author`` (the login hpcci writes as) counts: anyone - another App's bot included - can write the
    marker into a comment of their own to pin a commit of their choice."""
    for c in comments:
        m = MARKER.search(str(c.get("body") or ""))
        if m and int(m.group("comment")) == comment_id and (c.get("user") or {}).get("login") == author:
            return c, m.group("sha")
    return None


def reply(pin: Pin, run_url: str | None, runs: Sequence[tuple[str, JSON | None]] = ()) -> str:
    """The reply comment: what deploys, for whom, and (after the deploy) each cluster's check run."""
    r = pin.request
    where = ", ".join(r.clusters) if r.clusters else "the clusters in deploy.clusters"
    lines = [
        f"<!-- hpcci-trigger comment={r.comment_id} pr={r.pr} sha={pin.sha} -->",
        f"**hpcci deploy** requested by @{r.user}"
        + (f" ([comment]({r.comment_url}))" if r.comment_url else "")
        + f": deploying `{pin.sha[:12]}` (the head of #{r.pr} when the comment was made) to {where}.",
    ]
    if run_url:
        lines.append(f"Workflow run: {run_url}")
    if runs:
        lines += ["", "| cluster | check run |", "|---|---|"]
        for cluster, run in runs:
            if run is None:
                lines.append(f"| {cluster} | (no check run) |")
            else:
                state = run.get("conclusion") or run.get("status") or "?"
                lines.append(f"| {cluster} | [{state}]({run.get('html_url', '')}) |")
    return "\n".join(lines)


# -- talking to GitHub ---------------------------------------------------------------------------------------------


def decide(api: Maintainers, request: Request, log: Log) -> Outcome:
    """Check the commenter's permission, pin the head (or keep an earlier attempt's pin), react, reply."""
    level = api.permission(request.user)
    if level not in TRUSTED:
        why = (
            f"@{request.user} has {level!r} permission on {request.repository}; "
            f"/hpcci deploy needs one of {', '.join(TRUSTED)}: ignored, nothing deploys"
        )
        return Outcome(reasons=[why])
    earlier = reply_comment(api.comments(request.pr), request.comment_id, api.bot_login())
    if earlier:
        pin = Pin(request, earlier[1], reused=True)
    else:
        pull = api.pull(request.pr)
        if pull.get("state") != "open":
            return Outcome(reasons=[f"#{request.pr} is {pull.get('state')}: only open pull requests deploy"])
        head = str(pull["head"]["sha"])
        if request.sha and not head.startswith(request.sha):
            return Outcome(
                reasons=[
                    f"#{request.pr}'s head is {head[:12]}, not {request.sha} that the comment names: it moved "
                    "since the comment, so nothing deploys; review the new head and comment again"
                ]
            )
        pin = Pin(request, head)
    api.react(request.comment_id, REACTION)
    run_url = _run_url()
    body = reply(pin, run_url)
    if earlier is None:
        api.create_comment(request.pr, body)
    else:
        api.update_comment(int(earlier[0]["id"]), body)
    log.info(
        f"trigger: @{request.user} ({level}) asked to deploy #{request.pr}; "
        + ("keeping the pinned " if pin.reused else "pinned ")
        + f"head {pin.sha}"
    )
    return Outcome(pin=pin)


def link_check_runs(api: Maintainers, request: Request, names: list[str], check_name: str, log: Log) -> None:
    """Update the reply comment with this workflow run's check run per cluster (by external_id)."""
    from hpcci.stages.report.outputs import Target
    from hpcci.stages.report.rerun import own_run

    found_reply = reply_comment(api.comments(request.pr), request.comment_id, api.bot_login())
    if found_reply is None:
        log.info(f"trigger: no reply comment for comment {request.comment_id}; nothing to link")
        return
    mine, sha = found_reply
    target = Target(sha=sha, run_key=os.environ.get("GITHUB_RUN_ID", ""), check_name=check_name)
    runs = [(cluster, own_run(api, target, cluster)) for cluster in names]
    api.update_comment(int(mine["id"]), reply(Pin(request, sha), _run_url(), runs))
    log.info(f"trigger: linked {len(runs)} check run(s) in comment {mine['id']}")


def _run_url() -> str | None:
    server, repo, run = (
        os.environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    )
    return f"{server or 'https://github.com'}/{repo}/actions/runs/{run}" if repo and run else None


def _write_outputs(values: dict[str, str]) -> None:
    target = os.environ.get("GITHUB_OUTPUT")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.writelines(f"{k}={v}\n" for k, v in values.items())
    else:
        print(json.dumps(values))


def main(args: argparse.Namespace, log: Log) -> int:

    path = os.environ.get("GITHUB_EVENT_PATH", "")
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError) as e:
        raise UsageError(f"GITHUB_EVENT_PATH {path}: cannot read the event ({e})") from e
    request = request_of(os.environ.get("GITHUB_EVENT_NAME", ""), payload)
    if isinstance(request, str):
        log.info(f"trigger: {request}")
        _write_outputs({"sha": "", "pr": "", "clusters": ""})
        return 0
    api = wiring.github_client(args, log, request.repository)
    if api is None:
        raise UsageError(
            "trigger: no GITHUB_TOKEN (or GitHub App): the commenter's permission cannot be checked"
        )
    try:
        if args.links:
            pipe = common.pipeline(args)
            names = list(request.clusters) or list(pipe.deploy.clusters)
            link_check_runs(api, request, names, pipe.report.check_name, log)
            return 0
        outcome = decide(api, request, log)
    finally:
        api.close()
    for why in outcome.reasons:
        log.info(f"trigger: {why}")
    pin = outcome.pin
    _write_outputs(
        {"sha": pin.sha, "pr": str(request.pr), "clusters": " ".join(request.clusters)}
        if pin
        else {"sha": "", "pr": "", "clusters": ""}
    )
    return 0
