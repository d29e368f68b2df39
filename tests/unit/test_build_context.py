"""The build context: confined to the checkout, taken from the pinned tree for a pull request's code, never .git."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcci.backends.builders.spec import BuildSpec
from hpcci.errors import UsageError
from hpcci.stages.build import clean_context, context_dir


def test_context_is_under_the_pipeline_files_folder(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    assert context_dir(tmp_path, "app", workspace=tmp_path) == (tmp_path / "app").resolve()
    assert context_dir(tmp_path, ".", workspace=tmp_path) == tmp_path.resolve()


def test_context_outside_the_checkout_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(UsageError, match="outside the checkout"):
        context_dir(work, "..", workspace=work)
    (work / "escape").symlink_to(tmp_path)
    with pytest.raises(UsageError, match="outside the checkout"):
        context_dir(work, "escape", workspace=work)


def test_a_pinned_build_takes_the_context_from_the_pinned_tree(tmp_path: Path) -> None:
    work, pinned = tmp_path / "work", tmp_path / "work" / ".hpcci-source"
    (work / "sub").mkdir(parents=True)
    (pinned / "sub" / "app").mkdir(parents=True)
    # hpcci.yaml in work/sub (working-directory sub), image.context app: the same place in the pinned tree
    assert (
        context_dir(work / "sub", "app", source=pinned, workspace=work) == (pinned / "sub" / "app").resolve()
    )
    # a pinned tree's symlink out of it (the pull request's author controls the tree) is refused
    (pinned / "sub" / "out").symlink_to(work)
    with pytest.raises(UsageError, match="outside the checkout"):
        context_dir(work / "sub", "out", source=pinned, workspace=work)


def test_without_a_workspace_the_local_cli_may_use_a_parent_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    assert context_dir(tmp_path / "sub", "..") == tmp_path.resolve()


def test_the_context_a_builder_sees_has_no_git(tmp_path: Path) -> None:
    ctx = tmp_path / "repo"
    (ctx / ".git").mkdir(parents=True)
    (ctx / ".git" / "config").write_text("extraheader = AUTHORIZATION: basic c2VjcmV0\n", encoding="utf-8")
    (ctx / "vendor" / "lib").mkdir(parents=True)
    (ctx / "vendor" / "lib" / ".git").write_text("gitdir: ../../.git/modules/lib\n", encoding="utf-8")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /src\n", encoding="utf-8")
    (ctx / "app.py").write_text("print(1)\n", encoding="utf-8")
    (ctx / ".gitignore").write_text("*.pyc\n", encoding="utf-8")
    spec = BuildSpec(
        context=ctx, dockerfile=Path("Dockerfile"), platforms=["linux/amd64"], repository="r", tag="t"
    )

    with clean_context(spec) as clean:
        seen = sorted(str(p.relative_to(clean.context)) for p in clean.context.rglob("*"))
        assert seen == [".gitignore", "Dockerfile", "app.py", "vendor", "vendor/lib"], seen
        assert clean.dockerfile_path == ctx / "Dockerfile", "errors name the user's Dockerfile, not the copy"
        copy = clean.context
    assert not copy.exists(), "the clean copy is removed after the build"
    assert (ctx / ".git" / "config").is_file(), "the checkout itself is left alone"
