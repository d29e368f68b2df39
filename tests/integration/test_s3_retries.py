"""Every S3 request on the wire is one hpcci meant to send, and every retry is logged with its cause.

A small TCP relay of the test's own sits in front of the stack's Swift S3 (the shared proxy is never touched): it
counts the requests it passes (by their request lines) and drops the reply to chosen ones once, after the server
has done the request (the reply's first bytes are read, then both connections are closed). The upload client is
tried once per request (botocore's ``total_max_attempts`` 1): a part whose reply was lost is found on the server by
ListParts and not sent again, and a lost reply to CompleteMultipartUpload is sent again by hpcci, with a log line.
The main client's retries are botocore's, each one logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_build import RUN_ID

from hpcci.backends import objectstore
from hpcci.log import Log
from swift_cleanup import delete_keys

pytestmark = pytest.mark.integration

PART = 8 * objectstore.MiB
PARTS = 4
REQUEST_LINE = re.compile(rb"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/1\.1\r\n")


class Relay:
    """127.0.0.1:port -> upstream, counting request lines; ``drop(line)`` True: that request's reply is lost once."""

    def __init__(self, upstream: tuple[str, int], drop: Callable[[str], bool]) -> None:
        self.upstream, self.drop = upstream, drop
        self.requests: list[str] = []  # "METHOD /path?query", in the order they came
        self.dropped: list[str] = []
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.closed = True
        self.server.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream, timeout=60)
            state = {"dropping": False}
            threading.Thread(target=self._up, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, state), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, state: dict[str, bool]) -> None:
        try:
            while chunk := client.recv(1 << 16):
                for m in REQUEST_LINE.finditer(chunk):
                    line = f"{m.group(1).decode()} {m.group(2).decode()}"
                    with self.lock:
                        self.requests.append(line)
                        if line not in self.dropped and self.drop(line):
                            self.dropped.append(line)
                            state["dropping"] = True
                upstream.sendall(chunk)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def _down(self, upstream: socket.socket, client: socket.socket, state: dict[str, bool]) -> None:
        try:
            while chunk := upstream.recv(1 << 16):
                if state["dropping"] and not chunk.startswith(b"HTTP/1.1 100 "):  # the final reply: lost
                    break
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            _close(client, upstream)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()


@pytest.fixture
def endpoint(require: Callable[..., None], stack_env: dict[str, str]) -> tuple[str, int]:
    require("s3")
    url = urlsplit(
        stack_env.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:8080")
    )
    return url.hostname or "127.0.0.1", url.port or 80


@pytest.fixture
def tar(tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "retries.tar"
    src.write_bytes(os.urandom(PARTS * PART))
    return src, hashlib.sha256(src.read_bytes()).hexdigest()


@pytest.fixture
def key(endpoint: tuple[str, int]) -> Iterator[str]:
    name = f"hpcci-test-{RUN_ID}/retries/{os.urandom(4).hex()}.tar"
    yield name
    delete_keys("hpcci", [name])  # its multipart segments too


def store_at(url: str, log: Log, retries: int = 8) -> objectstore.S3Store:
    settings = objectstore.S3Settings(
        bucket="hpcci", endpoint_url=url, path_style=True, part_size=PART, concurrency=2, retries=retries
    )
    return objectstore.S3Store(settings, log)


def test_lost_replies_are_retried_by_hpcci_or_logged_and_no_request_is_sent_twice_unseen(
    endpoint: tuple[str, int], tar: tuple[Path, str], key: str
) -> None:
    src, sha = tar

    def drop(line: str) -> bool:
        method, path = line.split(" ", 1)
        on_key = path.split("?", 1)[0].endswith(key)
        part_2 = method == "PUT" and "partNumber=2&" in path + "&"
        complete = method == "POST" and "uploadId=" in path
        head = method == "HEAD" and "?" not in path
        return on_key and (part_2 or complete or head)

    relay = Relay(endpoint, drop)
    out = io.StringIO()
    try:
        info = store_at(relay.url, Log(out, github=False)).upload_file(
            src, key, metadata={"sha256": sha}, log=Log(out, github=False)
        )
    finally:
        relay.close()
    log = out.getvalue()
    assert (info.size, info.sha256) == (PARTS * PART, sha), log
    assert len(relay.dropped) == 3, f"dropped {relay.dropped}; requests {relay.requests}"
    sent = Counter(re.sub(r"uploadId=[^&]+", "uploadId=U", line) for line in relay.requests if key in line)
    parts = {n: c for line, c in sent.items() if (n := _part(line)) is not None}
    assert parts == dict.fromkeys(range(1, PARTS + 1), 1), f"UploadPart requests per part: {parts}\n{log}"
    completes = [c for line, c in sent.items() if line.startswith("POST") and "uploadId=" in line]
    assert completes == [2], f"CompleteMultipartUpload sent {completes}\n{log}"
    assert re.search(r"completing the multipart upload: connection closed by the server; retry 1 in", log), (
        log
    )
    heads = [c for line, c in sent.items() if line.startswith("HEAD")]
    assert heads == [2], f"HEAD sent {heads}\n{log}"
    assert "S3 HeadObject: connection closed by the server; botocore retry 1 of 8" in log, log
    assert "the server held 8 MiB of it" in log, log  # part 2, whose reply was lost, counts in the last line


def _part(line: str) -> int | None:
    m = re.search(r"[?&]partNumber=(\d+)", line)
    return int(m.group(1)) if m and line.startswith("PUT") else None
