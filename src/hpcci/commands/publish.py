"""`hpcci publish --to registry|s3`: push the built images, write .hpcci/publish.json."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hpcci import context, records, wiring
from hpcci.commands import common
from hpcci.errors import UsageError
from hpcci.log import Log, github_output

if TYPE_CHECKING:  # config imports pydantic: only when a command runs, so `hpcci --help` stays fast
    from hpcci.config.models import Pipeline

TARGETS = ("registry", "s3")


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_pipeline_arguments(p)
    p.add_argument(
        "--to",
        dest="targets",
        action="append",
        choices=TARGETS,
        help="where to publish (repeatable; default: every target under publish: in hpcci.yaml)",
    )


def targets(args: argparse.Namespace, pipe: Pipeline) -> list[str]:
    configured = [t for t in TARGETS if getattr(pipe.publish, t) is not None]
    wanted = list(dict.fromkeys(getattr(args, "targets", None) or configured))
    missing = [t for t in wanted if t not in configured]
    if missing:
        raise UsageError(f"--to {missing[0]}: hpcci.yaml has no publish.{missing[0]} section; add one")
    if not wanted:
        raise UsageError("nothing to publish: hpcci.yaml has neither publish.registry nor publish.s3")
    return wanted


def main(args: argparse.Namespace, log: Log) -> int:
    from hpcci.stages.publish import merge

    pipe = common.pipeline(args)
    wanted = targets(args, pipe)
    folder = common.records_dir(args)
    build = records.read(records.BuildRecord, folder / records.RECORD_FILES[records.BuildRecord])
    record = records.PublishRecord(image=build.image, tags=build.tags)
    if "registry" in wanted:
        record = _registry(pipe, build, record, log)
    if "s3" in wanted:
        record = _s3(pipe, build, record, log)
    path = folder / records.RECORD_FILES[records.PublishRecord]
    old = records.read(records.PublishRecord, path) if path.exists() else None
    record = merge(old, record)
    records.write(record, path)
    log.info(f"wrote {path}")
    _outputs(record)
    return 0


def _registry(
    pipe: Pipeline, build: records.BuildRecord, record: records.PublishRecord, log: Log
) -> records.PublishRecord:
    import dataclasses

    from hpcci.backends.registry import pusher_for
    from hpcci.references import destination
    from hpcci.stages.publish import publish_registry

    reg = pipe.publish.registry
    assert reg is not None
    dest = destination(reg.url, reg.repository, build.image, insecure=reg.insecure)
    auths = wiring.registry_auths(pipe, log, required=True)
    pub, _ = publish_registry(
        build, dest, auths[0] if auths else None, pusher_for(build.builder, insecure=reg.insecure), log
    )
    return dataclasses.replace(record, registry=pub)


def _s3(
    pipe: Pipeline, build: records.BuildRecord, record: records.PublishRecord, log: Log
) -> records.PublishRecord:
    import dataclasses
    import tempfile
    from pathlib import Path

    from hpcci.backends.builders import get_builder
    from hpcci.stages.publish import publish_s3

    s3 = pipe.publish.s3
    assert s3 is not None
    settings = wiring.s3_settings(pipe, log)
    store = wiring.make_store(settings)
    with tempfile.TemporaryDirectory(prefix="hpcci-tar-", dir=context.var("HPCCI_TMPDIR") or None) as tmp:
        result = publish_s3(
            build,
            store,
            get_builder(build.builder),
            log,
            prefix=s3.prefix,
            workdir=Path(tmp),
            manifest_digest=record.registry.digest if record.registry else None,
            endpoint_url=settings.endpoint_url,
            region=settings.region,
        )
    return dataclasses.replace(record, s3=result.objects, s3_index_key=result.index_key)


def _outputs(record: records.PublishRecord) -> None:
    values = {"image": record.image, "tags": "\n".join(record.tags)}
    if record.registry:
        values["digest"] = record.registry.digest
        values["refs"] = "\n".join(record.registry.refs)
    if record.s3:
        values["s3_keys"] = "\n".join(o.key for o in record.s3)
        values["s3_bucket"] = record.s3[0].bucket
    if record.s3_index_key:
        values["s3_index_key"] = record.s3_index_key
    github_output(**values)


def plan_section(ctx: common.PlanContext) -> str:
    """Targets, refs and S3 keys the publish would write (pure)."""
    from datetime import datetime, timezone

    from hpcci.platforms import platform_tag
    from hpcci.references import destination
    from hpcci.stages.publish import s3_index_key, s3_key
    from hpcci.tags import image_meta

    pipe = ctx.pipeline
    meta = image_meta(pipe.image, pipe.tags, ctx.event, created=datetime.now(timezone.utc))
    lines: list[str] = []
    reg = pipe.publish.registry
    if reg:
        dest = destination(reg.url, reg.repository, meta.repository, insecure=reg.insecure)
        lines.append(f"registry: {dest.api} ({'insecure' if reg.insecure else 'https'})")
        lines += [
            f"  platform image {p}: {dest.ref(platform_tag(meta.tags[0], p))}" for p in pipe.image.platforms
        ]
        lines += [f"  manifest list: {dest.ref(t)}" for t in meta.tags]
    s3 = pipe.publish.s3
    if s3:
        where = s3.endpoint_url or "AWS"
        lines.append(f"s3: bucket {s3.bucket} at {where}")
        lines += [
            f"  {p}: s3://{s3.bucket}/{s3_key(s3.prefix, meta.repository, '<image id>', p)}"
            for p in pipe.image.platforms
        ]
        lines.append(f"  index: s3://{s3.bucket}/{s3_index_key(s3.prefix, meta.repository)}")
    if not lines:
        lines.append("nothing to publish (no publish.registry or publish.s3 in hpcci.yaml)")
    lines.append(f"record: {ctx.records / records.RECORD_FILES[records.PublishRecord]}")
    return "\n".join(lines)
