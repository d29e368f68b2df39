"""The reply comments of `hpcci trigger`: the pin reply's template, rendered and read back (only a comment whose
whole body is that template counts), and the refusal reply that pins nothing.

The pin reply carries the marker `<!-- hpcci-trigger comment=ID pr=N sha=SHA -->` on its first line. A re-run of the
workflow reads the pinned sha back from it, so who may write it matters: ``reply_comment`` takes it only from a
comment by the login hpcci writes as, whose body renders back to itself from what was read (nothing before, after
or inside it that the template does not write), and that names the triggering comment's id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]
ALL_CLUSTERS = "the clusters in deploy.clusters"
NAMED = (
    "That is the commit the comment names, equal to #{pr}'s head when the trigger job ran: a push after the "
    "comment does not change what deploys."
)
BARE = (
    "That is #{pr}'s head when the trigger job ran (a pull request from this repository: only people with write "
    "access push to its branch, and they can deploy anyway). To bind one commit, comment "
    "`/hpcci deploy @<full sha>`."
)
CONFIGURATION = "Configuration: as on `{ref}` at `{sha}` when the trigger job ran, never the pull request's."
UNUSED = "Not used: this pull request's changes to {paths}."
TABLE = ["", "| cluster | check run |", "|---|---|"]

_BODY = re.compile(
    r"<!-- hpcci-trigger comment=(?P<comment>\d+) pr=(?P<pr>\d+) sha=(?P<sha>[0-9a-f]{40}) -->\n"
    r"\*\*hpcci deploy\*\* requested by @(?P<user>[A-Za-z0-9-]+)"
    r"(?: \(\[comment\]\((?P<url>[^\s()]+)\)\))?: deploying `(?P=sha)` to (?P<where>[^\n]+)\.\n"
    r"(?P<basis>[^\n]+)"
    r"(?:\nConfiguration: as on `(?P<ref>[^`\n]+)` at `(?P<base>[0-9a-f]{40})`[^\n]*)?"
    r"(?:\nNot used: this pull request's changes to (?P<unused>[^\n]+)\.)?"
    r"(?:\nWorkflow run: (?P<run>\S+))?"
    r"(?P<table>\n\n\| cluster \| check run \|\n\|---\|---\|(?:\n[^\n]*)*)?\Z"
)
_ROW = re.compile(
    r"\| (?P<cluster>[A-Za-z0-9][A-Za-z0-9_.-]*) \| (?:\[(?P<state>[a-z_]+)\]\((?P<url>[^\s()]*)\)|\(no check run\)) \|"
)


@dataclass(frozen=True)
class Row:
    """One cluster's check run of this workflow run in the reply ("" state: none found)."""

    cluster: str
    state: str = ""
    url: str = ""


@dataclass(frozen=True)
class Reply:
    """What the pin reply says: what deploys, for whom, why that commit, and (after the deploy) the check runs."""

    comment_id: int
    pr: int
    sha: str
    user: str
    comment_url: str = ""
    clusters: tuple[str, ...] = ()
    named: bool = True  # the comment named the commit (else: the bare form on a same-repository PR)
    unused: tuple[str, ...] = ()  # configuration paths the PR changes, which the deploy does not use
    base_ref: str = ""
    base_sha: str = ""
    run_url: str = ""
    runs: tuple[Row, ...] = ()


def render(r: Reply) -> str:
    where = ", ".join(r.clusters) if r.clusters else ALL_CLUSTERS
    lines = [
        f"<!-- hpcci-trigger comment={r.comment_id} pr={r.pr} sha={r.sha} -->",
        f"**hpcci deploy** requested by @{r.user}"
        + (f" ([comment]({r.comment_url}))" if r.comment_url else "")
        + f": deploying `{r.sha}` to {where}.",
        (NAMED if r.named else BARE).format(pr=r.pr),
    ]
    if r.base_sha:
        lines.append(CONFIGURATION.format(ref=r.base_ref, sha=r.base_sha))
    if r.unused:
        lines.append(UNUSED.format(paths=", ".join(f"`{p}`" for p in r.unused)))
    if r.run_url:
        lines.append(f"Workflow run: {r.run_url}")
    if r.runs:
        lines += TABLE
        for row in r.runs:
            cell = f"[{row.state}]({row.url})" if row.state else "(no check run)"
            lines.append(f"| {row.cluster} | {cell} |")
    return "\n".join(lines)


def parse(body: str) -> Reply | None:
    """The reply a comment body is, when the WHOLE body is the template (it renders back to itself); else None."""
    m = _BODY.match(body)
    if not m:
        return None
    pr = int(m.group("pr"))
    basis = m.group("basis")
    if basis not in (NAMED.format(pr=pr), BARE.format(pr=pr)):
        return None
    where = m.group("where")
    rows: list[Row] = []
    for line in (m.group("table") or "").split("\n")[4:]:
        row = _ROW.fullmatch(line)
        if row is None:
            return None
        rows.append(Row(row.group("cluster"), row.group("state") or "", row.group("url") or ""))
    unused = m.group("unused") or ""
    reply = Reply(
        comment_id=int(m.group("comment")),
        pr=pr,
        sha=m.group("sha"),
        user=m.group("user"),
        comment_url=m.group("url") or "",
        clusters=() if where == ALL_CLUSTERS else tuple(where.split(", ")),
        named=basis == NAMED.format(pr=pr),
        unused=tuple(p.strip("`") for p in unused.split(", ")) if unused else (),
        base_ref=m.group("ref") or "",
        base_sha=m.group("base") or "",
        run_url=m.group("run") or "",
        runs=tuple(rows),
    )
    return reply if render(reply) == body else None


def reply_comment(comments: list[JSON], comment_id: int, pr: int, author: str) -> tuple[JSON, Reply] | None:
    """The pin reply to ``comment_id`` on ``pr``, if an attempt of this workflow made one. Only a comment by
    ``author`` (the login hpcci writes as) whose whole body is the template counts: anyone - another App's bot, or
    another workflow posting as github-actions[bot] with the marker inside a longer text - could otherwise pin a
    commit of their choice."""
    for c in comments:
        if (c.get("user") or {}).get("login") != author:
            continue
        reply = parse(str(c.get("body") or ""))
        if reply is not None and reply.comment_id == comment_id and reply.pr == pr:
            return c, reply
    return None


def refusal(user: str, comment_url: str, why: str, command: str = "") -> str:
    """The reply to a trusted comment that deploys nothing: why, and (when one helps) the exact comment to post.
    It carries no marker: nothing can be pinned from it."""
    lines = [
        f"**hpcci deploy** requested by @{user}"
        + (f" ([comment]({comment_url}))" if comment_url else "")
        + ": nothing deploys.",
        why,
    ]
    if command:
        lines += ["", "After reviewing that commit, comment:", "", "```", command, "```"]
    return "\n".join(lines)
