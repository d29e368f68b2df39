"""`hpcci build` and `hpcci publish --to registry` on the local stack, with the fibonacci example.

Each builder that works here builds the example for linux/amd64 and linux/arm64 once (the arm64 RUN step really
runs under QEMU); the tests then look at the result with independent tools (docker, buildah, skopeo).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpcci import records
from hpcci.cli import main as hpcci_main
from hpcci.process import run
from hpcci.records import BuildRecord
from stack_env import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "fibonacci"
SHA = "860c1904a1ce19322e91ac35af1ab07466440c37"
RUN_ID = uuid.uuid4().hex[:8]


def write_pipeline(
    folder: Path,
    *,
    name: str,
    context: Path = EXAMPLE,
    platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64"),
    builder: str = "auto",
    registry_url: str = "127.0.0.1:5000",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pipeline = {
        "image": {
            "name": name,
            "context": str(context),
            "platforms": list(platforms),
            "builder": builder,
            "build_args": {"BASE_IMAGE": "127.0.0.1:5000/hpcci/base:bookworm"},
            "description": "integration test",
            "licenses": "MIT",
        },
        "publish": {
            "registry": {
                "url": registry_url,
                "username": {"env": "HPCCI_REGISTRY_USERNAME"},
                "password": {"env": "HPCCI_REGISTRY_PASSWORD"},
                "insecure": True,
            },
            "s3": {
                "bucket": "hpcci",
                "prefix": f"hpcci-test-{RUN_ID}",
                "endpoint_url": "http://127.0.0.1:8080",
                "region": "us-east-1",
                "path_style": True,
            },
        },
    }
    path = folder / "hpcci.yaml"
    path.write_text(json.dumps(pipeline, indent=2))  # JSON is YAML
    return path


def hpcci(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run the CLI in-process; return its exit code and everything it wrote."""
    capsys.readouterr()
    rc = hpcci_main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


@dataclass
class Built:
    builder: str
    config: Path
    records: Path
    record: BuildRecord
    output: str


_built: dict[str, Built] = {}


BUILDX_SKIP = (
    "builder buildx is not installed here (`docker buildx version` fails): Debian bookworm has no docker-buildx "
    "package, so buildx is tested on GitHub-hosted runners only"
)


def need_builder(name: str) -> None:
    """Skip unless builder ``name`` can run here. buildx is not part of the local stack (see BUILDX_SKIP): without
    it the test is skipped, also under CI; every other reason, and any builder the stack provides, fails under
    CI=true (CI must test every builder it has)."""
    from hpcci.backends.builders import get_builder

    if name == "buildx" and not (
        shutil.which("docker")
        and run(["docker", "buildx", "version"], timeout=30, check=False, echo=False).ok
    ):
        pytest.skip(BUILDX_SKIP)
    why = get_builder(name).unavailable()
    if why:
        skip_or_fail(f"builder {name} cannot run here ({why}); install it: scripts/local-stack up docker")


@pytest.fixture(params=["docker", "buildah", "buildx"])
def built(
    request: pytest.FixtureRequest,
    require: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    tmp_path_factory: pytest.TempPathFactory,
    local_images: set[str],
) -> Built:
    """The example, built once per builder for amd64 and arm64 (tag v1.2.3 of a fake commit)."""
    require("docker", "registry")
    name = str(request.param)
    need_builder(name)
    if name not in _built:
        folder = tmp_path_factory.mktemp(f"build-{name}")
        repository = f"127.0.0.1:5000/hpcci-test/fib-{name}-{RUN_ID}"
        local_images.add(repository)
        config = write_pipeline(folder, name=repository, builder=name)
        recs = folder / ".hpcci"
        rc, output = hpcci(
            capsys,
            "build",
            "-c",
            str(config),
            "--records",
            str(recs),
            "--ref",
            "refs/tags/v1.2.3",
            "--sha",
            SHA,
        )
        assert rc == 0, output[-3000:]
        record = records.read(records.BuildRecord, recs / "build.json")
        local_images.update(p.digest for p in record.platforms)
        _built[name] = Built(name, config, recs, record, output)
    return _built[name]


def authfile(tmp_path: Path, env: dict[str, str]) -> str:
    import base64

    token = base64.b64encode(
        f"{env['HPCCI_REGISTRY_USERNAME']}:{env['HPCCI_REGISTRY_PASSWORD']}".encode()
    ).decode()
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {env["HPCCI_REGISTRY"]: {"auth": token}}}))
    return str(path)


def run_in_image(builder: str, ref: str, *cmd: str) -> str:
    """Run a command in a locally built image (arm64 ones under QEMU)."""
    if builder == "buildah":
        ctr = run(["buildah", "from", "--pull=never", ref], timeout=120).stdout.strip().splitlines()[-1]
        try:
            return run(["buildah", "run", ctr, "--", *cmd], timeout=120).stdout
        finally:
            run(["buildah", "rm", ctr], timeout=60, check=False)
    return run(["docker", "run", "--rm", ref, *cmd], timeout=120).stdout


# -- build ---------------------------------------------------------------------------------------------------


def test_build_makes_one_image_per_platform_with_the_right_architecture(built: Built) -> None:
    record = built.record
    assert [p.platform for p in record.platforms] == ["linux/amd64", "linux/arm64"]
    assert record.tags == ["1.2.3", "1.2", "1", "sha-860c190", "latest"]
    assert record.builder == built.builder
    assert record.labels["org.opencontainers.image.version"] == "1.2.3"
    assert record.labels["org.opencontainers.image.revision"] == SHA
    for image in record.platforms:
        assert image.digest.startswith("sha256:")
        assert image.ref.endswith("-" + image.platform.split("/")[1])


def image_labels(builder: str, ref: str) -> dict[str, str]:
    if builder == "buildah":
        data = json.loads(run(["buildah", "inspect", "--type", "image", ref], timeout=60).stdout)
        return dict(data["OCIv1"]["config"].get("Labels") or {})
    out = run(["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", ref], timeout=60).stdout
    return dict(json.loads(out) or {})


def test_every_platform_image_carries_the_oci_labels(built: Built) -> None:
    for image in built.record.platforms:
        labels = image_labels(built.builder, image.ref)
        for key, value in built.record.labels.items():
            assert labels.get(key) == value, (image.platform, key)


def test_arm64_run_step_really_ran_under_emulation(built: Built) -> None:
    arm = next(p for p in built.record.platforms if p.platform == "linux/arm64")
    amd = next(p for p in built.record.platforms if p.platform == "linux/amd64")
    assert run_in_image(built.builder, arm.ref, "cat", "/etc/hpcci-build-arch").strip() == "aarch64"
    assert run_in_image(built.builder, amd.ref, "cat", "/etc/hpcci-build-arch").strip() == "x86_64"


def test_build_log_is_grouped_per_platform(built: Built) -> None:
    out = built.output
    assert f"==> build linux/amd64 ({built.builder})" in out
    assert f"==> build linux/arm64 ({built.builder})" in out
    assert out.index("==> build linux/amd64") < out.index("==> build linux/arm64")
    assert "RUN python3" in out  # the builder's own log is streamed


def test_rebuild_without_changes_reuses_the_layer_cache(
    built: Built, capsys: pytest.CaptureFixture[str], tmp_path: Path, local_images: set[str]
) -> None:
    rc, out = hpcci(
        capsys,
        "build",
        "-c",
        str(built.config),
        "--records",
        str(tmp_path),
        "--ref",
        "refs/tags/v1.2.3",
        "--sha",
        SHA,
    )
    if (tmp_path / "build.json").exists():  # a new image (its created label differs): removed afterwards
        local_images.update(
            p.digest for p in records.read(records.BuildRecord, tmp_path / "build.json").platforms
        )
    assert rc == 0, out[-2000:]
    # docker: "---> Using cache"; buildah: "Using cache <id>"; buildx: "#6 CACHED"
    assert out.count("Using cache") + out.count(" CACHED") >= 4, out[-2000:]


# -- publish to the registry -----------------------------------------------------------------------------------


def test_publish_pushes_a_manifest_list_the_registry_reports_correctly(
    built: Built, capsys: pytest.CaptureFixture[str], stack_env: dict[str, str], tmp_path: Path
) -> None:
    rc, out = hpcci(
        capsys, "publish", "-c", str(built.config), "--records", str(built.records), "--to", "registry"
    )
    assert rc == 0, out[-2000:]
    pub = records.read(records.PublishRecord, built.records / "publish.json")
    assert pub.registry is not None
    assert set(pub.registry.platforms) == {"linux/amd64", "linux/arm64"}
    af = authfile(tmp_path, stack_env)
    for ref in pub.registry.refs:
        raw = run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", "--authfile", af, f"docker://{ref}"],
            timeout=60,
        )
        listed = json.loads(raw.stdout)
        got = {
            f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in listed["manifests"]
        }
        assert got == pub.registry.platforms
    for arch in ("amd64", "arm64"):
        config = run(
            ["skopeo", "inspect", "--config", "--tls-verify=false", "--authfile", af, "--override-arch", arch]
            + [f"docker://{pub.registry.refs[0]}"],
            timeout=60,
        )
        assert json.loads(config.stdout)["architecture"] == arch


def test_republishing_the_same_build_is_a_no_op(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("publish", "-c", str(built.config), "--records", str(built.records), "--to", "registry")
    rc, first = hpcci(capsys, *args)
    assert rc == 0, first[-2000:]
    digest = records.read(records.PublishRecord, built.records / "publish.json").registry.digest  # type: ignore[union-attr]
    rc, again = hpcci(capsys, *args)
    assert rc == 0, again[-2000:]
    assert "nothing to do" in again
    assert "written to" not in again
    if built.builder == "docker":  # the engine remembers what it pushed: no platform image goes up again
        assert "already in the registry, not pushed again" in again
    assert records.read(records.PublishRecord, built.records / "publish.json").registry.digest == digest  # type: ignore[union-attr]


def test_wrong_registry_password_is_refused_with_its_own_exit_code(
    built: Built, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPCCI_REGISTRY_PASSWORD", "not-the-password")
    rc, out = hpcci(
        capsys, "publish", "-c", str(built.config), "--records", str(built.records), "--to", "registry"
    )
    assert rc == 21, out[-2000:]
    assert "refused user" in out and "password" in out
    assert "not-the-password" not in out


def test_unreachable_registry_is_a_registry_error(
    built: Built, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = f"127.0.0.1:5000/hpcci-test/fib-{built.builder}-{RUN_ID}"
    config = write_pipeline(tmp_path, name=name, builder=built.builder, registry_url="127.0.0.1:5999")
    rc, out = hpcci(capsys, "publish", "-c", str(config), "--records", str(built.records), "--to", "registry")
    assert rc == 20, out[-2000:]
    assert "cannot reach registry http://127.0.0.1:5999" in out


# -- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("builder", ["docker", "buildah", "buildx"])
def test_failing_dockerfile_shows_the_failing_step(
    builder: str,
    require: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    local_images: set[str],
) -> None:
    require("docker", "registry")
    need_builder(builder)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo about to fail\nRUN exit 3\n"
    )
    repository = f"127.0.0.1:5000/hpcci-test/failing-{RUN_ID}"
    local_images.add(repository)
    config = write_pipeline(tmp_path, name=repository, context=context, builder=builder)
    config_args = ("-c", str(config), "--records", str(tmp_path / "rec"), "--ref", "refs/heads/main")
    rc, out = hpcci(capsys, "build", *config_args, "--platform", "linux/amd64")
    assert rc == 10, out[-2000:]
    assert f"{context}/Dockerfile:4: RUN exit 3" in out
    assert not (tmp_path / "rec" / "build.json").exists()


def test_platform_without_emulation_fails_before_building(
    require: Callable[..., None], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    require("docker")
    config = write_pipeline(
        tmp_path, name=f"127.0.0.1:5000/hpcci-test/s390x-{RUN_ID}", platforms=("linux/s390x",)
    )
    rc, out = hpcci(
        capsys, "build", "-c", str(config), "--records", str(tmp_path / "rec"), "--ref", "refs/heads/main"
    )
    assert rc == 11, out[-2000:]
    assert "cannot run s390x code" in out and "qemu-user-static" in out
    assert "==> build" not in out


def test_base_image_without_the_platform_is_caught_by_the_arch_check(
    require: Callable[..., None], capsys: pytest.CaptureFixture[str], tmp_path: Path, local_images: set[str]
) -> None:
    """The legacy builder happily builds 'arm64' on an amd64-only base; hpcci must refuse the result."""
    require("docker", "registry")
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM 127.0.0.1:5000/hpcci/base:bookworm-amd64\nRUN true\n")
    repository = f"127.0.0.1:5000/hpcci-test/mismatch-{RUN_ID}"
    local_images.add(repository)
    config = write_pipeline(
        tmp_path,
        name=repository,
        context=context,
        platforms=("linux/arm64",),
        builder="docker",
    )
    rc, out = hpcci(
        capsys, "build", "-c", str(config), "--records", str(tmp_path / "rec"), "--ref", "refs/heads/main"
    )
    assert rc == 11, out[-2000:]
    assert "for linux/arm64 but the image says architecture amd64" in out


def test_unknown_builder_on_the_command_line_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _ = hpcci(capsys, "build", "--builder", "kaniko")
    assert rc == 2


def test_publish_without_a_build_record_says_to_build_first(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_pipeline(tmp_path, name="127.0.0.1:5000/hpcci-test/none")
    rc, out = hpcci(capsys, "publish", "-c", str(config), "--records", str(tmp_path / "empty"))
    assert rc == 2
    assert "no BuildRecord here; run the stage that writes it first" in out


# -- base images from their own registry (build.registries) --------------------------------------------------


def copy_base(env: dict[str, str], folder: Path, name: str) -> str:
    """The stack's amd64 base under a name no local image store holds: a build must pull it, with credentials,
    over plain HTTP."""
    ref = f"{env['HPCCI_REGISTRY']}/hpcci-test/{name}-{RUN_ID}:bookworm"
    af = authfile(folder, env)
    run(["skopeo", "copy", "--quiet", "--authfile", af, "--src-tls-verify=false", "--dest-tls-verify=false",
         "--override-arch", "amd64", f"docker://{env['HPCCI_REGISTRY']}/hpcci/base:bookworm",
         f"docker://{ref}"], timeout=300)  # fmt: skip
    return ref


@pytest.fixture(scope="module")
def private_base(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    return copy_base(stack_env, tmp_path_factory.mktemp("base"), "base")


def s3_only_pipeline(
    folder: Path, name: str, builder: str, base: str, registries: list[dict[str, object]]
) -> Path:
    path = write_pipeline(folder, name=name, builder=builder, platforms=("linux/amd64",))
    data = json.loads(path.read_text())
    data["image"]["build_args"] = {"BASE_IMAGE": base}
    del data["publish"]["registry"]  # published to S3 only: nothing about the base's registry comes from here
    data["build"] = {"registries": registries}
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("builder", ["docker", "buildah"])
def test_an_s3_only_pipeline_builds_from_a_base_on_a_plain_http_registry_with_credentials(
    builder: str,
    require: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    private_base: str,
    local_images: set[str],
) -> None:
    require("docker", "registry")
    need_builder(builder)
    name = f"127.0.0.1:5000/hpcci-test/fib-base-{builder}-{RUN_ID}"
    local_images.add(name)
    registry = {"host": "127.0.0.1:5000", "insecure": True, "username": {"env": "HPCCI_REGISTRY_USERNAME"},
                "password": {"env": "HPCCI_REGISTRY_PASSWORD"}}  # fmt: skip
    config = s3_only_pipeline(tmp_path, name, builder, private_base, [registry])
    recs = tmp_path / ".hpcci"
    rc, out = hpcci(
        capsys, "build", "-c", str(config), "--records", str(recs), "--ref", "refs/heads/main", "--sha", SHA
    )
    assert rc == 0, out[-3000:]
    record = records.read(records.BuildRecord, recs / "build.json")
    local_images.update(p.digest for p in record.platforms)
    assert [p.platform for p in record.platforms] == ["linux/amd64"]
    assert "55" in run_in_image(builder, record.platforms[0].ref, "python3", "/app/fib.py", "10")


def test_without_build_registries_the_base_cannot_be_pulled(
    require: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    stack_env: dict[str, str],
) -> None:
    require("docker", "registry")
    need_builder("buildah")
    name = f"127.0.0.1:5000/hpcci-test/fib-nobase-{RUN_ID}"
    base = copy_base(stack_env, tmp_path, "unpulled-base")  # in no local store: the build must pull it
    config = s3_only_pipeline(tmp_path, name, "buildah", base, [])
    rc, out = hpcci(capsys, "build", "-c", str(config), "--records", str(tmp_path / ".hpcci"), "--sha", SHA)
    assert rc == 10, out[-3000:]  # BuildError: buildah tried HTTPS (and had no credentials)
    assert "HTTP response to HTTPS client" in out and "build.registries" in out
