"""Container runtime command lines: convert, pull, exec with GPU flag, binds, env and a clean environment."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from hpcci.backends.runtime import (
    RUNTIMES,
    ZSTD_LEVEL,
    ExecOptions,
    GpuKind,
    RuntimeName,
    Squashfs,
    choose_packing,
    parse_version,
    pass_env_argv,
    runtime_for,
)
from hpcci.config.load import load_cluster
from hpcci.config.models import RuntimeConfig
from hpcci.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_apptainer_converts_a_docker_archive_with_force() -> None:
    rt = runtime_for("apptainer")
    assert rt.convert("/s/x.tar", "/s/x.sif") == [
        ["apptainer", "build", "--force", "/s/x.sif", "docker-archive:///s/x.tar"]
    ]


def test_apptainer_packs_with_the_clusters_squashfs_settings_as_apptainer_1_4_spells_them() -> None:
    rt = runtime_for("apptainer", "/sw/apptainer", Squashfs("zstd", 4))
    assert rt.convert("/s/x.tar", "/s/x.sif") == [
        ["/sw/apptainer", "build", "--force", "--mksquashfs-args", "-comp zstd -Xcompression-level 3 -processors 4", "/s/x.sif",
         "docker-archive:///s/x.tar"]
    ]  # fmt: skip
    only_threads = runtime_for("apptainer", squashfs=Squashfs("gzip", 2)).convert("/s/x.tar", "/s/x.sif")
    assert only_threads[0][3:5] == ["--mksquashfs-args", "-processors 2"]


def test_apptainers_defaults_need_no_option_so_older_versions_keep_working() -> None:
    assert Squashfs().mksquashfs_args() is None
    assert "--mksquashfs-args" not in runtime_for("apptainer", squashfs=Squashfs()).convert("/t", "/i")[0]


def test_runtime_config_gives_squashfs_settings_to_apptainer_only() -> None:
    cfg = RuntimeConfig(type="apptainer", compression="lz4", convert_cpus=8)
    assert cfg.squashfs == Squashfs("lz4", 8)
    assert RuntimeConfig(type="apptainer").squashfs == Squashfs("gzip", None)
    # singularity has no --mksquashfs-args: convert_cpus only sizes the conversion job
    assert RuntimeConfig(type="singularity", convert_cpus=8).squashfs == Squashfs("gzip", None)
    sing = runtime_for("singularity", squashfs=Squashfs("gzip", 8))
    assert sing.convert("/t", "/i") == [["singularity", "build", "--force", "/i", "docker-archive:///t"]]


@pytest.mark.parametrize(
    ("printed", "version"),
    [
        ("apptainer version 1.4.1-1.el9\n", "1.4.1-1.el9"),
        ("1.3.6+hpcci-standin\n", "1.3.6+hpcci-standin"),
        ("Lmod: loading apptainer/1.4\napptainer version 1.4.0\n", "1.4.0"),  # a module's message first
        ("singularity-ce version 4.1.1\n", "4.1.1"),
        ("command not found\n", None),
        ("", None),
    ],
)
def test_the_version_is_read_from_what_the_version_command_prints(printed: str, version: str | None) -> None:
    assert parse_version(printed) == version


def test_apptainer_takes_squashfs_options_from_1_4_and_only_apptainer_does() -> None:
    rt = runtime_for("apptainer")
    assert [rt.takes_squashfs_options(v) for v in ("1.3.6", "1.4.0", "1.4.1-1.el9", "2.0")] == [
        False, True, True, True,
    ]  # fmt: skip
    assert rt.takes_squashfs_options(None) is None  # not asked: not known
    for name in ("singularity", "charliecloud", "podman"):
        assert runtime_for(name).takes_squashfs_options("9.9") is False


def test_auto_packs_zstd_where_the_runtime_takes_mksquashfs_args() -> None:
    packing = choose_packing(runtime_for("apptainer"), "auto", 4, "1.4.1")
    assert packing.squashfs == Squashfs("zstd", 4) and packing.version == "1.4.1"
    assert packing.compression == f"-comp zstd -Xcompression-level {ZSTD_LEVEL} -processors 4"
    assert (
        packing.why
        == f"auto: zstd level {ZSTD_LEVEL}, apptainer 1.4.1 takes --mksquashfs-args (apptainer >= 1.4)"
    )


def test_auto_on_an_older_apptainer_is_gzip_with_no_options_at_all() -> None:
    packing = choose_packing(runtime_for("apptainer"), "auto", 4, "1.3.6")
    assert packing.squashfs == Squashfs() and packing.compression == "gzip"
    rt = runtime_for("apptainer", squashfs=packing.squashfs)
    assert "--mksquashfs-args" not in rt.convert("/t", "/i")[0]  # Apptainer 1.3 would refuse the flag
    assert packing.why == (
        "auto: gzip (the runtime's default), apptainer 1.3.6 takes no --mksquashfs-args; "
        "convert_cpus 4 is not passed to mksquashfs"
    )


def test_auto_with_a_version_not_known_keeps_gzip_and_convert_cpus() -> None:
    packing = choose_packing(runtime_for("apptainer"), "auto", 2, None)
    assert packing.squashfs == Squashfs("gzip", 2) and "version is not known" in packing.why
    assert choose_packing(runtime_for("singularity"), "auto", 2, "3.11").squashfs == Squashfs()


def test_a_named_compression_on_an_apptainer_without_the_option_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match=r"needs `build --mksquashfs-args` \(apptainer >= 1\.4\); the cluster "
                       r"has apptainer 1\.3\.6: set runtime\.compression to auto or gzip"):  # fmt: skip
        choose_packing(runtime_for("apptainer"), "zstd", None, "1.3.6")
    assert choose_packing(runtime_for("apptainer"), "lz4", None, "1.4.1").squashfs == Squashfs("lz4")
    assert choose_packing(runtime_for("apptainer"), "lz4", None, None).squashfs == Squashfs("lz4")


def test_the_chosen_packing_is_what_the_runtime_config_packs_with() -> None:
    cfg = RuntimeConfig(type="apptainer", convert_cpus=3)
    assert cfg.compression == "auto" and cfg.packing is None
    assert cfg.squashfs == Squashfs("gzip", 3)  # not chosen yet: gzip, as before auto existed
    chosen = cfg.with_packing(choose_packing(runtime_for("apptainer"), "auto", 3, "1.4.1"))
    assert chosen.squashfs == Squashfs("zstd", 3) and cfg.packing is None  # a copy; the config is unchanged


def test_a_compression_other_than_gzip_needs_apptainer() -> None:
    with pytest.raises(ValueError, match=r"needs apptainer >= 1\.4"):
        RuntimeConfig(type="singularity", compression="zstd")


def test_apptainer_pulls_from_a_registry() -> None:
    assert runtime_for("apptainer").pull("reg:5000/org/app@sha256:ab", "/s/x.sif") == [
        ["apptainer", "pull", "--force", "/s/x.sif", "docker://reg:5000/org/app@sha256:ab"]
    ]


def test_apptainer_exec_with_gpu_binds_env_and_cleanenv() -> None:
    argv = runtime_for("apptainer").exec(
        "/s/x.sif",
        ["python3", "-c", "print(1)"],
        ExecOptions(gpu="nvidia", binds=["/data:/data:ro"], cleanenv=True, env={"OMP_NUM_THREADS": "2"}),
    )
    assert argv == [
        "env", "APPTAINERENV_OMP_NUM_THREADS=2",
        "apptainer", "exec", "--nv", "--cleanenv", "--bind", "/data:/data:ro", "/s/x.sif", "python3", "-c", "print(1)",
    ]  # fmt: skip


def test_amd_gpus_get_the_rocm_flag() -> None:
    argv = runtime_for("apptainer").exec("x.sif", ["true"], ExecOptions(gpu="amd", cleanenv=False))
    assert argv == ["apptainer", "exec", "--rocm", "x.sif", "true"]


@pytest.mark.parametrize(
    ("runtime", "gpu", "args"),
    [
        ("singularity", "nvidia", ["--nv"]),
        ("podman", "nvidia", ["--device=nvidia.com/gpu=all"]),
        ("podman", "amd", ["--device=/dev/kfd", "--device=/dev/dri"]),
        ("charliecloud", "nvidia", []),  # ch-run has no flag: the libraries are injected into the image
        ("apptainer", None, []),
    ],
)
def test_each_runtime_gives_the_gpus_its_own_way(runtime: str, gpu: GpuKind | None, args: list[str]) -> None:
    assert runtime_for(runtime).gpu(gpu) == args


def test_site_exec_args_come_before_binds_and_the_image() -> None:
    opts = ExecOptions(cleanenv=False, binds=["/d"], exec_args=["--contain"])
    assert runtime_for("apptainer").exec("x.sif", ["true"], opts) == [
        "apptainer", "exec", "--contain", "--bind", "/d", "x.sif", "true",
    ]  # fmt: skip


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
    assert argv == ["podman", "run", "--rm", "--pull=never", "--network=none", image, "true"]


def test_podman_limits_are_the_sites_and_come_from_the_cluster_config() -> None:
    local = load_cluster(ROOT / "cluster-configs" / "local.yaml").runtime
    assert local.type_exec_args == []  # the local stack runs apptainer: podman's limits stay unused
    podman = local.model_copy(update={"type": "podman"})
    argv = runtime_for(podman.type).exec(
        "img", ["true"], ExecOptions(gpu="nvidia", exec_args=podman.type_exec_args)
    )
    assert argv == [
        "podman", "run", "--rm", "--pull=never", "--network=none",
        "--ulimit=nofile=1024:1024", "--ulimit=nproc=1024:1024", "--device=nvidia.com/gpu=all", "img", "true",
    ]  # fmt: skip


def test_the_runtime_table_has_every_configurable_runtime() -> None:
    assert list(RUNTIMES) == list(get_args(RuntimeName))


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


MPI = ("OMPI_", "PMIX_")


def test_a_clean_apptainer_environment_keeps_the_mpi_launchers_variables() -> None:
    opts = ExecOptions(pass_env=MPI, env={"K": "v"})
    argv = runtime_for("apptainer").exec("x.sif", ["a.out"], opts)
    shim = pass_env_argv(MPI, "APPTAINERENV_")
    assert argv == [*shim, "env", "APPTAINERENV_K=v", "apptainer", "exec", "--cleanenv", "x.sif", "a.out"]
    assert shim[:2] == ["sh", "-c"] and shim[3] == "hpcci-pass-env"
    assert "/^(OMPI_|PMIX_)[A-Za-z0-9_]*=/" in shim[2] and "export APPTAINERENV_$n=" in shim[2]


def test_singularity_keeps_them_under_its_own_prefix() -> None:
    argv = runtime_for("singularity").exec("x.sif", ["a.out"], ExecOptions(pass_env=MPI))
    assert "export SINGULARITYENV_$n=" in argv[2] and argv[4:6] == ["singularity", "exec"]


def test_an_environment_that_is_not_cleaned_needs_no_pass_through() -> None:
    argv = runtime_for("apptainer").exec("x.sif", ["a.out"], ExecOptions(cleanenv=False, pass_env=MPI))
    assert argv == ["apptainer", "exec", "x.sif", "a.out"]


def test_podman_passes_the_variables_by_name_prefix() -> None:
    argv = runtime_for("podman").exec("img", ["a.out"], ExecOptions(pass_env=MPI))
    assert "--env=OMPI_*" in argv and "--env=PMIX_*" in argv and argv[-2:] == ["img", "a.out"]


def test_charliecloud_cannot_keep_a_subset_so_mpi_runs_are_not_cleaned() -> None:
    assert "--unset-env=*" in runtime_for("charliecloud").exec("x.sqfs", ["a"], ExecOptions())
    assert "--unset-env=*" not in runtime_for("charliecloud").exec("x.sqfs", ["a"], ExecOptions(pass_env=MPI))


@pytest.mark.parametrize("bad", ["OMPI_$(x)", "1X", "", "A-B"])
def test_a_prefix_that_is_not_a_variable_name_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="not the start of an environment variable name"):
        pass_env_argv([bad], "APPTAINERENV_")
