"""buildah (daemonless; self-hosted and HPC-side runners): ``buildah build --platform P --layers``.

Builds into containers-storage with its layer cache; exports with ``buildah push docker-archive:``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hpcci import process
from hpcci.backends.builders.archive import Archive, archive_at
from hpcci.backends.builders.credentials import authfile
from hpcci.backends.builders.dockerfile import PLAN_DOCKERFILE, StepTracker, dockerfile_with_labels
from hpcci.backends.builders.spec import BuildSpec, BuiltImage, build_args_argv, check_arch, labels_argv
from hpcci.errors import BuildError, PlatformError
from hpcci.log import Log


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


def inspect_argv(ref: str) -> list[str]:
    return ["buildah", "inspect", "--type", "image", ref]


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
        auth = "$TMP/auth.json" if any(a.has_login for a in spec.auths) else None
        return buildah_argv(spec, platform, auth, PLAN_DOCKERFILE if spec.labels else None)

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
        done = process.run(inspect_argv(ref), timeout=60, error=BuildError, echo=False)
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
        return process.run(inspect_argv(ref), timeout=60, check=False, echo=False).ok

    def export(self, image: BuiltImage, dest: Path) -> Archive:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            dest.unlink()
        process.run(
            ["buildah", "push", "--quiet", image.ref, f"docker-archive:{dest}:{image.ref}"],
            timeout=3600,
            error=BuildError,
        )
        return archive_at(dest)
