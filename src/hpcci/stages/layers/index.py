"""Layer index of a docker-archive tar, and the OCI image layout a cluster assembles from its blobs (pure data).

A `docker save` tar holds one image config and its layer tars. The index names each of them by digest with its byte
range in the tar, so a cluster fetches only the blobs it lacks - from the published tar itself by HTTP range (S3),
or from the local tar (SFTP) - and the docker-archive stays the one object people `docker load`. From the blobs a
cluster assembles an OCI image layout (oci-layout, index.json, a manifest blob), which Apptainer builds from with
`oci:<layout>:<tag>`. The manifest is computed here, so it is the same on every cluster for the same index.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcci.errors import UsageError
from hpcci.references import Destination, parse_reference

INDEX_SCHEMA = 1
LAYOUT_TAG = "image"  # the ref name in the assembled layout's index.json: oci:<layout>:image
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
LAYER_TYPES = {  # by the blob's first bytes: `docker save` layers are plain tars, newer ones may be compressed
    b"\x1f\x8b": "application/vnd.oci.image.layer.v1.tar+gzip",
    b"\x28\xb5\x2f\xfd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
PLAIN_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYOUT = '{"imageLayoutVersion":"1.0.0"}'


@dataclass(frozen=True)
class Blob:
    """One blob of an image: its digest, where its bytes are in the tar, and its media type."""

    digest: str  # sha256:<hex>
    offset: int
    size: int
    media_type: str

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class LayerIndex:
    """The config and layers of one docker-archive tar, in manifest order (a layer may repeat)."""

    config: Blob
    layers: tuple[Blob, ...]

    def blobs(self) -> list[Blob]:
        """Each distinct blob once: the config first, then the layers."""
        seen: dict[str, Blob] = {}
        for b in (self.config, *self.layers):
            seen.setdefault(b.digest, b)
        return list(seen.values())

    @property
    def image_id(self) -> str:
        return self.config.digest

    def to_json(self) -> dict[str, Any]:
        def one(b: Blob) -> dict[str, Any]:
            return {"digest": b.digest, "offset": b.offset, "size": b.size, "mediaType": b.media_type}

        return {"schema": INDEX_SCHEMA, "config": one(self.config), "layers": [one(b) for b in self.layers]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerIndex:
        """An index read back (from S3): every field checked, as it came over the network."""

        def one(d: Any) -> Blob:
            ok = isinstance(d, dict) and isinstance(d.get("digest"), str) and len(d["digest"]) == 71
            if not ok or not all(isinstance(d.get(k), int) and d[k] >= 0 for k in ("offset", "size")):
                raise ValueError(f"bad blob entry {d!r}")
            return Blob(d["digest"], d["offset"], d["size"], str(d.get("mediaType") or PLAIN_LAYER))

        if data.get("schema") != INDEX_SCHEMA or not isinstance(data.get("layers"), list):
            raise ValueError(f"unknown layer index schema {data.get('schema')!r}")
        return cls(one(data.get("config")), tuple(one(d) for d in data["layers"]))


def index_key(tar_key: str) -> str:
    """The S3 key of a tar's layer index: next to it, `<platform>.tar` -> `<platform>.layers.json`."""
    return f"{tar_key.removesuffix('.tar')}.layers.json"


def index_archive(path: Path, *, trust_diff_ids: bool = False) -> LayerIndex:
    """Read a docker-archive tar's manifest and hash its config and layer members where they lie in the file.

    ``trust_diff_ids``: an uncompressed layer is named by its diff_id from the config (what `docker save` layers
    hash to) without reading it - for an SFTP deploy, where the cluster hashes every blob it receives or keeps
    anyway, so a wrong name can only fail that check, never be used.
    """
    try:
        with tarfile.open(path) as tar:
            members = {m.name: m for m in tar.getmembers()}
            manifest_member = tar.extractfile("manifest.json")
            if manifest_member is None:
                raise KeyError("manifest.json")
            manifest = json.load(manifest_member)[0]
            config_name, layer_names = manifest["Config"], list(manifest["Layers"])
            wanted = {n: _regular(members, n) for n in [config_name, *layer_names]}
    except (OSError, KeyError, IndexError, TypeError, ValueError, tarfile.TarError) as e:
        raise UsageError(
            f"{path}: not a docker-archive tar ({e}); make one with `docker save IMAGE -o FILE`"
        ) from e
    config = _hashed(path, wanted[config_name].offset_data, wanted[config_name].size)
    diff_ids = _diff_ids(path, config, len(layer_names)) if trust_diff_ids else None
    blobs = {
        name: _named(path, m, diff_ids[layer_names.index(name)])
        if diff_ids
        else _hashed(path, m.offset_data, m.size)
        for name, m in wanted.items()
        if name != config_name
    }
    return LayerIndex(
        Blob(config.digest, config.offset, config.size, CONFIG_TYPE), tuple(blobs[n] for n in layer_names)
    )


def _diff_ids(path: Path, config: Blob, count: int) -> list[str] | None:
    with open(path, "rb") as f:
        f.seek(config.offset)
        try:
            ids = json.loads(f.read(config.size))["rootfs"]["diff_ids"]
        except (ValueError, KeyError, TypeError):
            return None
    ok = isinstance(ids, list) and len(ids) == count and all(isinstance(i, str) and len(i) == 71 for i in ids)
    return ids if ok else None


def _named(path: Path, member: tarfile.TarInfo, diff_id: str) -> Blob:
    """A layer named by its diff_id, unless its first bytes say it is compressed (then it is hashed)."""
    with open(path, "rb") as f:
        f.seek(member.offset_data)
        head = f.read(4)
    if any(head.startswith(magic) for magic in LAYER_TYPES):
        return _hashed(path, member.offset_data, member.size)
    return Blob(diff_id, member.offset_data, member.size, PLAIN_LAYER)


def _regular(members: dict[str, tarfile.TarInfo], name: str) -> tarfile.TarInfo:
    """The member holding ``name``'s bytes: `docker save` stores a repeated layer once and links to it."""
    for _ in range(8):
        m = members[name]
        if not m.issym():
            return m
        name = posixpath.normpath(posixpath.join(posixpath.dirname(name), m.linkname))
    raise KeyError(f"{name}: too many symbolic links")


def _hashed(path: Path, offset: int, size: int) -> Blob:
    h, left, head = hashlib.sha256(), size, b""
    with open(path, "rb") as f:
        f.seek(offset)
        while left:
            block = f.read(min(left, 8 << 20))
            if not block:
                raise UsageError(f"{path}: truncated tar (a member ends past the end of the file)")
            head = head or block[:4]
            h.update(block)
            left -= len(block)
    media = next((t for magic, t in LAYER_TYPES.items() if head.startswith(magic)), PLAIN_LAYER)
    return Blob(f"sha256:{h.hexdigest()}", offset, size, media)


def copy_range(src: Path, offset: int, size: int, dest: Path) -> None:
    """One blob of a local tar as a file of its own (what an SFTP upload of that blob sends)."""
    with open(src, "rb") as f, open(dest, "wb") as out:
        f.seek(offset)
        left = size
        while left:
            block = f.read(min(left, 8 << 20))
            if not block:
                raise UsageError(f"{src}: truncated tar (a member ends past the end of the file)")
            out.write(block)
            left -= len(block)


def manifest_json(index: LayerIndex) -> str:
    """The OCI image manifest of ``index`` (its bytes are a blob of the layout; its digest names it)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": index.config.descriptor(),
        "layers": [b.descriptor() for b in index.layers],
    }
    return json.dumps(manifest, separators=(",", ":"), sort_keys=True)


def layout_index_json(manifest: str, tag: str = LAYOUT_TAG) -> str:
    """The layout's index.json: one manifest, named ``tag`` (the `:tag` of `oci:<layout>:<tag>`)."""
    entry = {
        "mediaType": MANIFEST_TYPE,
        "digest": text_digest(manifest),
        "size": len(manifest.encode()),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    return json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry]}, sort_keys=True)


def text_digest(text: str) -> str:
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"


# -- registry blobs -------------------------------------------------------------------------------------------------


def registry_blob_source(registry_ref: str, *, insecure: bool) -> tuple[Destination, str]:
    """(the registry and repository, the manifest digest) of a ``host/repo@sha256:...`` publication."""
    ref = parse_reference(registry_ref)
    return Destination(host=ref.host, repository=ref.path, insecure=insecure), ref.digest


def index_from_manifest(manifest: dict[str, Any]) -> LayerIndex:
    """A registry's image manifest (OCI or Docker schema 2) as a layer index: blobs by digest, each fetched whole
    (offset 0); Docker's gzip layers are OCI's tar+gzip."""

    def blob(d: Any, media_type: str) -> Blob:
        if not (isinstance(d, dict) and isinstance(d.get("digest"), str) and isinstance(d.get("size"), int)):
            raise UsageError(f"the registry manifest has a malformed descriptor {d!r}")
        return Blob(d["digest"], 0, d["size"], media_type)

    def layer_type(d: Any) -> str:
        mt = str(d.get("mediaType", "")) if isinstance(d, dict) else ""
        return next((t for t in LAYER_TYPES.values() if t.rsplit("+", 1)[-1] in mt), PLAIN_LAYER)

    layers = manifest.get("layers")
    if manifest.get("schemaVersion") != 2 or not isinstance(layers, list) or "config" not in manifest:
        raise UsageError(
            "the registry returned no single-image manifest (schema 2) for the platform's digest"
        )
    return LayerIndex(blob(manifest["config"], CONFIG_TYPE), tuple(blob(d, layer_type(d)) for d in layers))


def blob_curl_config(url: str, authorization: str | None) -> str:
    """curl's config for one registry blob: its URL and the Authorization header (a credential: stdin only)."""
    lines = [f"url = {_quoted(url)}"]
    if authorization:
        lines.append(f"header = {_quoted(f'Authorization: {authorization}')}")
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
