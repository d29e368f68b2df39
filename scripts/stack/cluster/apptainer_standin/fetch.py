"""Image sources of the hpcci apptainer STAND-IN (not the real Apptainer): a build spec copied to an OCI layout.

``docker-archive:FILE``, ``oci-archive:FILE`` (with or without ``//``), ``oci:DIR[:TAG]`` (an OCI image layout
directory, as containers/image names it) and ``docker://REGISTRY/IMAGE:TAG`` are copied by skopeo into ``TMP/oci:img``. Registry credentials come from APPTAINER_DOCKER_USERNAME/PASSWORD, else from
Apptainer's own ~/.apptainer/docker-config.json (`apptainer registry login`), never from another tool's files.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any, NoReturn

from apptainer_standin.console import fatal
from apptainer_standin.host import run_tool, setting
from apptainer_standin.options import Options

ARCHIVES = ("docker-archive:", "oci-archive:")


def strip_scheme(src: str, scheme: str) -> str:
    rest = src[len(scheme) :]
    return rest[2:] if rest.startswith("//") else rest


def registry_host(ref: str) -> str:
    """The registry of an image reference; docker.io when the first part is not a host name."""
    first = ref.split("/", 1)[0]
    return first if ("." in first or ":" in first or first == "localhost") and "/" in ref else "docker.io"


def auth_file(tmp: str, host: str) -> str:
    """A skopeo auth file for ``host``: from the environment's credentials, Apptainer's own file, or empty."""
    user = setting("DOCKER_USERNAME")
    pw = setting("DOCKER_PASSWORD")
    path = os.path.join(tmp, "auth.json")
    if not user or pw is None:
        own = os.path.join(os.path.expanduser("~"), ".apptainer", "docker-config.json")
        if os.path.isfile(own):
            return own
        with open(path, "w") as f:
            f.write('{"auths": {}}')
        return path
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"auths": {host: {"auth": base64.b64encode(f"{user}:{pw}".encode()).decode()}}}, f)
    return path


def fetch_oci(source: str, tmp: str, opts: Options, doing: str) -> tuple[str, str]:
    """Copy ``source`` into an OCI layout tmp/oci:img with skopeo; returns (bootstrap agent, skopeo source).

    The layout is unpacked at once and removed: uncompressed layers (a docker-archive's) are gzipped into it at
    level 1 (skopeo would use 6; umoci 0.4.7 reads no zstd), already compressed ones are copied as they are."""
    argv = ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-compress-level", "1"]
    arch = opts.value("arch")
    if arch:
        argv += ["--override-arch", arch]
    archive = next((a for a in ARCHIVES if source.startswith(a)), None)
    if archive:
        path = strip_scheme(source, archive)
        if not os.path.isfile(path):
            fatal(f"{doing}: conveyor failed to get: could not open {path}: no such file")
        src, what = f"{archive}{path}", archive[:-1]
    elif source.startswith("oci:"):
        src, what = oci_layout(source, doing), "oci"
    elif source.startswith("docker://"):
        argv += _registry_options(source[len("docker://") :], tmp, opts)
        src, what = source, "docker"
    else:
        _refuse_source(source, doing)
    run_tool([*argv, src, f"oci:{tmp}/oci:img"], f"{doing}: conveyor failed to get", space_dirs=[tmp])
    return what, src


def oci_layout(source: str, doing: str) -> str:
    """``oci:DIR[:TAG]`` as skopeo reads it, once DIR is an OCI image layout (its oci-layout and index.json)."""
    rest = strip_scheme(source, "oci:")
    path, tag = (
        (rest, "") if os.path.isdir(rest) else (rest.rpartition(":")[0] or rest, rest.rpartition(":")[2])
    )
    if not all(os.path.isfile(os.path.join(path, f)) for f in ("oci-layout", "index.json")):
        fatal(
            f"{doing}: conveyor failed to get: {path} is not an OCI image layout (no oci-layout or index.json)"
        )
    return f"oci:{path}:{tag}" if tag else f"oci:{path}"


def _registry_options(ref: str, tmp: str, opts: Options) -> list[str]:
    host = registry_host(ref)
    plain = (
        opts.on("nohttps")
        or os.environ.get("APPTAINER_NOHTTPS") in ("1", "true")
        or host.split(":")[0] in ("127.0.0.1", "localhost")
    )
    return [*(["--src-tls-verify=false"] if plain else []), "--src-authfile", auth_file(tmp, host)]


def _refuse_source(source: str, doing: str) -> NoReturn:
    scheme = source.split(":", 1)[0] if ":" in source else ""
    if source.endswith(".def") or os.path.isfile(source):
        fatal(
            f"{doing}: building from a definition file or local image ({source}) is not "
            f"supported by the hpcci apptainer stand-in: use docker-archive://, oci-archive://, oci: or docker://"
        )
    fatal(
        f"{doing}: unsupported or unknown image source '{scheme or source}': "
        f"use docker-archive://FILE.tar, oci-archive://FILE.tar, oci:DIR[:TAG] or docker://REGISTRY/IMAGE:TAG"
    )


def oci_config(layout: str) -> dict[str, Any]:
    """The image config of the first manifest in an OCI layout directory."""
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    manifest = _blob(layout, index["manifests"][0])
    return _blob(layout, manifest["config"])


def _blob(layout: str, descriptor: dict[str, Any]) -> dict[str, Any]:
    algo, hexd = descriptor["digest"].split(":", 1)
    with open(os.path.join(layout, "blobs", algo, hexd)) as f:
        blob: dict[str, Any] = json.load(f)
    return blob
