"""The context a builder gets holds no .git: an ordinary `COPY . /src` of a checkout whose .git/config keeps the
job's token (as actions/checkout does without persist-credentials: false) builds an image without .git and without
the token, with each builder the local stack has (hpcci.stages.build.clean_context)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from test_build import hpcci, need_builder, run_in_image, write_pipeline

from hpcci import records

TOKEN = f"ghs_integrationFakeToken{uuid.uuid4().hex[:12]}"


def checkout_with_token(folder: Path) -> Path:
    """A git checkout like actions/checkout leaves it by default: the token in .git/config."""
    folder.mkdir()
    (folder / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY . /src/\n", encoding="utf-8")
    (folder / "app.py").write_text("print('app')\n", encoding="utf-8")
    git = ["git", "-C", str(folder)]
    for argv in (
        ["init", "-q", "-b", "main"],
        ["config", "http.https://github.com/.extraheader", f"AUTHORIZATION: basic {TOKEN}"],
        ["add", "-A"],
        ["-c", "user.name=ci", "-c", "user.email=ci@example.org", "commit", "-q", "-m", "app"],
    ):
        subprocess.run([*git, *argv], check=True, timeout=60, capture_output=True)
    assert TOKEN in (folder / ".git" / "config").read_text(encoding="utf-8")
    return folder


@pytest.mark.parametrize("builder", ["docker", "buildah", "buildx"])
def test_copy_dot_bakes_neither_git_nor_the_token_into_the_image(
    builder: str,
    require: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    local_images: set[str],
) -> None:
    require("docker", "registry")
    need_builder(builder)
    context = checkout_with_token(tmp_path / "checkout")
    repository = f"127.0.0.1:5000/hpcci-test/no-git-{builder}-{uuid.uuid4().hex[:8]}"
    local_images.add(repository)
    config = write_pipeline(
        tmp_path, name=repository, context=context, builder=builder, platforms=("linux/amd64",)
    )
    rc, out = hpcci(
        capsys, "build", "-c", str(config), "--records", str(tmp_path / "rec"), "--ref", "refs/heads/main"
    )
    assert rc == 0, out[-2000:]
    (image,) = records.read(records.BuildRecord, tmp_path / "rec" / "build.json").platforms
    local_images.add(image.digest)

    listing = run_in_image(builder, image.ref, "sh", "-c", "ls -A /src; grep -rl ghs_ /src || true")

    assert "app.py" in listing and "Dockerfile" in listing, listing
    assert ".git" not in listing, f"the image holds .git: {listing}"
    assert TOKEN not in listing and "/src/" not in listing, f"the image holds the token: {listing}"
    assert TOKEN in (context / ".git" / "config").read_text(encoding="utf-8"), (
        "the checkout itself is untouched"
    )


def test_a_config_that_asks_for_git_gets_it(
    require: Callable[..., None], capsys: pytest.CaptureFixture[str], tmp_path: Path, local_images: set[str]
) -> None:
    require("docker", "registry")
    need_builder("buildah")
    context = checkout_with_token(tmp_path / "checkout")
    repository = f"127.0.0.1:5000/hpcci-test/with-git-{uuid.uuid4().hex[:8]}"
    local_images.add(repository)
    config = write_pipeline(
        tmp_path, name=repository, context=context, builder="buildah", platforms=("linux/amd64",)
    )
    pipeline = json.loads(config.read_text(encoding="utf-8"))
    pipeline["image"]["context_git"] = True
    config.write_text(json.dumps(pipeline), encoding="utf-8")
    rc, out = hpcci(
        capsys, "build", "-c", str(config), "--records", str(tmp_path / "rec"), "--ref", "refs/heads/main"
    )
    assert rc == 0, out[-2000:]
    (image,) = records.read(records.BuildRecord, tmp_path / "rec" / "build.json").platforms
    local_images.add(image.digest)

    assert ".git" in run_in_image("buildah", image.ref, "ls", "-A", "/src").split()
