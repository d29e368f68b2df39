"""`hpcci plan`: print what a run would do - tags, targets, per cluster the remote commands and batch scripts.

Cluster paths stay as the config writes them ($WORK/...): a deploy resolves them in a login shell. They are printed
so that a command pasted into a shell on the cluster means the same ("$WORK"'/hpcci/x'), and each file written
says its paths are resolved at deploy time (a scheduler expands no variables in its directives).
"""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from hpcci.commands import common
from hpcci.log import Log
from hpcci.shell import path_variables

if TYPE_CHECKING:
    from hpcci.config.models import Cluster

SECTIONS = ("build", "publish", "deploy", "release", "report")
MODULES = {"release": "releases"}  # a section printed by another command's module


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_pipeline_arguments(p)
    common.add_event_arguments(p)
    common.add_cluster_arguments(p)
    p.add_argument("--only", choices=SECTIONS, action="append", help="print only these stages (repeatable)")


def main(args: argparse.Namespace, log: Log) -> int:
    pipe = common.pipeline(args)
    ctx = common.PlanContext(
        pipeline=pipe,
        clusters=common.clusters(args, pipe),
        event=common.event(args),
        base=common.base_dir(args),
        records=common.records_dir(args),
    )
    ev = ctx.event
    print(
        f"# hpcci plan for {pipe.image.name}: event {ev.event_name}, ref {ev.ref or '(none)'}, sha {ev.sha or '(none)'}"
    )
    prefixes = path_prefixes(ctx.clusters.values())
    for name in args.only or SECTIONS:
        module = importlib.import_module(f"hpcci.commands.{MODULES.get(name, name)}")
        print(f"\n## {name}")
        print(
            "\n".join(
                pasteable(line, prefixes) for line in module.plan_section(ctx).rstrip("\n").splitlines()
            )
        )
    return 0


def path_prefixes(clusters: Iterable[Cluster]) -> list[str]:
    """The cluster paths as written in their configs that hold a $VARIABLE (a deploy resolves them in a login
    shell), longest first."""
    out: set[str] = set()
    for c in clusters:
        p, r = c.paths, c.release
        out.update(
            v for v in (p.scratch, p.image_cache, p.tmpdir, *((r.root, r.modulefiles) if r else ())) if v
        )
    return sorted((v for v in out if path_variables([v])), key=len, reverse=True)


RESOLVED = "   # its $VARIABLES, in the path and in the text, are resolved at deploy time"


def pasteable(line: str, prefixes: Sequence[str]) -> str:
    """A plan line that stays right when pasted into a shell on the cluster: inside single quotes a cluster path's
    $VARIABLE would stay literal, so it is taken out into double quotes (`'$WORK/x'` -> `"$WORK"'/x'`). A file
    written (a batch script: a scheduler expands no variables in its directives) says its paths are resolved at deploy."""
    if line.startswith("write ") and any(p in line for p in prefixes):
        return line + RESOLVED
    if line.startswith("#") or not any(p in line for p in prefixes):  # a directive or comment: not pasted
        return line
    out, i = [], 0
    while i < len(line):  # the quoting shlex.join writes: '...' spans, "'" for a quote, nothing else
        c = line[i]
        if c == "'":
            end = line.index("'", i + 1) if "'" in line[i + 1 :] else len(line)
            out.append(_unquote_variables(line[i + 1 : end], prefixes))
            i = end + 1
        elif c == '"':
            end = line.index('"', i + 1) if '"' in line[i + 1 :] else len(line)
            out.append(line[i : end + 1])
            i = end + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


_VARIABLE = re.compile(r"\$(?:\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)")


def _unquote_variables(word: str, prefixes: Sequence[str]) -> str:
    """One single-quoted word, its cluster paths' variables in double quotes and the rest still single-quoted."""
    spans: list[tuple[int, int]] = []  # the variables of each cluster path in the word
    i = 0
    while i < len(word):
        prefix = next((p for p in prefixes if word.startswith(p, i)), None)
        if prefix is None:
            i += 1
            continue
        spans += [(i + m.start(), i + m.end()) for m in _VARIABLE.finditer(prefix)]
        i += len(prefix)
    if not spans:
        return f"'{word}'"
    out, at = [], 0
    for start, end in spans:
        out += [f"'{word[at:start]}'" if start > at else "", f'"{word[start:end]}"']
        at = end
    out.append(f"'{word[at:]}'" if at < len(word) else "")
    return "".join(out)
