"""The one process runner: echoes the quoted command, kills the whole group on timeout, errors carry the tail."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hpcci.errors import BuildError, HpcciError
from hpcci.process import quote, run


def test_command_is_echoed_quoted(capsys: pytest.CaptureFixture[str]) -> None:
    run(["echo", "a b", "$(x)"], timeout=10)
    assert capsys.readouterr().err == "+ echo 'a b' '$(x)'\n"


def test_arguments_never_pass_through_a_shell() -> None:
    assert run(["echo", "; rm -rf / $(id)"], timeout=10, echo=False).stdout == "; rm -rf / $(id)\n"


def test_failure_raises_the_given_error_with_the_output_tail() -> None:
    with pytest.raises(BuildError, match=r"exit code 3: step 1 \| step 2 broke"):
        run(
            ["sh", "-c", "echo step 1; echo step 2 broke >&2; exit 3"],
            timeout=10,
            error=BuildError,
            echo=False,
        )


def test_timeout_kills_the_process_group(tmp_path: os.PathLike[str]) -> None:
    pidfile = f"{tmp_path}/child.pid"
    with pytest.raises(HpcciError, match="did not finish within 1s") as e:
        run(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], timeout=1, echo=False)
    assert e.value.transient
    child = int(Path(pidfile).read_text())
    # the grandchild was SIGKILLed with its group; init reaps it (wait for that event, no timing threshold)
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{child}") and _state(child) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{child}") or _state(child) == "Z", "the background child survived"


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_missing_program_says_command_not_found() -> None:
    with pytest.raises(HpcciError, match="no-such-tool: command not found"):
        run(["no-such-tool"], timeout=5, echo=False)


def test_streamed_output_arrives_line_by_line() -> None:
    seen: list[str] = []
    done = run(["sh", "-c", "echo one; echo two"], timeout=10, echo=False, stream=seen.append)
    assert seen == ["one", "two"]
    assert done.stdout == "one\ntwo\n"


def test_quote_is_copy_pasteable() -> None:
    assert quote(["apptainer", "exec", "x y.sif", "it's"]) == "apptainer exec 'x y.sif' 'it'\"'\"'s'"
