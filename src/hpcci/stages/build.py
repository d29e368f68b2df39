"""The build stage: tags and labels from the event, one build per platform, a BuildRecord.

No SDK imports here: the builder comes in as an argument (hpcci.backends.builders.Builder). The context a builder
sees is confined to the checkout and never holds .git (clean_context): actions/checkout can leave the job's token
in .git/config, and an ordinary `COPY . .` would bake it into the published image.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
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
    source: Path | None = None,
    workspace: Path | None = None,
) -> tuple[ImageMeta, BuildSpec]:
    """Tags, labels and the build spec (pure: reads nothing, runs nothing but path resolution).

    ``source``: the pinned commit's tree (a deploy of a pull request's code): image.context is taken there, at
    the place the pipeline file's folder has in ``workspace``; hpcci.yaml itself stays the trusted one."""
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
    context = context_dir(base, image.context, source=source, workspace=workspace)
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


def context_dir(
    base: Path, context: str, *, source: Path | None = None, workspace: Path | None = None
) -> Path:
    """image.context as a folder: under ``base`` (the pipeline file's folder), or its place in ``source``. With a
    ``workspace`` or a ``source`` it must stay inside that checkout (symlinks resolved)."""
    root = workspace.resolve() if workspace else None
    path = (base / context).resolve()
    if source is not None:
        if root is None:
            raise UsageError("a pinned source needs the workspace it mirrors; set GITHUB_WORKSPACE")
        try:
            where = base.resolve().relative_to(root)
        except ValueError:
            raise UsageError(f"the pipeline file's folder {base} is outside the workspace {root}") from None
        root = source.resolve()
        path = (root / where / context).resolve()
    if root is not None and path != root and root not in path.parents:
        raise UsageError(
            f"image.context: {path} is outside the checkout {root}; point image.context inside the repository"
        )
    return path


def _no_git(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n == ".git"]


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # same file system: no copy of the data
    except OSError:
        shutil.copy2(src, dst)


@contextmanager
def clean_context(spec: BuildSpec) -> Iterator[BuildSpec]:
    """``spec`` with its context replaced by a copy without any .git (hard links where possible), removed after;
    its Dockerfile by the original's absolute path. Builders (buildx, buildah, the Docker SDK) then need no
    .dockerignore rule of the user's for it."""
    parent = spec.context.parent
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".hpcci-context-", dir=parent))
    except OSError:
        tmp = Path(tempfile.mkdtemp(prefix="hpcci-context-"))
    try:
        copy = tmp / "context"
        shutil.copytree(spec.context, copy, symlinks=True, ignore=_no_git, copy_function=_link_or_copy)
        # The Dockerfile stays the original file (the same text), so errors name the path the user knows.
        yield dataclasses.replace(spec, context=copy, dockerfile=spec.dockerfile_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def run_build(
    spec: BuildSpec, meta: ImageMeta, b: Builder, log: Log, *, source_sha: str, context_git: bool = False
) -> BuildRecord:
    """Build every platform (each in its own log group) and describe the result. The builder gets the context
    without .git unless ``context_git`` (image.context_git) asks for it."""
    preflight(spec)
    images: list[PlatformImage] = []
    with nullcontext(spec) if context_git else clean_context(spec) as clean:
        for platform in spec.platforms:
            with log.step(f"build {platform} ({b.name})"):
                built = b.build(clean, platform, log)
                log.info(f"built {built.ref} {built.image_id[:19]} for {platform}")
            images.append(
                PlatformImage(platform=platform, digest=built.image_id, ref=built.ref, size=built.size)
            )
    return BuildRecord(
        image=meta.repository,
        tags=meta.tags,
        platforms=images,
        builder=b.name,
        labels=meta.labels,
        source_sha=source_sha,
        created=meta.labels.get("org.opencontainers.image.created", ""),
    )
