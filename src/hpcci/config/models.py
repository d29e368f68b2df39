"""Pipeline (hpcci.yaml) and cluster (cluster-configs/*.yaml) configuration: the typed, frozen models.

Their value types (secrets as references, Slurm times, paths) are hpcci.config.types'. Reading files (bounded) and wording errors (file:line:column, "did you mean ...?") is hpcci.config.load's job.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from hpcci.backends.launchers import LauncherName
from hpcci.backends.runtime import RUNTIMES, CompressionChoice, GpuKind, Packing, RuntimeName, Squashfs
from hpcci.backends.schedulers import SchedulerName
from hpcci.config.release import ReleaseConfig
from hpcci.config.staging import StagingConfig
from hpcci.config.types import (
    ConfigModel,
    Duration,
    Memory,
    Name,
    OneLine,
    Platform,
    Secret,
    Source,
    TestName,
    Value,
)
from hpcci.errors import ConfigError


def resolve_value(v: Value, what: str) -> str:
    return v if isinstance(v, str) else v.resolve(what)


# -- hpcci.yaml ---------------------------------------------------------------------------------------------


class ImageConfig(ConfigModel):
    name: str = Field(description="Image repository without tag, e.g. docker.io/org/app")
    context: str = "."
    context_git: bool = Field(
        default=False,
        description="Send the context's .git folders to the builder (a COPY . . then copies them, and any token "
        "actions/checkout left in .git/config); a pinned pull request's tree never has one",
    )
    dockerfile: str = "Dockerfile"
    platforms: list[Platform] = Field(default_factory=lambda: ["linux/amd64", "linux/arm64"], min_length=1)
    build_args: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    builder: Literal["auto", "buildx", "buildah", "docker"] = "auto"
    cache: bool = True
    description: str = ""
    licenses: str = ""


class BuildRegistry(ConfigModel):
    """A registry the build pulls from (a base image's), apart from where the image is published."""

    host: str = Field(
        pattern=r"^[A-Za-z0-9.-]+(:\d+)?$", description="The registry's host[:port], e.g. 127.0.0.1:5000"
    )
    insecure: bool = Field(False, description="Plain HTTP (or TLS without verification) for this registry")
    username: Value | None = None
    password: Secret | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> BuildRegistry:
        if (self.username is None) != (self.password is None):
            raise ValueError(f"registry {self.host}: set username and password together, or neither")
        return self


class BuildConfig(ConfigModel):
    registries: list[BuildRegistry] = Field(
        default_factory=list,
        description="Registries the build pulls base images from: insecure ones and their credentials",
    )


class TagRules(ConfigModel):
    branch: bool = True
    pr: bool = True
    sha: bool = True
    semver: list[str] = Field(default_factory=lambda: ["{{version}}", "{{major}}.{{minor}}", "{{major}}"])
    latest: bool | Literal["auto"] = "auto"
    extra: list[str] = Field(default_factory=list)


class RegistryTarget(ConfigModel):
    url: str = "docker.io"
    repository: str | None = Field(None, description="Defaults to image.name without its registry host")
    username: Value | None = None
    password: Secret | None = None
    insecure: bool = False


class S3Target(ConfigModel):
    bucket: str
    prefix: str = "hpcci"
    endpoint_url: str | None = None
    region: str | None = None
    path_style: bool = False
    access_key: Value | None = None
    secret_key: Secret | None = None
    outage_window: float = Field(120.0, ge=0, description="Seconds an upload waits out a server outage")


class PublishConfig(ConfigModel):
    registry: RegistryTarget | None = None
    s3: S3Target | None = None


class DeployConfig(ConfigModel):
    clusters: list[Name] = Field(default_factory=list)
    cluster_configs: str = "cluster-configs"
    triggers: list[Literal["tag", "push", "pull_request", "workflow_dispatch"]] = Field(
        default_factory=lambda: ["tag", "workflow_dispatch"]  # type: ignore[arg-type]
    )
    staging: Literal["auto", "s3", "sftp", "registry"] = "auto"
    deadline: Duration = "01:00:00"


class Expect(ConfigModel):
    exit_code: int = 0
    output: str | None = Field(None, description="A regular expression the job output must match")


class Resources(ConfigModel):
    nodes: int = Field(1, ge=1)
    tasks: int | None = Field(
        None,
        ge=1,
        description="The job's task count (MPI ranks); default nodes x tasks_per_node (or one a node)",
    )
    tasks_per_node: int | None = Field(None, ge=1)
    cpus_per_task: int | None = Field(None, ge=1)
    time: Duration = "00:10:00"
    memory: Memory | None = None
    partition: str | None = Field(
        None, description="A partition name from the cluster config (e.g. cpu, gpu)"
    )

    @model_validator(mode="after")
    def _tasks_fit_nodes(self) -> Resources:
        # Slurm would not refuse these: it shrinks the job (fewer nodes, fewer ranks) and the test proves less.
        per_node = self.tasks_per_node
        if self.tasks is not None and per_node is not None and self.tasks != self.nodes * per_node:
            raise ValueError(
                f"tasks {self.tasks} is not nodes x tasks_per_node ({self.nodes} x {per_node} = "
                f"{self.nodes * per_node}); drop tasks (it follows from the other two) or make them agree"
            )
        if self.tasks is not None and self.tasks < self.nodes:
            raise ValueError(
                f"tasks {self.tasks} is fewer than nodes {self.nodes}: Slurm would shrink the job to "
                f"{self.tasks} node(s); raise tasks, or use tasks_per_node"
            )
        return self

    @property
    def task_count(self) -> int:
        """The job's tasks: as written, else nodes x tasks_per_node, else one a node."""
        return self.tasks or self.nodes * (self.tasks_per_node or 1)

    @property
    def most_tasks_per_node(self) -> int:
        """The most tasks any one node runs (tasks spread as evenly as Slurm spreads them)."""
        return self.tasks_per_node or -(-self.task_count // self.nodes)


class SmokeTest(ConfigModel):
    name: TestName
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


class ReportConfig(ConfigModel):
    check_name: str = "hpcci / {cluster}"
    status_fallback: bool = True
    pr_comment: bool = False


class Pipeline(ConfigModel):
    version: Literal[1] = 1
    image: ImageConfig
    build: BuildConfig = Field(default_factory=BuildConfig)
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


class JumpHost(ConfigModel):
    host: str
    port: int = Field(22, ge=1, le=65535)
    user: Value


class LoginConfig(ConfigModel):
    host: str
    port: int = Field(22, ge=1, le=65535)
    user: Value
    key: Secret
    key_passphrase: Secret | None = None
    certificate: Secret | None = Field(
        None,
        description="an SSH user certificate for login.key (the KEY-cert.pub text, e.g. from NERSC's sshproxy); "
        "its expiry is checked before connecting",
    )
    mode: Literal["shell", "automation"] = Field(
        "shell",
        description="shell: a full login shell (module loads, $VARS, staging on the login node); automation: a "
        "restricted key (e.g. the Alliance's automation nodes) - files over SFTP, plain scheduler commands only, "
        "every other step inside batch jobs; paths must then be absolute",
    )
    known_hosts: Secret = Field(
        description="known_hosts lines for the login host: host keys are never auto-accepted"
    )
    jump: JumpHost | None = None
    connect_timeout: float = Field(30, gt=0)
    command_timeout: float = Field(600, gt=0)
    keepalive: int = Field(30, ge=0)


class Partition(ConfigModel):
    name: OneLine = Field(description="The partition's name in Slurm")
    arch: Literal["x86_64", "aarch64", "ppc64le"] = "x86_64"  # platforms.CLUSTER_MACHINES
    gres: str | None = Field(
        "gpu:1",
        description="GRES GPU jobs ask for; null where GPU nodes are given whole and Slurm has no GRES (TACC)",
    )
    cpus: int | None = Field(
        None,
        ge=1,
        description="CPUs a node of this partition has (as the scheduler lists them): `validate` checks tests fit",
    )
    modules: list[str] = Field(
        default_factory=list,
        description="Modules jobs on this partition load (after the cluster's, e.g. cuda)",
    )
    directives: list[OneLine] = Field(default_factory=list)


class PollConfig(ConfigModel):
    initial: float = Field(1.0, gt=0)
    max: float = Field(30.0, gt=0)
    max_failures: int = Field(5, ge=0)


class SchedulerConfig(ConfigModel):
    type: SchedulerName = "slurm"
    account: OneLine | None = None
    reservation: OneLine | None = None
    qos: OneLine | None = None
    partitions: dict[Name, Partition] = Field(min_length=1)
    default_partition: str = "cpu"
    gpu_partition: str = "gpu"
    memory_per: Literal["node", "cpu", "none"] = Field(
        "node",
        description="How a test's resources.memory is asked for: per node (--mem), per CPU (--mem-per-cpu, "
        "as the Alliance's clusters document) or not at all (none: nodes are given whole and the site refuses "
        "--mem, as TACC documents)",
    )
    directives: list[OneLine] = Field(
        default_factory=list,
        description="Extra batch-script directives, each without the scheduler's prefix (e.g. '--constraint=icelake')",
    )
    poll: PollConfig = Field(default_factory=PollConfig)
    max_queue_wait: Duration | None = Field(
        None,
        description="A job still pending after this long is cancelled; its check is neutral with the reason",
    )
    template: str | None = Field(
        None,
        description="A batch script template (path relative to this file) replacing hpcci's default; "
        "placeholders $directives, $body, $comment, $job_name ($$ for a literal $)",
    )


class RuntimeConfig(ConfigModel):
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

    compression: CompressionChoice = Field(
        "auto",
        description="SquashFS compression of converted images. auto: zstd where the cluster's runtime takes "
        "mksquashfs options (apptainer >= 1.4, from its version at deploy time), gzip otherwise; any other "
        "than gzip needs apptainer >= 1.4",
    )
    convert_cpus: int | None = Field(None, ge=1, description="Conversion job CPUs and mksquashfs -processors")
    # choose_packing's answer for the cluster's runtime version, set by a deploy once it has asked (with_packing)
    _packing: Packing | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compression_is_apptainers(self) -> RuntimeConfig:
        if self.compression not in ("auto", "gzip") and not RUNTIMES[self.type].may_take_squashfs_options:
            raise ValueError(
                f"runtime.compression {self.compression} needs apptainer >= 1.4 (--mksquashfs-args); "
                f"{self.type} packs its images its own way: use auto or gzip"
            )
        return self

    @property
    def type_exec_args(self) -> list[str]:
        """The exec_args entry for the configured runtime."""
        return self.exec_args.get(self.type, [])

    @property
    def packing(self) -> Packing | None:
        """How a deploy packs images, chosen for the runtime's version (None: not asked yet)."""
        return self._packing

    def with_packing(self, packing: Packing) -> RuntimeConfig:
        """This config with the packing a deploy chose from the runtime's version (choose_packing)."""
        out = self.model_copy()
        out._packing = packing
        return out

    @property
    def squashfs(self) -> Squashfs:
        """How the runtime packs converted images: the chosen packing, else what the config says (auto: gzip)."""
        if self._packing is not None:
            return self._packing.squashfs
        cpus = self.convert_cpus if RUNTIMES[self.type].may_take_squashfs_options else None
        return Squashfs("gzip" if self.compression == "auto" else self.compression, cpus)


class PathsConfig(ConfigModel):
    scratch: OneLine = "$HOME/hpcci"
    image_cache: OneLine = "$HOME/hpcci/images"
    tmpdir: OneLine | None = None


class MpiConfig(ConfigModel):
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


class ClusterReport(ConfigModel):
    """What of a job's output leaves the site (a site that reviews test output first says none)."""

    output: Literal["tail", "none"] = Field(
        "tail",
        description=(
            "tail: the end of each job's output goes to the check run and the records; none: not a byte of it "
            "leaves the cluster (expect.output is matched there with grep -E) and the check run says where it is"
        ),
    )


class Cluster(ConfigModel):
    name: Name
    description: str = ""
    environment: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9._-]{1,255})?$",
        description="The GitHub environment the deploy job runs in, holding this cluster's secrets "
        "(default hpcci-<name>)",
    )
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
    release: ReleaseConfig | None = None  # tested releases installed as modules (config_release.py)
    report: ClusterReport = Field(default_factory=ClusterReport)

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
