"""Pipeline (hpcci.yaml) and cluster (cluster-configs/*.yaml) configuration: models, one loader, one error style.

Every error names file:line:column, the key, what is wrong and what would be right. YAML aliases are refused (an
alias bomb must not expand), files are size-capped, and secrets are never inline: they are references to an
environment variable or a file, resolved only when used.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from hpcci.backends.launchers import LauncherName
from hpcci.backends.schedulers import SchedulerName
from hpcci.backends.schedulers.slurm import slurm_time_seconds
from hpcci.errors import ConfigError
from hpcci.platforms import PLATFORMS

MAX_CONFIG_BYTES = 1 << 20

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
    type: Literal["apptainer", "singularity", "charliecloud", "podman"]
    modules: list[str] = Field(default_factory=list)
    executable: str | None = None
    convert_on: Literal["login", "compute"] = "login"
    gpu_flag: Literal["--nv", "--rocm"] = "--nv"
    gpu_modules: list[str] = Field(default_factory=list, description="Modules GPU tests load (e.g. cuda)")
    cleanenv: bool = True
    binds: list[str] = Field(default_factory=list)


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


# -- loading ----------------------------------------------------------------------------------------------------

Loc = tuple[str | int, ...]
M = TypeVar("M", Pipeline, Cluster)


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


def _read_yaml(path: Path) -> tuple[Any, Source]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError
    from ruamel.yaml.events import AliasEvent

    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{name}:1:1: file is {size / 1e6:.1f} MB; hpcci config files are limited to 1 MiB: "
                "is this the right file?"
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        msg = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError(f"{name}: cannot read: {msg}") from e
    yaml = YAML(typ="rt")
    try:
        for event in yaml.parse(text):
            if isinstance(event, AliasEvent):
                m = event.start_mark
                raise ConfigError(
                    f"{name}:{m.line + 1}:{m.column + 1}: YAML aliases (*{event.anchor}) are not allowed in "
                    "hpcci config files; write the value out"
                )
        data = yaml.load(text)
    except MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        where = f"{name}:{m.line + 1}:{m.column + 1}" if m else name
        problem = (e.problem or e.context or "malformed YAML").strip()
        raise ConfigError(f"{where}: malformed YAML: {problem}") from e
    except YAMLError as e:
        raise ConfigError(f"{name}: malformed YAML: {str(e).splitlines()[0]}") from e
    positions: dict[Loc, tuple[int, int]] = {}
    _collect_positions(data, (), positions)
    return data, Source(name, positions)


def _collect_positions(node: Any, loc: Loc, out: dict[Loc, tuple[int, int]]) -> None:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap):
        for key in node:
            kl, kc, vl, vc = node.lc.data[key]
            out[loc + (str(key),)] = (vl + 1, vc + 1)
            out[loc + (str(key), "<key>")] = (kl + 1, kc + 1)
            _collect_positions(node[key], loc + (str(key),), out)
    elif isinstance(node, CommentedSeq):
        for i, item in enumerate(node):
            line, col = node.lc.data[i]
            out[loc + (i,)] = (line + 1, col + 1)
            _collect_positions(item, loc + (i,), out)


def _plain(node: Any) -> Any:
    """ruamel's round-trip types -> plain dicts/lists/scalars for validation."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


_TYPE_TAGS = {
    "str",
    "int",
    "float",
    "bool",
    "FromEnv",
    "FromFile",
    "list[str]",
    "literal['auto']",
    "function-after",
}


def _clean_loc(loc: Sequence[str | int]) -> Loc:
    return tuple(
        p
        for p in loc
        if not (isinstance(p, str) and (p in _TYPE_TAGS or "[" in p or p.startswith("function")))
    )


def _dotted(loc: Loc) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "(top level)"


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys allowed at ``loc`` (for 'did you mean ...?')."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        tp = field.annotation
        # unwrap Optional / list / dict to the model inside
        for _ in range(4):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                break
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if models else (args[-1] if args else tp)
        current = tp
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _error_lines(model: type[BaseModel], err: ValidationError, source: Source) -> list[str]:
    lines: list[str] = []
    seen: set[Loc] = set()
    for e in err.errors():
        loc = _clean_loc(e["loc"])
        if loc in seen:
            continue
        seen.add(loc)
        key = _dotted(loc)
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(model, loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else f"allowed keys: {', '.join(allowed)}"
            where = source.where((*loc, "<key>"))
            lines.append(f"{where}: {key}: unknown key; {fix}")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            where = source.where(loc[:-1]) if loc[:-1] else f"{source.file}:1:1"
            lines.append(f"{where}: {key}: required key is missing; add it")
            continue
        got = e.get("input")
        shown = f" (got {got!r})" if isinstance(got, (str, int, float, bool)) and repr(got) not in msg else ""
        if e["type"] == "literal_error" and isinstance(got, str):
            allowed_vals = re.findall(r"'([^']+)'", msg)
            hint = difflib.get_close_matches(got, allowed_vals, n=1)
            if hint:
                shown += f"; did you mean '{hint[0]}'?"
        lines.append(f"{source.where(loc)}: {key}: {msg}{shown}")
    return lines


def load(model: type[M], path: Path | str) -> M:
    """Load and validate one config file; ConfigError lists every problem, one per line."""
    path = Path(path)
    data, source = _read_yaml(path)
    if data is None:
        raise ConfigError(
            f"{path}:1:1: file is empty; see the README for a minimal {model.__name__.lower()} config"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}:1:1: expected a mapping of keys at the top level, got {type(data).__name__}"
        )
    try:
        obj = model.model_validate(_plain(data))
    except ValidationError as e:
        raise ConfigError("\n".join(_error_lines(model, e, source))) from None
    obj._source = source
    return obj


def load_pipeline(path: Path | str = "hpcci.yaml") -> Pipeline:
    return load(Pipeline, path)


def load_cluster(path: Path | str) -> Cluster:
    cluster = load(Cluster, path)
    parts = cluster.scheduler.partitions
    for field in ("default_partition",):
        value = getattr(cluster.scheduler, field)
        if value not in parts:
            where = cluster.source.where(("scheduler", field))
            raise ConfigError(
                f"{where}: scheduler.{field}: {value!r} is not one of the partitions ({', '.join(parts)})"
            )
    return cluster


def cluster_path(pipeline: Pipeline, name: str, base: Path) -> Path:
    return base / pipeline.deploy.cluster_configs / f"{name}.yaml"


def load_clusters(pipeline: Pipeline, names: Iterable[str], base: Path) -> dict[str, Cluster]:
    """The named clusters from the pipeline's cluster-configs folder."""
    out: dict[str, Cluster] = {}
    for name in names:
        path = cluster_path(pipeline, name, base)
        if not path.exists():
            folder = path.parent
            known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
            hint = difflib.get_close_matches(name, known, n=1)
            extra = f"did you mean '{hint[0]}'?" if hint else f"known clusters: {', '.join(known) or 'none'}"
            raise ConfigError(f"{path}: no config for cluster '{name}'; {extra}")
        out[name] = load_cluster(path)
    return out


def kind_of(path: Path) -> type[Pipeline] | type[Cluster]:
    """Which schema a file follows: a cluster config has `login`, a pipeline has `image`."""
    data, source = _read_yaml(path)
    if isinstance(data, dict) and "login" in data:
        return Cluster
    if isinstance(data, dict) and "image" in data:
        return Pipeline
    raise ConfigError(
        f"{source.file}:1:1: neither a pipeline file (no 'image' key) nor a cluster config (no 'login' key)"
    )


def json_schema(model: type[Pipeline] | type[Cluster]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://hpcci.dev/schemas/{'pipeline' if model is Pipeline else 'cluster'}.json"
    return schema
