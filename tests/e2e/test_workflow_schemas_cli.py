"""check-jsonschema itself (the command line, as a developer or pre-commit would run it) accepts every action and
workflow against GitHub's schemas. The unit tests apply the same vendored schemas in-process; this runs the tool."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hpcci.process import run

REPO = Path(__file__).resolve().parents[2]


def check_jsonschema() -> str:
    found = shutil.which("check-jsonschema", path=str(REPO / ".venv" / "bin")) or shutil.which(
        "check-jsonschema"
    )
    if not found:
        pytest.fail("check-jsonschema is not installed; run scripts/setup (it is in the dev extras)")
    return found


@pytest.mark.parametrize(
    ("schema", "files"),
    [
        ("vendor.github-actions", sorted(REPO.glob("actions/**/action.yml"))),
        (
            "vendor.github-workflows",
            sorted(REPO.glob(".github/workflows/*.yml"))
            + sorted(REPO.glob("examples/*/.github/workflows/*.yml")),
        ),
    ],
    ids=["actions", "workflows"],
)
def test_check_jsonschema_accepts_the_actions_and_workflows(schema: str, files: list[Path]) -> None:
    assert files
    done = run([check_jsonschema(), "--builtin-schema", schema, *map(str, files)], timeout=120, check=False)
    assert done.ok, done.stdout + done.stderr


def test_zizmor_finds_nothing_unexplained() -> None:
    """zizmor (GitHub Actions security audit) at its default persona, offline: no finding, apart from those its
    config (.github/zizmor.yml: the policy for the kit's own @v1 references, the README-quoted adoption workflow)
    or an inline `# zizmor: ignore[rule] reason` comment explains."""
    found = shutil.which("zizmor", path=str(REPO / ".venv" / "bin")) or shutil.which("zizmor")
    if not found:
        pytest.fail("zizmor is not installed; run scripts/setup (it is in the dev extras)")
    paths = [
        REPO / ".github" / "workflows",
        REPO / "actions",
        *sorted(REPO.glob("examples/*/.github/workflows")),
    ]
    argv = [
        found,
        "--offline",
        "--no-progress",
        "--config",
        str(REPO / ".github" / "zizmor.yml"),
        *map(str, paths),
    ]
    done = run(argv, timeout=120, check=False)
    assert done.ok, done.stdout + done.stderr
    assert "No findings to report" in done.stdout + done.stderr
