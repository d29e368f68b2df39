"""The Dockerfile as builders see it: RUN detection, labels as one final step, and the failing step's line.

StepTracker follows a build log (all three builders echo their steps) so a failure names the Dockerfile line.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hpcci.backends.builders.spec import BuildSpec
from hpcci.errors import BuildError, UsageError
from hpcci.log import Log

# How `hpcci plan` names the temporary Dockerfile that dockerfile_with_labels writes.
PLAN_DOCKERFILE = Path("$TMP/Dockerfile.hpcci")


def dockerfile_has_run(text: str) -> bool:
    return re.search(r"(?im)^\s*RUN\s", text) is not None


def label_instruction(labels: dict[str, str], escape: str = "\\") -> str:
    """ONE ``LABEL "k"="v" ...`` line. The legacy builder and buildah turn every --label into its own step
    (a container or a commit each, redone whenever a label changes, i.e. on every commit); one line is one step."""

    def quoted(text: str) -> str:
        for ch in (escape, '"', "$"):
            text = text.replace(ch, escape + ch)
        return '"' + " ".join(text.splitlines()) + '"'

    return "LABEL " + " ".join(f"{quoted(k)}={quoted(v)}" for k, v in sorted(labels.items()))


def labelled_dockerfile(text: str, labels: dict[str, str]) -> str:
    """The Dockerfile with the labels as one final LABEL step (it applies to the last stage, the output)."""
    m = re.match(r"(?:\s*#[^\n]*\n)*?\s*#\s*escape\s*=\s*(\S)", text, flags=re.IGNORECASE)
    escape = m.group(1) if m else "\\"
    return text.rstrip("\n") + "\n" + label_instruction(labels, escape) + "\n"


@contextmanager
def dockerfile_with_labels(spec: BuildSpec) -> Iterator[Path | None]:
    """A temporary copy of the Dockerfile with the labels appended (None when there are no labels)."""
    if not spec.labels:
        yield None
        return
    try:
        text = spec.dockerfile_path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read {spec.dockerfile_path}: {e.strerror}; fix image.dockerfile") from e
    with tempfile.TemporaryDirectory(prefix="hpcci-dockerfile-") as d:
        path = Path(d) / "Dockerfile.hpcci"
        path.write_text(labelled_dockerfile(text, spec.labels), encoding="utf-8")
        yield path


def step_line(dockerfile_text: str, instruction: str) -> int | None:
    """The Dockerfile line where ``instruction`` (as a builder echoes it: 'RUN false') starts, or None."""
    want = " ".join(instruction.split()).lower()
    lines = dockerfile_text.splitlines()
    for i in range(len(lines)):
        joined, j = "", i
        while j < len(lines):  # join continuation lines the way the builder does
            joined += lines[j].rstrip().removesuffix("\\") + " "
            if not lines[j].rstrip().endswith("\\"):
                break
            j += 1
        got = " ".join(joined.split()).lower()
        if got and (got == want or (len(want) > 12 and got.startswith(want[:60]))):
            return i + 1
    return None


class StepTracker:
    """Follows a build log: echoes lines, remembers the last step header, keeps a tail for error messages."""

    STEP = re.compile(r"^(?:Step \d+/\d+ : |STEP \d+/\d+: |#\d+ \[[^\]]*\d+/\d+\] )(.*)$")

    def __init__(self, log: Log) -> None:
        self.log = log
        self.step: str | None = None
        self.tail: list[str] = []
        self._partial = ""

    def line(self, text: str) -> None:
        m = self.STEP.match(text.strip())
        if m:
            self.step = m.group(1).strip()
        self.tail = [*self.tail[-19:], text]
        self.log.info(text)

    def feed(self, chunk: str) -> None:
        """SDK build output arrives in pieces that are not whole lines."""
        self._partial += chunk
        *lines, self._partial = self._partial.split("\n")
        for ln in lines:
            if ln.strip():
                self.line(ln.rstrip("\r"))

    def flush(self) -> None:
        if self._partial.strip():
            self.line(self._partial)
        self._partial = ""

    def failure(self, spec: BuildSpec, platform: str, error: str) -> BuildError:
        where = ""
        if self.step:
            try:
                text = spec.dockerfile_path.read_text(encoding="utf-8")
            except OSError:
                text = ""
            line = step_line(text, self.step)
            where = f" at {spec.dockerfile_path}{f':{line}' if line else ''}: {self.step}"
        return BuildError(
            f"build for {platform} failed{where}: {error.strip()}{_hint(error)} (the step's output is above)"
        )


def _hint(error: str) -> str:
    """What to do about a base image's registry the builder could not talk to."""
    if "HTTP response to HTTPS client" in error:
        return "; a plain-HTTP registry: list it in build.registries with insecure: true"
    if "unauthorized" in error.lower() or "authentication required" in error.lower():
        return "; a registry that needs a login: give it username and password in build.registries"
    return ""
