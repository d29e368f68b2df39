"""What each stage hands the next: small JSON files (also GitHub Actions outputs).

build -> BuildRecord -> publish -> PublishRecord -> deploy -> DeployRecord + Results -> report.
Each record can be written in one job and read in another, so a stage can be re-run alone.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from hpcci.errors import UsageError
from hpcci.files import write_atomic

SCHEMA_VERSION = 1
T = TypeVar("T")

# A test's verdict, decided in one place (stages.smoke.judge); check-run conclusions derive from it alone.
Verdict = Literal["pass", "fail", "error", "timed_out", "cancelled", "infra", "action_required", "skipped"]
VERDICTS: tuple[Verdict, ...] = typing.get_args(Verdict)


@dataclass(frozen=True)
class PlatformImage:
    platform: str  # linux/amd64
    # the image id (config digest, as the builder reports it): the content key of the S3 objects and of the
    # cluster's image cache. It names no manifest, so no registry pulls it: the pushed manifests' digests are in
    # RegistryPublication.platforms.
    digest: str
    ref: str  # a local or registry reference to this platform's image
    size: int = 0


@dataclass(frozen=True)
class BuildRecord:
    image: str  # repository, e.g. docker.io/org/fib
    tags: list[str]
    platforms: list[PlatformImage]
    builder: str
    labels: dict[str, str] = field(default_factory=dict)
    manifest_digest: str | None = None  # the multi-arch index/list digest, once pushed
    source_sha: str = ""
    created: str = ""


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str
    size: int
    sha256: str
    platform: str
    digest: str
    endpoint_url: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class RegistryPublication:
    refs: list[str]  # every tag pushed, e.g. 127.0.0.1:5000/org/fib:v1.2.3
    digest: str  # manifest list digest
    platforms: dict[str, str] = field(default_factory=dict)  # platform -> its manifest's digest (pullable)


@dataclass(frozen=True)
class PublishRecord:
    image: str
    tags: list[str]
    registry: RegistryPublication | None = None
    s3: list[S3Object] = field(default_factory=list)
    s3_index_key: str | None = None


@dataclass(frozen=True)
class Usage:
    """Where one batch job's time and allocation went, from the scheduler's accounting (None: not known)."""

    queue_wait_s: float | None = None  # submit to start (to the cancel, for a job that never started)
    run_s: float | None = None  # start to end
    nodes: str = ""  # as the scheduler writes them: node[1-2]
    node_count: int | None = None
    cpus: int | None = None  # allocated
    gpus: int | None = None  # allocated
    core_hours: float | None = None  # cpus x run time
    gpu_hours: float | None = None  # gpus x run time


@dataclass(frozen=True)
class ClusterUsage:
    """Where one cluster's deploy spent its time and allocation."""

    stage_s: float | None = None  # getting the image's tar there and checked (None: the image was cached)
    convert_s: float | None = None  # converting it: on the login node, or the conversion job's run time
    core_hours: float = 0.0  # every job of the deploy, the conversion job included
    gpu_hours: float = 0.0
    jobs: int = 0  # batch jobs submitted


@dataclass(frozen=True)
class ClusterDeploy:
    cluster: str
    login_host: str
    platform: str
    staging: str  # s3 | sftp | registry
    tar_path: str | None
    tar_sha256: str | None
    sif_path: str
    image_digest: str
    cache_hit: bool = False
    jobs: dict[str, str] = field(default_factory=dict)  # test name -> job id
    error: str | None = None
    image_ref: str = ""  # where the image is fetched from: repo@sha256:<manifest digest>, or s3://bucket/key
    sif_sha256: str | None = None  # of the converted image on the cluster
    runtime_version: str | None = None  # as the runtime's version command printed it (None: not asked/known)
    compression: str | None = None  # the mksquashfs words conversions passed, or "gzip" (none passed)


@dataclass(frozen=True)
class DeployRecord:
    image: str
    clusters: list[ClusterDeploy]


@dataclass(frozen=True)
class TestResult:
    cluster: str
    test: str
    platform: str
    job_id: str | None
    state: str  # the scheduler's state word (COMPLETED, FAILED, TIMEOUT, ...) or NOT_RUN
    exit_code: int | None  # the program's own; None when it did not end by itself (timeout, cancelled, ...)
    elapsed_s: float | None
    verdict: Verdict
    reason: str  # one sentence a person understands
    output_tail: str = ""
    # report.output none: the job's output file, kept on the cluster (output_tail stays empty)
    output_on_cluster: str = ""
    source_file: str | None = None  # the hpcci.yaml that defines the test
    source_line: int | None = None
    usage: Usage | None = None  # None: never submitted


@dataclass(frozen=True)
class ClusterResult:
    cluster: str
    platform: str
    tests: list[TestResult]
    image_digest: str = ""
    tar_sha256: str | None = None
    sif_path: str | None = None
    error: str | None = (
        None  # the cluster failed before or around its tests (unreachable, conversion failed...)
    )
    release: ReleaseOutcome | None = (
        None  # a release tag: installed as a module, or why not (stages/promote.py)
    )
    image_ref: str = (
        ""  # a reference that fetches the image: repo@sha256:<manifest digest>, or s3://bucket/key
    )
    sif_sha256: str | None = None
    usage: ClusterUsage = field(default_factory=ClusterUsage)


@dataclass(frozen=True)
class Results:
    image: str
    clusters: list[ClusterResult]
    ref: str = ""
    sha: str = ""

    @property
    def passed(self) -> bool:
        """Every cluster ran and every test passed; no cluster at all is not a pass."""
        return bool(self.clusters) and all(
            c.error is None and all(t.verdict == "pass" for t in c.tests) for c in self.clusters
        )


# -- JSON ----------------------------------------------------------------------------------------------------


def to_json(record: Any) -> str:
    return (
        json.dumps({"schema": SCHEMA_VERSION, **dataclasses.asdict(record)}, indent=2, sort_keys=False) + "\n"
    )


def from_json(cls: type[T], text: str, *, source: str = "record") -> T:
    try:
        data = json.loads(text)
        data.pop("schema", None)
        built: T = _build(cls, data)
        return built
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise UsageError(
            f"{source}: not a valid {cls.__name__} ({e}); re-run the stage that writes it"
        ) from e


def _build(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(value) - names
        if unknown:
            raise KeyError(f"unknown field(s) {sorted(unknown)}")
        return tp(**{k: _build(hints[k], v) for k, v in value.items()})
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _build(args[0], value)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_build(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: _build(item, v) for k, v in value.items()}
    return value


def write(record: Any, path: Path) -> None:
    """Write atomically: a reader never sees a half-written record."""
    write_atomic(path, to_json(record))


def read(cls: type[T], path: Path) -> T:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise UsageError(f"{path}: no {cls.__name__} here; run the stage that writes it first") from e
    return from_json(cls, text, source=str(path))


RECORD_FILES = {
    BuildRecord: "build.json",
    PublishRecord: "publish.json",
    DeployRecord: "deploy.json",
    Results: "results.json",
}


@dataclass(frozen=True)
class ReleaseOutcome:
    """What became of a release on one cluster: installed as a module, already there, or why not."""

    module: str  # <name>/<version>, e.g. fibonacci/0.1.0
    status: Literal["installed", "unchanged", "not_installed", "refused", "failed"]
    reason: str  # one sentence: what happened, or why nothing was installed
    default: bool = False  # the module's default is this version now
    removed: list[str] = field(default_factory=list)  # versions the retention removed
    sif: str | None = None
    modulefile: str | None = None
