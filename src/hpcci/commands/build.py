"""`hpcci build`: build the image for every platform in hpcci.yaml, write .hpcci/build.json."""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from hpcci import context, records, wiring
from hpcci.commands import common
from hpcci.log import Log, github_output

if TYPE_CHECKING:
    from hpcci.backends.builders.spec import BuildSpec, RegistryAuth
    from hpcci.config.models import Pipeline
    from hpcci.context import GitEvent

# The names in hpcci.backends.builders.BUILDERS, spelled out so `hpcci --help` need not import the builders
# (subprocess, tempfile, hashlib); a unit test keeps the two equal.
BUILDER_CHOICES = ("auto", "buildx", "buildah", "docker")


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_pipeline_arguments(p)
    common.add_event_arguments(p)
    p.add_argument(
        "--builder",
        choices=BUILDER_CHOICES,
        help="force a builder (default: image.builder in hpcci.yaml, or $HPCCI_BUILDER, else auto)",
    )
    p.add_argument(
        "--platform",
        dest="platforms",
        action="append",
        metavar="OS/ARCH",
        help="build only this platform (repeatable; default: image.platforms)",
    )
    p.add_argument("--no-cache", action="store_true", help="do not reuse cached layers")
    p.add_argument(
        "--source",
        metavar="DIR",
        type=Path,
        help="take image.context from this tree of the pinned commit (hpcci.yaml stays the workspace's)",
    )


def _created(base: Path, sha: str) -> datetime:
    """$SOURCE_DATE_EPOCH, else the commit's time (a rebuild of the same commit is the same image), else now."""
    from hpcci.process import run
    from hpcci.tags import created_from

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        done = run(
            ["git", "-C", str(base), "log", "-1", "--format=%ct", sha or "HEAD"],
            timeout=30,
            check=False,
            echo=False,
        )
        epoch = done.stdout.strip() if done.ok and done.stdout.strip().isdigit() else None
    return created_from(epoch, datetime.now(timezone.utc))


def _with_git_defaults(event: GitEvent, base: Path) -> GitEvent:
    """Outside CI (no ref, no sha), tag like a push of the checked-out branch and commit."""
    import dataclasses

    from hpcci.process import run

    if event.ref or event.sha:
        return event
    sha = run(["git", "-C", str(base), "rev-parse", "HEAD"], timeout=30, check=False, echo=False)
    ref = run(["git", "-C", str(base), "symbolic-ref", "-q", "HEAD"], timeout=30, check=False, echo=False)
    return dataclasses.replace(
        event,
        sha=sha.stdout.strip() if sha.ok else "",
        ref=ref.stdout.strip() if ref.ok else "",
    )


def builder_name(args: argparse.Namespace, configured: str) -> str:
    return getattr(args, "builder", None) or context.var("HPCCI_BUILDER") or configured


def build_registries(pipe: Pipeline, log: Log | None) -> list[RegistryAuth]:
    """build.registries with their secrets resolved (masked in the log); without ``log``, placeholders for a plan."""
    from hpcci.backends.builders.spec import RegistryAuth
    from hpcci.config.models import resolve_value

    out: list[RegistryAuth] = []
    for i, r in enumerate(pipe.build.registries):
        user = password = None
        if r.username is not None and r.password is not None:
            what = f"build.registries[{i}]"
            user = resolve_value(r.username, f"{what}.username") if log else "USER"
            password = r.password.resolve(f"{what}.password").strip() if log else "PASSWORD"
            if log:
                log.mask(password)
        out.append(RegistryAuth(host=r.host, username=user, password=password, insecure=r.insecure))
    return out


def main(args: argparse.Namespace, log: Log) -> int:
    from hpcci.backends.builders import pick_builder
    from hpcci.stages.build import plan_build, run_build

    pipe = common.pipeline(args)
    event = _with_git_defaults(common.event(args), common.base_dir(args))
    # Where bases come from first, then where the image goes (its registry may serve a base too).
    auths = [*build_registries(pipe, log), *wiring.registry_auths(pipe, log, required=False)]
    base = common.base_dir(args)
    workspace = context.var("GITHUB_WORKSPACE") or None
    meta, spec = plan_build(
        pipe,
        event,
        base,
        created=_created(base, event.sha),
        auths=auths,
        source=getattr(args, "source", None),
        workspace=Path(workspace) if workspace else None,
    )
    spec = _overrides(args, spec)
    builder = pick_builder(builder_name(args, pipe.image.builder), log)
    log.info(f"image {meta.repository}, tags {', '.join(meta.tags)}, platforms {', '.join(spec.platforms)}")
    record = run_build(spec, meta, builder, log, source_sha=event.sha, context_git=pipe.image.context_git)
    path = common.records_dir(args) / records.RECORD_FILES[records.BuildRecord]
    records.write(record, path)
    log.info(f"wrote {path}")
    github_output(
        image=record.image,
        tags="\n".join(record.tags),
        refs="\n".join(f"{record.image}:{t}" for t in record.tags),
        platforms=",".join(p.platform for p in record.platforms),
        builder=record.builder,
        version=meta.version,
    )
    log.summary(_summary(record))
    return 0


def _overrides(args: argparse.Namespace, spec: BuildSpec) -> BuildSpec:
    import dataclasses

    from hpcci.config.types import check_platform
    from hpcci.errors import UsageError

    if getattr(args, "platforms", None):
        try:
            platforms = [check_platform(p) for p in args.platforms]
        except ValueError as e:
            raise UsageError(f"--platform: {e}") from e
        spec = dataclasses.replace(spec, platforms=platforms)
    if getattr(args, "no_cache", False):
        spec = dataclasses.replace(spec, cache=False)
    return spec


def _summary(record: records.BuildRecord) -> str:
    rows = "\n".join(f"| {p.platform} | `{p.ref}` | `{p.digest[:19]}` |" for p in record.platforms)
    tags = ", ".join(f"`{t}`" for t in record.tags)
    head = f"### Build: {record.image}\n\nTags: {tags} (builder: {record.builder})\n\n"
    return f"{head}| platform | ref | image id |\n|---|---|---|\n{rows}"


def plan_section(ctx: common.PlanContext) -> str:
    """Tags, labels, platforms and the build command per platform (pure)."""
    from hpcci.backends.builders import BUILDERS, get_builder
    from hpcci.backends.builders.dockerfile import PLAN_DOCKERFILE, label_instruction
    from hpcci.process import quote
    from hpcci.stages.build import plan_build

    pipe = ctx.pipeline
    when = datetime.now(timezone.utc)
    meta, spec = plan_build(pipe, ctx.event, ctx.base, created=when, auths=build_registries(pipe, None))
    configured = pipe.image.builder
    names = tuple(BUILDERS) if configured == "auto" else (configured,)
    lines = [
        f"image: {meta.repository}",
        f"tags: {', '.join(meta.tags)}",
        f"platforms: {', '.join(spec.platforms)}",
        f"builder: {configured}"
        + (f" (the first that works: {', '.join(BUILDERS)})" if configured == "auto" else ""),
        "labels:",
        *(f"  {k}={v}" for k, v in meta.labels.items()),
    ]
    for name in names:
        lines.append(f"commands ({name}):")
        lines += [f"  {quote(get_builder(name).argv(spec, p))}" for p in spec.platforms]
    if set(names) & {"buildah", "docker"}:  # the two that take the labels as one Dockerfile step
        lines.append(f"{PLAN_DOCKERFILE} (buildah, docker) = {spec.dockerfile_path} + one step:")
        lines.append(f"  {label_instruction(spec.labels)}")
    lines.append(f"record: {ctx.records / records.RECORD_FILES[records.BuildRecord]}")
    return "\n".join(lines)
