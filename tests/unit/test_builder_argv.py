"""Builder command lines, platform names and build-log parsing, as data (no builder runs here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcci.backends.builders.buildah import buildah_argv
from hpcci.backends.builders.buildx import buildx_argv
from hpcci.backends.builders.docker import docker_argv
from hpcci.backends.builders.dockerfile import (
    StepTracker,
    dockerfile_has_run,
    label_instruction,
    labelled_dockerfile,
    step_line,
)
from hpcci.backends.builders.emulation import emulation_problem
from hpcci.backends.builders.spec import BuildSpec, RegistryAuth, check_arch
from hpcci.errors import BuildError, PlatformError, UsageError
from hpcci.log import Log
from hpcci.platforms import platform_key, platform_tag, split_platform


def spec(**kw: object) -> BuildSpec:
    base: dict[str, object] = {
        "context": Path("/src/app"),
        "dockerfile": Path("Dockerfile"),
        "platforms": ["linux/amd64", "linux/arm64"],
        "repository": "127.0.0.1:5000/octo-org/fib",
        "tag": "1.2.3",
        "build_args": {"BASE_IMAGE": "base:1"},
        "labels": {"org.opencontainers.image.version": "1.2.3"},
    }
    base.update(kw)
    return BuildSpec(**base)  # type: ignore[arg-type]


def test_buildx_builds_one_platform_and_loads_it_without_provenance() -> None:
    assert buildx_argv(spec(), "linux/arm64") == [
        "docker", "buildx", "build", "--platform", "linux/arm64", "--load", "--provenance=false",
        "--progress=plain", "-f", "/src/app/Dockerfile", "-t", "127.0.0.1:5000/octo-org/fib:1.2.3-arm64",
        "--build-arg", "BASE_IMAGE=base:1", "--label", "org.opencontainers.image.version=1.2.3",
        "--cache-to", "type=inline", "/src/app",
    ]  # fmt: skip


def test_buildx_imports_layer_cache_from_earlier_pushes_of_the_same_platform() -> None:
    argv = buildx_argv(spec(cache_from=["reg:5000/o/fib:main", "reg:5000/o/fib:1.2.3"]), "linux/arm64")
    assert argv[argv.index("--cache-to") + 1] == "type=inline"
    froms = [argv[i + 1] for i, a in enumerate(argv) if a == "--cache-from"]
    assert froms == [
        "type=registry,ref=reg:5000/o/fib:main-arm64",
        "type=registry,ref=reg:5000/o/fib:1.2.3-arm64",
    ]
    assert "--cache-from" not in buildx_argv(spec(cache=False, cache_from=["r:1"]), "linux/arm64")


def test_buildah_uses_layer_cache_docker_format_and_authfile() -> None:
    s = spec(auths=[RegistryAuth("127.0.0.1:5000", "u", "p", insecure=True)])
    assert buildah_argv(s, "linux/amd64", authfile="/tmp/a.json") == [
        "buildah", "build", "--platform", "linux/amd64", "--format", "docker", "-f", "/src/app/Dockerfile",
        "-t", "127.0.0.1:5000/octo-org/fib:1.2.3-amd64", "--layers", "--force-rm", "--authfile", "/tmp/a.json",
        "--tls-verify=false", "--build-arg", "BASE_IMAGE=base:1",
        "--label", "org.opencontainers.image.version=1.2.3", "/src/app",
    ]  # fmt: skip


def test_no_credentials_ever_appear_on_a_command_line() -> None:
    s = spec(auths=[RegistryAuth("reg", "user", "s3cr3t-token")])
    for argv in (
        buildah_argv(s, "linux/amd64", "/tmp/x"),
        buildx_argv(s, "linux/amd64"),
        docker_argv(s, "linux/amd64"),
    ):
        assert not any("s3cr3t-token" in a for a in argv)


def test_legacy_builder_gets_target_platform_as_build_args_and_pulls() -> None:
    argv = docker_argv(spec(), "linux/arm64")
    assert "--pull" in argv
    for arg in ("TARGETPLATFORM=linux/arm64", "TARGETOS=linux", "TARGETARCH=arm64", "TARGETVARIANT="):
        assert arg in argv
    assert argv[argv.index("-t") + 1] == "127.0.0.1:5000/octo-org/fib:1.2.3-arm64"


def test_user_build_args_win_over_target_defaults() -> None:
    assert spec(build_args={"TARGETARCH": "x"}).args_for("linux/arm64")["TARGETARCH"] == "x"


def test_no_cache_is_passed_through() -> None:
    assert "--no-cache" in buildx_argv(spec(cache=False), "linux/amd64")
    assert "--no-cache" in buildah_argv(spec(cache=False), "linux/amd64")
    assert "--layers" not in buildah_argv(spec(cache=False), "linux/amd64")


def test_absolute_dockerfile_is_kept() -> None:
    assert spec(dockerfile=Path("/elsewhere/Containerfile")).dockerfile_path == Path(
        "/elsewhere/Containerfile"
    )


@pytest.mark.parametrize(
    ("platform", "tag", "key"),
    [
        ("linux/amd64", "1.2.3-amd64", "linux-amd64"),
        ("linux/arm64", "1.2.3-arm64", "linux-arm64"),
        ("linux/arm/v7", "1.2.3-armv7", "linux-arm-v7"),
    ],
)
def test_platform_names(platform: str, tag: str, key: str) -> None:
    assert platform_tag("1.2.3", platform) == tag
    assert platform_key(platform) == key


def test_platform_tag_stays_within_128_characters() -> None:
    tag = platform_tag("x" * 128, "linux/arm64")
    assert len(tag) == 128
    assert tag.endswith("-arm64")


@pytest.mark.parametrize("bad", ["linux", "linux/", "a/b/c/d", ""])
def test_bad_platform_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError):
        split_platform(bad)


def test_arch_mismatch_is_a_platform_error_naming_both() -> None:
    with pytest.raises(PlatformError, match=r"for linux/arm64 but the image says architecture amd64"):
        check_arch("amd64", "", "linux/arm64", builder="docker", ref="r:1")
    check_arch("arm64", "v8", "linux/arm64", builder="docker", ref="r:1")
    check_arch("arm", "v7", "linux/arm/v7", builder="docker", ref="r:1")
    with pytest.raises(PlatformError):
        check_arch("arm", "v6", "linux/arm/v7", builder="docker", ref="r:1")


def test_emulation_needs_an_enabled_binfmt_handler(tmp_path: Path) -> None:
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n")
    (tmp_path / "qemu-riscv64").write_text("disabled\n")
    assert emulation_problem("linux/arm64", tmp_path) is None
    problem = emulation_problem("linux/s390x", tmp_path)
    assert problem is not None and "qemu-s390x" in problem and "qemu-user-static" in problem
    assert emulation_problem("linux/riscv64", tmp_path) is not None


def test_dockerfile_run_detection() -> None:
    assert dockerfile_has_run("FROM x\nRUN true\n")
    assert dockerfile_has_run("FROM x\n  run true\n")
    assert not dockerfile_has_run("FROM x\nCOPY a /b\n# RUN nothing\n")


DOCKERFILE = """ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}
RUN python3 -c "print(1)" \\
    && false
COPY fib.py /app/fib.py
RUN exit 3
"""


@pytest.mark.parametrize(
    ("echoed", "line"),
    [
        ("RUN exit 3", 6),
        ("COPY fib.py /app/fib.py", 5),
        ('RUN python3 -c "print(1)"     && false', 3),
        ("FROM ${BASE_IMAGE}", 2),
        ("RUN something else", None),
    ],
)
def test_failing_step_is_found_in_the_dockerfile(echoed: str, line: int | None) -> None:
    assert step_line(DOCKERFILE, echoed) == line


@pytest.mark.parametrize(
    "header",
    [
        "Step 6/6 : RUN exit 3",  # legacy builder
        "STEP 6/6: RUN exit 3",  # buildah
        "#8 [4/4] RUN exit 3",  # buildx --progress=plain
    ],
)
def test_step_tracker_names_the_failing_step_and_its_line(tmp_path: Path, header: str) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    import io

    track = StepTracker(Log(io.StringIO(), github=False))
    track.feed("Step 1/6 : ARG BASE\n")
    track.feed(f"{header}\n ---> Running in abc\n")
    err = track.failure(spec(context=tmp_path), "linux/arm64", "The command '/bin/sh -c exit 3' returned 3")
    assert isinstance(err, BuildError)
    assert f"{tmp_path}/Dockerfile:6: RUN exit 3" in str(err)
    assert "linux/arm64" in str(err)


def test_step_tracker_joins_partial_chunks_into_lines() -> None:
    import io

    out = io.StringIO()
    track = StepTracker(Log(out, github=False))
    track.feed("Step 1/2 : FR")
    track.feed("OM x\nhel")
    track.feed("lo\n")
    track.flush()
    assert out.getvalue().splitlines() == ["Step 1/2 : FROM x", "hello"]
    assert track.step == "FROM x"


def test_labels_become_one_label_step_with_quotes_and_dollars_escaped() -> None:
    line = label_instruction({"z": "1", "org.x.desc": 'it\'s "q" $HOME \\ end'})
    assert line == 'LABEL "org.x.desc"="it\'s \\"q\\" \\$HOME \\\\ end" "z"="1"'


def test_labels_are_appended_after_the_last_stage_and_honour_the_escape_directive() -> None:
    text = "# escape=`\nFROM a AS build\nRUN make\nFROM b\nCOPY --from=build /x /x"
    out = labelled_dockerfile(text, {"k": 'v"'})
    assert out == text + '\nLABEL "k"="v`""\n'
    assert labelled_dockerfile("FROM a\n\n", {"k": "v"}) == 'FROM a\nLABEL "k"="v"\n'


def test_with_a_labelled_dockerfile_no_label_flags_are_passed() -> None:
    argv = buildah_argv(spec(), "linux/amd64", None, Path("/tmp/x/Dockerfile.hpcci"))
    assert argv[argv.index("-f") + 1] == "/tmp/x/Dockerfile.hpcci"
    assert "--label" not in argv
    argv = docker_argv(spec(), "linux/amd64", Path("/tmp/x/Dockerfile.hpcci"))
    assert "--label" not in argv and "/tmp/x/Dockerfile.hpcci" in argv


def test_the_cli_and_the_config_offer_exactly_the_builders_in_the_table() -> None:
    from typing import get_args

    from hpcci.backends.builders import BUILDERS
    from hpcci.commands.build import BUILDER_CHOICES
    from hpcci.config.models import ImageConfig

    assert ("auto", *BUILDERS) == BUILDER_CHOICES
    assert get_args(ImageConfig.model_fields["builder"].annotation) == BUILDER_CHOICES


def test_plan_shows_each_builder_with_its_temporary_files() -> None:
    from hpcci.backends.builders import get_builder

    s = spec(auths=[RegistryAuth("reg", "u", "p")])
    assert get_builder("buildx").argv(s, "linux/amd64") == buildx_argv(s, "linux/amd64")
    assert get_builder("buildah").argv(s, "linux/amd64") == buildah_argv(
        s, "linux/amd64", "$TMP/auth.json", Path("$TMP/Dockerfile.hpcci")
    )
    assert get_builder("docker").argv(spec(labels={}), "linux/amd64") == docker_argv(
        spec(labels={}), "linux/amd64"
    )


def test_a_base_registry_marked_insecure_needs_no_credentials_and_no_authfile() -> None:
    from hpcci.backends.builders import get_builder

    s = spec(auths=[RegistryAuth("127.0.0.1:5000", insecure=True)])
    argv = get_builder("buildah").argv(s, "linux/amd64")
    assert "--tls-verify=false" in argv and "--authfile" not in argv


def test_build_registries_come_from_the_pipeline_apart_from_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpcci.commands.build import build_registries
    from hpcci.config.models import Pipeline

    pipe = Pipeline.model_validate(
        {
            "image": {"name": "reg/org/app"},
            "build": {
                "registries": [
                    {"host": "127.0.0.1:5000", "insecure": True, "username": {"env": "BASE_USER"},
                     "password": {"env": "BASE_PASSWORD"}},
                    {"host": "mirror.example.org"},
                ]
            },
            "publish": {"s3": {"bucket": "b"}},
        }
    )  # fmt: skip
    monkeypatch.setenv("BASE_USER", "hpcci")
    monkeypatch.setenv("BASE_PASSWORD", "s3cret\n")
    masked: list[str] = []

    class Recorder(Log):
        def mask(self, secret: str | None) -> None:
            masked.append(secret or "")

    assert build_registries(pipe, Recorder()) == [
        RegistryAuth("127.0.0.1:5000", "hpcci", "s3cret", insecure=True),
        RegistryAuth("mirror.example.org"),
    ]
    assert masked == ["s3cret"]
    # `hpcci plan` shows the registries without reading a secret
    assert build_registries(pipe, None)[0] == RegistryAuth(
        "127.0.0.1:5000", "USER", "PASSWORD", insecure=True
    )


def test_a_build_registry_with_a_username_but_no_password_is_a_config_error() -> None:
    from pydantic import ValidationError

    from hpcci.config.models import BuildRegistry

    with pytest.raises(ValidationError, match="set username and password together"):
        BuildRegistry.model_validate({"host": "reg:5000", "username": "u"})


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        ('Get "https://r:5000/v2/": http: server gave HTTP response to HTTPS client', "insecure: true"),
        (
            "pull access denied: unauthorized: authentication required",
            "username and password in build.registries",
        ),
    ],
)
def test_a_base_registry_failure_says_how_build_registries_fix_it(error: str, hint: str) -> None:
    assert hint in str(StepTracker(Log()).failure(spec(), "linux/amd64", error))
