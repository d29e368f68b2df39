"""`hpcci publish --to s3` on the local stack (Swift's S3 layer, which checks signatures and checksums).

The example is built for amd64 and arm64 with each builder; its docker-archive tars go to S3. The tests download
them again with independent means (boto3 GET, a presigned URL with urllib, `docker load`).
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_build import RUN_ID, SHA, hpcci, need_builder, write_pipeline

from hpcci import records
from hpcci.process import run
from hpcci.records import BuildRecord, PublishRecord
from swift_cleanup import delete_prefix

_published: dict[str, Published] = {}


@dataclass
class Published:
    builder: str
    config: Path
    records: Path
    build: BuildRecord
    record: PublishRecord
    output: str


@pytest.fixture(scope="module", autouse=True)
def remove_this_runs_objects(stack_env: dict[str, str]) -> Iterator[None]:
    """After the module, whatever its outcome: this run's objects (prefix hpcci-test-<run id>/) are deleted from
    the shared bucket and its unfinished multipart uploads (whose parts take disk space) aborted."""
    yield
    if not stack_env.get("AWS_ENDPOINT_URL"):
        return
    prefix = f"hpcci-test-{RUN_ID}/"
    try:
        s3 = s3_client()
        delete_prefix("hpcci", prefix)  # multipart segments included (tests/swift_cleanup.py)
        for upload in s3.list_multipart_uploads(Bucket="hpcci", Prefix=prefix).get("Uploads", []):
            s3.abort_multipart_upload(Bucket="hpcci", Key=upload["Key"], UploadId=upload["UploadId"])
    except Exception as e:  # cleanup must not turn a passing run red
        print(f"cleanup of s3://hpcci/{prefix} failed: {e}")


def s3_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(s3={"addressing_style": "path"}))


@pytest.fixture(params=["docker", "buildah", "buildx"])
def published(
    request: pytest.FixtureRequest,
    require: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    tmp_path_factory: pytest.TempPathFactory,
    local_images: set[str],
) -> Published:
    """The example built (tag v2.0.0) and published to S3 once per builder."""
    require("docker", "registry", "s3")
    name = str(request.param)
    need_builder(name)
    if name not in _published:
        folder = tmp_path_factory.mktemp(f"publish-{name}")
        repository = f"127.0.0.1:5000/hpcci-test/s3-{name}-{RUN_ID}"
        local_images.add(repository)
        config = write_pipeline(folder, name=repository, builder=name)
        recs = folder / ".hpcci"
        common = ("-c", str(config), "--records", str(recs))
        rc, out = hpcci(capsys, "build", *common, "--ref", "refs/tags/v2.0.0", "--sha", SHA)
        assert rc == 0, out[-3000:]
        rc, out = hpcci(capsys, "publish", *common, "--to", "s3")
        assert rc == 0, out[-3000:]
        build = records.read(records.BuildRecord, recs / "build.json")
        local_images.update(p.digest for p in build.platforms)
        record = records.read(records.PublishRecord, recs / "publish.json")
        _published[name] = Published(name, config, recs, build, record, out)
    return _published[name]


def test_each_platform_tar_matches_the_sha256_in_its_metadata(published: Published, tmp_path: Path) -> None:
    s3 = s3_client()
    assert [o.platform for o in published.record.s3] == ["linux/amd64", "linux/arm64"]
    for obj in published.record.s3:
        head = s3.head_object(Bucket=obj.bucket, Key=obj.key)
        assert head["Metadata"]["sha256"] == obj.sha256
        assert head["Metadata"]["image-digest"] == obj.digest
        assert head["ContentLength"] == obj.size
        h = hashlib.sha256()
        for chunk in s3.get_object(Bucket=obj.bucket, Key=obj.key)["Body"].iter_chunks(1 << 20):
            h.update(chunk)
        assert h.hexdigest() == obj.sha256


def test_docker_load_accepts_the_tars_and_arm64_runs_under_emulation(
    published: Published, tmp_path: Path
) -> None:
    s3 = s3_client()
    for obj in published.record.s3:
        tar = tmp_path / f"{obj.platform.replace('/', '-')}.tar"
        s3.download_file(obj.bucket, obj.key, str(tar))
        ref = next(p.ref for p in published.build.platforms if p.platform == obj.platform)
        if published.builder == "docker":
            run(["docker", "rmi", "-f", ref], timeout=60)  # the tar alone must bring the image back
        loaded = run(["docker", "load", "-i", str(tar)], timeout=300).stdout
        assert f"Loaded image: {ref}" in loaded
        arch = run(["docker", "image", "inspect", "-f", "{{.Architecture}}", ref], timeout=60).stdout.strip()
        assert arch == obj.platform.split("/")[1]
        assert run(["docker", "run", "--rm", ref], timeout=120).stdout.strip() == "55"
        if published.builder == "buildah":
            run(["docker", "rmi", "-f", ref], timeout=60, check=False)


def test_index_object_maps_tags_to_digests_and_keys(published: Published) -> None:
    rec = published.record
    assert rec.s3_index_key is not None
    index = json.loads(s3_client().get_object(Bucket="hpcci", Key=rec.s3_index_key)["Body"].read())
    assert set(published.build.tags) <= set(index["tags"])
    entry = index["tags"]["latest"]
    for obj in rec.s3:
        assert entry["platforms"][obj.platform] == {
            "digest": obj.digest,
            "key": obj.key,
            "sha256": obj.sha256,
            "size": obj.size,
        }


def test_presigned_url_downloads_the_same_bytes(published: Published) -> None:
    from hpcci.backends.objectstore import S3Settings, S3Store

    obj = published.record.s3[0]
    store = S3Store(
        S3Settings(bucket=obj.bucket, endpoint_url=obj.endpoint_url, region=obj.region, path_style=True)
    )
    url = store.presign_get(obj.key, expires=300)
    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=120) as resp:  # no credentials: only the signature in the URL
        for chunk in iter(lambda: resp.read(1 << 20), b""):
            h.update(chunk)
    assert h.hexdigest() == obj.sha256


def test_republishing_to_s3_uploads_nothing(published: Published, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = hpcci(
        capsys, "publish", "-c", str(published.config), "--records", str(published.records), "--to", "s3"
    )
    assert rc == 0, out[-2000:]
    assert "==> upload" not in out
    assert out.count("is already there") == 2
    assert "(nothing to do)" in out
    again = records.read(records.PublishRecord, published.records / "publish.json")
    assert again.s3 == published.record.s3


def test_publish_to_both_targets_records_registry_and_s3(
    published: Published, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_file = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out_file))
    rc, out = hpcci(capsys, "publish", "-c", str(published.config), "--records", str(published.records))
    assert rc == 0, out[-2000:]
    rec = records.read(records.PublishRecord, published.records / "publish.json")
    assert rec.registry is not None and rec.s3 == published.record.s3
    outputs = out_file.read_text()
    assert f"digest={rec.registry.digest}" in outputs
    assert rec.s3[0].key in outputs and "s3_index_key=" in outputs


# -- faults ----------------------------------------------------------------------------------------------------


def test_wrong_s3_credentials_are_refused_with_their_own_exit_code(
    published: Published, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
    rc, out = hpcci(
        capsys, "publish", "-c", str(published.config), "--records", str(published.records), "--to", "s3"
    )
    assert rc == 31, out[-2000:]
    assert "refused the credentials" in out
    assert "wrong-secret-value" not in out


def test_missing_bucket_is_reported_as_such(
    published: Published, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = json.loads(published.config.read_text())
    data["publish"]["s3"]["bucket"] = f"no-such-bucket-{RUN_ID}"
    config = tmp_path / "hpcci.yaml"
    config.write_text(json.dumps(data))
    rc, out = hpcci(capsys, "publish", "-c", str(config), "--records", str(published.records), "--to", "s3")
    assert rc == 30, out[-2000:]
    assert f"bucket 'no-such-bucket-{RUN_ID}' does not exist" in out


def test_interrupted_upload_leaves_nothing_under_the_final_key(
    require: Callable[..., None], stack_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload dies after its first parts: no object (whole or partial) appears, the multipart is aborted."""
    require("s3")
    import io

    from hpcci.backends import objectstore
    from hpcci.errors import HpcciError
    from hpcci.log import Log

    class Cut(Exception):
        pass

    def cut_after_first_part(self: objectstore.Progress, n: int) -> None:
        self.done += n
        if self.done > 6 * objectstore.MiB:
            raise Cut("connection lost (test)")

    monkeypatch.setattr(objectstore.Progress, "__call__", cut_after_first_part)
    src = tmp_path / "big.tar"
    with open(src, "wb") as f:
        f.write(b"\0" * (24 * objectstore.MiB))
    key = f"hpcci-test-{RUN_ID}/interrupted/linux-amd64.tar"
    settings = objectstore.S3Settings(
        bucket="hpcci",
        endpoint_url=stack_env["AWS_ENDPOINT_URL"],
        path_style=True,
        part_size=5 * objectstore.MiB,
        concurrency=2,
    )
    store = objectstore.S3Store(settings)
    with pytest.raises((Cut, HpcciError)):
        store.upload_file(src, key, metadata={"sha256": "0" * 64}, log=Log(io.StringIO(), github=False))
    assert store.head(key) is None
    uploads = store.client.list_multipart_uploads(Bucket="hpcci", Prefix=key).get("Uploads", [])
    assert uploads == []
