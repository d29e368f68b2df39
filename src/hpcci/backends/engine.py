"""Image builders behind one seam: docker buildx, buildah, and the plain Docker engine (legacy builder).

Every builder builds ONE platform per call into its local image store, under a per-platform local tag
(``repo:1.2.3-arm64``); the registry backend pushes those and assembles the multi-arch list itself, so the three
builders behave the same from the outside and the build log can be grouped per platform.

- buildx (GitHub-hosted runners): ``docker buildx build --platform P --load``; BuildKit's local cache.
- buildah (daemonless, self-hosted and HPC-side runners): ``buildah build --platform P --layers``.
- docker (a bare Docker engine): the Docker SDK's legacy builder. It runs RUN steps under QEMU but takes the
  result's architecture from the base image without checking, and keeps ONE image per tag locally: so the base is
  pulled for each platform and the result's architecture is checked here.

Command lines are built by pure functions (``*_argv``) so `hpcci plan` can print them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform as host_platform
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hpcci import process
from hpcci.digests import hash_file
from hpcci.errors import BuildError, PlatformError, UsageError
from hpcci.log import Log
from hpcci.platforms import Architecture

BUILDERS = ("buildx", "buildah", "docker")
AUTO_ORDER = ("buildx", "buildah", "docker")


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry host (to pull private bases and, later, to push)."""

    host: str
    username: str
    password: str
    insecure: bool = False


@dataclass(frozen=True)
class BuildSpec:
    """One multi-arch build: what to build and how to name the per-platform results."""

    context: Path
    dockerfile: Path  # absolute, or relative to the context
    platforms: list[str]
    repository: str  # lowercased, e.g. 127.0.0.1:5000/octo-org/fibonacci
    tag: str  # the main tag; per-platform local tags derive from it
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    cache: bool = True
    auths: list[RegistryAuth] = field(default_factory=list)
    timeout: float = 3600.0
    # earlier pushes to import layer cache from (buildx; `repo:tag`, the platform suffix is added per build):
    # a fresh runner (GitHub-hosted) has no local cache, the registry does
    cache_from: list[str] = field(default_factory=list)

    @property
    def dockerfile_path(self) -> Path:
        return self.dockerfile if self.dockerfile.is_absolute() else self.context / self.dockerfile

    def ref(self, platform: str) -> str:
        return f"{self.repository}:{platform_tag(self.tag, platform)}"

    def args_for(self, platform: str) -> dict[str, str]:
        """Build args with the TARGET* values BuildKit would set (the legacy builder does not set them)."""
        os_, arch, variant = split_platform(platform)
        auto = {"TARGETPLATFORM": platform, "TARGETOS": os_, "TARGETARCH": arch, "TARGETVARIANT": variant}
        return {**auto, **self.build_args}


@dataclass(frozen=True)
class BuiltImage:
    platform: str
    ref: str  # the local per-platform reference
    image_id: str  # sha256:<config digest>
    size: int = 0


@dataclass(frozen=True)
class Archive:
    path: Path
    size: int
    sha256: str


class Builder(Protocol):
    name: str

    def unavailable(self) -> str | None:
        """None when this builder can run here, else why not (one line)."""

    def argv(self, spec: BuildSpec, platform: str) -> list[str]:
        """The build command for one platform (for the SDK builder: the equivalent CLI line, for `plan`)."""

    def build(self, spec: BuildSpec, platform: str, log: Log) -> BuiltImage:
        """Build one platform, streaming its log; check the result's architecture."""

    def export(self, image: BuiltImage, dest: Path) -> Archive:
        """Write a docker-archive tar (what `docker load` and `apptainer build x.sif docker-archive://x` read)."""

    def exists(self, ref: str) -> bool:
        """Whether ``ref`` is in this builder's local image store."""


# -- pure helpers ---------------------------------------------------------------------------------------------


def split_platform(platform: str) -> tuple[str, str, str]:
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"{platform!r} is not a platform: write os/arch[/variant], e.g. linux/arm64")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def platform_tag(tag: str, platform: str) -> str:
    """The per-platform tag: ``1.2.3`` + linux/arm64 -> ``1.2.3-arm64`` (<= 128 characters)."""
    _, arch, variant = split_platform(platform)
    suffix = f"-{arch}{variant}"
    return tag[: 128 - len(suffix)] + suffix


def platform_key(platform: str) -> str:
    """linux/arm/v7 -> linux-arm-v7 (for file names and object keys)."""
    return platform.replace("/", "-")


def host_arch() -> str:
    machine = host_platform.machine().lower()
    arch = Architecture.from_machine(machine)
    return arch.value if arch else machine


def emulation_problem(platform: str, binfmt_dir: Path = Path("/proc/sys/fs/binfmt_misc")) -> str | None:
    """Why RUN steps for ``platform`` cannot execute on this machine (no QEMU binfmt handler), or None."""
    _, arch, _ = split_platform(platform)
    if arch == host_arch() or (arch == "386" and host_arch() == "amd64"):
        return None
    known = Architecture.from_oci(arch)
    qemu = known.qemu if known else arch
    handler = binfmt_dir / f"qemu-{qemu}"
    try:
        enabled = handler.read_text(encoding="utf-8").splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        enabled = False
    if enabled:
        return None
    return (
        f"this {host_arch()} machine cannot run {arch} code: no QEMU binfmt handler ({handler} is missing or "
        "disabled); install qemu-user-static and binfmt-support (on GitHub: docker/setup-qemu-action), or "
        f"drop {platform} from image.platforms"
    )


def dockerfile_has_run(text: str) -> bool:
    return re.search(r"(?im)^\s*RUN\s", text) is not None


def step_line(dockerfile_text: str, instruction: str) -> int | None:
    """The Dockerfile line where ``instruction`` (as a builder echoes it: 'RUN false') starts, or None."""
    want = " ".join(instruction.split()).lower()
    lines = dockerfile_text.splitlines()
    for i in range(len(lines)):
        joined, j = "", i
        while j < len(lines):  # join continuation lines the way the builder does
            joined += lines[j].rstrip().removesuffix("\\") + " "
            if not lines[j].rstrip().endswith("\\"):
                break
            j += 1
        got = " ".join(joined.split()).lower()
        if got and (got == want or (len(want) > 12 and got.startswith(want[:60]))):
            return i + 1
    return None


def labels_argv(labels: dict[str, str]) -> list[str]:
    return [a for k, v in sorted(labels.items()) for a in ("--label", f"{k}={v}")]


def build_args_argv(args: dict[str, str]) -> list[str]:
    return [a for k, v in args.items() for a in ("--build-arg", f"{k}={v}")]


def buildx_argv(spec: BuildSpec, platform: str) -> list[str]:
    argv = ["docker", "buildx", "build", "--platform", platform, "--load", "--provenance=false"]
    argv += ["--progress=plain", "-f", str(spec.dockerfile_path), "-t", spec.ref(platform)]
    argv += build_args_argv(spec.build_args) + labels_argv(spec.labels)
    if spec.cache:
        # inline cache metadata travels with the pushed image; the next build (on any runner) imports it
        argv += ["--cache-to", "type=inline"]
        for ref in spec.cache_from:
            repo, _, tag = ref.rpartition(":")
            argv += ["--cache-from", f"type=registry,ref={repo}:{platform_tag(tag, platform)}"]
    else:
        argv.append("--no-cache")
    return [*argv, str(spec.context)]


def buildah_argv(
    spec: BuildSpec, platform: str, authfile: str | None = None, dockerfile: Path | None = None
) -> list[str]:
    """``dockerfile``: the Dockerfile with the labels appended (see labelled_dockerfile); else --label flags."""
    argv = ["buildah", "build", "--platform", platform, "--format", "docker"]
    argv += ["-f", str(dockerfile or spec.dockerfile_path), "-t", spec.ref(platform)]
    argv.append("--layers" if spec.cache else "--no-cache")
    argv.append("--force-rm")  # a failed step must not leave its working container behind (they pile up)
    if authfile:
        argv += ["--authfile", authfile]
    if any(a.insecure for a in spec.auths):
        argv.append("--tls-verify=false")
    argv += build_args_argv(spec.build_args) + ([] if dockerfile else labels_argv(spec.labels))
    return [*argv, str(spec.context)]


def docker_argv(spec: BuildSpec, platform: str, dockerfile: Path | None = None) -> list[str]:
    """What the SDK's legacy build does, as the CLI line a person could run (DOCKER_BUILDKIT=0)."""
    argv = [
        "docker",
        "build",
        "--platform",
        platform,
        "--pull",
        "-f",
        str(dockerfile or spec.dockerfile_path),
    ]
    argv += ["-t", spec.ref(platform)]
    argv += build_args_argv(spec.args_for(platform)) + ([] if dockerfile else labels_argv(spec.labels))
    if not spec.cache:
        argv.append("--no-cache")
    return [*argv, str(spec.context)]


def label_instruction(labels: dict[str, str], escape: str = "\\") -> str:
    """ONE ``LABEL "k"="v" ...`` line. The legacy builder and buildah turn every --label into its own step
    (a container or a commit each, redone whenever a label changes, i.e. on every commit); one line is one step."""

    def quoted(text: str) -> str:
        for ch in (escape, '"', "$"):
            text = text.replace(ch, escape + ch)
        return '"' + " ".join(text.splitlines()) + '"'

    return "LABEL " + " ".join(f"{quoted(k)}={quoted(v)}" for k, v in sorted(labels.items()))


def labelled_dockerfile(text: str, labels: dict[str, str]) -> str:
    """The Dockerfile with the labels as one final LABEL step (it applies to the last stage, the output)."""
    m = re.match(r"(?:\s*#[^\n]*\n)*?\s*#\s*escape\s*=\s*(\S)", text, flags=re.IGNORECASE)
    escape = m.group(1) if m else "\\"
    return text.rstrip("\n") + "\n" + label_instruction(labels, escape) + "\n"


@contextmanager
def dockerfile_with_labels(spec: BuildSpec) -> Iterator[Path | None]:
    """A temporary copy of the Dockerfile with the labels appended (None when there are no labels)."""
    if not spec.labels:
        yield None
        return
    try:
        text = spec.dockerfile_path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read {spec.dockerfile_path}: {e.strerror}; fix image.dockerfile") from e
    with tempfile.TemporaryDirectory(prefix="hpcci-dockerfile-") as d:
        path = Path(d) / "Dockerfile.hpcci"
        path.write_text(labelled_dockerfile(text, spec.labels), encoding="utf-8")
        yield path


def check_arch(image_arch: str, image_variant: str, platform: str, *, builder: str, ref: str) -> None:
    """The built image must say the architecture asked for (the legacy builder silently takes the base's)."""
    _, arch, variant = split_platform(platform)
    if image_arch == arch and (not variant or not image_variant or image_variant == variant):
        return
    got = f"{image_arch}/{image_variant}" if image_variant else image_arch
    raise PlatformError(
        f"{builder}: built {ref} for {platform} but the image says architecture {got}: the base image has no "
        f"{platform} variant (or the builder ignored the platform); use a multi-arch base image"
    )


# -- log streaming --------------------------------------------------------------------------------------------


class StepTracker:
    """Follows a build log: echoes lines, remembers the last step header, keeps a tail for error messages."""

    STEP = re.compile(r"^(?:Step \d+/\d+ : |STEP \d+/\d+: |#\d+ \[[^\]]*\d+/\d+\] )(.*)$")

    def __init__(self, log: Log) -> None:
        self.log = log
        self.step: str | None = None
        self.tail: list[str] = []
        self._partial = ""

    def line(self, text: str) -> None:
        m = self.STEP.match(text.strip())
        if m:
            self.step = m.group(1).strip()
        self.tail = [*self.tail[-19:], text]
        self.log.info(text)

    def feed(self, chunk: str) -> None:
        """SDK build output arrives in pieces that are not whole lines."""
        self._partial += chunk
        *lines, self._partial = self._partial.split("\n")
        for ln in lines:
            if ln.strip():
                self.line(ln.rstrip("\r"))

    def flush(self) -> None:
        if self._partial.strip():
            self.line(self._partial)
        self._partial = ""

    def failure(self, spec: BuildSpec, platform: str, error: str) -> BuildError:
        where = ""
        if self.step:
            try:
                text = spec.dockerfile_path.read_text(encoding="utf-8")
            except OSError:
                text = ""
            line = step_line(text, self.step)
            where = f" at {spec.dockerfile_path}{f':{line}' if line else ''}: {self.step}"
        return BuildError(f"build for {platform} failed{where}: {error.strip()} (the step's output is above)")


# -- Docker engine (SDK) ------------------------------------------------------------------------------------


def docker_client(timeout: float = 600) -> Any:
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except DockerException as e:
        raise BuildError(
            f"cannot reach the Docker engine ({os.environ.get('DOCKER_HOST', 'unix:///var/run/docker.sock')}): "
            f"{str(e).splitlines()[0][:200]}; start dockerd (scripts/local-stack up docker) or set DOCKER_HOST"
        ) from e
    return client


class _DockerStore:
    """Image inspection and docker-archive export shared by the two daemon-backed builders."""

    name = "docker"

    def exists(self, ref: str) -> bool:
        from docker.errors import ImageNotFound

        try:
            docker_client().images.get(ref)
        except ImageNotFound:
            return False
        return True

    def _check(self, ref: str, platform: str) -> BuiltImage:
        client = docker_client()
        attrs = client.api.inspect_image(ref)
        try:
            check_arch(
                attrs.get("Architecture", ""), attrs.get("Variant", ""), platform, builder=self.name, ref=ref
            )
        except PlatformError:
            client.api.remove_image(ref, noprune=True)  # never leave a wrong image under the platform's tag
            raise
        return BuiltImage(platform, ref, attrs["Id"], int(attrs.get("Size") or 0))

    def export(self, image: BuiltImage, dest: Path) -> Archive:
        from docker.errors import DockerException

        client = docker_client(timeout=3600)
        try:
            chunks = client.api.get_image(image.ref, chunk_size=4 << 20)
            return write_hashed(chunks, dest)
        except DockerException as e:
            raise BuildError(f"docker save {image.ref} failed: {str(e)[:300]}") from e


class DockerBuilder(_DockerStore):
    """The Docker engine's legacy builder via the SDK: one platform per build, base pulled per platform."""

    name = "docker"

    def unavailable(self) -> str | None:
        try:
            docker_client(timeout=10)
        except BuildError as e:
            return str(e)
        return None

    def argv(self, spec: BuildSpec, platform: str) -> list[str]:
        return docker_argv(spec, platform)

    def build(self, spec: BuildSpec, platform: str, log: Log) -> BuiltImage:
        client = docker_client(timeout=spec.timeout)
        for a in spec.auths:
            _docker_login(client, a)
        with dockerfile_with_labels(spec) as labelled:
            return self._build(client, spec, platform, labelled, log)

    def _build(
        self, client: Any, spec: BuildSpec, platform: str, labelled: Path | None, log: Log
    ) -> BuiltImage:
        from docker.errors import APIError, DockerException

        track = StepTracker(log)
        log.info(f"+ {process.quote(docker_argv(spec, platform, labelled))}  (via the Docker SDK)")
        image_id = ""
        try:
            # a Dockerfile outside the context is sent inside the context tar by the SDK
            dockerfile = str(labelled) if labelled else os.path.relpath(spec.dockerfile_path, spec.context)
            stream = client.api.build(
                path=str(spec.context),
                dockerfile=dockerfile,
                tag=spec.ref(platform),
                platform=platform,
                buildargs=spec.args_for(platform),
                nocache=not spec.cache,
                pull=True,  # the local store keeps one platform per tag: fetch the right base every time
                rm=True,
                forcerm=True,
                decode=True,
            )
            for chunk in stream:
                if "stream" in chunk:
                    track.feed(chunk["stream"])
                if "status" in chunk and chunk.get("id") is None:
                    track.line(str(chunk["status"]))
                if "error" in chunk:
                    track.flush()
                    raise track.failure(spec, platform, _docker_error(chunk))
                image_id = chunk.get("aux", {}).get("ID", image_id)
        except APIError as e:
            raise track.failure(spec, platform, e.explanation or str(e)) from e
        except DockerException as e:
            raise BuildError(f"build for {platform}: the Docker engine failed: {str(e)[:300]}") from e
        track.flush()
        if not image_id:
            raise BuildError(
                f"build for {platform}: the Docker engine reported no image id; see the log above"
            )
        return self._check(spec.ref(platform), platform)


def _docker_error(chunk: dict[str, Any]) -> str:
    detail = chunk.get("errorDetail") or {}
    return str(detail.get("message") or chunk.get("error") or "unknown error")


def _docker_login(client: Any, auth: RegistryAuth) -> None:
    from docker.errors import APIError

    from hpcci.errors import RegistryAuthError

    try:
        client.login(username=auth.username, password=auth.password, registry=auth.host, reauth=True)
    except APIError as e:
        raise RegistryAuthError(
            f"registry {auth.host} refused the login for user {auth.username!r}: {e.explanation or e}; "
            "check the registry username and password (token)"
        ) from e


class BuildxBuilder(_DockerStore):
    """docker buildx (BuildKit) with the docker driver: one platform per call, loaded into the engine."""

    name = "buildx"

    def unavailable(self) -> str | None:
        if not shutil.which("docker"):
            return "the docker CLI is not installed"
        done = process.run(["docker", "buildx", "version"], timeout=30, check=False, echo=False)
        if not done.ok:
            return "docker buildx is not installed (the docker CLI has no buildx plugin)"
        return None

    def argv(self, spec: BuildSpec, platform: str) -> list[str]:
        return buildx_argv(spec, platform)

    def build(self, spec: BuildSpec, platform: str, log: Log) -> BuiltImage:
        track = StepTracker(log)
        with docker_config(spec.auths) as env:
            done = process.run(
                buildx_argv(spec, platform),
                timeout=spec.timeout,
                check=False,
                error=BuildError,
                env=env,
                stream=track.line,
            )
        if not done.ok:
            raise track.failure(spec, platform, process.tail(done.stdout, lines=2))
        return self._check(spec.ref(platform), platform)


@contextmanager
def docker_config(auths: Iterable[RegistryAuth]) -> Iterator[dict[str, str]]:
    """A throw-away DOCKER_CONFIG holding the credentials (never the user's ~/.docker/config.json)."""
    auths = list(auths)
    if not auths:
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="hpcci-docker-") as d:
        _write_authfile(Path(d) / "config.json", auths)
        plugins = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "cli-plugins"
        if plugins.is_dir():
            (Path(d) / "cli-plugins").symlink_to(plugins)
        yield {"DOCKER_CONFIG": d}


def _write_authfile(path: Path, auths: Iterable[RegistryAuth]) -> None:
    import base64

    data = {
        "auths": {
            a.host: {"auth": base64.b64encode(f"{a.username}:{a.password}".encode()).decode()} for a in auths
        }
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)


@contextmanager
def authfile(auths: Iterable[RegistryAuth]) -> Iterator[str | None]:
    """A containers-auth.json for buildah/skopeo in a private temp dir, removed afterwards."""
    auths = list(auths)
    if not auths:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="hpcci-auth-") as d:
        path = Path(d) / "auth.json"
        _write_authfile(path, auths)
        yield str(path)


# -- buildah ---------------------------------------------------------------------------------------------------


class BuildahBuilder:
    """buildah: daemonless, builds into containers-storage with its layer cache (--layers)."""

    name = "buildah"

    def unavailable(self) -> str | None:
        if not shutil.which("buildah"):
            return "buildah is not installed (apt-get install buildah)"
        done = process.run(["buildah", "info"], timeout=60, check=False, echo=False)
        if not done.ok:
            return f"`buildah info` failed: {process.tail(done.stdout + done.stderr, lines=1)}"
        return None

    def argv(self, spec: BuildSpec, platform: str) -> list[str]:
        return buildah_argv(spec, platform, authfile="AUTHFILE" if spec.auths else None)

    def build(self, spec: BuildSpec, platform: str, log: Log) -> BuiltImage:
        track = StepTracker(log)
        with authfile(spec.auths) as auth, dockerfile_with_labels(spec) as labelled:
            done = process.run(
                buildah_argv(spec, platform, auth, labelled),
                timeout=spec.timeout,
                check=False,
                error=BuildError,
                stream=track.line,
            )
        if not done.ok:
            errors = [ln for ln in done.stdout.splitlines() if ln.startswith(("Error:", "error"))]
            raise track.failure(spec, platform, errors[-1] if errors else process.tail(done.stdout, lines=2))
        info = self._inspect(spec.ref(platform))
        try:
            check_arch(info["arch"], info["variant"], platform, builder=self.name, ref=spec.ref(platform))
        except PlatformError:
            process.run(["buildah", "rmi", spec.ref(platform)], timeout=60, check=False, echo=False)
            raise
        return BuiltImage(platform, spec.ref(platform), info["id"], info["size"])

    def _inspect(self, ref: str) -> dict[str, Any]:
        done = process.run(
            ["buildah", "inspect", "--type", "image", ref], timeout=60, error=BuildError, echo=False
        )
        data = json.loads(done.stdout)
        oci = data.get("OCIv1") or {}
        image_id = data.get("FromImageID") or ""
        return {
            "id": image_id if image_id.startswith("sha256:") else f"sha256:{image_id}",
            "arch": oci.get("architecture", ""),
            "variant": oci.get("variant", ""),
            "size": 0,
        }

    def exists(self, ref: str) -> bool:
        done = process.run(
            ["buildah", "inspect", "--type", "image", ref], timeout=60, check=False, echo=False
        )
        return done.ok

    def export(self, image: BuiltImage, dest: Path) -> Archive:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            dest.unlink()
        process.run(
            ["buildah", "push", "--quiet", image.ref, f"docker-archive:{dest}:{image.ref}"],
            timeout=3600,
            error=BuildError,
        )
        size, digest = hash_file(dest)
        return Archive(dest, size, digest)


# -- choosing ---------------------------------------------------------------------------------------------------

FACTORIES: dict[str, Callable[[], Builder]] = {
    "buildx": BuildxBuilder,
    "buildah": BuildahBuilder,
    "docker": DockerBuilder,
}


def get_builder(name: str) -> Builder:
    try:
        return FACTORIES[name]()
    except KeyError:
        raise UsageError(f"unknown builder {name!r}; choose one of: auto, {', '.join(BUILDERS)}") from None


def pick_builder(wanted: str, log: Log | None = None) -> Builder:
    """``wanted`` is auto|buildx|buildah|docker; auto takes the first that works here (buildx, buildah, docker)."""
    if wanted != "auto":
        builder = get_builder(wanted)
        why = builder.unavailable()
        if why:
            raise BuildError(f"builder {wanted!r} cannot run here: {why}; or set image.builder: auto")
        return builder
    reasons: list[str] = []
    for name in AUTO_ORDER:
        builder = get_builder(name)
        why = builder.unavailable()
        if why is None:
            if log:
                log.info(f"builder: {name} (auto; {'; '.join(reasons) or 'first choice'})")
            return builder
        reasons.append(f"{name}: {why}")
    raise BuildError("no image builder works on this machine: " + "; ".join(reasons))


# -- files -------------------------------------------------------------------------------------------------------


def write_hashed(chunks: Iterable[bytes], dest: Path) -> Archive:
    """Write a byte stream to ``dest`` (via a temp name, then rename) while computing its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    h, size = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                h.update(chunk)
                f.write(chunk)
                size += len(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return Archive(dest, size, h.hexdigest())
