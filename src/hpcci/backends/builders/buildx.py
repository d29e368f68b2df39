"""docker buildx (BuildKit, GitHub-hosted runners): one platform per call, loaded into the Docker engine.

``docker buildx build --platform P --load``; BuildKit's local cache, plus inline cache metadata pushed with the
image so a fresh runner can import it from the registry.
"""

from __future__ import annotations

import shutil

from hpcci import process
from hpcci.backends.builders.credentials import docker_config
from hpcci.backends.builders.docker import DockerStore
from hpcci.backends.builders.dockerfile import StepTracker
from hpcci.backends.builders.spec import BuildSpec, BuiltImage, build_args_argv, labels_argv
from hpcci.errors import BuildError
from hpcci.log import Log
from hpcci.platforms import platform_tag
from hpcci.references import parse_reference


def buildx_argv(spec: BuildSpec, platform: str) -> list[str]:
    argv = ["docker", "buildx", "build", "--platform", platform, "--load", "--provenance=false"]
    argv += ["--progress=plain", "-f", str(spec.dockerfile_path), "-t", spec.ref(platform)]
    argv += build_args_argv(spec.build_args) + labels_argv(spec.labels)
    if spec.cache:
        # inline cache metadata travels with the pushed image; the next build (on any runner) imports it
        argv += ["--cache-to", "type=inline"]
        for ref in map(parse_reference, spec.cache_from):
            argv += ["--cache-from", f"type=registry,ref={ref.repository}:{platform_tag(ref.tag, platform)}"]
    else:
        argv.append("--no-cache")
    return [*argv, str(spec.context)]


class BuildxBuilder(DockerStore):
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
