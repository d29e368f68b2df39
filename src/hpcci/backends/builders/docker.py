"""The Docker engine: its client, its image store (inspect, export), and its legacy builder driven by the SDK.

The legacy builder runs RUN steps under QEMU but takes the result's architecture from the base image without
checking, and keeps ONE image per tag locally: so the base is pulled for each platform and the result's
architecture is checked here. buildx loads its results into the same store (DockerStore).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hpcci import process
from hpcci.backends.builders.archive import Archive, write_hashed
from hpcci.backends.builders.dockerfile import PLAN_DOCKERFILE, StepTracker, dockerfile_with_labels
from hpcci.backends.builders.spec import (
    BuildSpec,
    BuiltImage,
    RegistryAuth,
    build_args_argv,
    check_arch,
    labels_argv,
)
from hpcci.errors import BuildError, PlatformError, RegistryAuthError
from hpcci.log import Log


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


class DockerStore:
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


class DockerBuilder(DockerStore):
    """The Docker engine's legacy builder via the SDK: one platform per build, base pulled per platform."""

    name = "docker"

    def unavailable(self) -> str | None:
        try:
            docker_client(timeout=10)
        except BuildError as e:
            return str(e)
        return None

    def argv(self, spec: BuildSpec, platform: str) -> list[str]:
        return docker_argv(spec, platform, PLAN_DOCKERFILE if spec.labels else None)

    def build(self, spec: BuildSpec, platform: str, log: Log) -> BuiltImage:
        client = docker_client(timeout=spec.timeout)
        # Plain-HTTP registries are the daemon's setting (insecure-registries; 127.0.0.0/8 always is).
        for a in spec.auths:
            if a.has_login:
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

    try:
        client.login(username=auth.username, password=auth.password, registry=auth.host, reauth=True)
    except APIError as e:
        raise RegistryAuthError(
            f"registry {auth.host} refused the login for user {auth.username!r}: {e.explanation or e}; "
            "check the registry username and password (token)"
        ) from e
