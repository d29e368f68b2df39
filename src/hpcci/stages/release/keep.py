"""The blob store's keep-list for installed releases: the blobs of each <name>/<version>, spared by eviction.

A release installed on a cluster with staging.layers keeps the blobs of the image it came from - the list the layer
staging left in ``<image_cache>/blobs/images/<hex>`` - by writing them into ``<image_cache>/blobs/keep``, one
``sha256:<hex>  # <name>/<version>`` a line. A version retention removed loses its lines; lines of other applications
and lines written by hand stay as they are. The keep file is written under a temporary name in its own folder and
renamed over the old one (`mv -T`), so an eviction reads the old list or the new one. Best effort: a failure is
logged and the install stands (a missing keep line costs a re-fetch of the blobs later, never a broken module).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Collection, Sequence

from hpcci.backends.ssh.remote import Remote
from hpcci.config.models import Cluster
from hpcci.errors import HpcciError
from hpcci.records import ClusterResult
from hpcci.stages.cluster import automation, runtime
from hpcci.stages.layers.store import Store, store_for
from hpcci.stages.release.plan import ReleaseRequest
from hpcci.stages.steps import Command, WriteFile

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
OURS = re.compile(
    r"(?P<digest>sha256:[0-9a-f]{64})  # (?P<release>\S+)"
)  # exactly the lines keep_text writes
MAX_LIST = 1 << 20  # bytes read of a keep file or an image's blob list


def image_blobs(text: str) -> list[str]:
    """The digests of an image's blob list (``sha256:<hex>`` a line), in order, each once; other lines ignored."""
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if DIGEST.fullmatch(line.strip())))


def _release(line: str) -> tuple[str, str] | None:
    """(name, version) of a line keep_text wrote, else None (a hand-written line, a comment)."""
    m = OURS.fullmatch(line.rstrip())
    if m is None:
        return None
    name, _, version = m["release"].rpartition("/")
    return (name, version) if name and version else None


def keep_text(old: str, name: str, installed: Collection[str], version: str, blobs: Sequence[str]) -> str:
    """``old`` with ``name``/``version``'s lines replaced by ``blobs``, the lines of ``name``'s versions that are not
    ``installed`` dropped, and every other line kept as it was. Running it twice changes nothing more."""
    kept: list[str] = []
    for line in old.splitlines():
        rel = _release(line)
        if rel is not None and rel[0] == name and (rel[1] == version or rel[1] not in installed):
            continue
        kept.append(line)
    added = [f"{d}  # {name}/{version}" for d in dict.fromkeys(blobs) if DIGEST.fullmatch(d)]
    return "".join(f"{line}\n" for line in [*kept, *added])


def keep_steps(store: Store, text: str, run_id: str) -> list[Command | WriteFile]:
    """The keep file replaced by ``text``: a temporary name in the same folder, then one rename."""
    tmp = f"{store.root}/.keep.{run_id}"
    return [WriteFile(tmp, text), Command(["mv", "-T", "--", tmp, store.keep])]


def layered(cluster: Cluster) -> bool:
    """Whether deploys to ``cluster`` stage by layers (the same rule as image_plan's layer plan)."""
    return cluster.staging.layers and runtime(cluster).builds_from_layout and not automation(cluster)


def keep_release(
    remote: Remote,
    cluster: Cluster,
    result: ClusterResult,
    request: ReleaseRequest,
    release: tuple[
        str, list[str]
    ],  # (the module's name, its versions installed after this install's retention)
    info: Callable[[str], None],
) -> None:
    """Update the cluster's keep-list for ``request``'s version just installed; never raises an HpcciError."""
    if not layered(cluster) or not result.sif_path or not result.image_digest:
        return
    name, installed = release
    store = store_for(
        posixpath.dirname(result.sif_path)
    )  # the SIF lives in the image cache, as the store does
    try:
        blobs = image_blobs(remote.read_tail(store.image_list(result.image_digest), MAX_LIST))
        old = remote.read_tail(store.keep, MAX_LIST)
        if len(old.encode()) >= MAX_LIST:  # only its tail was read: rewriting it would drop the head
            info(f"warning: {store.keep} is over {MAX_LIST} bytes; left as it is, the release is installed")
            return
        new = keep_text(old, name, installed, request.version, blobs)
        if new != old:
            for step in keep_steps(store, new, request.run_id):
                if isinstance(step, WriteFile):
                    remote.write_text(step.path, step.text)
                else:
                    remote.run(step.argv, timeout=step.timeout, check=True)
    except HpcciError as e:
        info(
            f"warning: the blob store's keep-list {store.keep} was not updated ({e}); the release is installed"
        )
        return
    what = f"{len(blobs)} blob(s) kept" if blobs else "nothing to keep (its image was not staged by layers)"
    info(f"blob store keep-list: {name}/{request.version}: {what}")
