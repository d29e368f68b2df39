"""The build stage: tags and labels from the event, one build per platform, a BuildRecord.

No SDK imports here: the builder comes in as an argument (hpcci.backends.builders.Builder).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from hpcci.backends.builders import Builder
from hpcci.backends.builders.dockerfile import dockerfile_has_run
from hpcci.backends.builders.emulation import emulation_problem
from hpcci.backends.builders.spec import BuildSpec, RegistryAuth
from hpcci.config.models import Pipeline
from hpcci.context import GitEvent
from hpcci.errors import PlatformError, UsageError
from hpcci.log import Log
from hpcci.records import BuildRecord, PlatformImage
from hpcci.tags import ImageMeta, image_meta


def plan_build(
    pipeline: Pipeline,
    event: GitEvent,
    base: Path,
    *,
    created: datetime,
    auths: list[RegistryAuth] | None = None,
) -> tuple[ImageMeta, BuildSpec]:
    """Tags, labels and the build spec (pure: reads nothing, runs nothing)."""
    image = pipeline.image
    meta = image_meta(image, pipeline.tags, event, created=created)
    cache_from: list[str] = []
    reg = pipeline.publish.registry
    if reg is not None and image.cache:
        from hpcci.references import destination
        from hpcci.tags import sanitize_tag

        dest = destination(reg.url, reg.repository, meta.repository, insecure=reg.insecure)
        candidates = [meta.tags[0], sanitize_tag(event.default_branch) or ""]
        cache_from = [f"{dest.name}:{t}" for t in dict.fromkeys(candidates) if t]
    context = (base / image.context).resolve()
    spec = BuildSpec(
        context=context,
        dockerfile=Path(image.dockerfile),
        platforms=list(image.platforms),
        repository=meta.repository,
        tag=meta.tags[0],
        build_args=dict(image.build_args),
        labels=meta.labels,
        cache=image.cache,
        auths=list(auths or []),
        cache_from=cache_from,
    )
    return meta, spec


def preflight(spec: BuildSpec) -> None:
    """Fail before building anything: a missing context or Dockerfile, a platform this machine cannot emulate."""
    if not spec.context.is_dir():
        raise UsageError(f"image.context: {spec.context} is not a folder; fix image.context in hpcci.yaml")
    dockerfile = spec.dockerfile_path
    try:
        text = dockerfile.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(
            f"image.dockerfile: cannot read {dockerfile}: {e.strerror}; fix image.dockerfile"
        ) from e
    if dockerfile_has_run(text):
        problems = [p for p in (emulation_problem(pl) for pl in spec.platforms) if p]
        if problems:
            raise PlatformError(problems[0])


def run_build(spec: BuildSpec, meta: ImageMeta, b: Builder, log: Log, *, source_sha: str) -> BuildRecord:
    """Build every platform (each in its own log group) and describe the result."""
    preflight(spec)
    images: list[PlatformImage] = []
    for platform in spec.platforms:
        with log.step(f"build {platform} ({b.name})"):
            built = b.build(spec, platform, log)
            log.info(f"built {built.ref} {built.image_id[:19]} for {platform}")
        images.append(PlatformImage(platform=platform, digest=built.image_id, ref=built.ref, size=built.size))
    return BuildRecord(
        image=meta.repository,
        tags=meta.tags,
        platforms=images,
        builder=b.name,
        labels=meta.labels,
        source_sha=source_sha,
        created=meta.labels.get("org.opencontainers.image.created", ""),
    )
