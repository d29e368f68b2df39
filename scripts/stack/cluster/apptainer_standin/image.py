"""Image contents of the hpcci apptainer STAND-IN (not the real Apptainer): metadata under /.singularity.d, `inspect`.

A build writes, like Apptainer's docker conversion, labels.json, env/10-docker2singularity.sh and a runscript under
/.singularity.d, plus the stand-in's own hpcci-standin.json (entrypoint, cmd, env, architecture) that run and
inspect read back. Images are SquashFS files (a real SIF wraps a SquashFS partition) or sandbox directories.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

from apptainer_standin import version
from apptainer_standin.console import fatal, usage
from apptainer_standin.host import host_arch, touch
from apptainer_standin.options import INSPECT_FLAGS, parse

META_DIR = ".singularity.d"
META_FILE = META_DIR + "/hpcci-standin.json"
# Mount points ch-run (and Apptainer) expect in every image.
MOUNT_DIRS = ("dev", "proc", "sys", "tmp", "var/tmp", "home", "mnt", "run", "etc")
MOUNT_FILES = ("etc/passwd", "etc/group", "etc/hosts", "etc/resolv.conf")

Meta = dict[str, Any]


def shquote(s: str) -> str:
    """``s`` as one word of a POSIX shell line, always in single quotes (as Apptainer writes its scripts)."""
    return "'" + s.replace("'", "'\"'\"'") + "'" if s else "''"


def is_squashfs(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"hsqs"
    except OSError as e:
        fatal(f"could not open image {path}: {e.strerror}")


def read_meta(rootfs: str) -> Meta:
    """The stand-in's metadata of an unpacked image; empty for an image it did not build."""
    try:
        with open(os.path.join(rootfs, META_FILE)) as f:
            meta: Meta = json.load(f)
    except (OSError, ValueError):
        return {}
    return meta


def image_meta(cfg: dict[str, Any], what: str, src: str) -> Meta:
    """The metadata of an image built from the OCI image config ``cfg`` by bootstrap agent ``what``."""
    c = cfg.get("config") or {}
    labels = dict(c.get("Labels") or {})
    arch = cfg.get("architecture", host_arch())
    labels.update(
        {
            "org.label-schema.build-arch": arch,
            "org.label-schema.build-date": time.strftime("%A_%d_%B_%Y_%H:%M:%S_%Z"),
            "org.label-schema.schema-version": "1.0",
            "org.label-schema.usage.apptainer.version": version(),
            "org.label-schema.usage.singularity.deffile.bootstrap": what,
            "org.label-schema.usage.singularity.deffile.from": src.split(":", 1)[1],
        }
    )
    return {
        "standin": f"hpcci apptainer stand-in {version()}",
        "architecture": arch,
        "variant": cfg.get("variant", ""),
        "os": cfg.get("os", "linux"),
        "entrypoint": c.get("Entrypoint") or [],
        "cmd": c.get("Cmd") or [],
        "env": c.get("Env") or [],
        "workdir": c.get("WorkingDir") or "",
        "labels": labels,
    }


def write_metadata(rootfs: str, meta: Meta) -> None:
    """Write /.singularity.d of an unpacked image."""
    md = os.path.join(rootfs, META_DIR)
    os.makedirs(os.path.join(md, "env"), exist_ok=True)
    with open(os.path.join(rootfs, META_FILE), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    with open(os.path.join(md, "labels.json"), "w") as f:
        json.dump(meta["labels"], f, indent=1, sort_keys=True)
    with open(os.path.join(md, "env", "10-docker2singularity.sh"), "w") as f:
        f.write("#!/bin/sh\n")
        for e in meta["env"]:
            k, _, v = e.partition("=")
            f.write(f"export {k}=${{{k}:-{shquote(v)}}}\n")
    with open(os.path.join(md, "runscript"), "w") as f:
        f.write("#!/bin/sh\n# runscript (hpcci apptainer stand-in): docker ENTRYPOINT + CMD\n")
        f.write(f"OCI_ENTRYPOINT={shquote(' '.join(map(shquote, meta['entrypoint'])))}\n")
        f.write(f"OCI_CMD={shquote(' '.join(map(shquote, meta['cmd'])))}\n")
        f.write(
            'if [ $# -gt 0 ]; then eval "exec $OCI_ENTRYPOINT \\"\\$@\\""; '
            'else eval "exec $OCI_ENTRYPOINT $OCI_CMD"; fi\n'
        )
    os.chmod(os.path.join(md, "runscript"), 0o755)  # noqa: S103 - a script everyone in the image runs


def add_mount_points(rootfs: str) -> None:
    for d in MOUNT_DIRS:
        p = os.path.join(rootfs, d)
        if not os.path.lexists(p):
            os.makedirs(p, exist_ok=True)
    for fn in MOUNT_FILES:
        p = os.path.join(rootfs, fn)
        if not os.path.lexists(p):
            touch(p)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)  # noqa: S103 - /tmp is world-writable and sticky


def _meta_of(image: str) -> Meta:
    """The metadata of a sandbox directory or SquashFS image, read without unpacking it."""
    if os.path.isdir(image):
        return read_meta(image)
    if not os.path.exists(image):
        fatal(f"could not open image {image}: no such file or directory")
    if not is_squashfs(image):
        fatal(f"could not open image {image}: image format not recognized")
    p = subprocess.run(
        ["unsquashfs", "-cat", image, META_FILE],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    try:
        meta: Meta = json.loads(p.stdout.decode()) if p.returncode == 0 else {}
    except ValueError:
        return {}
    return meta


def cmd_inspect(args: list[str]) -> int:
    """`inspect [-l|-r|-e|-j|--all] IMAGE`: labels (the default), runscript, environment, as text or JSON."""
    opts, pos = parse(args, INSPECT_FLAGS, 1, "inspect [options...] <image path>")
    if opts.on("help"):
        print(usage("inspect [-l|--labels] [-r|--runscript] [-e|--environment] [-j|--json] <image path>"))
        return 0
    meta = _meta_of(pos[0])
    labels = meta.get("labels", {})
    attrs = {
        "labels": labels,
        "runscript": "#!/bin/sh\n# docker ENTRYPOINT + CMD\n"
        + " ".join(map(shquote, meta.get("entrypoint", []) + meta.get("cmd", []))),
        "environment": "\n".join(
            f"export {e.partition('=')[0]}={shquote(e.partition('=')[2])}" for e in meta.get("env", [])
        ),
    }
    want = [k for k in attrs if opts.on(k) or opts.on("all")] or ["labels"]
    if opts.on("json"):
        print(
            json.dumps({"data": {"attributes": {k: attrs[k] for k in want}}, "type": "container"}, indent=4)
        )
        return 0
    for k in want:
        if k == "labels":
            for lk in sorted(labels):
                print(f"{lk}: {labels[lk]}")
        else:
            print(attrs[k])
    return 0
