"""Layer-level staging, pure parts: the layer index of a docker-archive, the OCI layout made from it, the blob
store's parsing and eviction rule, and the plan with staging.layers on."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
from test_sbatch_scripts import DIGEST, FIB, PATHS, local_cluster, pipeline

from hpcci.backends.schedulers import slurm
from hpcci.config.models import Pipeline
from hpcci.errors import UsageError
from hpcci.stages.cluster import runtime
from hpcci.stages.deploy.image_plan import ImagePlan, layout_convert
from hpcci.stages.deploy.plan import plan_cluster
from hpcci.stages.layers import store as bs
from hpcci.stages.layers.index import (
    CONFIG_TYPE,
    PLAIN_LAYER,
    Blob,
    LayerIndex,
    blob_curl_config,
    copy_range,
    index_archive,
    index_from_manifest,
    index_key,
    layout_index_json,
    manifest_json,
    registry_blob_source,
    text_digest,
)
from hpcci.stages.layers.stage import transient
from hpcci.stages.sources import ImageSource
from hpcci.stages.steps import Command, Upload

H = "ab" * 32


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _archive(path: Path, layers: list[bytes], *, repeat_as_link: bool = False) -> list[str]:
    """A docker-archive with ``layers``; the last layer listed twice (stored once, linked) with repeat_as_link."""
    digests = [hashlib.sha256(d).hexdigest() for d in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"diff_ids": digests}}).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    names = [f"{d}/layer.tar" for d in digests] + (["again/layer.tar"] if repeat_as_link else [])
    with tarfile.open(path, "w") as tar:
        _add(tar, config_name, config)
        for name, data in zip(names, layers, strict=False):
            _add(tar, name, data)
        if repeat_as_link:
            link = tarfile.TarInfo("again/layer.tar")
            link.type, link.linkname = tarfile.SYMTYPE, f"../{digests[-1]}/layer.tar"
            tar.addfile(link)
        _add(tar, "manifest.json", json.dumps([{"Config": config_name, "Layers": names}]).encode())
    return [f"sha256:{hashlib.sha256(config).hexdigest()}", *(f"sha256:{d}" for d in digests)]


def test_the_index_names_each_blob_by_digest_with_its_bytes_in_the_tar(tmp_path: Path) -> None:
    tar = tmp_path / "img.tar"
    layers = [b"a" * 5000, b"\x1f\x8bgzipped"]
    config, *digests = _archive(tar, layers)
    index = index_archive(tar)
    assert index.image_id == config and index.config.media_type == CONFIG_TYPE
    assert [b.digest for b in index.layers] == digests
    assert [b.media_type for b in index.layers] == [
        PLAIN_LAYER,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ]
    for blob, data in zip(index.layers, layers, strict=True):
        copy_range(tar, blob.offset, blob.size, tmp_path / "one")
        assert (tmp_path / "one").read_bytes() == data
    assert LayerIndex.from_json(json.loads(json.dumps(index.to_json()))) == index


def test_a_layer_stored_once_and_linked_is_listed_twice_but_is_one_blob(tmp_path: Path) -> None:
    tar = tmp_path / "img.tar"
    _archive(tar, [b"x" * 10, b"y" * 20], repeat_as_link=True)
    index = index_archive(tar)
    assert len(index.layers) == 3 and index.layers[1] == index.layers[2]
    assert len(index.blobs()) == 3  # config + 2 distinct layers


def test_a_file_that_is_not_a_docker_archive_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"nope")
    with pytest.raises(UsageError, match="not a docker-archive"):
        index_archive(tmp_path / "x.tar")


@pytest.mark.parametrize(
    "bad",
    [{"schema": 2, "config": {}, "layers": []}, {"schema": 1, "config": {"digest": "x"}, "layers": []},
     {"schema": 1, "config": {"digest": f"sha256:{H}", "offset": -1, "size": 1}, "layers": []}],
)  # fmt: skip
def test_an_index_read_back_is_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LayerIndex.from_json(bad)


def test_the_layout_names_one_manifest_whose_digest_is_its_bytes() -> None:
    index = LayerIndex(
        Blob(f"sha256:{H}", 0, 10, CONFIG_TYPE), (Blob(f"sha256:{'cd' * 32}", 512, 7, PLAIN_LAYER),)
    )
    manifest = manifest_json(index)
    top = json.loads(layout_index_json(manifest))
    (entry,) = top["manifests"]
    assert entry["digest"] == text_digest(manifest) and entry["size"] == len(manifest)
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "image"}
    assert json.loads(manifest)["layers"] == [
        {"mediaType": PLAIN_LAYER, "digest": f"sha256:{'cd' * 32}", "size": 7}
    ]
    assert index_key("p/img/sha256-x/linux-amd64.tar") == "p/img/sha256-x/linux-amd64.layers.json"


# -- the store -------------------------------------------------------------------------------------------------------

STORE = bs.store_for("/s/images")
A, B, C = (Blob(f"sha256:{c * 64}", 0, 1, PLAIN_LAYER) for c in "abc")


def test_only_a_blob_whose_bytes_match_its_name_is_present() -> None:
    out = f"{'a' * 64}  {STORE.path(A)}\n{'f' * 64}  {STORE.path(B)}\n"  # C: missing (sha256sum said so on stderr)
    good, bad = bs.parse_verified(out, STORE, [A, B, C])
    assert good == {A.digest} and bad == {B.digest}


def test_partial_blobs_are_not_in_the_listing_and_the_keep_list_takes_digests() -> None:
    text = f"100.5 10 {'a' * 64}\n101 20 .{'b' * 64}.run.part\n102 30 notes.txt\n"
    assert bs.parse_listing(text) == [bs.Entry("a" * 64, 10, 100.5)]
    assert bs.parse_keep(f"# releases\nsha256:{'a' * 64}\n{'b' * 64}  # v2\njunk\n") == {"a" * 64, "b" * 64}


def test_eviction_takes_least_recently_used_first_and_never_a_protected_blob() -> None:
    entries = [bs.Entry("1" * 64, 40, 1.0), bs.Entry("2" * 64, 40, 2.0), bs.Entry("3" * 64, 40, 3.0)]
    assert bs.evict(entries, set(), 120) == []
    assert bs.evict(entries, set(), 80) == [entries[0]]
    assert bs.evict(entries, {"1" * 64}, 80) == [entries[1]]
    # the protected blobs alone are over the limit: everything else goes, they stay
    assert bs.evict(entries, {"1" * 64, "3" * 64}, 10) == [entries[1]]
    assert "3 blob(s)" in bs.describe(entries, 1 << 30)


# -- the plan --------------------------------------------------------------------------------------------------------


def _plan(**changes: object) -> ImagePlan:
    source = ImageSource("linux/amd64", DIGEST, local_tar="/tmp/fib.tar")
    cluster = local_cluster(**{"staging.layers": True, **changes})
    return plan_cluster(pipeline(FIB), cluster, {"linux/amd64": source}, PATHS, "r1", slurm).images[
        "linux/amd64"
    ]


def test_with_layers_on_the_runtime_builds_from_the_layout_and_no_tar_is_staged() -> None:
    image = _plan()
    assert image.layers is not None and image.tar_cached is None and image.fetch is None
    steps = image.steps()
    assert any(isinstance(s, Upload) and "bytes START-END" in s.local for s in steps)
    assert image.convert is not None
    script = image.convert.argv[2]
    assert f"oci:{image.layers.layout}:image" in script and "docker-archive" not in script
    assert f"rm -rf -- {image.layers.layout}" in script
    assert image.layers.limit == 50 << 30
    listing = next(s for s in steps if isinstance(s, Command) and s.argv[0] == "find")
    assert listing.argv[1] == f"{PATHS.cache}/blobs/sha256"


def test_layers_do_not_apply_where_the_store_cannot_work() -> None:
    assert (
        _plan(**{"login.mode": "automation", "paths.scratch": "/s", "paths.image_cache": "/s/i"}).layers
        is None
    )
    assert _plan(**{"runtime.type": "podman", "runtime.compression": "gzip"}).layers is None


def test_the_layout_build_keeps_the_runtimes_own_packing_options() -> None:
    argv = layout_convert(runtime(local_cluster()), "/c/.layout", "/c/x.sif")[0]
    assert argv[-1] == "oci:/c/.layout:image" and "--mksquashfs-args" in argv


# -- the registry path -------------------------------------------------------------------------------------------------


def test_a_registry_manifest_is_an_index_of_whole_blobs_with_oci_media_types() -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": f"sha256:{H}", "size": 9},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": f"sha256:{'cd' * 32}",
                    "size": 70}],
    }  # fmt: skip
    index = index_from_manifest(manifest)
    assert index.config == Blob(f"sha256:{H}", 0, 9, CONFIG_TYPE)
    assert index.layers == (
        Blob(f"sha256:{'cd' * 32}", 0, 70, "application/vnd.oci.image.layer.v1.tar+gzip"),
    )
    with pytest.raises(UsageError, match="single-image manifest"):
        index_from_manifest({"schemaVersion": 2, "manifests": []})


def test_a_registry_blob_is_fetched_with_its_authorization_on_curls_stdin() -> None:
    dest, digest = registry_blob_source(f"127.0.0.1:5000/org/app@sha256:{H}", insecure=True)
    assert (dest.api, dest.repository, digest) == ("http://127.0.0.1:5000", "org/app", f"sha256:{H}")
    config = blob_curl_config(f"{dest.api}/v2/org/app/blobs/sha256:{H}", 'Bearer to"ken')
    assert config.splitlines() == [
        f'url = "http://127.0.0.1:5000/v2/org/app/blobs/sha256:{H}"',
        'header = "Authorization: Bearer to\\"ken"',
    ]


def test_with_layers_a_registry_image_is_fetched_blob_by_blob_and_no_credentials_file_is_written() -> None:
    source = ImageSource("linux/amd64", DIGEST, registry_ref=f"127.0.0.1:5000/org/fib@{DIGEST}")
    pipe = Pipeline.model_validate({"image": {"name": "reg/org/fib"}, "tests": [FIB], "publish": {"registry": {
        "url": "127.0.0.1:5000", "username": "u", "password": {"env": "P"}}}})  # fmt: skip
    cluster = local_cluster(**{"staging.layers": True})
    image = plan_cluster(pipe, cluster, {"linux/amd64": source}, PATHS, "r1", slurm).images["linux/amd64"]
    assert image.staging == "registry" and image.layers is not None and image.layers.via == "registry"
    assert image.registry_creds_file is None and image.convert is not None
    assert (
        "docker://" not in image.convert.argv[2]
        and f"oci:{image.layers.layout}:image" in image.convert.argv[2]
    )


@pytest.mark.parametrize(("code", "stderr", "again"), [
    (7, "Failed to connect", True), (18, "", True), (56, "Recv failure", True), (28, "timed out", True),
    (22, "The requested URL returned error: 503", True), (22, "The requested URL returned error: 403", False),
    (6, "Could not resolve host", False),
])  # fmt: skip
def test_only_an_outage_is_retried(code: int, stderr: str, again: bool) -> None:
    assert transient(code, stderr) is again


def test_leftovers_older_than_a_week_are_removed_never_a_complete_blob() -> None:
    partials, layouts = bs.leftovers_argv(STORE, "/s/images")
    assert partials[:2] == ["find", STORE.dir] and "'.*.part'" not in partials and ".*.part" in partials
    assert partials[-3:] == ["-mmin", "+10080", "-delete"]
    assert layouts[layouts.index("-name") + 1] == ".layout-*" and layouts[1] == "/s/images"


def test_for_sftp_plain_layers_are_named_by_their_diff_ids_unread_and_compressed_ones_hashed(
    tmp_path: Path,
) -> None:
    tar = tmp_path / "img.tar"
    _archive(tar, [b"a" * 5000, b"\x1f\x8bgzipped"])
    assert index_archive(tar, trust_diff_ids=True) == index_archive(tar)
    # a diff_id that is not the layer's hash is taken as written: the cluster's sha256 check of the blob refuses it
    lying = tmp_path / "lying.tar"
    config = json.dumps({"rootfs": {"diff_ids": [f"sha256:{H}"]}}).encode()
    with tarfile.open(lying, "w") as t:
        _add(t, "c.json", config)
        _add(t, "l/layer.tar", b"plain")
        _add(t, "manifest.json", json.dumps([{"Config": "c.json", "Layers": ["l/layer.tar"]}]).encode())
    assert index_archive(lying, trust_diff_ids=True).layers[0].digest == f"sha256:{H}"
    assert index_archive(lying).layers[0].digest == f"sha256:{hashlib.sha256(b'plain').hexdigest()}"


# -- the apptainer stand-in reads the assembled layout as Apptainer does: oci:DIR[:TAG] ---------------------------


def test_the_standin_takes_an_oci_layout_with_or_without_a_tag(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "stack" / "cluster"))
    from apptainer_standin.console import Fatal
    from apptainer_standin.fetch import oci_layout

    layout = tmp_path / "lay:out"  # a ':' in the folder name: the whole name is tried first, as a folder
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text("{}")
    assert oci_layout(f"oci:{layout}:image", "build") == f"oci:{layout}:image"
    assert oci_layout(f"oci:{layout}", "build") == f"oci:{layout}"
    with pytest.raises(Fatal, match="not an OCI image layout"):
        oci_layout(f"oci:{tmp_path}:image", "build")
