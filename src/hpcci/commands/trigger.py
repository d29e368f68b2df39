"""`hpcci trigger`: a maintainer's `/hpcci deploy [@COMMIT] [cluster ...]` pull-request comment, checked and pinned.

hpcci trigger            (an issue_comment workflow's first job) decide whether the comment deploys: the commenter's
                         permission on the repository must be write, maintain or admin (asked from GitHub's API, never
                         read from author_association). An approval binds one full commit: `@<40 hex>` deploys only
                         when it equals the PR's head as read now; a fork's PR needs it (a bare comment, or a short
                         @COMMIT, deploys nothing and the reply names the head's full sha and the comment to post).
                         A same-repository PR may use the bare form: its head as read now (its branch is pushed only
                         by people with write access). Reacts, replies, and writes the outputs sha, pr, clusters and
                         base-sha (the base branch's head now, whose configuration the deploy uses; all empty when
                         nothing deploys, the log and the reply say why).
hpcci trigger --links    (after the deploy) the reply comment lists the check runs of this workflow run.

A re-run of the workflow (GITHUB_RUN_ATTEMPT > 1) deploys only the sha of attempt 1's reply comment: a comment by
hpcci's own login whose whole body is the reply template naming this comment's id (trigger_reply). No such reply:
nothing deploys.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcci import context, wiring
from hpcci.commands import common
from hpcci.errors import UsageError
from hpcci.log import Log
from hpcci.stages.report.reply import Reply, Row, refusal, render, reply_comment

if TYPE_CHECKING:
    from hpcci.backends.github.client import Maintainers

JSON = dict[str, Any]
TRUSTED = ("admin", "maintain", "write")
# `/hpcci deploy [@COMMIT] [cluster ...]`: @COMMIT names the commit the maintainer reviewed. Anything after the @ is
# taken here, so that a short or mistyped one gets a reply saying why it deploys nothing (FULL_SHA decides).
COMMAND = re.compile(
    r"^/hpcci[ \t]+deploy(?:[ \t]+@(?P<sha>\S+))?(?P<clusters>(?:[ \t]+[A-Za-z0-9][A-Za-z0-9_.-]*)*)[ \t]*$"
)
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
REACTION = "rocket"
CLUSTER_CONFIGS = "cluster-configs"  # deploy.cluster_configs' default (config.py)
NOTHING = {"sha": "", "pr": "", "clusters": "", "base-sha": ""}  # the outputs when nothing deploys


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
    sha: str = ""  # @COMMIT of the comment as written (lower case): deploys only when it is the head, in full


@dataclass(frozen=True)
class Pin:
    """What deploys: the commit the comment names (or a same-repository PR's head), as the trigger job read it."""

    request: Request
    sha: str
    reused: bool = False  # found in the reply comment of an earlier attempt of this workflow run
    base_sha: str = ""  # the base branch's head when the trigger job ran: its configuration is the one used


@dataclass
class Decision:
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
    """The @COMMIT a `/hpcci deploy` comment names, lower case ("" when it names none)."""
    m = _command(body)
    return (m.group("sha") or "").lower() if m else ""


def commit_problem(named: str) -> str:
    """Why an @COMMIT cannot bind a deploy ("" when it can: a full 40-hex sha, or none named)."""
    if not named or FULL_SHA.match(named):
        return ""
    if re.fullmatch(r"[0-9a-f]{7,39}", named):
        return (
            f"`@{named}` is {len(named)} hex digits of a commit: a deploy names the full 40-hex sha (the author of a "
            "fork can make another commit with the same short prefix and push it after your comment)"
        )
    return f"`@{named}` is not a commit sha: a deploy names the full 40-hex sha of the commit you reviewed"


def suggested_command(sha: str, clusters: tuple[str, ...]) -> str:
    return " ".join(["/hpcci deploy", f"@{sha}", *clusters])


def fingerprint(found: JSON | list[JSON] | None) -> object:
    """What identifies a file or folder at a commit in repos/get-content's answer (blob / entry shas)."""
    if found is None:
        return None
    if isinstance(found, list):
        return sorted((str(e.get("name")), str(e.get("type")), str(e.get("sha"))) for e in found)
    return (str(found.get("type")), str(found.get("sha")))


def cluster_configs_of(config_file: JSON | list[JSON] | None) -> str:
    """deploy.cluster_configs of a pipeline file as repos/get-content answered it (its default when unreadable)."""
    import base64

    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if not isinstance(config_file, dict) or config_file.get("encoding") != "base64":
        return CLUSTER_CONFIGS
    try:
        data = YAML(typ="safe", pure=True).load(base64.b64decode(str(config_file.get("content") or "")))
    except (YAMLError, ValueError, UnicodeDecodeError):
        return CLUSTER_CONFIGS
    deploy = data.get("deploy") if isinstance(data, dict) else None
    folder = deploy.get("cluster_configs") if isinstance(deploy, dict) else None
    return folder if isinstance(folder, str) and folder.strip() else CLUSTER_CONFIGS


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


def decide(
    api: Maintainers, request: Request, log: Log, *, attempt: int = 1, config: str = "hpcci.yaml"
) -> Decision:
    """Check the commenter's permission, pin the commit (or keep attempt 1's pin on a re-run), react, reply.
    ``config``: the pipeline file's path in the repository; it and its cluster-configs folder are compared between
    the base branch and the pinned commit, so the reply can say that the PR's changes to them are not used."""
    level = api.permission(request.user)
    if level not in TRUSTED:
        why = (
            f"@{request.user} has {level!r} permission on {request.repository}; "
            f"/hpcci deploy needs one of {', '.join(TRUSTED)}: ignored, nothing deploys"
        )
        return Decision(reasons=[why])
    earlier = reply_comment(api.comments(request.pr), request.comment_id, request.pr, api.bot_login())
    pull = api.pull(request.pr)
    if earlier is None:
        found = choose(pull, request, attempt)
        if isinstance(found, tuple):
            why, head = found
            command = suggested_command(head, request.clusters) if head else ""
            api.create_comment(request.pr, refusal(request.user, request.comment_url, why, command))
            return Decision(reasons=[why])
        sha, named = found, bool(request.sha)
    else:
        sha, named = earlier[1].sha, earlier[1].named
    base_ref = str(pull["base"]["ref"])
    base_sha = str(api.branch(base_ref)["commit"]["sha"])
    unused = changed_config(api, config, base_sha, sha)
    api.react(request.comment_id, REACTION)
    body = render(
        Reply(
            comment_id=request.comment_id, pr=request.pr, sha=sha, user=request.user,
            comment_url=request.comment_url, clusters=request.clusters, named=named, unused=unused,
            base_ref=base_ref, base_sha=base_sha, run_url=_run_url() or "",
        )
    )  # fmt: skip
    if earlier is None:
        api.create_comment(request.pr, body)
    else:
        api.update_comment(int(earlier[0]["id"]), body)
    pin = Pin(request, sha, reused=earlier is not None, base_sha=base_sha)
    log.info(
        f"trigger: @{request.user} ({level}) asked to deploy #{request.pr}; "
        + ("keeping the pinned " if pin.reused else "pinned ")
        + f"commit {pin.sha}; configuration from {base_ref} at {base_sha}"
        + (f" (the PR's changes to {', '.join(unused)} are not used)" if unused else "")
    )
    return Decision(pin=pin)


def choose(pull: JSON, request: Request, attempt: int) -> str | tuple[str, str]:
    """The commit a first attempt deploys, or (why nothing deploys, the head to name in a new comment or "")."""
    n = request.pr
    if attempt > 1:
        return (
            f"this is attempt {attempt} of the workflow run and no reply of hpcci's pins a commit for this comment "
            "(attempt 1 stopped before replying, or the reply was deleted or edited): a re-run deploys only what "
            "attempt 1 pinned, so nothing deploys; comment `/hpcci deploy @<full sha>` again",
            "",
        )
    if pull.get("state") != "open":
        return (f"#{n} is {pull.get('state')}: only open pull requests deploy", "")
    head = str(pull["head"]["sha"])
    problem = commit_problem(request.sha)
    if problem:
        return (f"{problem}. #{n}'s head now is `{head}`.", head)
    if request.sha and request.sha != head:
        return (
            f"#{n}'s head is `{head}`, not `{request.sha}` that the comment names: it moved since the comment, "
            "so nothing deploys; review the new head and comment again.",
            head,
        )
    head_repo = str(((pull["head"].get("repo") or {}).get("full_name")) or "")
    if not request.sha and head_repo.lower() != request.repository.lower():
        source = f"a fork ({head_repo})" if head_repo else "a fork that no longer exists"
        return (
            f"#{n} comes from {source}: a deploy of a fork's pull request names the full commit you reviewed, so "
            f"that a push after your comment cannot change what deploys. #{n}'s head now is `{head}`.",
            head,
        )
    return head


def changed_config(api: Maintainers, config: str, base_sha: str, sha: str) -> tuple[str, ...]:
    """The configuration paths (the pipeline file, its cluster-configs folder) that differ between the base
    branch's head and the pinned commit."""
    base_config = api.content(config, base_sha)
    folder = posixpath.normpath(posixpath.join(posixpath.dirname(config), cluster_configs_of(base_config)))
    unused = []
    for path, at_base in ((config, base_config), (folder, api.content(folder, base_sha))):
        if fingerprint(at_base) != fingerprint(api.content(path, sha)):
            unused.append(path)
    return tuple(unused)


def link_check_runs(api: Maintainers, request: Request, names: list[str], check_name: str, log: Log) -> None:
    """Update the reply comment with this workflow run's check run per cluster (by external_id)."""
    from hpcci.stages.report.outputs import Target
    from hpcci.stages.report.rerun import own_run

    found_reply = reply_comment(api.comments(request.pr), request.comment_id, request.pr, api.bot_login())
    if found_reply is None:
        log.info(f"trigger: no reply comment for comment {request.comment_id}; nothing to link")
        return
    mine, pinned = found_reply
    target = Target(sha=pinned.sha, run_key=context.var("GITHUB_RUN_ID"), check_name=check_name)
    rows = []
    for cluster in names:
        run = own_run(api, target, cluster)
        state = str(run.get("conclusion") or run.get("status") or "unknown") if run else ""
        rows.append(Row(cluster, state, str(run.get("html_url") or "") if run else ""))
    linked = replace(pinned, run_url=_run_url() or pinned.run_url, runs=tuple(rows))
    api.update_comment(int(mine["id"]), render(linked))
    log.info(f"trigger: linked {len(rows)} check run(s) in comment {mine['id']}")


def _run_url() -> str | None:
    server, repo, run = (context.var(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server or 'https://github.com'}/{repo}/actions/runs/{run}" if repo and run else None


def _write_outputs(values: dict[str, str]) -> None:
    target = context.var("GITHUB_OUTPUT")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.writelines(f"{k}={v}\n" for k, v in values.items())
    else:
        print(json.dumps(values))


def main(args: argparse.Namespace, log: Log) -> int:

    path = context.var("GITHUB_EVENT_PATH")
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError) as e:
        raise UsageError(f"GITHUB_EVENT_PATH {path}: cannot read the event ({e})") from e
    request = request_of(context.var("GITHUB_EVENT_NAME"), payload)
    if isinstance(request, str):
        log.info(f"trigger: {request}")
        _write_outputs(NOTHING)
        return 0
    attempt_text = context.var("GITHUB_RUN_ATTEMPT") or "1"
    if not attempt_text.isdigit() or int(attempt_text) < 1:
        raise UsageError(
            f"GITHUB_RUN_ATTEMPT is {attempt_text!r}, not a positive number; run this in a workflow"
        )
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
        outcome = decide(api, request, log, attempt=int(attempt_text), config=posixpath.normpath(args.config))
    finally:
        api.close()
    for why in outcome.reasons:
        log.info(f"trigger: {why}")
    pin = outcome.pin
    _write_outputs(
        {
            "sha": pin.sha,
            "pr": str(request.pr),
            "clusters": " ".join(request.clusters),
            "base-sha": pin.base_sha,
        }
        if pin
        else NOTHING
    )
    return 0
