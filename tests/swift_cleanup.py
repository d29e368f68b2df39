"""Delete what a test or benchmark uploaded to the local stack's Swift S3, multipart segments included.

Swift's s3api keeps the parts of a multipart upload in the container ``<bucket>+segments`` (``<key>/<upload id>/<n>``)
and deletes them asynchronously on an S3 DELETE (``async=on``: only the object expirer, which the stack does not
run, ever removes them); an overwritten object's old parts are left there too. S3 listings show neither. So this
deletes through Swift's own API: the objects, then every segment named under the same keys. Authenticated as
Swift's tempauth with the S3 credentials of `scripts/local-stack env` (the access key is ``account:user``); where
that fails (not Swift) the objects are deleted over S3 and the segments left to `scripts/local-stack prune`.

Imported by tests/integration, tests/e2e and benchmarks (tests/ is on their path).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable


def _endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:8080").rstrip("/")


def swift_auth() -> tuple[str, str] | None:
    """(storage URL, token), or None when the endpoint is not a Swift proxy with tempauth."""
    user, key = os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if ":" not in user or not key:
        return None
    req = urllib.request.Request(f"{_endpoint()}/auth/v1.0", headers={"X-Auth-User": user, "X-Auth-Key": key})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]
    except (OSError, KeyError):
        return None


def _names(storage: str, token: str, container: str, prefix: str) -> list[str]:
    out: list[str] = []
    marker = ""
    while True:
        q = urllib.parse.urlencode({"format": "json", "prefix": prefix, "marker": marker, "limit": 10000})
        req = urllib.request.Request(
            f"{storage}/{urllib.parse.quote(container)}?{q}", headers={"X-Auth-Token": token}
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                page = [str(o["name"]) for o in json.load(r)]
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return out
            raise
        if not page:
            return out
        out += page
        marker = page[-1]


def _delete(storage: str, token: str, container: str, names: list[str]) -> int:
    """Bulk delete (the stack's proxy has the bulk middleware); returns how many went."""
    done = 0
    for i in range(0, len(names), 1000):
        body = "\n".join(
            f"/{urllib.parse.quote(container)}/{urllib.parse.quote(n)}" for n in names[i : i + 1000]
        )
        req = urllib.request.Request(f"{storage}?bulk-delete", data=body.encode(), method="POST", headers={
            "X-Auth-Token": token, "Content-Type": "text/plain", "Accept": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=600) as r:
            done += int(json.load(r).get("Number Deleted", 0))
    return done


def delete_keys(bucket: str, keys: Iterable[str]) -> int:
    """Delete ``keys`` from ``bucket`` and their multipart segments; returns how many Swift objects went."""
    keys = list(keys)
    swift = swift_auth()
    if swift is None:
        _s3_delete(bucket, keys)
        return 0
    storage, token = swift
    segments = [n for k in keys for n in _names(storage, token, f"{bucket}+segments", f"{k}/")]
    return _delete(storage, token, bucket, keys) + _delete(storage, token, f"{bucket}+segments", segments)


def delete_prefix(bucket: str, prefix: str) -> int:
    """Delete every object under ``prefix`` in ``bucket`` and every segment under it; returns how many went."""
    swift = swift_auth()
    if swift is None:
        import boto3
        from botocore.config import Config

        s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for o in page.get("Contents", [])]  # fmt: skip
        _s3_delete(bucket, keys)
        return 0
    storage, token = swift
    objects = _names(storage, token, bucket, prefix)
    segments = _names(storage, token, f"{bucket}+segments", prefix)
    return _delete(storage, token, bucket, objects) + _delete(storage, token, f"{bucket}+segments", segments)


def delete_bucket(bucket: str) -> None:
    """Delete an emptied bucket of a test's own, and its segments container (s3api leaves it behind)."""
    import boto3
    from botocore.config import Config

    boto3.client("s3", config=Config(s3={"addressing_style": "path"})).delete_bucket(Bucket=bucket)
    swift = swift_auth()
    if swift is not None:
        storage, token = swift
        url = f"{storage}/{urllib.parse.quote(bucket + '+segments')}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="DELETE", headers={"X-Auth-Token": token}),
                                        timeout=60):  # fmt: skip
                pass
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise


def segments_under(bucket: str, prefix: str) -> list[str]:
    """The segment names under ``prefix`` (a test's check that it left none); [] where the endpoint is not Swift."""
    swift = swift_auth()
    return [] if swift is None else _names(*swift, f"{bucket}+segments", prefix)


def _s3_delete(bucket: str, keys: list[str]) -> None:
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
    for key in keys:
        s3.delete_object(Bucket=bucket, Key=key)
