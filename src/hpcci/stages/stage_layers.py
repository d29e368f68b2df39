"""Layer-level staging on a login node: check the blob store, send only missing blobs, assemble the layout, evict.

Runs a LayerPlan (stages/blobstore.py) over a Remote. Each missing blob goes to its temporary name - a byte range of
the published tar pulled by curl on the login node (S3), or that range of the local tar uploaded over SFTP - is
hashed there, and only a blob whose sha256 is its name is renamed into the store. A broken S3 pull resumes where its
bytes end (`curl --range`; RHEL 8's curl 7.61 has no --retry-all-errors) until the outage window is spent.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from hpcci.backends.builders.spec import RegistryAuth
from hpcci.backends.registry import RegistryClient
from hpcci.backends.remote import Remote
from hpcci.config import Pipeline, resolve_value
from hpcci.digests import parse_sha256sum
from hpcci.errors import HpcciError, TransferError, UsageError
from hpcci.records import S3Object
from hpcci.stages import blobstore as bs
from hpcci.stages.layers import (
    OCI_LAYOUT,
    Blob,
    LayerIndex,
    blob_curl_config,
    copy_range,
    index_from_manifest,
    index_key,
    layout_index_json,
    manifest_json,
    registry_blob_source,
    text_digest,
)
from hpcci.stages.sources import ImageSource
from hpcci.stages.steps import WriteFile

OUTAGE_WINDOW = 60.0  # seconds a login-node pull keeps resuming a broken transfer
# curl's exit codes for a server that is away or went away mid-transfer: connect failed, partial file, timeout,
# empty reply, send/receive failure (22, an HTTP error, only when the server said 5xx)
TRANSIENT_CURL = {7, 18, 28, 52, 55, 56}


def transient(code: int, stderr: str) -> bool:
    return code in TRANSIENT_CURL or (code == 22 and "returned error: 5" in stderr)


@dataclass
class LayerResult:
    """What one layer-level staging did."""

    reused: list[str] = field(default_factory=list)  # digests the store had, intact
    hashed: list[str] = field(default_factory=list)  # stored blobs hashed again (not trusted from the record)
    fetched: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)  # found damaged in the store, deleted and fetched again
    evicted: list[str] = field(default_factory=list)
    bytes_moved: int = 0  # SFTP: bytes the transport sent; S3: bytes curl received
    resumed: int = 0  # S3 pulls resumed after a broken transfer


def fetch_index(
    obj: S3Object, presign: Callable[[S3Object, str | None], str], timeout: float = 30
) -> LayerIndex:
    """The layer index published next to the tar (`hpcci publish --to s3`), read from here with a presigned GET."""
    key = index_key(obj.key)
    url = presign(replace(obj, key=key), obj.endpoint_url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - a presigned http(s) URL
            return LayerIndex.from_json(json.loads(resp.read(4 << 20)))
    except (OSError, ValueError) as e:
        raise UsageError(
            f"s3://{obj.bucket}/{key}: cannot read the layer index of the published image ({e}); re-publish with "
            "this hpcci (`hpcci publish --to s3` writes it next to the tar) or set staging.layers: false"
        ) from e


@dataclass(frozen=True)
class Target:
    """What a pull writes: ``size`` bytes into ``partial`` on the cluster."""

    cluster: str
    partial: str
    size: int
    what: str


@dataclass
class Pulled:
    moved: int = 0  # bytes curl delivered, over every try
    resumed: int = 0


def pull_range(
    remote: Remote,
    argv_from: Callable[[int], list[str]],
    stdin: str,
    target: Target,
    info: Callable[[str], None],
    *,
    have: int = 0,
    window: float = OUTAGE_WINDOW,
) -> Pulled:
    """Run ``argv_from(start)`` (curl appending bytes start.. to the partial file, printing how many) until the file
    holds all ``size`` bytes; after a break, ask the file's size and resume there; give up after ``window`` s."""
    out, tries, started = Pulled(), 0, time.monotonic()
    while have < target.size:
        tries += 1
        shown = f"curl --range {have}- <presigned URL> >> {target.partial}"
        done = remote.run(argv_from(have), timeout=900, stdin=stdin, echo=shown)
        counted = (done.stdout.split() or ["0"])[-1]
        out.moved += int(counted) if counted.isdigit() else 0
        if done.ok:
            return out
        size = remote.run(["stat", "-c", "%s", "--", target.partial], timeout=60)
        have = int(size.stdout.strip()) if size.ok and size.stdout.strip().isdigit() else 0
        waited = time.monotonic() - started
        cause = ((done.stderr or done.stdout).strip().splitlines() or [f"curl exit code {done.returncode}"])[
            -1
        ]
        if waited >= window or have > target.size or not transient(done.returncode, done.stderr):
            raise TransferError(
                f"cluster {target.cluster}: the login node could not pull {target.what} after {tries} tries over "
                f"{waited:.0f} s: {cause}; check that it reaches the S3 endpoint (staging.s3_endpoint_url) or use "
                "staging.method: sftp"
            )
        out.resumed += 1
        info(
            f"pull of {target.what} broke at {have}/{target.size} bytes ({cause}); resuming in {min(2 * tries, 10)} s"
        )
        time.sleep(min(2.0 * tries, 10.0))
    return out


def registry_blobs(
    pipeline: Pipeline, src: ImageSource, mask: Callable[[str], None]
) -> tuple[LayerIndex, Callable[[Blob], str]]:
    """The image's blobs from its registry manifest, and curl's config for each: its URL and the Authorization
    header the registry granted this deploy for the manifest (on curl's stdin, never on a command line)."""
    assert src.registry_ref is not None
    reg = pipeline.publish.registry
    auth = None
    if reg is not None and reg.username is not None and reg.password is not None:
        user = resolve_value(reg.username, "publish.registry.username").strip()
        password = reg.password.resolve("publish.registry.password").strip()
        mask(password)
        auth = RegistryAuth(host="", username=user, password=password)
    dest, digest = registry_blob_source(src.registry_ref, insecure=bool(reg and reg.insecure))
    with RegistryClient(dest, auth) as client:
        index = index_from_manifest(client.get(digest))
        authz = client.authorization
    if authz:
        mask(authz.split(" ", 1)[-1])
    base = f"{dest.api}/v2/{dest.repository}/blobs"
    return index, lambda b: blob_curl_config(f"{base}/{b.digest}", authz)


class LayerStager:
    """Runs one image's LayerPlan on one login node."""

    def __init__(
        self,
        remote: Remote,
        cluster: str,
        info: Callable[[str], None],
        *,
        curl_config: Callable[[Blob], str]
        | None = None,  # S3, registry: curl's config (URL, header) per blob
        local_tar: Path | None = None,  # SFTP
        window: float = OUTAGE_WINDOW,
    ) -> None:
        self.remote, self.cluster, self.info = remote, cluster, info
        self.curl_config = curl_config
        self.local_tar, self.window = local_tar, window

    def stage(self, plan: bs.LayerPlan, index: LayerIndex) -> LayerResult:
        result = LayerResult()
        store = plan.store
        blobs = index.blobs()
        self.remote.run(bs.mkdir_argv(store), timeout=60, check=True)
        now = time.time()
        found = bs.parse_stat(self.remote.run(bs.stat_argv(store, blobs), timeout=120).stdout, store, blobs)
        record = bs.parse_record(self.remote.read_tail(store.verified, 4 << 20))
        trusted, again = bs.to_hash(blobs, found, record, now)
        good, bad = {b.digest for b in trusted}, set[str]()
        if again:  # size or mtime changed, nothing recorded, or hashed too long ago
            result.hashed = [b.digest for b in again]
            intact, bad = bs.parse_verified(self.remote.run(bs.verify_argv(store, again), timeout=900).stdout,
                                            store, again)  # fmt: skip
            good |= intact
        if bad:
            result.corrupt = sorted(bad)
            self.info(f"{len(bad)} blob(s) in the store do not match their digest: deleted, fetched again")
            self.remote.run(bs.remove_argv(store, [d.removeprefix("sha256:") for d in bad]), timeout=60)
        missing = [b for b in blobs if b.digest not in good]
        result.reused = [b.digest for b in blobs if b.digest in good]
        need = sum(b.size for b in missing)
        self.info(f"blob store: {len(result.reused)} of {len(blobs)} blob(s) there; fetching {len(missing)} "
                  f"({need / (1 << 20):.1f} MiB) by {plan.via}")  # fmt: skip
        for blob in missing:
            result.bytes_moved += self._fetch(plan, blob, result)
            result.fetched.append(blob.digest)
        self.remote.run(bs.touch_argv(store, blobs), timeout=60, check=True)
        self._assemble(plan, index)
        self._record(plan, blobs)
        result.evicted = self._evict(plan, {b.hex for b in blobs})
        checked = [b for b in blobs if b not in trusted and (b.digest in good or b.digest in result.fetched)]
        dropped = {d.removeprefix("sha256:") for d in [*bad, *result.evicted]}
        self._remember(plan, blobs, record, trusted, checked, dropped, now)
        return result

    def _remember(self, plan: bs.LayerPlan, blobs: list[Blob], record: dict[str, bs.Verified],
                  trusted: list[Blob], checked: list[Blob], dropped: set[str], now: float) -> None:  # fmt: skip
        """The verified record: each blob of the image's size and mtime as touched, for the next deploy to trust."""
        store = plan.store
        found = bs.parse_stat(self.remote.run(bs.stat_argv(store, blobs), timeout=120).stdout, store, blobs)
        text = bs.record_text(bs.recorded(record, found, trusted, checked, dropped, now))
        for step in bs.record_steps(store, text, plan.run_id):
            if isinstance(step, WriteFile):
                self.remote.write_text(step.path, step.text)
            else:
                self.remote.run(step.argv, timeout=step.timeout, check=True)

    def _fetch(self, plan: bs.LayerPlan, blob: Blob, result: LayerResult) -> int:
        """One blob to the store via its temporary name; returns the bytes that crossed the wire."""
        partial = plan.store.partial(blob, plan.run_id)
        try:
            moved = (
                self._upload(plan, blob, partial)
                if plan.via == "sftp"
                else self._pull(plan, blob, partial, result)
            )
            got = parse_sha256sum(self.remote.run(["sha256sum", "--", partial], timeout=900).stdout)
            if got != blob.hex:
                raise TransferError(
                    f"cluster {self.cluster}: blob {blob.digest} arrived with sha256 {got or 'unreadable'}; it was "
                    "deleted - re-run the deploy (or re-publish if the published tar changed)"
                )
            self.remote.run(bs.commit_argv(partial, plan.store.path(blob)), timeout=60, check=True)
        except BaseException:
            with contextlib.suppress(HpcciError):
                self.remote.run(["rm", "-f", "--", partial], timeout=60, interruptible=False)
            raise
        return moved

    def _upload(self, plan: bs.LayerPlan, blob: Blob, partial: str) -> int:
        assert self.local_tar is not None
        sent = [0]

        def count(n: int) -> None:
            sent[0] += n

        with tempfile.TemporaryDirectory(prefix="hpcci-blob-") as tmp:
            piece = Path(tmp) / blob.hex
            copy_range(self.local_tar, blob.offset, blob.size, piece)
            self.remote.put(piece, partial, streams=plan.streams, progress=count)
        return sent[0]

    def _pull(self, plan: bs.LayerPlan, blob: Blob, partial: str, result: LayerResult) -> int:
        """curl pulls the blob's byte range; a broken pull resumes at the first missing byte until the window."""
        assert self.curl_config is not None
        self.remote.run(["rm", "-f", "--", partial], timeout=60, check=True)
        pulled = pull_range(
            self.remote, lambda start: plan.fetch_argv(blob.offset + start, blob.offset + blob.size - 1, partial),
            self.curl_config(blob), Target(self.cluster, partial, blob.size, f"blob {blob.digest}"), self.info,
            window=self.window,
        )  # fmt: skip
        result.resumed += pulled.resumed
        return pulled.moved

    def _assemble(self, plan: bs.LayerPlan, index: LayerIndex) -> None:
        """The OCI layout the runtime builds from: hard links to the store, the manifest, index.json."""
        for argv in bs.link_argv(plan.store, plan.layout, index.blobs()):
            self.remote.run(argv, timeout=120, check=True)
        manifest = manifest_json(index)
        blobs = f"{plan.layout}/blobs/sha256"
        self.remote.write_text(f"{blobs}/{text_digest(manifest).removeprefix('sha256:')}", manifest)
        self.remote.write_text(f"{plan.layout}/oci-layout", OCI_LAYOUT)
        self.remote.write_text(f"{plan.layout}/index.json", layout_index_json(manifest))

    def _record(self, plan: bs.LayerPlan, blobs: list[Blob]) -> None:
        """The image's blob list in the store, for a release installed from it (stages/release_keep.py)."""
        for step in bs.image_list_steps(plan.store, plan.image, bs.image_list_text(blobs), plan.run_id):
            if isinstance(step, WriteFile):
                self.remote.write_text(step.path, step.text)
            else:
                self.remote.run(step.argv, timeout=step.timeout, check=True)

    def _evict(self, plan: bs.LayerPlan, image: set[str]) -> list[str]:
        """Least recently used blobs out while the store is over its limit; this image's and kept ones stay."""
        done = self.remote.run(bs.listing_argv(plan.store), timeout=120)
        entries = bs.parse_listing(done.stdout) if done.ok else []
        keep = bs.parse_keep(self.remote.read_tail(plan.store.keep, 1 << 20))
        for argv in bs.leftovers_argv(plan.store, plan.cache):
            self.remote.run(argv, timeout=120)
        doomed = bs.evict(entries, image | keep, plan.limit)
        if doomed:
            self.remote.run(bs.remove_argv(plan.store, [e.name for e in doomed]), timeout=120, check=True)
            left = [e for e in entries if e not in doomed]
            self.info(
                f"blob store: evicted {len(doomed)} least recently used blob(s); now {bs.describe(left, plan.limit)}"
            )
        else:
            self.info(f"blob store: {bs.describe(entries, plan.limit)}")
        return [f"sha256:{e.name}" for e in doomed]
