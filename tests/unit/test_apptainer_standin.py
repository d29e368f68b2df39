"""The apptainer STAND-IN's command-line grammar (scripts/stack/cluster/apptainer_standin), pure parts only.

The stand-in runs on the local cluster with the system python3 and is not installed in the venv, so it is imported
from its source folder. What it does with the real tools is tested on the cluster (tests/integration).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The stand-in is not installed in the venv: import it from its source folder.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "stack" / "cluster"))

from apptainer_standin.cli import main
from apptainer_standin.console import UsageError
from apptainer_standin.convert import mksquashfs_args, pull_name
from apptainer_standin.fetch import registry_host
from apptainer_standin.launch import split_binds
from apptainer_standin.options import BUILD_FLAGS, INSPECT_FLAGS, RUNTIME_FLAGS, parse


def test_options_stop_at_the_image_so_the_program_keeps_its_own_flags() -> None:
    opts, pos = parse(["--nv", "x.sif", "python3", "--nv", "-c", "1"], RUNTIME_FLAGS, 0, "exec")
    assert opts.on("nv")
    assert pos == ["x.sif", "python3", "--nv", "-c", "1"]


def test_value_options_take_the_next_word_or_an_equals_sign_and_may_repeat() -> None:
    opts, pos = parse(
        ["-B", "/a:/b", "--bind=/c", "--env", "K=V", "--pwd=/w", "x.sif"], RUNTIME_FLAGS, 0, "exec"
    )
    assert opts.values("bind") == ["/a:/b", "/c"]
    assert opts.values("env") == ["K=V"]
    assert opts.value("pwd") == "/w"
    assert pos == ["x.sif"]


def test_double_dash_ends_the_options() -> None:
    opts, pos = parse(["--force", "--", "-odd.sif", "docker-archive://x.tar"], BUILD_FLAGS, 0, "build")
    assert opts.on("force")
    assert pos == ["-odd.sif", "docker-archive://x.tar"]


def test_a_switch_accepts_true_or_false_and_nothing_else() -> None:
    assert not parse(["--force=false", "a", "b"], BUILD_FLAGS, 0, "build")[0].on("force")
    assert parse(["-F=1", "a", "b"], BUILD_FLAGS, 0, "build")[0].on("force")
    with pytest.raises(UsageError, match='invalid argument "maybe" for "--force" flag'):
        parse(["--force=maybe", "a", "b"], BUILD_FLAGS, 0, "build")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-such-flag", "x.sif", "true"], "unknown flag: --no-such-flag"),
        (["-Z", "x.sif", "true"], "unknown shorthand flag: 'Z' in -Z"),
        (["--env"], "flag needs an argument: --env"),
    ],
)
def test_bad_options_are_refused_in_cobras_words(args: list[str], message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse(args, RUNTIME_FLAGS, 0, "exec")
    assert str(e.value) == message


def test_too_few_arguments_are_refused_with_the_usage() -> None:
    with pytest.raises(
        UsageError, match=r"requires at least 1 arg\(s\), only received 0\n\nUsage:\n  \S+ inspect"
    ):
        parse(["--json"], INSPECT_FLAGS, 1, "inspect [options...] <image path>")


def test_binds_split_on_commas_and_default_the_destination() -> None:
    assert split_binds(["/a,/b:/c:ro", " ,/d::rw"]) == [("/a", "/a"), ("/b", "/c"), ("/d", "/d")]
    with pytest.raises(UsageError, match="invalid bind option 'x'"):
        split_binds(["/a:/b:x"])


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("docker://127.0.0.1:5000/hpcci/base:bookworm", "base_bookworm.sif"),
        ("docker://ubuntu", "ubuntu_latest.sif"),
        ("docker://reg:5000/org/app@sha256:ab", "app_digest.sif"),
    ],
)
def test_pull_names_the_image_after_its_reference(uri: str, name: str) -> None:
    assert pull_name(uri) == name


@pytest.mark.parametrize(
    ("ref", "host"),
    [
        ("127.0.0.1:5000/hpcci/base", "127.0.0.1:5000"),
        ("library/ubuntu", "docker.io"),
        ("ubuntu", "docker.io"),
    ],
)
def test_registry_host_is_docker_hub_unless_the_first_part_is_a_host(ref: str, host: str) -> None:
    assert registry_host(ref) == host


def test_version_says_it_is_the_stand_in(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APPTAINER_STANDIN_VERSION", raising=False)
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "apptainer version 1.3.6+hpcci-standin\n"


def test_the_version_is_the_one_its_module_sets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPTAINER_STANDIN_VERSION", "1.4.1")  # what apptainer/1.4.1-standin sets
    assert main(["--version"]) == 0 and main(["version"]) == 0
    assert capsys.readouterr().out == "apptainer version 1.4.1+hpcci-standin\n1.4.1+hpcci-standin\n"
    monkeypatch.setenv("APPTAINER_STANDIN_VERSION", "1.4; rm -rf /")  # not N.N.N: the default
    assert main(["version"]) == 0
    assert capsys.readouterr().out == "1.3.6+hpcci-standin\n"


def test_as_apptainer_1_3_build_has_no_mksquashfs_args_and_ignores_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APPTAINER_STANDIN_VERSION", "1.3.6")
    with pytest.raises(UsageError, match=r"^unknown flag: --mksquashfs-args$"):
        main(["build", "--mksquashfs-args", "-comp zstd", "x.sif", "docker-archive://x.tar"])
    monkeypatch.setenv("APPTAINER_MKSQUASHFS_ARGS", "-comp lz4")
    opts, _ = parse(["x.sif", "s"], BUILD_FLAGS, 0, "build")
    assert mksquashfs_args(opts) == ["-comp", "gzip"]


def test_global_options_before_the_command_only() -> None:
    with pytest.raises(UsageError, match="unknown flag: --bogus"):
        main(["--bogus=1", "version"])
    with pytest.raises(UsageError, match='unknown command "frob"'):
        main(["--nocolor", "frob"])


def test_build_takes_mksquashfs_args_as_one_word_like_apptainer_1_4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPTAINER_STANDIN_VERSION", "1.4.1")
    monkeypatch.delenv("APPTAINER_MKSQUASHFS_ARGS", raising=False)
    opts, pos = parse(
        ["--force", "--mksquashfs-args", "-comp zstd -processors 4", "x.sif", "docker-archive://x.tar"],
        BUILD_FLAGS,
        0,
        "build",
    )
    assert pos == ["x.sif", "docker-archive://x.tar"]
    assert mksquashfs_args(opts) == ["-comp", "zstd", "-processors", "4"]


def test_mksquashfs_gets_gzip_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPTAINER_STANDIN_VERSION", "1.4.1")
    monkeypatch.delenv("APPTAINER_MKSQUASHFS_ARGS", raising=False)
    opts, _ = parse(["x.sif", "docker-archive://x.tar"], BUILD_FLAGS, 0, "build")
    assert mksquashfs_args(opts) == ["-comp", "gzip"]
    opts, _ = parse(["--mksquashfs-args=-processors 2", "x.sif", "s"], BUILD_FLAGS, 0, "build")
    assert mksquashfs_args(opts) == ["-comp", "gzip", "-processors", "2"]
    monkeypatch.setenv("APPTAINER_MKSQUASHFS_ARGS", "-comp lz4")
    opts, _ = parse(["x.sif", "s"], BUILD_FLAGS, 0, "build")
    assert mksquashfs_args(opts) == ["-comp", "lz4"]
