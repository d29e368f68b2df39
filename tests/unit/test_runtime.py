"""Container runtime command lines: convert, pull, exec with GPU flag, binds, env and a clean environment."""

from __future__ import annotations

import pytest

from hpcci.backends.runtime import ExecOptions, runtime_for
from hpcci.errors import ConfigError


def test_apptainer_converts_a_docker_archive_with_force() -> None:
    rt = runtime_for("apptainer")
    assert rt.convert("/s/x.tar", "/s/x.sif") == [
        ["apptainer", "build", "--force", "/s/x.sif", "docker-archive:///s/x.tar"]
    ]


def test_apptainer_pulls_from_a_registry() -> None:
    assert runtime_for("apptainer").pull("reg:5000/org/app@sha256:ab", "/s/x.sif") == [
        ["apptainer", "pull", "--force", "/s/x.sif", "docker://reg:5000/org/app@sha256:ab"]
    ]


def test_apptainer_exec_with_gpu_binds_env_and_cleanenv() -> None:
    argv = runtime_for("apptainer").exec(
        "/s/x.sif",
        ["python3", "-c", "print(1)"],
        ExecOptions(gpu_flag="--nv", binds=["/data:/data:ro"], cleanenv=True, env={"OMP_NUM_THREADS": "2"}),
    )
    assert argv == [
        "env", "APPTAINERENV_OMP_NUM_THREADS=2",
        "apptainer", "exec", "--nv", "--cleanenv", "--bind", "/data:/data:ro", "/s/x.sif", "python3", "-c", "print(1)",
    ]  # fmt: skip


def test_rocm_gpus_get_the_rocm_flag() -> None:
    argv = runtime_for("apptainer").exec("x.sif", ["true"], ExecOptions(gpu_flag="--rocm", cleanenv=False))
    assert argv == ["apptainer", "exec", "--rocm", "x.sif", "true"]


def test_singularity_uses_its_own_name_and_variables() -> None:
    rt = runtime_for("singularity")
    assert rt.convert("a.tar", "a.sif")[0][0] == "singularity"
    assert "SINGULARITY_TMPDIR" in rt.tmp_env("/scratch/tmp")


def test_conversion_keeps_temporary_files_on_scratch() -> None:
    env = runtime_for("apptainer").tmp_env("/scratch/tmp")
    assert env == {
        "TMPDIR": "/scratch/tmp",
        "APPTAINER_TMPDIR": "/scratch/tmp",
        "APPTAINER_CACHEDIR": "/scratch/tmp/cache",
    }


def test_charliecloud_makes_a_squashfs_and_runs_with_ch_run() -> None:
    rt = runtime_for("charliecloud")
    assert rt.image_path("/c", "abc") == "/c/abc.sqfs"
    steps = rt.convert("/c/abc.tar", "/c/abc.sqfs")
    assert steps[0][:2] == ["ch-image", "import"] and steps[-1][0] == "ch-convert"
    assert rt.exec("/c/abc.sqfs", ["true"], ExecOptions(cleanenv=False)) == [
        "ch-run",
        "/c/abc.sqfs",
        "--",
        "true",
    ]


def test_podman_loads_into_its_store_and_runs_without_network() -> None:
    rt = runtime_for("podman")
    image = rt.image_path("/c", "abc")
    assert image == "localhost/hpcci-cache:abc" and not rt.is_file()
    assert rt.convert("/c/abc.tar", image) == [
        ["podman", "load", "--quiet", "--input", "/c/abc.tar"],
        ["podman", "tag", "abc", "localhost/hpcci-cache:abc"],
    ]
    argv = rt.exec(image, ["true"], ExecOptions())
    assert "--network=none" in argv and "--pull=never" in argv


def test_image_files_are_content_addressed() -> None:
    rt = runtime_for("apptainer")
    assert rt.image_path("/c", "abc") == "/c/abc.sif"
    assert rt.exists("/c/abc.sif") == ["test", "-s", "/c/abc.sif"]


def test_an_unknown_runtime_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="apptainer, singularity, charliecloud, podman"):
        runtime_for("docker")


def test_a_bad_env_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a valid environment variable name"):
        runtime_for("apptainer").exec("x.sif", ["true"], ExecOptions(env={"A;B": "1"}))


def test_a_bind_that_looks_like_an_option_is_refused() -> None:
    with pytest.raises(ConfigError):
        runtime_for("apptainer").exec("x.sif", ["true"], ExecOptions(binds=["--writable"]))
