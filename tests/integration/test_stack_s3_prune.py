"""`scripts/local-stack prune s3` removes orphaned multipart segments and nothing else, on a bucket of the test's own
(HPCCI_PRUNE_BUCKET), and the tests' own cleanup (tests/swift_cleanup.py) leaves no segment behind.

Swift's s3api keeps a multipart object's parts in ``<bucket>+segments``; an overwrite leaves the earlier upload's
parts there, and an S3 DELETE did too (s3api asks for an asynchronous delete that only the object expirer, not run
here, carries out; the stack now sets slo's allow_async_delete = false): the disk filled with them over test runs.
"""

from __future__ import annotations

import os
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stack_env import LOCAL_STACK
from swift_cleanup import delete_bucket, delete_keys, delete_prefix, segments_under, swift_auth

pytestmark = pytest.mark.integration
PART = 5 << 20


@pytest.fixture
def s3(require: Callable[..., None], stack_env: dict[str, str]) -> Iterator[tuple[Any, str]]:
    require("s3")
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
    bucket = f"hpcci-prune-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    try:
        yield client, bucket
    finally:
        delete_prefix(bucket, "")
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        delete_prefix(bucket, "")
        delete_bucket(bucket)


def upload(client: Any, bucket: str, key: str, parts: int = 2, *, complete: bool = True) -> str:
    mp = client.create_multipart_upload(Bucket=bucket, Key=key)
    etags = [
        client.upload_part(
            Bucket=bucket, Key=key, UploadId=mp["UploadId"], PartNumber=n, Body=os.urandom(PART)
        )["ETag"]
        for n in range(1, parts + 1)
    ]
    if complete:
        done = {"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]}
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=mp["UploadId"], MultipartUpload=done
        )
    return str(mp["UploadId"])


def _delete_manifest_only(bucket: str, key: str) -> None:
    auth = swift_auth()
    assert auth is not None, "the stack's S3 is Swift with tempauth"
    storage, token = auth
    url = f"{storage}/{urllib.parse.quote(bucket)}/{urllib.parse.quote(key)}"
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE", headers={"X-Auth-Token": token}),
                                timeout=60):  # fmt: skip
        pass


def test_prune_removes_orphaned_segments_only(s3: tuple[Any, str]) -> None:
    client, bucket = s3
    upload(client, bucket, "k/live.tar")
    old = upload(client, bucket, "k/over.tar")
    new = upload(client, bucket, "k/over.tar")  # overwritten: the first upload's parts are orphans
    upload(client, bucket, "k/gone.tar")
    _delete_manifest_only(bucket, "k/gone.tar")  # what s3api's async delete leaves until an expirer runs
    busy = upload(client, bucket, "k/busy.tar", complete=False)  # in progress
    assert len(segments_under(bucket, "k/gone.tar/")) == 2
    env = {**os.environ, "HPCCI_PRUNE_BUCKET": bucket, "HPCCI_PRUNE_MIN_AGE_MINUTES": "0"}
    done = subprocess.run([LOCAL_STACK, "prune", "s3"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"pruned 4 orphaned multipart segment(s) of bucket {bucket}" in done.stdout, done.stdout
    left = set(segments_under(bucket, "k/"))
    assert not {n for n in left if n.startswith(("k/gone.tar/", f"k/over.tar/{old}"))}, left
    assert {
        f"k/over.tar/{new}/1",
        f"k/over.tar/{new}/2",
        f"k/busy.tar/{busy}",
        f"k/busy.tar/{busy}/1",
    } <= left
    for key in ("k/live.tar", "k/over.tar"):
        assert len(client.get_object(Bucket=bucket, Key=key)["Body"].read()) == 2 * PART  # whole


def test_the_tests_cleanup_deletes_an_object_with_its_segments(s3: tuple[Any, str]) -> None:
    client, bucket = s3
    upload(client, bucket, "t/a.tar")
    upload(client, bucket, "t/a.tar")  # and the overwritten upload's parts
    assert len(segments_under(bucket, "t/a.tar/")) == 4
    assert delete_keys(bucket, ["t/a.tar"]) == 5  # the object and four parts
    assert segments_under(bucket, "t/") == [] and "Contents" not in client.list_objects_v2(Bucket=bucket)
