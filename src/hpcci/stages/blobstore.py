"""The cluster's content-addressed blob store (under paths.image_cache): its layout, commands and eviction (pure).

Layout: ``<image_cache>/blobs/sha256/<hex>`` holds complete, verified blobs only. A blob arrives under a temporary
name (``.<hex>.<run>.part``, never counted as present), is hashed, and only then renamed to its digest. A deploy
trusts a stored blob as verified while its size and mtime are those recorded in ``<image_cache>/blobs/verified``
(``<hex> <size> <mtime> <verified at>`` a line, written under a temporary name and renamed, after the deploy's own
touch) and its last hash is under ``REHASH_DAYS`` old; otherwise it hashes it again, and a blob whose bytes no longer
match its name is deleted and fetched anew. A lost or stale record only costs a hash, never trust.
Every deploy touches the blobs it uses, so a blob's mtime is when it was last used; beyond the size limit the least
recently used blobs go, except the image being deployed and every digest listed in ``<image_cache>/blobs/keep``
(one ``sha256:<hex>`` per line: installed releases, stages/release_keep.py). Each image staged this way leaves its
blob list in ``<image_cache>/blobs/images/<hex of its digest>``, so a release installed from it can keep exactly
those blobs. An image is assembled as an OCI layout of hard links to the store, so the conversion never copies a
layer and an eviction cannot pull a blob from under a running conversion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hpcci.shell import Pipe, login_argv
from hpcci.stages.layers import OCI_LAYOUT, Blob
from hpcci.stages.steps import Command, Step, Upload, WriteFile

HEX = re.compile(r"[0-9a-f]{64}")
GiB = 1 << 30


@dataclass(frozen=True)
class Store:
    """Where the store lives on one cluster."""

    root: str  # <image_cache>/blobs

    @property
    def dir(self) -> str:
        return f"{self.root}/sha256"

    @property
    def keep(self) -> str:
        return f"{self.root}/keep"

    @property
    def images(self) -> str:
        return f"{self.root}/images"

    @property
    def verified(self) -> str:
        """The record of each blob's size and mtime when its sha256 last matched its name."""
        return f"{self.root}/verified"

    def image_list(self, image: str) -> str:
        """The blob list of the image whose deploy digest (the cache key, ``sha256:<hex>``) is ``image``."""
        return f"{self.images}/{image.removeprefix('sha256:')}"

    def path(self, blob: Blob) -> str:
        return f"{self.dir}/{blob.hex}"

    def partial(self, blob: Blob, run_id: str) -> str:
        return f"{self.dir}/.{blob.hex}.{run_id}.part"


def store_for(cache: str) -> Store:
    return Store(f"{cache}/blobs")


@dataclass(frozen=True)
class Verified:
    """A blob as it was when its sha256 last matched its name: size, mtime (whole seconds), when it was hashed."""

    size: int
    mtime: int
    at: float  # seconds since the epoch, the deploy's clock


REHASH_DAYS = (
    7  # a blob unchanged in size and mtime is hashed again after this long (bit rot, a preserved mtime)
)


@dataclass(frozen=True)
class Entry:
    """A complete blob in the store, as `find -printf` lists it."""

    name: str  # the hex digest
    size: int
    used: float  # mtime: the last deploy that used it


# -- commands -------------------------------------------------------------------------------------------------------


def mkdir_argv(store: Store) -> list[str]:
    return ["mkdir", "-p", "--", store.dir]


HASHERS = 4  # blobs hashed at once: a multi-GB image's layers are read in parallel, not one after another


def verify_argv(store: Store, blobs: list[Blob]) -> list[str]:
    """Hash every blob the image needs, several at a time; a missing one is an error line on stderr (the command
    runs unchecked)."""
    paths = [store.path(b) for b in blobs]
    return login_argv([Pipe(["printf", "%s\\0", *paths], ["xargs", "-0", "-r", "-P", str(HASHERS), "-n", "1",
                                                          "sha256sum", "--"])])  # fmt: skip


def stat_argv(store: Store, blobs: list[Blob]) -> list[str]:
    """``<mtime> <size> <path>`` of each blob in the store (GNU stat; a missing one is an error line on stderr, the
    command runs unchecked)."""
    return ["stat", "--format=%Y %s %n", "--", *(store.path(b) for b in blobs)]


def fetch_step(curl: list[str], start: int, end: int, partial: str) -> Pipe:
    """Bytes ``start``..``end`` (inclusive) of the published tar (or of a registry blob) appended to ``partial``;
    stdout: how many came.

    A retry after a broken transfer asks only for the rest (``start`` = first byte not yet written).
    """
    return Pipe([*curl, "--range", f"{start}-{end}"], ["tee", "-a", "--", partial], ["wc", "-c"])


def commit_argv(partial: str, final: str) -> list[str]:
    return ["mv", "-f", "--", partial, final]


def touch_argv(store: Store, blobs: list[Blob]) -> list[str]:
    """Mark the image's blobs used now (the store's LRU clock); -c: never creates a missing one."""
    return ["touch", "-c", "--", *(store.path(b) for b in blobs)]


def link_argv(store: Store, layout: str, blobs: list[Blob]) -> list[list[str]]:
    """The layout's blobs folder made of hard links into the store (same filesystem: no bytes copied)."""
    folder = f"{layout}/blobs/sha256"
    return [["mkdir", "-p", "--", folder], ["ln", "-f", "-t", folder, "--", *(store.path(b) for b in blobs)]]


def listing_argv(store: Store) -> list[str]:
    """Every file in the store with its mtime and size (GNU find); names that are not digests are not blobs."""
    return ["find", store.dir, "-maxdepth", "1", "-type", "f", "-printf", "%T@ %s %f\\n"]


LEFTOVER_MINUTES = 7 * 24 * 60  # a deploy killed mid-way, or a failed conversion job, leaves these behind


def leftovers_argv(store: Store, cache: str) -> list[list[str]]:
    """Partial blobs and assembled layouts older than a week: a layout's hard links would keep evicted blobs' bytes
    on disk, so they go (no deploy or queued conversion job waits that long)."""
    age = ["-mmin", f"+{LEFTOVER_MINUTES}"]
    return [
        ["find", store.dir, "-maxdepth", "1", "-type", "f", "-name", ".*.part", *age, "-delete"],
        ["find", cache, "-maxdepth", "1", "-type", "d", "-name", ".layout-*", *age, "-exec", "rm", "-rf", "--", "{}", "+"],
    ]  # fmt: skip


def image_list_text(blobs: list[Blob]) -> str:
    """An image's blob list: config first, then its layers, one ``sha256:<hex>`` a line."""
    return "".join(f"{b.digest}\n" for b in blobs)


def image_list_steps(store: Store, image: str, text: str, run_id: str) -> list[Command | WriteFile]:
    """The image's blob list written under a temporary name and renamed over the old one, so a release install
    never reads half a list."""
    tmp = f"{store.images}/.{image.removeprefix('sha256:')}.{run_id}"
    return [
        Command(["mkdir", "-p", "--", store.images]),
        WriteFile(tmp, text),
        Command(["mv", "-T", "--", tmp, store.image_list(image)]),
    ]


def record_steps(store: Store, text: str, run_id: str) -> list[Command | WriteFile]:
    """The verified record written under a temporary name and renamed over the old one (never read half-written)."""
    tmp = f"{store.root}/.verified.{run_id}"
    return [WriteFile(tmp, text), Command(["mv", "-f", "-T", "--", tmp, store.verified])]


def remove_argv(store: Store, names: list[str]) -> list[str]:
    return ["rm", "-f", "--", *(f"{store.dir}/{n}" for n in names)]


# -- parsing and the eviction rule -------------------------------------------------------------------------------


def parse_verified(stdout: str, store: Store, blobs: list[Blob]) -> tuple[set[str], set[str]]:
    """(digests present and intact, digests present but corrupt) from `sha256sum` of the store paths."""
    by_path = {store.path(b): b for b in blobs}
    good: set[str] = set()
    bad: set[str] = set()
    for line in stdout.splitlines():
        got, _, path = line.partition("  ")
        blob = by_path.get(path)
        if blob is not None and HEX.fullmatch(got):
            (good if got == blob.hex else bad).add(blob.digest)
    return good, bad


def parse_stat(stdout: str, store: Store, blobs: list[Blob]) -> dict[str, tuple[int, int]]:
    """hex -> (mtime, size) of each blob `stat_argv` found."""
    by_path = {store.path(b): b for b in blobs}
    out: dict[str, tuple[int, int]] = {}
    for line in stdout.splitlines():
        parts = line.split(" ", 2)
        blob = by_path.get(parts[2]) if len(parts) == 3 else None
        if blob is not None and parts[0].isdigit() and parts[1].isdigit():
            out[blob.hex] = (int(parts[0]), int(parts[1]))
    return out


def parse_record(text: str) -> dict[str, Verified]:
    """The verified record: hex -> Verified; a damaged line is skipped (that blob is hashed again)."""
    out: dict[str, Verified] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and HEX.fullmatch(parts[0]) and parts[1].isdigit() and parts[2].isdigit():
            try:
                out[parts[0]] = Verified(int(parts[1]), int(parts[2]), float(parts[3]))
            except ValueError:
                continue
    return out


def record_text(record: dict[str, Verified]) -> str:
    return "".join(f"{h} {v.size} {v.mtime} {v.at:.0f}\n" for h, v in sorted(record.items()))


def to_hash(
    blobs: list[Blob], found: dict[str, tuple[int, int]], record: dict[str, Verified], now: float
) -> tuple[list[Blob], list[Blob]]:
    """(blobs trusted as verified, blobs in the store to hash again): a blob is trusted when its size is the one
    its index names and both size and mtime are those recorded after its last matching hash, under REHASH_DAYS
    ago. Blobs not in the store are in neither list (they are fetched)."""
    trusted: list[Blob] = []
    again: list[Blob] = []
    for b in blobs:
        if b.hex not in found:
            continue
        mtime, size = found[b.hex]
        r = record.get(b.hex)
        fresh = r is not None and now - r.at < REHASH_DAYS * 86400
        same = r is not None and (r.size, r.mtime) == (size, mtime) and size == b.size
        (trusted if fresh and same else again).append(b)
    return trusted, again


def recorded(
    record: dict[str, Verified],
    found: dict[str, tuple[int, int]],
    trusted: list[Blob],
    checked: list[Blob],
    dropped: set[str],
    now: float,
) -> dict[str, Verified]:
    """The record after a deploy: ``found`` (hex -> (mtime, size) after its touch) for the image's blobs, keeping
    the hash time of ``trusted`` ones and ``now`` for ``checked`` ones (hashed this deploy, or fetched and hashed);
    ``dropped`` (deleted or evicted) leave it. Other blobs' entries stay as they were."""
    out = {h: v for h, v in record.items() if h not in dropped}
    for b in trusted:
        if b.hex in found and b.hex in record:
            out[b.hex] = Verified(found[b.hex][1], found[b.hex][0], record[b.hex].at)
    for b in checked:
        if b.hex in found:
            out[b.hex] = Verified(found[b.hex][1], found[b.hex][0], now)
    return out


def parse_listing(text: str) -> list[Entry]:
    out: list[Entry] = []
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and HEX.fullmatch(parts[2]) and parts[1].isdigit():
            try:
                out.append(Entry(parts[2], int(parts[1]), float(parts[0])))
            except ValueError:
                continue
    return out


def parse_keep(text: str) -> set[str]:
    """The digests in a keep-list: one `sha256:<hex>` (or bare hex) per line; `#` starts a comment."""
    keep: set[str] = set()
    for line in text.splitlines():
        word = line.split("#", 1)[0].strip().removeprefix("sha256:")
        if HEX.fullmatch(word):
            keep.add(word)
    return keep


def evict(entries: list[Entry], protected: set[str], limit: int) -> list[Entry]:
    """The blobs to delete so the store fits ``limit`` bytes: least recently used first, never a protected one.

    When the protected blobs alone exceed the limit, every unprotected blob goes and the store stays over it.
    """
    total = sum(e.size for e in entries)
    doomed: list[Entry] = []
    for e in sorted(entries, key=lambda e: (e.used, e.name)):
        if total <= limit:
            break
        if e.name in protected:
            continue
        doomed.append(e)
        total -= e.size
    return doomed


def describe(entries: list[Entry], limit: int) -> str:
    """The store's size for `hpcci doctor` and the deploy log."""
    total = sum(e.size for e in entries)
    return f"{len(entries)} blob(s), {total / GiB:.2f} GiB of {limit / GiB:.1f} GiB (staging.blob_store_gib)"


# -- the plan -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerPlan:
    """Layer-level staging of one image: the store, the layout assembled for the conversion, the store's bound."""

    store: Store
    image: str  # the deploy's image digest (sha256:..., the cache key): names the image's blob list
    layout: str  # <image_cache>/.layout-<key>.<run>: hard links + index.json, deleted after the conversion
    cache: str  # <image_cache>
    limit: int  # bytes (staging.blob_store_gib)
    run_id: str
    via: str  # s3 | sftp | registry
    curl: tuple[
        str, ...
    ]  # S3, registry: curl reading its URL (and a registry's Authorization header) from stdin
    modules: tuple[str, ...]  # loaded by the login shell that runs curl
    local_tar: str | None  # SFTP: the tar whose byte ranges are uploaded
    streams: int

    def fetch_argv(self, start: int, end: int, partial: str) -> list[str]:
        return login_argv([fetch_step(list(self.curl), start, end, partial)], modules=self.modules)

    def steps(self) -> list[Step]:
        """What `hpcci plan` prints: the commands the deploy runs, for each blob of the image (DIGEST) or each
        missing one (START-END: its bytes in the tar, from its layer index)."""
        each = Blob("sha256:DIGEST", 0, 0, "")
        partial = self.store.partial(each, self.run_id)
        note = ("each missing blob (--range START-END; stdin: the tar's presigned URL, or the registry's blob URL "
                "and Authorization header); a broken pull resumes where its bytes end")  # fmt: skip
        fetch: list[Step] = (
            [Command(["rm", "-f", "--", partial]), Command(self.fetch_argv(0, 0, partial), note=note)]
            if self.via != "sftp"
            else [Upload(f"{self.local_tar} bytes START-END", partial, self.streams)]
        )
        return [
            Command(mkdir_argv(self.store)),
            Command(stat_argv(self.store, [each]), note="each blob of the image: its mtime and size"),
            Command(["cat", "--", self.store.verified], note="trusted while size and mtime are as recorded after its "
                    f"last matching sha256, under {REHASH_DAYS} days ago"),
            Command(verify_argv(self.store, [each]), timeout=900, note="each blob not trusted so: which the store "
                    "has intact (a corrupt one is deleted and fetched again)"),
            *fetch,
            Command(["sha256sum", "--", partial], timeout=900, note="must equal DIGEST"),
            Command(commit_argv(partial, self.store.path(each))),
            Command(touch_argv(self.store, [each]), note="used now (least recently used blobs are evicted first)"),
            *[Command(a) for a in link_argv(self.store, self.layout, [each])],
            WriteFile(f"{self.layout}/blobs/sha256/MANIFEST", "(the OCI manifest made from the layer index)\n"),
            WriteFile(f"{self.layout}/oci-layout", f"{OCI_LAYOUT}\n"),
            WriteFile(f"{self.layout}/index.json", "(the OCI index: the manifest, named image)\n"),
            *image_list_steps(self.store, self.image, "(each blob of the image, config first: sha256:<hex> a line;"
                              " a release installed from it keeps these)\n", self.run_id),
            Command(listing_argv(self.store), note=f"over {self.limit / GiB:g} GiB? then rm -f the least recently "
                    f"used blobs, never this image's or those in {self.store.keep}"),
            *[Command(a, note="leftovers of deploys that never finished") for a in leftovers_argv(self.store, self.cache)],
            Command(stat_argv(self.store, [each]), note="each blob of the image, as touched"),
            *record_steps(self.store, "(<hex> <size> <mtime> <verified at> a line: the image's blobs as stat "
                          "found them, and every other blob's line as it was)\n", self.run_id),
        ]  # fmt: skip
