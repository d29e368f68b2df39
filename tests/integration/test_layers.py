"""Layer-level staging on the local cluster (staging.layers): a second deploy after a one-layer change moves only
that layer, on the SFTP and the S3 path, counted from what crossed the wire (SFTP: the bytes the transport reports
sent; S3: the bytes curl received on the login node); a corrupt blob in the store is never used but fetched again;
the store's eviction keeps the image being deployed and the kept ones.

Each test has its own image cache, hence its own blob store, on the login node. Needs `scripts/local-stack up
cluster s3`; skips without them (fails under CI=true).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deploy_support import hpcci, login, on_login
from layer_support import MiB, Session, write_archive
from test_s3_outage import OwnProxy

from hpcci.stages.layers import index_archive

BASE = [("base-a", 3 * MiB), ("base-b", 2 * MiB)]


@pytest.fixture
def session(
    tmp_path: Path, require: Callable[..., None], request: pytest.FixtureRequest
) -> Iterator[Session]:
    via = getattr(request, "param", "sftp")
    require("cluster", *([via] if via in ("s3", "registry") else []))
    s = Session(tmp_path, via)
    try:
        yield s
    finally:
        s.close()


def _sif_exists(s: Session, path: str) -> bool:
    return on_login(s.remote, ["test", "-s", path]).ok


@pytest.mark.parametrize("session", ["sftp", "s3", "registry"], indirect=True)
def test_a_one_layer_change_moves_only_that_layer(session: Session, tmp_path: Path) -> None:
    v1 = write_archive(tmp_path / "v1.tar", [*BASE, ("top-1", 1 * MiB)])
    v2 = write_archive(tmp_path / "v2.tar", [*BASE, ("top-2", 1 * MiB)])
    src1 = session.source(v1)
    first = session.deploy(src1)
    assert first.layers is not None and not first.layers.reused
    whole = session.index(src1, v1)
    assert first.layers.bytes_moved == sum(b.size for b in whole.blobs())

    src2 = session.source(v2)
    second = session.deploy(src2)
    assert second.layers is not None and _sif_exists(session, session.image_path(src2))
    index2 = session.index(src2, v2)
    new = {index2.config.digest, index2.layers[-1].digest}  # the changed top layer, and the config naming it
    assert set(second.layers.fetched) == new
    assert set(second.layers.reused) == {b.digest for b in index2.layers[:-1]}
    moved = sum(b.size for b in index2.blobs() if b.digest in new)
    assert second.layers.bytes_moved == moved, (
        second.layers
    )  # counted on the wire: the blob bytes and no more
    assert moved < 1.01 * MiB + 4096 and not second.layers.corrupt
    if session.via != "sftp":
        return
    doctor = hpcci(session.project, "doctor")
    line = next(ln for ln in doctor.stdout.splitlines() if "blob store" in ln)
    assert "6 blob(s)" in line and "of 50.0 GiB" in line, line  # v1's 4 blobs, v2's new config and top layer


def test_a_corrupt_blob_is_fetched_again_never_used(session: Session, tmp_path: Path) -> None:
    tar = write_archive(tmp_path / "c.tar", [*BASE, ("top-c", 1 * MiB)])
    src = session.source(tar)
    session.deploy(src)
    victim = index_archive(tar).layers[0]
    path = f"{session.store()}/{victim.hex}"
    # same size, other bytes, and the SIF gone so the next deploy stages again
    on_login(session.remote, ["dd", "if=/dev/zero", f"of={path}", "bs=4096", "count=1", "conv=notrunc"])
    on_login(session.remote, ["rm", "-f", "--", session.image_path(src)])
    again = session.deploy(src)
    assert again.layers is not None
    assert again.layers.corrupt == [victim.digest] and again.layers.fetched == [victim.digest]
    assert again.layers.bytes_moved == victim.size
    got = on_login(session.remote, ["sha256sum", "--", path]).stdout.split()[0]
    assert got == victim.hex and _sif_exists(session, session.image_path(src))


def test_a_second_stage_trusts_the_recorded_blobs_and_hashes_only_one_that_changed(
    session: Session, tmp_path: Path
) -> None:
    tar = write_archive(tmp_path / "t.tar", [*BASE, ("top-t", 1 * MiB)])
    src = session.source(tar)
    blobs = index_archive(tar).blobs()
    first = session.deploy(src)
    assert first.layers is not None and first.layers.hashed == []  # all fetched, each hashed once on arrival
    record = on_login(session.remote, ["cat", "--", f"{session.cache}/blobs/verified"]).stdout
    assert {line.split()[0] for line in record.splitlines()} == {b.hex for b in blobs}, record
    on_login(session.remote, ["rm", "-f", "--", session.image_path(src)])  # so the next deploy stages again
    second = session.deploy(src)
    assert second.layers is not None and second.layers.hashed == [], second.layers  # nothing hashed again
    assert set(second.layers.reused) == {b.digest for b in blobs} and not second.layers.fetched
    victim = blobs[1]  # its mtime moved, as a write would move it (the bytes stay right)
    on_login(session.remote, ["touch", "-d", "2001-01-01", "--", f"{session.store()}/{victim.hex}"])
    on_login(session.remote, ["rm", "-f", "--", session.image_path(src)])
    third = session.deploy(src)
    assert third.layers is not None and third.layers.hashed == [victim.digest], third.layers
    assert (
        not third.layers.fetched
        and not third.layers.corrupt
        and _sif_exists(session, session.image_path(src))
    )


def test_eviction_keeps_the_deployed_image_and_the_kept_ones(
    tmp_path: Path, require: Callable[..., None]
) -> None:
    require("cluster")
    s = Session(tmp_path, "sftp", limit_gib=7.5 * MiB / (1 << 30))  # room for one 6 MiB image, not two
    try:
        a = write_archive(tmp_path / "a.tar", [("a-1", 3 * MiB), ("a-2", 3 * MiB)])
        b = write_archive(tmp_path / "b.tar", [("b-1", 3 * MiB), ("b-2", 3 * MiB)])
        c = write_archive(tmp_path / "c.tar", [("c-1", 3 * MiB), ("c-2", 3 * MiB)])
        ia, ib, ic = (index_archive(t) for t in (a, b, c))

        def present() -> set[str]:
            out = on_login(s.remote, ["ls", "-1", "--", s.store()]).stdout.split()
            return {f"sha256:{n}" for n in out}

        s.deploy(s.source(a))
        s.deploy(s.source(b))  # over the limit: a's blobs are the least recently used, and not kept
        assert {x.digest for x in ib.blobs()} <= present()
        assert not {x.digest for x in ia.layers} & present()

        src_a = s.source(a)
        on_login(s.remote, ["rm", "-f", "--", s.image_path(src_a)])  # a's SIF gone: a is staged again
        s.deploy(src_a)  # then kept (an installed release), and c deployed
        keep = "".join(f"{x.digest}\n" for x in ia.blobs())
        s.remote.write_text(f"{s.cache}/blobs/keep", f"# installed releases\n{keep}")
        s.deploy(s.source(c))
        now = present()
        assert {x.digest for x in ia.blobs()} <= now and {x.digest for x in ic.blobs()} <= now
        assert not {x.digest for x in ib.blobs()} & now  # b: neither deployed now nor kept
        assert not any(
            n.startswith(".") for n in on_login(s.remote, ["ls", "-A", "--", s.store()]).stdout.split()
        )
    finally:
        s.close()


# -- the login node's S3 pull rides out the server going away ----------------------------------------------------


class ClusterProxy(OwnProxy):
    """test_s3_outage's own Swift proxy, bound where the login node reaches the host (10.77.0.1)."""

    HOST = "10.77.0.1"

    def __init__(self, stack_dir: Path, tmp: Path) -> None:
        super().__init__(stack_dir, tmp)
        self.conf.write_text(self.conf.read_text().replace("bind_ip = 127.0.0.1", f"bind_ip = {self.HOST}"))

    @property
    def url(self) -> str:
        return f"http://{self.HOST}:{self.port}"


def cut_when_partial(s: Session, proxy: ClusterProxy, at: int, away: float) -> threading.Thread:
    """Watch the cache's partial files from a second connection; past ``at`` bytes stop the proxy for ``away`` s."""

    def watch() -> None:
        remote = login()
        script = 'stat -c %s -- "$1"/.*.part "$1"/blobs/sha256/.*.part 2>/dev/null || true'
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                sizes = remote.run(["bash", "-c", script, "_", s.cache], timeout=30).stdout.split()
                if sum(int(x) for x in sizes if x.isdigit()) > at:
                    proxy.stop()
                    time.sleep(away)
                    proxy.start()
                    return
                time.sleep(0.02)
        finally:
            remote.close()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("layers", [True, False], ids=["layers", "whole-tar"])
def test_the_login_nodes_s3_pull_resumes_by_range_after_the_server_went_away(
    tmp_path: Path, require: Callable[..., None], stack_env: dict[str, str], layers: bool
) -> None:
    require("cluster", "s3")
    proxy = ClusterProxy(Path(stack_env.get("HPCCI_STACK_DIR", "/var/lib/hpcci-stack")), tmp_path)
    proxy.start()
    s = Session(tmp_path, "s3", layers=layers, s3_endpoint=proxy.url)
    try:
        tar = write_archive(tmp_path / "big.tar", [("big", 192 * MiB), ("small", 1 * MiB)])
        src = s.source(tar)
        watcher = cut_when_partial(s, proxy, 16 * MiB, away=4)
        staged = s.deploy(src)
        watcher.join(timeout=60)
        assert any("resuming" in line for line in s.log), s.log
        assert _sif_exists(s, s.image_path(src))
        if layers:
            assert staged.layers is not None and staged.layers.resumed >= 1
            # resumed, not started over: every blob's bytes crossed the wire once
            assert staged.layers.bytes_moved == sum(b.size for b in index_archive(tar).blobs())
        else:
            # the resumed tar was hashed whole and matched the published sha256 before it was used
            assert staged.transferred and staged.tar_sha256 == src.tar_sha256
    finally:
        proxy.close()
        s.close()


# -- end to end: `hpcci publish --to s3` writes the layer index, `hpcci deploy` stages by it and the image runs ------


FIB = {"name": "fib", "command": "python3 /app/fib.py 10", "expect": {"output": "^55$"},
       "resources": {"time": "00:05:00", "memory": "512M"}}  # fmt: skip


def test_a_published_image_is_deployed_layer_by_layer_and_runs(
    fib_tar: Path, tmp_path: Path, require: Callable[..., None]
) -> None:
    from deploy_support import FIB_TAG

    from hpcci import records
    from hpcci.backends.builders import get_builder
    from hpcci.backends.objectstore import make_store
    from hpcci.log import Log
    from hpcci.stages.layers import LayerIndex, index_key
    from hpcci.stages.publish import publish_s3
    from hpcci.stages.sources import docker_archive_info

    require("docker", "s3", "cluster")
    s = Session(tmp_path, "s3", tests=(FIB,))
    try:
        image_id, platform = docker_archive_info(fib_tar)
        build = records.BuildRecord(image=f"hpcci-test/{s.name}", tags=["t"], builder="docker",
                                    platforms=[records.PlatformImage(platform, image_id, FIB_TAG)])  # fmt: skip
        store = make_store(s.s3_settings())
        prefix = f"test-layers/{s.name}"
        published = publish_s3(build, store, get_builder("docker"), Log(github=False), prefix=prefix,
                               workdir=tmp_path, endpoint_url=s.s3_settings().endpoint_url)  # fmt: skip
        (obj,) = published.objects
        s.s3_keys += [obj.key, index_key(obj.key), published.index_key or ""]
        written = store.get_json(index_key(obj.key))
        assert written is not None
        index = LayerIndex.from_json(written)
        assert [b.digest for b in index.blobs()] == [b.digest for b in index_archive(fib_tar).blobs()]
        assert index.image_id == image_id

        record = records.PublishRecord(image=build.image, tags=build.tags, s3=[obj])
        records.write(record, s.project.records / "publish.json")
        done = hpcci(s.project, "deploy")
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"blob store: 0 of {len(index.blobs())} blob(s) there" in done.stderr, done.stderr[-3000:]
        fib = s.project.tests()["fib"]
        assert fib["verdict"] == "pass" and fib["output_tail"].strip() == "55", fib
    finally:
        s.close()
