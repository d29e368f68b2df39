"""The one place local processes run: argv lists only, echoed quoted, with a timeout that kills the process group."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hpcci.errors import HpcciError


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def quote(argv: Sequence[str]) -> str:
    """The argv as a copy-pasteable shell line (for logs and `hpcci plan`, never for execution)."""
    return shlex.join(argv)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    check: bool = True,
    error: type[HpcciError] = HpcciError,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    input: str | None = None,
    echo: bool = True,
    stream: Callable[[str], None] | None = None,
) -> Completed:
    """Run ``argv`` and return its output.

    ``stream`` receives stdout+stderr line by line as they come (live build logs); otherwise both are captured.
    On timeout the whole process group is killed. With ``check``, a non-zero exit raises ``error`` whose message
    carries the command and the last lines of its output.
    """
    if echo:
        print(f"+ {quote(argv)}", file=sys.stderr, flush=True)
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if stream else subprocess.PIPE,
            text=True,
            errors="replace",
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError as e:
        raise error(f"{argv[0]}: command not found; install it or put it on PATH") from e
    try:
        if stream:
            out, err = _pump(proc, stream, input, timeout), ""
        else:
            out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        _kill_group(proc)
        raise error(
            f"`{quote(argv)}` did not finish within {timeout:g}s and was killed", transient=True
        ) from e
    except BaseException:
        _kill_group(proc)
        raise
    done = Completed(tuple(argv), proc.returncode, out or "", err or "")
    if check and not done.ok:
        raise error(
            f"`{quote(argv)}` failed with exit code {done.returncode}: {tail(done.stdout + done.stderr)}"
        )
    return done


def _pump(
    proc: subprocess.Popen[str], stream: Callable[[str], None], input: str | None, timeout: float
) -> str:
    import threading

    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            stream(line.rstrip("\n"))

    if input is not None and proc.stdin is not None:
        proc.stdin.write(input)
        proc.stdin.close()
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    proc.wait(timeout=timeout)
    t.join(5)
    return "".join(lines)


def tail(text: str, lines: int = 5, width: int = 400) -> str:
    """The last non-empty lines of ``text`` folded onto one line, for one-line error messages."""
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    joined = " | ".join(kept) or "(no output)"
    return joined if len(joined) <= width else "..." + joined[-width:]
