"""Resumable S3 multipart upload: parts by number, ListParts after an outage, one retry window, abort on failure.

boto3's TransferManager gives up on the first request that exhausts botocore's retries (about two seconds when
the endpoint refuses connections) and cannot resume. Here every request runs once per attempt; when requests
fail for a transient cause (connection refused or reset, a timeout, a 5xx), the upload waits with a growing
delay, asks the server which parts it holds (ListParts: the server lists a part only once it has it whole and
its checksum matched; a listed part counts when its size is right) and sends only the missing ones. The clock of an outage starts at its first failure and stops at the
next success; an outage longer than the window ends the upload, whose multipart upload is then aborted. Each
part carries a checksum the server verifies (the SigV4 payload sha256 on plain http, botocore's CRC32 on https).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hpcci.errors import ObjectStoreError
from hpcci.log import Log

T = TypeVar("T")
_TRANSIENT_CODES = {
    "RequestTimeout",
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeTooSkewed",
}


@dataclass(frozen=True)
class Part:
    number: int  # 1-based, as S3 numbers them
    offset: int
    size: int


def plan_parts(size: int, part_size: int) -> list[Part]:
    """The parts of a ``size``-byte file (an empty file is one empty part: S3 needs at least one)."""
    if size == 0:
        return [Part(1, 0, 0)]
    return [Part(i + 1, off, min(part_size, size - off)) for i, off in enumerate(range(0, size, part_size))]


def backoff(attempt: int, *, first: float = 0.5, cap: float = 4.0) -> float:
    """Seconds before retry ``attempt`` (0-based): 0.5, 1, 2, 4, 4, ...: an outage's end is seen within 4 s."""
    return float(min(cap, first * 2 ** min(attempt, 16)))


def cause_of(e: BaseException) -> str:
    """What went wrong, in words (not the endpoint's URL): "connection refused", "read timed out", "HTTP 503 ..."."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(e, ClientError):
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = e.response.get("Error", {}).get("Code", "")
        return f"HTTP {status} {code}".strip()
    if isinstance(e, ConnectTimeoutError):
        return "connection timed out"
    if isinstance(e, ReadTimeoutError):
        return "read timed out"
    if isinstance(e, ConnectionClosedError):
        return "connection closed by the server"
    if isinstance(e, EndpointConnectionError):
        text = str(getattr(e, "kwargs", {}).get("error", "")) + str(e.__cause__ or e.__context__ or "")
        if "refused" in text.lower():
            return "connection refused"
        return "cannot connect"
    return f"{type(e).__name__}: {e}"[:200]


def is_transient(e: BaseException) -> bool:
    """Worth retrying: the network or the server failed, not the request (credentials, a missing bucket)."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(e, ClientError):
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or e.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    return isinstance(e, (ConnectionError, HTTPClientError))


@dataclass
class Outage:
    """Consecutive failures with no success between them; over when they span more than ``window`` seconds."""

    window: float
    clock: Callable[[], float] = time.monotonic
    started: float | None = None
    retries: int = 0
    cause: str = ""

    def failed(self, cause: str) -> None:
        if self.started is None:
            self.started = self.clock()
        self.cause = cause

    def recovered(self) -> None:
        self.started, self.retries = None, 0

    @property
    def elapsed(self) -> float:
        return 0.0 if self.started is None else self.clock() - self.started

    def over(self) -> bool:
        return self.started is not None and self.elapsed >= self.window

    def next_delay(self) -> float:
        """The wait before the next retry, never past the end of the window by more than a second."""
        delay = min(backoff(self.retries), max(self.window - self.elapsed, 0.0) + 1.0)
        self.retries += 1
        return delay

    def summary(self) -> str:
        """E.g. "connection refused after 9 retries over 61 s"."""
        return f"{self.cause} after {self.retries} retries over {self.elapsed:.0f} s"


@dataclass
class UploadStats:
    """What one upload did: part requests sent (re-sent ones included), retries, outage seconds."""

    parts: int = 0
    sent: list[int] = field(default_factory=list)  # part numbers, in the order their requests went out
    retries: int = 0
    held: int = 0  # bytes of parts the server held when the upload resumed, though their replies never came


@dataclass
class Resumable:
    """One multipart upload of ``path`` to ``bucket``/``key`` that rides out outages of up to ``window`` s."""

    client: Any  # a boto3 S3 client whose requests are tried once (no botocore retries: the window decides)
    bucket: str
    key: str
    path: Path
    part_size: int
    concurrency: int
    window: float
    log: Log
    progress: Callable[[int], None]
    sleep: Callable[[float], None] = time.sleep
    stats: UploadStats = field(default_factory=UploadStats)
    abort_note: str | None = None  # set when a failed upload's multipart upload could not be aborted

    def run(self, extra: dict[str, Any]) -> None:
        """Create, send every part (resuming after failures), complete; abort on any failure."""
        parts = plan_parts(self.path.stat().st_size, self.part_size)
        self.stats.parts = len(parts)
        outage = Outage(self.window)
        created = self._retrying(
            lambda: self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key, **extra),
            outage,
            "starting the multipart upload",
        )
        upload_id = str(created["UploadId"])
        try:
            etags = self._send_all(parts, upload_id, outage)
            done = {"Parts": [{"PartNumber": p.number, "ETag": etags[p.number]} for p in parts]}
            self._retrying(
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=upload_id, MultipartUpload=done
                ),
                outage,
                "completing the multipart upload",
            )
        except BaseException:
            self.abort_note = self._abort(upload_id)
            raise

    def _send_all(self, parts: list[Part], upload_id: str, outage: Outage) -> dict[int, str]:
        etags: dict[int, str] = {}
        with ThreadPoolExecutor(max_workers=max(self.concurrency, 1)) as pool:
            while missing := [p for p in parts if p.number not in etags]:
                trouble = threading.Event()  # set at the round's first failure: parts not started yet wait
                futures = [(p, pool.submit(self._send, p, upload_id, outage, trouble)) for p in missing]
                errors: list[BaseException] = []
                for p, fut in futures:
                    try:
                        if (etag := fut.result()) is not None:
                            etags[p.number] = etag
                    except Exception as e:  # sorted below: transient ones are retried
                        errors.append(e)
                fatal = [e for e in errors if not is_transient(e)]
                if fatal:
                    raise fatal[0]
                if not errors:
                    continue
                self._wait(outage, f"{len(errors)} of {len(missing)} parts failed")
                before, etags = (
                    etags,
                    self._retrying(lambda: self._listed(upload_id, parts), outage, "listing parts"),
                )
                held = sum(p.size for p in parts if p.number in etags and p.number not in before)
                if held:  # sent whole, only the reply was lost: they count as done
                    self.stats.held += held
                    self.progress(held)
        return etags

    def _send(self, part: Part, upload_id: str, outage: Outage, trouble: threading.Event) -> str | None:
        """The part's ETag; None when it was not sent because another part of the round failed."""
        from s3transfer.utils import ReadFileChunk

        if trouble.is_set():
            return None
        self.stats.sent.append(part.number)
        try:
            # a window on the file, read as it goes out: memory stays small whatever the part size
            with ReadFileChunk.from_filename(str(self.path), part.offset, part.size) as body:
                resp = self.client.upload_part(
                    Bucket=self.bucket, Key=self.key, UploadId=upload_id, PartNumber=part.number, Body=body
                )
        except Exception as e:
            if is_transient(e):
                outage.failed(cause_of(e))  # the outage's clock starts now, not when the round ends
            trouble.set()
            raise
        self.progress(part.size)
        return str(resp["ETag"])

    def _listed(self, upload_id: str, parts: list[Part]) -> dict[int, str]:
        """The parts the server holds, of the right size (S3 lists a part only once it has it whole and its
        checksum matched)."""
        sizes = {p.number: p.size for p in parts}
        have: dict[int, str] = {}
        pages = self.client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=self.key, UploadId=upload_id
        )
        for page in pages:
            for got in page.get("Parts", []):
                n = int(got["PartNumber"])
                if sizes.get(n) == int(got["Size"]):
                    have[n] = str(got["ETag"])
        self.log.info(
            f"  the server holds {len(have)} of {len(parts)} parts; sending the other {len(parts) - len(have)}"
        )
        return have

    def _retrying(self, call: Callable[[], T], outage: Outage, doing: str) -> T:
        while True:
            try:
                result = call()
            except Exception as e:
                if not is_transient(e):
                    raise
                outage.failed(cause_of(e))
                self._wait(outage, doing)
                continue
            outage.recovered()
            return result

    def _wait(self, outage: Outage, doing: str) -> None:
        if outage.over():
            raise ObjectStoreError(
                f"uploading {self.path.name} to s3://{self.bucket}/{self.key}: {outage.summary()} "
                f"(publish.s3.outage_window is {self.window:.0f} s)",
                transient=True,
            )
        delay = outage.next_delay()
        self.stats.retries += 1
        self.log.info(
            f"  s3://{self.bucket}/{self.key}: {doing}: {outage.cause}; retry {outage.retries} in {delay:.1f} s "
            f"({outage.elapsed:.0f} s into a {outage.window:.0f} s outage window)"
        )
        self.sleep(delay)

    def _abort(self, upload_id: str) -> str | None:
        """Abort the multipart upload (its parts take space), retrying a while: the server may be coming back.

        None when aborted, else what to tell the user."""
        outage = Outage(max(self.window, 15.0))
        try:
            self._retrying(
                lambda: self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=upload_id
                ),
                outage,
                "aborting the multipart upload",
            )
        except Exception as e:  # the upload's own error is raised; this is told
            return (
                f"the multipart upload could not be aborted ({cause_of(e)}): abort it with `aws s3api "
                f"abort-multipart-upload --bucket {self.bucket} --key {self.key} --upload-id {upload_id}`"
            )
        self.log.info(f"  aborted the multipart upload of s3://{self.bucket}/{self.key}")
        return None
