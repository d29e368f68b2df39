"""The deploy plan: which image, how it is staged, where it is cached, what converts it (pure data)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from test_sbatch_scripts import DIGEST, FIB, PATHS, local_cluster, pipeline

from hpcci.backends.schedulers import slurm
from hpcci.config.models import Pipeline
from hpcci.digests import parse_sha256sum
from hpcci.errors import UsageError
from hpcci.records import PublishRecord, RegistryPublication, S3Object
from hpcci.stages.deploy.image_plan import choose_staging, curl_config, setup_steps, stage_s3_step
from hpcci.stages.deploy.paths import resolve_paths
from hpcci.stages.deploy.plan import plan_cluster
from hpcci.stages.sources import ImageSource, docker_archive_info, sources_from_publish

KEY = "ab" * 32
S3 = S3Object(
    "hpcci", "images/fib/v1/linux-amd64.tar", 123, "cd" * 32, "linux/amd64", DIGEST, "http://127.0.0.1:8080"
)


def publish_record(**kw: object) -> PublishRecord:
    return PublishRecord(image="reg/org/fib", tags=["v1"], **kw)  # type: ignore[arg-type]


def test_published_s3_tar_is_pulled_by_the_login_node() -> None:
    sources = sources_from_publish(publish_record(s3=[S3]))
    plan = plan_cluster(pipeline(FIB), local_cluster(), sources, PATHS, "r1", slurm)
    image = plan.images["linux/amd64"]
    assert image.staging == "s3"
    assert image.source.tar_sha256 == "cd" * 32


def test_a_local_docker_save_tar_is_uploaded_over_sftp() -> None:
    source = ImageSource("linux/amd64", DIGEST, tar_sha256="ef" * 32, local_tar="/tmp/fib.tar")
    assert choose_staging(pipeline(FIB), local_cluster(), source) == "sftp"


def test_registry_only_publication_is_pulled_by_the_runtime() -> None:
    reg = RegistryPublication(
        refs=["127.0.0.1:5000/org/fib:v1"], digest="sha256:00", platforms={"linux/amd64": DIGEST}
    )
    sources = sources_from_publish(publish_record(registry=reg))
    assert sources["linux/amd64"].registry_ref == f"127.0.0.1:5000/org/fib@{DIGEST}"
    image = plan_cluster(pipeline(FIB), local_cluster(), sources, PATHS, "r1", slurm).images["linux/amd64"]
    assert image.staging == "registry"
    assert image.convert is not None
    assert f"docker://127.0.0.1:5000/org/fib@{DIGEST}" in image.convert.argv[2]


def test_a_forced_method_without_its_input_says_what_is_missing() -> None:
    source = ImageSource("linux/amd64", DIGEST, local_tar="/tmp/fib.tar")
    cluster = local_cluster(**{"staging.method": "s3"})
    with pytest.raises(UsageError, match="needs an S3 object in the publish record"):
        choose_staging(pipeline(FIB), cluster, source)


def test_the_converted_image_is_cached_by_digest_and_written_under_a_temporary_name() -> None:
    source = ImageSource("linux/amd64", DIGEST, local_tar="/tmp/fib.tar")
    one = plan_cluster(pipeline(FIB), local_cluster(), {"linux/amd64": source}, PATHS, "run-1", slurm).images[
        "linux/amd64"
    ]
    two = plan_cluster(pipeline(FIB), local_cluster(), {"linux/amd64": source}, PATHS, "run-2", slurm).images[
        "linux/amd64"
    ]
    assert one.image == two.image == f"{PATHS.cache}/{KEY}.sif"
    assert one.image_tmp != two.image_tmp and one.tar_tmp != two.tar_tmp
    assert one.cached.argv == ["test", "-s", one.image]
    assert one.convert is not None
    script = one.convert.argv[2].splitlines()
    assert script[:2] == ["set -e -o pipefail", "module load apptainer"]
    # the local cluster packs with lz4 (runtime.compression): Apptainer >= 1.4's --mksquashfs-args says so
    build = (
        f"apptainer build --force --mksquashfs-args '-comp lz4' {one.image_tmp} docker-archive://{one.tar}"
    )
    assert build in script[3]
    assert script[3].startswith(f"env TMPDIR={PATHS.tmpdir} APPTAINER_TMPDIR={PATHS.tmpdir}")
    assert script[4] == f"mv -f -- {one.image_tmp} {one.image}"


def test_convert_on_compute_makes_a_conversion_job() -> None:
    source = ImageSource("linux/amd64", DIGEST, local_tar="/tmp/fib.tar")
    cluster = local_cluster(**{"runtime.convert_on": "compute"})
    image = plan_cluster(pipeline(FIB), cluster, {"linux/amd64": source}, PATHS, "r1", slurm).images[
        "linux/amd64"
    ]
    assert image.convert_job is not None and image.convert is None
    assert "apptainer build --force" in image.convert_job.script.text
    assert '#SBATCH --job-name="hpcci-convert-' in image.convert_job.script.text


def test_aarch64_partitions_need_an_arm64_image() -> None:
    cluster = local_cluster(**{"scheduler.partitions.cpu.arch": "aarch64"})
    amd = ImageSource("linux/amd64", DIGEST, local_tar="/tmp/a.tar")
    with pytest.raises(UsageError, match="need a linux/arm64 image, but only linux/amd64"):
        plan_cluster(pipeline(FIB), cluster, {"linux/amd64": amd}, PATHS, "r1", slurm)
    arm = ImageSource("linux/arm64", "sha256:" + "12" * 32, local_tar="/tmp/b.tar")
    plan = plan_cluster(pipeline(FIB), cluster, {"linux/amd64": amd, "linux/arm64": arm}, PATHS, "r1", slurm)
    assert list(plan.images) == ["linux/arm64"] and plan.tests[0].platform == "linux/arm64"


def test_tests_limited_to_other_clusters_are_not_planned() -> None:
    only_elsewhere = {**FIB, "name": "other", "clusters": ["big"]}
    source = ImageSource("linux/amd64", DIGEST, local_tar="/tmp/x.tar")
    plan = plan_cluster(
        pipeline(FIB, only_elsewhere), local_cluster(), {"linux/amd64": source}, PATHS, "r1", slurm
    )
    assert [t.test.name for t in plan.tests] == ["fib"]


def test_paths_are_resolved_from_the_login_shell_values() -> None:
    paths = resolve_paths(local_cluster(), {"SCRATCH": "/st/scratch/hpcci", "HOME": "/home/hpcci"}, "r9")
    assert paths.cache == "/st/scratch/hpcci/hpcci/images"
    assert paths.tmpdir == "/st/scratch/hpcci/tmp"
    assert paths.run_dir == "/st/scratch/hpcci/hpcci/runs/r9/local"


def test_the_presigned_url_goes_to_curl_on_stdin_and_the_bytes_are_hashed_as_they_land() -> None:
    source = ImageSource("linux/amd64", DIGEST, s3=S3, tar_sha256=S3.sha256)
    image = plan_cluster(pipeline(FIB), local_cluster(), {"linux/amd64": source}, PATHS, "r1", slurm).images[
        "linux/amd64"
    ]
    step = stage_s3_step(image.tar_tmp, max_time=600)
    curl, tee, sha = step.commands
    assert curl[0] == "curl" and curl[curl.index("--config") + 1] == "-"
    assert not any("X-Amz" in a for a in curl)
    assert tee == ("tee", "--", image.tar_tmp) and sha == ("sha256sum",)
    assert curl_config('http://h/b/k?X-Amz-Signature=ab"c') == 'url = "http://h/b/k?X-Amz-Signature=ab\\"c"\n'


def test_sha256sum_output_is_parsed() -> None:
    assert parse_sha256sum(f"{'cd' * 32}  /s/x.tar\n") == "cd" * 32
    assert parse_sha256sum("sha256sum: /s/x.tar: No such file or directory\n") is None


def _docker_save_tar(path: Path, arch: str, variant: str | None = None) -> str:
    config = json.dumps(
        {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
    ).encode()
    hexd = "9f" * 32
    with tarfile.open(path, "w") as tar:
        for name, data in [
            (f"{hexd}.json", config),
            (
                "manifest.json",
                json.dumps([{"Config": f"{hexd}.json", "RepoTags": ["x:1"], "Layers": []}]).encode(),
            ),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hexd


def test_a_docker_save_tar_gives_its_image_id_and_platform(tmp_path: Path) -> None:
    hexd = _docker_save_tar(tmp_path / "x.tar", "arm64")
    assert docker_archive_info(tmp_path / "x.tar") == (f"sha256:{hexd}", "linux/arm64")


def test_an_arm64_v8_tar_is_the_linux_arm64_platform_but_arm_keeps_its_variant(tmp_path: Path) -> None:
    _docker_save_tar(tmp_path / "a.tar", "arm64", "v8")
    _docker_save_tar(tmp_path / "b.tar", "arm", "v7")
    assert docker_archive_info(tmp_path / "a.tar")[1] == "linux/arm64"
    assert docker_archive_info(tmp_path / "b.tar")[1] == "linux/arm/v7"


def test_a_file_that_is_not_a_docker_archive_says_how_to_make_one(tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"not a tar")
    with pytest.raises(UsageError, match="docker save"):
        docker_archive_info(tmp_path / "x.tar")


def test_registry_credentials_reach_the_runtime_through_a_private_file_never_argv() -> None:
    reg = RegistryPublication(
        refs=["127.0.0.1:5000/org/fib:v1"], digest="sha256:00", platforms={"linux/amd64": DIGEST}
    )
    registry = {"url": "127.0.0.1:5000", "username": {"env": "U"}, "password": {"env": "P"}, "insecure": True}
    pipe = Pipeline.model_validate(
        {"image": {"name": "reg/org/fib"}, "tests": [FIB], "publish": {"registry": registry}}
    )
    sources = sources_from_publish(publish_record(registry=reg))
    image = plan_cluster(pipe, local_cluster(), sources, PATHS, "r1", slurm).images["linux/amd64"]
    creds = image.registry_creds_file
    assert creds is not None and creds.startswith(PATHS.run_dir)
    assert image.convert is not None
    lines = image.convert.argv[2].splitlines()
    assert lines[3:7] == ["set -a", f". {creds}", "set +a", f"rm -f -- {creds}"]
    assert "apptainer pull --force --nohttps" in lines[7]


def test_a_real_publish_record_stages_each_partitions_platform_from_s3() -> None:
    from hpcci import records

    path = (
        Path(__file__).parent / "data" / "records" / "publish.json"
    )  # written by `hpcci publish` (local stack)
    sources = sources_from_publish(records.read(records.PublishRecord, path))
    assert set(sources) == {"linux/amd64", "linux/arm64"}
    cluster = local_cluster(**{"scheduler.partitions.gpu.arch": "aarch64"})
    gpu = {"name": "g", "command": "true", "gpu": True}
    plan = plan_cluster(pipeline(FIB, gpu), cluster, sources, PATHS, "r1", slurm)
    assert {p: i.staging for p, i in plan.images.items()} == {"linux/amd64": "s3", "linux/arm64": "s3"}
    assert [t.platform for t in plan.tests] == ["linux/amd64", "linux/arm64"]
    arm = plan.images["linux/arm64"]
    assert arm.source.s3 is not None and arm.source.s3.key.endswith("linux-arm64.tar")
    assert arm.image == f"{PATHS.cache}/{arm.source.key}.sif"


def test_the_run_folder_is_created_private_and_the_cache_is_not() -> None:
    assert [s.argv for s in setup_steps(PATHS)] == [
        ["mkdir", "-p", "--", PATHS.cache],
        ["mkdir", "-p", "-m", "700", "--", PATHS.run_dir],
    ]


def test_a_gpu_test_on_a_cluster_without_a_gpu_partition_says_how_to_fix_it() -> None:
    from hpcci.config.models import Cluster, SmokeTest
    from hpcci.errors import ConfigError
    from hpcci.stages.deploy.plan import partition_key

    cluster = Cluster.model_validate(
        {
            "name": "training",
            "login": {"host": "h", "user": "u", "key": {"env": "K"}, "known_hosts": {"env": "KH"}},
            "scheduler": {"partitions": {"cpu": {"name": "c"}}},
            "runtime": {"type": "apptainer"},
        }
    )
    with pytest.raises(
        ConfigError, match=r"test 'gpu' needs a GPU partition .* limit the test with `clusters:`"
    ):
        partition_key(cluster, SmokeTest(name="gpu", command="nvidia-smi", gpu=True))
