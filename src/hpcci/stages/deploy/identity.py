"""The run a deploy's jobs belong to: repository, run and attempt, and the job names and comments that carry it."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from hpcci.backends.schedulers.model import JobSpec

MAX_JOB_NAME = (
    100  # schedulers keep longer names, but their queue and accounting columns and people read them
)


@dataclass(frozen=True)
class RunIdentity:
    """A workflow run as the jobs carry it: repository and run (a re-run's attempt is the same run)."""

    repo: str
    run: str
    attempt: str = "1"
    fresh: bool = False  # a run id made up for this deploy: no job of it can exist yet (nothing to look for)

    def label(self, cluster: str) -> str:
        """The prefix of every job name of this run on ``cluster``: unambiguous per repository, run and cluster."""
        digest = hashlib.sha256(f"{self.repo}\n{self.run}\n{cluster}".encode()).hexdigest()
        return f"hpcci-{digest[:10]}"

    def job_name(self, cluster: str, name: str) -> str:
        """``name`` (the plan's own job name, e.g. hpcci-fib) under this run's label."""
        suffix = name.removeprefix("hpcci-")
        full = f"{self.label(cluster)}-{suffix}"
        if len(full) <= MAX_JOB_NAME:
            return full
        return f"{full[: MAX_JOB_NAME - 9]}-{hashlib.sha256(suffix.encode()).hexdigest()[:8]}"

    def test_job_name(self, cluster: str, test: str) -> str:
        """The name a test's job carries (the plan names it hpcci-TEST; labelled() puts the run's label first)."""
        return self.job_name(cluster, f"hpcci-{test}")

    def comment(self, cluster: str, what: str) -> str:
        repo = f" of {self.repo}" if self.repo else ""
        return f"hpcci run {self.run} (attempt {self.attempt}){repo} on {cluster}: {what}"[:250]


def run_identity(run_id: str | None, default_run: str, repo: str, env: Mapping[str, str]) -> RunIdentity:
    """The run to journal and re-attach to: --run-id, else the GitHub run (without its attempt), else this deploy."""
    attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
    if run_id:
        return RunIdentity(repo, run_id, attempt)
    if env.get("GITHUB_RUN_ID"):
        return RunIdentity(repo, f"gh-{env['GITHUB_RUN_ID']}", attempt)
    return RunIdentity(repo, default_run, attempt, fresh=True)


def labelled(spec: JobSpec, identity: RunIdentity | None, cluster: str) -> JobSpec:
    """``spec`` carrying the run's identity in its job name and comment (as planned; unchanged without one)."""
    if identity is None:
        return spec
    name = identity.job_name(cluster, spec.job_name)
    comment = identity.comment(cluster, spec.comment or spec.job_name)
    return dataclasses.replace(spec, job_name=name, comment=comment)
