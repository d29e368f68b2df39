"""Pipeline (hpcci.yaml) and cluster (cluster-configs/*.yaml) configuration: the typed, frozen models.

Secrets are never inline: they are references to an environment variable or a file, resolved only when used.
Reading files (bounded) and wording errors (file:line:column, "did you mean ...?") is hpcci.config_load's job.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from hpcci.backends.launchers import LauncherName
from hpcci.backends.runtime import Compression, GpuKind, RuntimeName, Squashfs
from hpcci.backends.schedulers import SchedulerName
from hpcci.backends.schedulers.slurm import slurm_time_seconds
from hpcci.errors import ConfigError
from hpcci.platforms import PLATFORMS

# -- value types ----------------------------------------------------------------------------------------------


def _slurm_time(v: str) -> str:
    if "." in v or slurm_time_seconds(v) is None:
        raise ValueError(
            f"{v!r} is not a Slurm time: write MM, MM:SS, HH:MM:SS or D-HH:MM:SS (e.g. '00:10:00' for ten minutes)"
        )
    return v


def _platform(v: str) -> str:
    if v not in PLATFORMS:
        raise ValueError(f"{v!r} is not a platform: write linux/amd64 or linux/arm64 (os/arch[/variant])")
    return v


def _memory(v: str) -> str:
    if not re.match(r"^\d+[KMGT]?$", v):
        raise ValueError(f"{v!r} is not a Slurm memory size: write e.g. 512M or 4G")
    return v


def _name(v: str) -> str:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", v):
        raise ValueError(f"{v!r} is not a valid name: use letters, digits, '.', '_' and '-'")
    return v


SlurmTime = Annotated[str, AfterValidator(_slurm_time)]
Platform = Annotated[str, AfterValidator(_platform)]
Memory = Annotated[str, AfterValidator(_memory)]
Name = Annotated[str, AfterValidator(_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FromEnv(_Model):
    """A value read from an environment variable (a CI secret)."""

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    def resolve(self, what: str) -> str:
        value = os.environ.get(self.env)
        if not value:
            raise ConfigError(
                f"{what}: environment variable {self.env} is not set; set it (e.g. from a CI secret)"
            )
        return value


class FromFile(_Model):
    """A value read from a local file (~ and $VARS expanded)."""

    file: str

    @property
    def path(self) -> Path:
        return Path(os.path.expandvars(os.path.expanduser(self.file)))

    def resolve(self, what: str) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(
                f"{what}: cannot read {self.path}: {e.strerror}; fix the path or create the file"
            ) from e


Secret = FromEnv | FromFile
Value = str | FromEnv


def resolve_value(v: Value, what: str) -> str:
    return v if isinstance(v, str) else v.resolve(what)


# -- hpcci.yaml ---------------------------------------------------------------------------------------------


class ImageConfig(_Model):
    name: str = Field(description="Image repository without tag, e.g. docker.io/org/app")
    context: str = "."
    dockerfile: str = "Dockerfile"
    platforms: list[Platform] = Field(default_factory=lambda: ["linux/amd64", "linux/arm64"], min_length=1)
    build_args: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    builder: Literal["auto", "buildx", "buildah", "docker"] = "auto"
    cache: bool = True
    description: str = ""
    licenses: str = ""


class TagRules(_Model):
    branch: bool = True
    pr: bool = True
    sha: bool = True
    semver: list[str] = Field(default_factory=lambda: ["{{version}}", "{{major}}.{{minor}}", "{{major}}"])
    latest: bool | Literal["auto"] = "auto"
    extra: list[str] = Field(default_factory=list)


class RegistryTarget(_Model):
    url: str = "docker.io"
    repository: str | None = Field(None, description="Defaults to image.name without its registry host")
    username: Value | None = None
    password: Secret | None = None
    insecure: bool = False


class S3Target(_Model):
    bucket: str
    prefix: str = "hpcci"
    endpoint_url: str | None = None
    region: str | None = None
    path_style: bool = False
    access_key: Value | None = None
    secret_key: Secret | None = None
    outage_window: float = Field(120.0, ge=0, description="Seconds an upload waits out a server outage")


class PublishConfig(_Model):
    registry: RegistryTarget | None = None
    s3: S3Target | None = None


class DeployConfig(_Model):
    clusters: list[Name] = Field(default_factory=list)
    cluster_configs: str = "cluster-configs"
    triggers: list[Literal["tag", "push", "pull_request", "workflow_dispatch"]] = Field(
        default_factory=lambda: ["tag", "workflow_dispatch"]  # type: ignore[arg-type]
    )
    staging: Literal["auto", "s3", "sftp", "registry"] = "auto"
    deadline: SlurmTime = "01:00:00"


class Expect(_Model):
    exit_code: int = 0
    output: str | None = Field(None, description="A regular expression the job output must match")


class Resources(_Model):
    nodes: int = Field(1, ge=1)
    tasks: int = Field(1, ge=1)
    tasks_per_node: int | None = Field(None, ge=1)
    cpus_per_task: int | None = Field(None, ge=1)
    time: SlurmTime = "00:10:00"
    memory: Memory | None = None
    partition: str | None = Field(
        None, description="A partition name from the cluster config (e.g. cpu, gpu)"
    )


class SmokeTest(_Model):
    name: Name
    command: str | list[str]
    expect: Expect = Field(default_factory=Expect)
    resources: Resources = Field(default_factory=Resources)
    gpu: bool = False
    mpi: bool = False
    binds: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    clusters: list[Name] | None = Field(None, description="Run only on these clusters (default: all)")

    @property
    def argv(self) -> list[str]:
        import shlex

        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)


class ReportConfig(_Model):
    check_name: str = "hpcci / {cluster}"
    status_fallback: bool = True
    pr_comment: bool = False


class Pipeline(_Model):
    version: Literal[1] = 1
    image: ImageConfig
    tags: TagRules = Field(default_factory=TagRules)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    tests: list[SmokeTest] = Field(default_factory=list)
    report: ReportConfig = Field(default_factory=ReportConfig)

    _source: Source | None = PrivateAttr(default=None)

    @property
    def source(self) -> Source:
        return self._source or Source("hpcci.yaml", {})

    def test_line(self, index: int) -> int | None:
        return self.source.line_of(("tests", index))


# -- cluster-configs/NAME.yaml --------------------------------------------------------------------------------


class JumpHost(_Model):
    host: str
    port: int = Field(22, ge=1, le=65535)
    user: Value


class LoginConfig(_Model):
    host: str
    port: int = Field(22, ge=1, le=65535)
    user: Value
    key: Secret
    key_passphrase: Secret | None = None
    known_hosts: Secret = Field(
        description="known_hosts lines for the login host: host keys are never auto-accepted"
    )
    jump: JumpHost | None = None
    connect_timeout: float = Field(30, gt=0)
    command_timeout: float = Field(600, gt=0)
    keepalive: int = Field(30, ge=0)


class Partition(_Model):
    name: str = Field(description="The partition's name in Slurm")
    arch: Literal["x86_64", "aarch64", "ppc64le"] = "x86_64"  # platforms.CLUSTER_MACHINES
    gres: str | None = Field(None, description="GRES for GPU jobs, e.g. gpu:1")
    directives: list[str] = Field(default_factory=list)


class PollConfig(_Model):
    initial: float = Field(1.0, gt=0)
    max: float = Field(30.0, gt=0)
    max_failures: int = Field(5, ge=0)


class SchedulerConfig(_Model):
    type: SchedulerName = "slurm"
    account: str | None = None
    reservation: str | None = None
    qos: str | None = None
    partitions: dict[Name, Partition] = Field(min_length=1)
    default_partition: str = "cpu"
    gpu_partition: str = "gpu"
    directives: list[str] = Field(default_factory=list, description="Extra #SBATCH lines, without '#SBATCH '")
    poll: PollConfig = Field(default_factory=PollConfig)
    template: str | None = Field(
        None,
        description="An sbatch script template (path relative to this file) replacing hpcci's default; "
        "placeholders $directives, $body, $comment, $job_name ($$ for a literal $)",
    )


class RuntimeConfig(_Model):
    type: RuntimeName
    modules: list[str] = Field(default_factory=list)
    executable: str | None = None
    convert_on: Literal["login", "compute"] = "login"
    gpu: GpuKind = Field(
        "nvidia",
        description="The GPUs GPU tests get; each runtime gives them its own way (apptainer --nv or --rocm, "
        "podman a CDI device or /dev/kfd and /dev/dri)",
    )
    gpu_modules: list[str] = Field(default_factory=list, description="Modules GPU tests load (e.g. cuda)")
    cleanenv: bool = True
    binds: list[str] = Field(default_factory=list)
    exec_args: dict[RuntimeName, list[str]] = Field(
        default_factory=dict,
        description="Options this site's runs need, by runtime (only the entry for `type` is used), one word "
        "each, e.g. {podman: [--ulimit=nofile=1024:1024]} where rootless podman cannot raise its limits",
    )

    compression: Compression = Field("gzip", description="SquashFS compression (not gzip: apptainer >= 1.4)")
    convert_cpus: int | None = Field(None, ge=1, description="Conversion job CPUs and mksquashfs -processors")

    @model_validator(mode="after")
    def _compression_is_apptainers(self) -> RuntimeConfig:
        if self.compression != "gzip" and self.type != "apptainer":
            raise ValueError(
                f"runtime.compression {self.compression} needs apptainer >= 1.4 (--mksquashfs-args); "
                f"{self.type} packs its images its own way: leave compression at gzip"
            )
        return self

    @property
    def type_exec_args(self) -> list[str]:
        """The exec_args entry for the configured runtime."""
        return self.exec_args.get(self.type, [])

    @property
    def squashfs(self) -> Squashfs:
        """How the runtime packs converted images (only apptainer takes mksquashfs options)."""
        return Squashfs(self.compression, self.convert_cpus if self.type == "apptainer" else None)


class PathsConfig(_Model):
    scratch: str = "$HOME/hpcci"
    image_cache: str = "$HOME/hpcci/images"
    tmpdir: str | None = None


class MpiConfig(_Model):
    launcher: LauncherName = Field(
        "mpirun", description="How MPI tests start: mpirun, mpiexec, srun or ibrun"
    )
    plugin: str | None = Field(
        None, pattern=r"^[a-z0-9_]+$", description="srun's PMI plugin (--mpi=PLUGIN), e.g. pmix or pmi2"
    )
    modules: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _plugin_is_sruns(self) -> MpiConfig:
        if self.plugin and self.launcher != "srun":
            raise ValueError(f"plugin {self.plugin!r} is srun's option; remove it or set launcher: srun")
        return self


class StagingConfig(_Model):
    method: Literal["auto", "s3", "sftp", "registry"] = "auto"
    streams: int = Field(4, ge=1, le=32)
    s3_endpoint_url: str | None = Field(
        None,
        description="The S3 endpoint as the login node reaches it, when it differs from publish.s3.endpoint_url "
        "(presigned URLs are signed for this host)",
    )


class Cluster(_Model):
    name: Name
    description: str = ""
    login: LoginConfig
    scheduler: SchedulerConfig
    runtime: RuntimeConfig
    paths: PathsConfig = Field(default_factory=PathsConfig)
    mpi: MpiConfig = Field(default_factory=MpiConfig)
    staging: StagingConfig = Field(default_factory=StagingConfig)
    modules: list[str] = Field(
        default_factory=list,
        description="Modules every remote step loads first (e.g. slurm), before the runtime's",
    )

    _source: Source | None = PrivateAttr(default=None)

    @property
    def source(self) -> Source:
        return self._source or Source(f"{self.name}.yaml", {})

    def partition(self, key: str) -> Partition:
        try:
            return self.scheduler.partitions[key]
        except KeyError:
            known = ", ".join(self.scheduler.partitions)
            raise ConfigError(
                f"{self.source.file}: cluster {self.name} has no partition {key!r} (known: {known})"
            ) from None


# -- where each value came from (hpcci.config_load fills it in) ---------------------------------------------------

Loc = tuple[str | int, ...]


class Source:
    """Where each value came from: file and (line, column) per key path, 1-based."""

    def __init__(self, file: str, positions: dict[Loc, tuple[int, int]]) -> None:
        self.file = file
        self.positions = positions

    def position(self, loc: Loc) -> tuple[int, int]:
        while loc and loc not in self.positions:
            loc = loc[:-1]
        return self.positions.get(loc, (1, 1))

    def line_of(self, loc: Loc) -> int | None:
        return self.positions.get(loc, (None, None))[0]

    def where(self, loc: Loc) -> str:
        line, col = self.position(loc)
        return f"{self.file}:{line}:{col}"
