"""One log object: steps (GitHub groups), annotations, secret masking, the step summary."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from hpcci import context


def _escape_data(s: str) -> str:
    # https://github.com/actions/toolkit/blob/main/packages/core/src/command.ts (escapeData / escapeProperty)
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


class Log:
    """Writes human lines to stderr; inside GitHub Actions also workflow commands and the step summary."""

    def __init__(self, stream: TextIO | None = None, *, github: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.github = context.var("GITHUB_ACTIONS") == "true" if github is None else github
        self._secrets: list[str] = []

    # -- secrets ---------------------------------------------------------------------------------------------
    def mask(self, secret: str | None) -> None:
        """Never print ``secret``: registered with GitHub and redacted from everything this log writes."""
        if not secret or len(secret) < 4 or secret in self._secrets:
            return
        self._secrets.append(secret)
        if self.github:
            self._write(f"::add-mask::{_escape_data(secret)}")

    def redact(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    # -- lines -----------------------------------------------------------------------------------------------
    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def info(self, msg: str) -> None:
        self._write(self.redact(msg))

    def _annotate(self, level: str, msg: str, file: str | None, line: int | None, title: str | None) -> None:
        msg = self.redact(msg)
        if not self.github:
            where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
            self._write(f"{level}: {where}{msg}")
            return
        props = []
        if file:
            props.append(f"file={_escape_property(file)}")
        if line:
            props.append(f"line={line}")
        if title:
            props.append(f"title={_escape_property(self.redact(title))}")
        self._write(f"::{level} {','.join(props)}::{_escape_data(msg)}".replace(" ::", "::"))

    def warning(
        self, msg: str, *, file: str | None = None, line: int | None = None, title: str | None = None
    ) -> None:
        self._annotate("warning", msg, file, line, title)

    def error(
        self, msg: str, *, file: str | None = None, line: int | None = None, title: str | None = None
    ) -> None:
        self._annotate("error", msg, file, line, title)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        """A named step: a collapsible group in GitHub logs, a header line elsewhere, with its duration."""
        t0 = time.monotonic()
        self._write(f"::group::{_escape_data(title)}" if self.github else f"==> {title}")
        try:
            yield
        finally:
            if self.github:
                self._write("::endgroup::")
            self._write(f"    {title}: {time.monotonic() - t0:.1f}s")

    def summary(self, markdown: str) -> None:
        """Append Markdown to $GITHUB_STEP_SUMMARY when there is one."""
        path = context.var("GITHUB_STEP_SUMMARY")
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(self.redact(markdown).rstrip("\n") + "\n\n")


def github_output(**values: str) -> None:
    """Write step outputs to $GITHUB_OUTPUT (multi-line values use a heredoc delimiter)."""
    path = context.var("GITHUB_OUTPUT")
    if not path:
        return
    import uuid

    with open(path, "a", encoding="utf-8") as f:
        for key, value in values.items():
            if "\n" in value:
                d = f"hpcci_{uuid.uuid4().hex}"
                f.write(f"{key}<<{d}\n{value}\n{d}\n")
            else:
                f.write(f"{key}={value}\n")
