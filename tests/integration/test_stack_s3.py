"""The local S3 (Swift + s3api) checks SigV4 signatures, digests and presigned URLs like AWS does."""

from __future__ import annotations

import base64
import hashlib
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def s3_client(env: dict[str, str], secret: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret if secret is not None else env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=10,
            read_timeout=60,
        ),
    )


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def s3(require: Callable[..., None], stack_env: dict[str, str]) -> Any:
    require("s3")
    return s3_client(stack_env)


@pytest.fixture
def key(s3: Any, stack_env: dict[str, str]) -> Iterator[str]:
    """A fresh object key in the stack's bucket, deleted afterwards."""
    name = f"hpcci-test/{uuid.uuid4().hex}.bin"
    yield name
    s3.delete_object(Bucket=stack_env["HPCCI_S3_BUCKET"], Key=name)


def error_code(excinfo: pytest.ExceptionInfo[Any]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


def test_put_and_get_round_trip_with_checked_digest(s3: Any, key: str, stack_env: dict[str, str]) -> None:
    body = uuid.uuid4().bytes * 1000
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    sha = hashlib.sha256(body).hexdigest()
    bucket = stack_env["HPCCI_S3_BUCKET"]
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentMD5=md5, Metadata={"sha256": sha})
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == body
    assert got["Metadata"]["sha256"] == sha


def test_put_with_wrong_content_md5_is_refused(s3: Any, key: str, stack_env: dict[str, str]) -> None:
    from botocore.exceptions import ClientError

    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket=stack_env["HPCCI_S3_BUCKET"], Key=key, Body=b"payload", ContentMD5=wrong)
    assert error_code(excinfo) == "BadDigest"


def test_wrong_secret_is_refused(require: Callable[..., None], stack_env: dict[str, str]) -> None:
    require("s3")
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as excinfo:
        s3_client(stack_env, secret="not-the-secret").head_bucket(Bucket=stack_env["HPCCI_S3_BUCKET"])
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as excinfo:
        s3_client(stack_env, secret="not-the-secret").put_object(
            Bucket=stack_env["HPCCI_S3_BUCKET"], Key=f"hpcci-test/{uuid.uuid4().hex}", Body=b"x"
        )
    assert error_code(excinfo) == "SignatureDoesNotMatch"


def test_presigned_url_works_and_tampered_one_is_refused(
    s3: Any, key: str, stack_env: dict[str, str]
) -> None:
    bucket = stack_env["HPCCI_S3_BUCKET"]
    s3.put_object(Bucket=bucket, Key=key, Body=b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    assert http_get(url) == (200, b"presigned body")
    status, body = http_get(url.replace("X-Amz-Expires=300", "X-Amz-Expires=301"))
    assert status == 403
    assert b"SignatureDoesNotMatch" in body
    other = key.replace(".bin", ".other")
    status, _ = http_get(url.replace(key, other))
    assert status == 403
