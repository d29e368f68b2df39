"""An S3 upload rides out the server going away: resumed part by part within the outage window, aborted past it.

The server is a Swift proxy of the test's own on the stack's storage servers (the shared proxy on :8080 is never
touched), killed after a few parts and started again on a timer. What was sent is counted by a spy on the upload
client's UploadPart calls (each call is one request on the wire: the upload client does no retries of its own).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_build import RUN_ID

from hpcci.backends import objectstore
from hpcci.errors import ObjectStoreError
from hpcci.log import Log
from swift_cleanup import delete_keys

pytestmark = pytest.mark.integration

PART = 8 * objectstore.MiB
PARTS = 12
CUT_AFTER = 4  # parts acknowledged before the server goes away


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnProxy:
    """A second Swift proxy of our own on the stack's storage servers, so a test may stop and start it.

    Thread-safe (the upload's threads stop and start it); after close() it never starts again, so no proxy
    outlives the test."""

    def __init__(self, stack_dir: Path, tmp: Path) -> None:
        import threading

        self.port = _free_port()
        conf = (stack_dir / "s3" / "etc" / "proxy-server.conf").read_text()
        conf = re.sub(r"(?m)^bind_port = \d+$", f"bind_port = {self.port}", conf)
        conf = re.sub(r"(?m)^bind_ip = .*$", "bind_ip = 127.0.0.1", conf)
        self.conf = tmp / "proxy-server.conf"
        self.conf.write_text(conf)
        self.exe = stack_dir / "s3" / "venv" / "bin" / "swift-proxy-server"
        self.log = tmp / "proxy.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.closed = False
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.lock:
            if self.closed or self.proc is not None:
                return
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [str(self.exe), str(self.conf)], stdout=log, stderr=log, start_new_session=True
                )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthcheck", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"own swift proxy did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        with self.lock:
            proc, self.proc = self.proc, None
            if proc is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def close(self) -> None:
        with self.lock:
            self.closed = True
        self.stop()


@dataclass
class Wire:
    """UploadPart calls: every one made (part numbers, in order) and those acknowledged before the cut."""

    sent: list[int] = field(default_factory=list)
    acked_before_cut: set[int] = field(default_factory=set)
    cut_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def spy_and_cut(store: objectstore.S3Store, proxy: OwnProxy, away: float, wire: Wire) -> None:
    """Count UploadPart calls; after CUT_AFTER acknowledgements kill the proxy and start it again ``away`` s later."""
    real = store.upload_client.upload_part

    def upload_part(**kw: Any) -> Any:
        with wire.lock:
            wire.sent.append(int(kw["PartNumber"]))
        resp = real(**kw)
        with wire.lock:
            if wire.cut_at is None:
                wire.acked_before_cut.add(int(kw["PartNumber"]))
                if len(wire.acked_before_cut) >= CUT_AFTER:
                    wire.cut_at = time.monotonic()
                    proxy.stop()
                    threading.Timer(away, proxy.start).start()
        return resp

    store.upload_client.upload_part = upload_part


@pytest.fixture
def proxy(require: Callable[..., None], stack_env: dict[str, str], tmp_path: Path) -> Iterator[OwnProxy]:
    require("s3")
    own = OwnProxy(Path(stack_env.get("HPCCI_STACK_DIR", "/var/lib/hpcci-stack")), tmp_path)
    own.start()
    try:
        yield own
    finally:
        own.close()


@pytest.fixture
def big(tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "big.tar"
    with open(src, "wb") as f:
        for _ in range(PARTS):
            f.write(os.urandom(PART))
    return src, hashlib.sha256(src.read_bytes()).hexdigest()


def store_for(proxy: OwnProxy, window: float) -> objectstore.S3Store:
    settings = objectstore.S3Settings(
        bucket="hpcci",
        endpoint_url=proxy.url,
        path_style=True,
        part_size=PART,
        concurrency=2,
        outage_window=window,
    )
    return objectstore.S3Store(settings)


def open_uploads(store: objectstore.S3Store, key: str) -> list[Any]:
    uploads: list[Any] = store.client.list_multipart_uploads(Bucket="hpcci", Prefix=key).get("Uploads", [])
    return uploads


def test_upload_survives_a_10s_outage_and_resends_only_missing_parts(
    proxy: OwnProxy, big: tuple[Path, str]
) -> None:
    src, sha = big
    key = f"hpcci-test-{RUN_ID}/outage/ok.tar"
    store, wire, out = store_for(proxy, 60), Wire(), io.StringIO()
    spy_and_cut(store, proxy, 10.0, wire)
    try:
        t0 = time.monotonic()
        info = store.upload_file(src, key, metadata={"sha256": sha}, log=Log(out, github=False))
        took = time.monotonic() - t0
        assert wire.cut_at is not None, "the server was never stopped"
        assert took >= 10, (
            f"the upload ended {took:.1f}s after it started: the outage did not happen mid-upload"
        )
        assert (info.size, info.sha256) == (PARTS * PART, sha)
        h = hashlib.sha256()
        for chunk in store.client.get_object(Bucket="hpcci", Key=key)["Body"].iter_chunks(1 << 20):
            h.update(chunk)
        assert h.hexdigest() == sha
        sends = Counter(wire.sent)
        assert set(sends) == set(range(1, PARTS + 1))
        resent = {n for n, c in sends.items() if c > 1}
        assert not resent & wire.acked_before_cut, f"parts the server had were sent again: {sorted(resent)}"
        assert len(wire.sent) < 2 * PARTS, f"{len(wire.sent)} part requests for {PARTS} parts: started over?"
        log = out.getvalue()
        assert re.search(r"connection (refused|closed by the server); retry \d+ in", log), log[-2000:]
        assert "the server holds" in log
        assert open_uploads(store, key) == []
    finally:
        delete_keys("hpcci", [key])  # its multipart segments too


def test_outage_past_the_window_fails_clearly_and_leaves_no_upload(
    proxy: OwnProxy, big: tuple[Path, str]
) -> None:
    src, sha = big
    key = f"hpcci-test-{RUN_ID}/outage/failed.tar"
    store, wire = store_for(proxy, 3), Wire()
    spy_and_cut(store, proxy, 12.0, wire)  # back while the failed upload is still trying to abort
    with pytest.raises(ObjectStoreError) as excinfo:
        store.upload_file(src, key, metadata={"sha256": sha}, log=Log(io.StringIO(), github=False))
    message = str(excinfo.value)
    assert re.search(r"connection refused after \d+ retries over \d+ s", message), message
    assert proxy.url not in message and "127.0.0.1" not in message
    assert "could not be aborted" not in message
    proxy.start()  # in case the abort finished before the timer
    assert store.head(key) is None
    assert open_uploads(store, key) == []
