"""The `hpcci` command as a user runs it: exit codes, one-line errors, no tracebacks, a fast --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HPCCI = [sys.executable, "-m", "hpcci"]
HEAVY = ("pydantic", "boto3", "botocore", "docker", "paramiko", "rich", "httpx", "ruamel")


def hpcci(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HPCCI, *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


def test_help_lists_every_command() -> None:
    out = hpcci("--help").stdout
    for name in (
        "build",
        "publish",
        "deploy",
        "report",
        "run",
        "plan",
        "validate",
        "doctor",
        "trigger",
        "releases",
        "rollback",
    ):
        assert f"    {name} " in out


def test_help_imports_no_heavy_sdk() -> None:
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hpcci", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    imported = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines() if "|" in line}
    assert not imported & set(HEAVY)


def test_validate_passes_the_shipped_configs() -> None:
    r = hpcci(
        "validate",
        "examples/fibonacci/hpcci.yaml",
        *map(str, (ROOT / "cluster-configs").glob("*.yaml")),
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("ok: ") == 1 + len(list((ROOT / "cluster-configs").glob("*.yaml")))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("image: [\n", "malformed YAML"),
        (
            "image: {name: a}\ntests: [{name: t, command: x, resources: {time: 10 minutes}}]\n",
            "is not a Slurm time",
        ),
        ("image: {name: a, platfroms: []}\n", "did you mean 'platforms'?"),
        ("a: &a [1, 2]\nb: *a\nimage: {name: x}\n", "YAML aliases"),
    ],
    ids=["malformed", "human-time", "typo", "alias"],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "hpcci.yaml").write_text(text)
    r = hpcci("validate", cwd=tmp_path)
    assert r.returncode == 2
    assert expected in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_pipeline_file_is_a_usage_error(tmp_path: Path) -> None:
    r = hpcci("plan", cwd=tmp_path)
    assert r.returncode == 2
    assert "hpcci.yaml: cannot read" in r.stderr


def test_unknown_command_is_exit_2() -> None:
    r = hpcci("deploi")
    assert r.returncode == 2
    assert "invalid choice" in r.stderr


@pytest.mark.parametrize("command", ["deploy", "report"])
@pytest.mark.parametrize("run_id", ["../../x", "a/b", ".hidden", "-x", "x y", ""])
def test_a_run_id_that_is_not_one_folder_name_is_refused(tmp_path: Path, command: str, run_id: str) -> None:
    r = hpcci(command, f"--run-id={run_id}", cwd=tmp_path)
    assert r.returncode == 2
    assert "is not a run id" in r.stderr and "Traceback" not in r.stderr
