"""The deploy's steps: each thing a deploy does on a cluster as data, run by stages/execute.py, printed by `hpcci plan`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hpcci.backends.schedulers import Scheduler
from hpcci.shell import command_line, login_command


@dataclass(frozen=True)
class Command:
    """A command on the login node: the executor runs ``argv``, `hpcci plan` prints it."""

    argv: list[str]
    timeout: float = 60
    note: str = ""  # why, shown after the command in the plan

    def lines(self) -> list[str]:
        if self.argv[:2] == ["bash", "-lc"]:  # a login-shell script, line by line
            why = f"{self.note}; " if self.note else ""
            body = [f"    {line}" for line in self.argv[2].splitlines()]
            return [f"+ bash -lc SCRIPT   # {why}one argument; SCRIPT is:", *body]
        return [f"+ {command_line(self.argv)}" + (f"    # {self.note}" if self.note else "")]


@dataclass(frozen=True)
class Upload:
    """A local file copied to the cluster over SFTP."""

    local: str
    remote: str
    streams: int

    def lines(self) -> list[str]:
        return [f"  sftp put {self.local} -> {self.remote} ({self.streams} parallel streams)"]


@dataclass(frozen=True)
class WriteFile:
    """A text file written on the cluster (a batch script)."""

    path: str
    text: str

    def lines(self) -> list[str]:
        return [f"write {self.path}:", "```bash", *self.text.rstrip("\n").splitlines(), "```"]


@dataclass(frozen=True)
class Submit:
    """A batch script written, then submitted (after the conversion job of ``after``'s image, if any)."""

    script: WriteFile
    scheduler: Scheduler
    modules: list[str] | None  # None: submitted without a login shell (login.mode automation)
    after: str | None = None  # the platform whose conversion job must succeed first
    timeout: float = 120

    def argv(self, dependency: Sequence[str] = ()) -> list[str]:
        submit = self.scheduler.submit_argv(self.script.path, dependency)
        return login_command(submit, self.modules)

    def lines(self) -> list[str]:
        shown = Command(
            self.argv(["CONVERT_JOB_ID"] if self.after else []), note=f"submit ({self.scheduler.NAME})"
        )
        return [*self.script.lines(), *shown.lines()]


Step = Command | Upload | WriteFile | Submit
