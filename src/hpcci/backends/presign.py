"""Presigned S3 GET URLs (boto3), so a cluster's login node can download a published tar itself.

A presigned URL signs the Host it is made for: it is made for the endpoint as the cluster reaches it
(cluster config staging.s3_endpoint_url), which may differ from the one the CI runner uses.
"""

from __future__ import annotations

from hpcci.config import S3Target, resolve_value
from hpcci.errors import ObjectStoreError
from hpcci.records import S3Object


def presign_get(
    obj: S3Object, endpoint_url: str | None, target: S3Target | None, *, expires: int = 3600
) -> str:
    """A URL that GETs ``obj`` for ``expires`` seconds, signed for ``endpoint_url``."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    key_id = secret = None
    if target is not None and target.access_key is not None and target.secret_key is not None:
        key_id = resolve_value(target.access_key, "publish.s3.access_key").strip()
        secret = target.secret_key.resolve("publish.s3.secret_key").strip()
    path_style = target.path_style if target is not None else True
    region = obj.region or (target.region if target is not None else None)
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(
                signature_version="s3v4", s3={"addressing_style": "path" if path_style else "auto"}
            ),
        )
        url: str = client.generate_presigned_url(
            "get_object", Params={"Bucket": obj.bucket, "Key": obj.key}, ExpiresIn=expires
        )
    except (BotoCoreError, ClientError) as e:
        raise ObjectStoreError(
            f"cannot presign s3://{obj.bucket}/{obj.key}: {e}; check the S3 credentials (AWS_ACCESS_KEY_ID...)"
        ) from e
    return url
