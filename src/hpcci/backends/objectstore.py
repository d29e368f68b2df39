"""S3 seam (boto3): multipart uploads with concurrency, sha256 in object metadata, skip when present, presigned GETs.

Works with AWS and any S3-compatible endpoint (endpoint_url, region, path-style addressing). Uploads read the
file part by part (resumable.py): memory stays near part size x concurrency, whatever the file's size, and an
outage of the server up to ``outage_window`` seconds is ridden out by resuming the multipart upload.
A multipart upload only becomes an object on CompleteMultipartUpload (and is aborted on failure), and each part
carries a checksum the server verifies: a failed or interrupted upload never leaves a partial object under the
final key. The sha256 goes into user metadata because S3-compatible stores such as Swift do not keep checksums.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from hpcci.backends.resumable import Resumable, UploadStats, cause_of
from hpcci.errors import ObjectStoreAuthError, ObjectStoreError
from hpcci.log import Log

MiB = 1 << 20
SHA256_META = "sha256"  # x-amz-meta-sha256
IMAGE_META = "image-digest"
PLATFORM_META = "platform"
_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "403",
}


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    endpoint_url: str | None = None  # None: AWS (or $AWS_ENDPOINT_URL, which boto3 reads)
    region: str | None = None
    path_style: bool = False
    access_key: str | None = None  # None: boto3's usual chain (env, profile, instance role)
    secret_key: str | None = None
    part_size: int = 64 * MiB
    concurrency: int = 8
    retries: int = 8
    outage_window: float = 120.0  # seconds an upload waits for a server that went away before giving up


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    metadata: dict[str, str]

    @property
    def sha256(self) -> str | None:
        return self.metadata.get(SHA256_META)


class ObjectStore(Protocol):
    bucket: str

    def check_bucket(self) -> None: ...
    def head(self, key: str) -> ObjectInfo | None: ...
    def upload_file(self, path: Path, key: str, *, metadata: dict[str, str], log: Log) -> ObjectInfo: ...
    def put_json(self, key: str, data: dict[str, Any]) -> None: ...
    def get_json(self, key: str) -> dict[str, Any] | None: ...
    def delete(self, key: str) -> None: ...
    def presign_get(self, key: str, *, expires: int = 3600) -> str: ...


class S3Store:
    """The real object store: a boto3 client, and one whose requests are tried once for resumable uploads.

    botocore's ``max_attempts`` counts retries after the first try; ``total_max_attempts`` counts every try, so
    ``1`` is what "tried once" says. Every retry botocore makes is logged with its cause (``log_retries``)."""

    def __init__(self, settings: S3Settings, log: Log | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.settings = settings
        self.log = log or Log()
        self.bucket = settings.bucket
        session = boto3.session.Session()

        # Over plain http SigV4 signs each body's sha256, which the server checks: botocore's extra CRC32 pass
        # would only slow uploads down (by 15-30% here). Over https the CRC32 is the body's checksum.
        plain_http = (settings.endpoint_url or "").startswith("http://")
        checksums: Literal["when_required", "when_supported"] = (
            "when_required" if plain_http else "when_supported"
        )

        def client(attempts: int) -> Any:
            config = Config(
                s3={"addressing_style": "path" if settings.path_style else "auto"},
                signature_version="s3v4",
                request_checksum_calculation=checksums,
                retries={"mode": "standard", "total_max_attempts": attempts},
                max_pool_connections=settings.concurrency + 2,
                connect_timeout=15,
                read_timeout=120,
            )
            made = session.client(
                "s3",
                endpoint_url=settings.endpoint_url,
                region_name=settings.region,
                aws_access_key_id=settings.access_key,
                aws_secret_access_key=settings.secret_key,
                config=config,
            )
            log_retries(made, self.log)
            return made

        self.client = client(settings.retries + 1)  # the first try and settings.retries retries
        # multipart requests are tried once each: the upload's outage window decides when to retry and give up
        self.upload_client = client(1)
        self.last_upload: UploadStats | None = None

    @property
    def where(self) -> str:
        return f"s3://{self.bucket} at {self.settings.endpoint_url or 'AWS'}"

    def _error(self, e: Exception, doing: str) -> ObjectStoreError:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        if isinstance(e, NoCredentialsError):
            return ObjectStoreAuthError(
                f"{doing}: no S3 credentials; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or publish.s3.access_key"
            )
        if isinstance(e, EndpointConnectionError):
            return ObjectStoreError(
                f"{doing}: {cause_of(e)} at {self.settings.endpoint_url or 'AWS S3'}: check publish.s3.endpoint_url "
                "and that the server is up",
                transient=True,
            )
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _AUTH_CODES or status == 403:
                return ObjectStoreAuthError(
                    f"{doing}: {self.where} refused the credentials ({code or status}); check the S3 access key "
                    "and secret (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or publish.s3.access_key/secret_key)"
                )
            if code in ("NoSuchBucket", "404") and "bucket" in doing:
                return ObjectStoreError(
                    f"{doing}: bucket {self.bucket!r} does not exist at {self.settings.endpoint_url or 'AWS'}; "
                    "create it or fix publish.s3.bucket"
                )
            return ObjectStoreError(
                f"{doing}: {code or status}: {err.get('Message', '')}".strip(), transient=(status or 0) >= 500
            )
        return ObjectStoreError(f"{doing}: {type(e).__name__}: {str(e)[:300]}", transient=True)

    def check_bucket(self) -> None:
        """Fail early and clearly: wrong credentials, wrong endpoint, missing bucket."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, f"checking bucket {self.bucket}") from e

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise self._error(e, f"looking up s3://{self.bucket}/{key}") from e
        except BotoCoreError as e:
            raise self._error(e, f"looking up s3://{self.bucket}/{key}") from e
        return ObjectInfo(key, int(resp["ContentLength"]), dict(resp.get("Metadata") or {}))

    def upload_file(self, path: Path, key: str, *, metadata: dict[str, str], log: Log) -> ObjectInfo:
        """Upload ``path`` (multipart, concurrent, resumed after outages), then check the object's size and
        metadata."""
        from botocore.exceptions import BotoCoreError, ClientError

        size = path.stat().st_size
        progress = Progress(f"s3://{self.bucket}/{key}", size, log)
        upload = Resumable(
            self.upload_client,
            self.bucket,
            key,
            path,
            part_size_for(size, self.settings.part_size, self.settings.concurrency),
            self.settings.concurrency,
            self.settings.outage_window,
            log,
            progress,
        )
        self.last_upload = upload.stats
        ok = False
        try:
            upload.run({"Metadata": metadata, "ContentType": "application/x-tar"})
            ok = True
        except (BotoCoreError, ClientError, ObjectStoreError) as e:
            err = (
                e
                if isinstance(e, ObjectStoreError)
                else self._error(e, f"uploading {path.name} to s3://{self.bucket}/{key}")
            )
            if upload.abort_note:
                err = ObjectStoreError(f"{err}; {upload.abort_note}", transient=err.transient)
            raise err from e
        finally:
            progress.close(failed=not ok, resumed=upload.stats.held)
        info = self.head(key)
        if info is None or info.size != size or info.sha256 != metadata.get(SHA256_META):
            got = "nothing" if info is None else f"{info.size} bytes, sha256 {info.sha256}"
            if info is not None:
                self.delete(key)  # never leave something that looks published but is not what we sent
            raise ObjectStoreError(
                f"uploaded s3://{self.bucket}/{key} but the server has {got} (expected {size} bytes); retry the publish"
            )
        return info

    def put_json(self, key: str, data: dict[str, Any]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        body = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, f"writing s3://{self.bucket}/{key}") from e

    def get_json(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._error(e, f"reading s3://{self.bucket}/{key}") from e
        except BotoCoreError as e:
            raise self._error(e, f"reading s3://{self.bucket}/{key}") from e
        try:
            data: dict[str, Any] = json.loads(body)
        except ValueError:
            return None  # a damaged index is rebuilt, not trusted
        return data if isinstance(data, dict) else None

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, f"deleting s3://{self.bucket}/{key}") from e

    def presign_get(self, key: str, *, expires: int = 3600) -> str:
        """A URL anyone can GET for ``expires`` seconds (a cluster's login node downloads the tar with it)."""
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires
        )
        return url


def log_retries(client: Any, log: Log) -> None:
    """Log every retry ``client`` (boto3) makes, with its cause: botocore's own retries are otherwise silent."""

    def failed(request_dict: dict[str, Any], caught_exception: Exception | None = None, response: Any = None,
               **_kw: Any) -> None:  # fmt: skip
        request_dict["context"]["hpcci-cause"] = retry_cause(caught_exception, response)

    def sending(request: Any, event_name: str, **_kw: Any) -> None:
        tries = getattr(request, "context", {}).get("retries", {})
        if int(tries.get("attempt", 1)) > 1:
            cause = request.context.get("hpcci-cause") or "no reply"
            log.info(
                retry_line(event_name.rsplit(".", 1)[-1], cause, int(tries["attempt"]), tries.get("max"))
            )

    client.meta.events.register("needs-retry.s3", failed)
    client.meta.events.register("before-send.s3", sending)


def retry_cause(error: Exception | None, response: Any) -> str:
    """Why a request is tried again: the exception's cause in words, else the reply's HTTP status and code."""
    if error is not None:
        return cause_of(error)
    if isinstance(response, tuple) and len(response) == 2:
        http, parsed = response
        code = (parsed or {}).get("Error", {}).get("Code", "") if isinstance(parsed, dict) else ""
        return f"HTTP {getattr(http, 'status_code', '?')} {code}".strip()
    return "no reply"


def retry_line(operation: str, cause: str, attempt: int, most: object) -> str:
    """E.g. "  S3 HeadObject: connection closed by the server; botocore retry 1 of 8" (pure)."""
    of = f" of {int(most) - 1}" if isinstance(most, int) else ""
    return f"  S3 {operation}: {cause}; botocore retry {attempt - 1}{of}"


def part_size_for(size: int, wanted: int, concurrency: int = 8) -> int:
    """Parts small enough that every thread has one (a 256 MiB tar is not 4 parts for 8 threads), at most
    ``wanted``, at least 8 MiB (S3: >= 5 MiB), and few enough for S3's 10,000-part limit."""
    even = -(-size // max(concurrency, 1))  # ceil
    part = min(max(wanted, 5 * MiB), max(8 * MiB, -(-even // MiB) * MiB))
    while size / part > 10_000:
        part *= 2
    return part


# -- progress -------------------------------------------------------------------------------------------------------


class Progress:
    """Bytes, rate and ETA: a rich bar in a terminal, a plain line every ``every`` seconds in CI logs.

    Called from the transfer threads, hence the lock.
    """

    def __init__(
        self, what: str, total: int, log: Log, *, every: float = 10.0, tty: bool | None = None
    ) -> None:
        self.what, self.total, self.log, self.every = what, total, log, every
        self.done = 0
        self.t0 = self._last = time.monotonic()
        self._lock = threading.Lock()
        self._bar: Any = None
        self._task: Any = None
        interactive = sys.stderr.isatty() and not log.github if tty is None else tty
        if interactive:
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bar

        self._bar = Bar(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._task = self._bar.add_task(self.what.rsplit("/", 1)[-1], total=self.total)
        self._bar.start()

    def __call__(self, n: int) -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(self._task, completed=self.done)
                return
            now = time.monotonic()
            if now - self._last >= self.every:
                self._last = now
                self.log.info(self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self.t0, 1e-6)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta_s = f"{eta:.0f}s" if eta != float("inf") else "?"
        return (
            f"  {self.what}: {self.done / MiB:.0f}/{self.total / MiB:.0f} MiB ({pct:.0f}%), "
            f"{rate / MiB:.0f} MiB/s, ETA {eta_s}"
        )

    def close(self, *, failed: bool = False, resumed: int = 0) -> None:
        """The last line: ``failed`` when the upload did not complete; ``resumed``: bytes the server held when
        the upload resumed after an outage (already counted in ``done``)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elapsed = time.monotonic() - self.t0
        self.log.info(closing_line(self.what, self.total, self.done, elapsed, failed=failed, resumed=resumed))


def closing_line(what: str, total: int, done: int, elapsed: float, *, failed: bool, resumed: int = 0) -> str:
    """An upload's last progress line (pure): a complete upload counts the whole object, and says how much of it
    the server held when it resumed after an outage; a failed one reads as a failure and says how far it got."""
    elapsed = max(elapsed, 1e-6)
    if failed:
        return f"  {what}: upload failed after {done / MiB:.0f} of {total / MiB:.0f} MiB in {elapsed:.1f}s"
    line = f"  {what}: {total / MiB:.0f} MiB in {elapsed:.1f}s ({total / MiB / elapsed:.0f} MiB/s)"
    if resumed:
        line += (
            f"; resumed after an outage: the server held {resumed / MiB:.0f} MiB of it whose replies were lost, "
            f"{max(total - resumed, 0) / MiB:.0f} MiB acknowledged as sent"
        )
    return line


def make_store(settings: S3Settings, log: Log | None = None) -> ObjectStore:
    return S3Store(settings, log)


Factory = Callable[[S3Settings], ObjectStore]
