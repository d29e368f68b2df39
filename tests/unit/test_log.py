"""The log: GitHub groups and annotations, and secrets that never print."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hpcci.log import Log, github_output


def test_masked_secret_is_registered_then_redacted() -> None:
    out = io.StringIO()
    log = Log(out, github=True)
    log.mask("s3cr3t-token")
    log.info("using s3cr3t-token now")
    lines = out.getvalue().splitlines()
    assert lines == ["::add-mask::s3cr3t-token", "using *** now"]


def test_error_becomes_an_annotation_on_the_config_line() -> None:
    out = io.StringIO()
    Log(out, github=True).error("test fib failed: exit 3", file="hpcci.yaml", line=12, title="fib")
    assert out.getvalue() == "::error file=hpcci.yaml,line=12,title=fib::test fib failed: exit 3\n"


def test_annotation_data_is_escaped() -> None:
    out = io.StringIO()
    Log(out, github=True).warning("50% done\nnext")
    assert out.getvalue() == "::warning::50%25 done%0Anext\n"


def test_outside_actions_errors_are_plain_lines() -> None:
    out = io.StringIO()
    Log(out, github=False).error("boom", file="hpcci.yaml", line=3)
    assert out.getvalue() == "error: hpcci.yaml:3: boom\n"


def test_step_is_a_group_in_actions() -> None:
    out = io.StringIO()
    log = Log(out, github=True)
    with log.step("build linux/arm64"):
        log.info("inside")
    lines = out.getvalue().splitlines()
    assert lines[:3] == ["::group::build linux/arm64", "inside", "::endgroup::"]


def test_outputs_and_summary_go_to_their_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "out"))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary"))
    github_output(digest="sha256:1", tags="a\nb")
    log = Log(io.StringIO(), github=True)
    log.mask("hunter22")
    log.summary("| a | hunter22 |")
    text = (tmp_path / "out").read_text()
    assert text.startswith("digest=sha256:1\ntags<<hpcci_")
    assert "\na\nb\n" in text
    assert (tmp_path / "summary").read_text() == "| a | *** |\n\n"
