"""A fork cannot choose what a maintainer's approval grants, run by act against the local stack.

A fork's pull request rewrites hpcci.yaml: the registry and the S3 endpoint point at a listener of the test's, and
the registry password names another secret (AWS_SECRET_ACCESS_KEY). Its Dockerfile copies the whole build context
into the image. A maintainer comments `/hpcci deploy @<full head sha> local` (examples/fibonacci/.github/workflows/
hpcci-comment.yml). The workflow must read hpcci.yaml and the cluster configs from the base branch - the
workspace is the default branch's head, as GitHub checks it out for an issue_comment event - and take only the
build context from the pinned commit (actions/setup/source): the image is published where the base's config says,
the listener receives no connection at all, and the published image holds the fork's code but no .git and none of
the credentials the workspace's .git/config holds (as actions/checkout leaves them without persist-credentials:
false).
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import socketserver
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from act_harness import REPO, UserRepo, make_user_repo

from github_events import issue_comment_created
from stack_env import read_env

COMMENT_WORKFLOW = ".github/workflows/hpcci-comment.yml"
STANDIN = REPO / "tests" / "standins" / "github" / "serve.py"
FAKE_TOKEN = "ghs_e2eFakeCheckoutToken0123456789"  # what actions/checkout would have persisted in .git/config


class Listener:
    """A TCP listener at the fork's endpoint: every connection and the bytes it sent."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                try:
                    data = self.request.recv(65536)
                except OSError:
                    data = b""
                outer.received.append(data)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


@pytest.fixture(scope="module")
def github_url(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """This checkout's GitHub stand-in on a free port: (url, token)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token_file = tmp_path_factory.mktemp("github") / "token"
    token = f"ghs_e2e{uuid.uuid4().hex}"
    token_file.write_text(token, encoding="utf-8")
    argv = [sys.executable, str(STANDIN), "--port", str(port), "--token-file", str(token_file)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/_standin/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail(f"the GitHub stand-in did not start on port {port}")
        yield url, token
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(token_file.parent, ignore_errors=True)


def admin(github: tuple[str, str], what: str, **body: Any) -> dict[str, Any]:
    url, token = github
    r = httpx.post(
        f"{url}/_standin/{what}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    r.raise_for_status()
    data: dict[str, Any] = r.json()
    return data


def check_runs(github: tuple[str, str], repo: str, sha: str) -> list[dict[str, Any]]:
    url, token = github
    r = httpx.get(
        f"{url}/_standin/state",
        params={"repo": repo},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    r.raise_for_status()
    return [cr for cr in r.json()["check_runs"] if cr["head_sha"] == sha]


def published_tar(repo: UserRepo, tag: str) -> bytes:
    """The linux/amd64 docker-archive tar that the base's S3 index files under ``tag``."""
    import boto3

    from hpcci.stages.publish import s3_index_key

    stack = repo.stack
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name=stack["AWS_DEFAULT_REGION"])
    bucket = stack.get("HPCCI_S3_BUCKET", "hpcci")
    index = json.loads(
        s3.get_object(Bucket=bucket, Key=s3_index_key("images", "127.0.0.1:5000/octo-org/fibonacci"))[
            "Body"
        ].read()
    )
    entry = index["tags"].get(tag)
    assert entry, f"the base's S3 index lists no {tag} (it lists {sorted(index['tags'])})"
    body: bytes = s3.get_object(Bucket=bucket, Key=entry["platforms"]["linux/amd64"]["key"])["Body"].read()
    return body


def image_files(archive: bytes, under: tuple[str, ...] = ("src", "app")) -> dict[str, bytes]:
    """The files and folders under ``under`` in the layers of a docker-archive tar: {path: content}."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
        for member in outer.getmembers():
            data = outer.extractfile(member) if member.isfile() else None
            if data is None:
                continue
            files.update(_layer_files(data.read(), under))
    return files


def _layer_files(blob: bytes, under: tuple[str, ...]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(blob)) as layer:
            for entry in layer.getmembers():
                if entry.name.split("/")[0] not in under:
                    continue
                inner = layer.extractfile(entry) if entry.isfile() else None
                files[entry.name + ("/" if entry.isdir() else "")] = inner.read() if inner else b""
    except tarfile.TarError:
        return {}  # the manifest, the config: not a layer
    return files


def test_a_forks_config_is_not_used_and_its_endpoint_hears_nothing(
    github_url: tuple[str, str], kit: Path, tmp_path: Path, listener: Listener
) -> None:
    def stack() -> dict[str, str]:
        return {**read_env(check=True), "GITHUB_API_URL": github_url[0], "GITHUB_TOKEN": github_url[1]}

    repo = make_user_repo(tmp_path / "fibonacci", stack, kit)
    base = repo.head()
    # The fork: its own endpoints and another secret for the registry password, its Dockerfile copies everything.
    repo.git("checkout", "-q", "-b", "fork-endpoints")
    elsewhere = f"127.0.0.1:{listener.port}"
    repo.edit("hpcci.yaml", "name: 127.0.0.1:5000/", f"name: {elsewhere}/")
    repo.edit("hpcci.yaml", "url: 127.0.0.1:5000", f"url: {elsewhere}")
    repo.edit("hpcci.yaml", "{env: HPCCI_REGISTRY_PASSWORD}", "{env: AWS_SECRET_ACCESS_KEY}")
    repo.edit("hpcci.yaml", "endpoint_url: http://127.0.0.1:8080", f"endpoint_url: http://{elsewhere}")
    repo.edit("Dockerfile", "COPY fib.py fib_mpi.py /app/", "COPY fib.py fib_mpi.py /app/\nCOPY . /src/")
    repo.edit("fib.py", "fib_num = int(sys.argv[1])", "fib_num = int(sys.argv[1])  # the fork's code")
    head = repo.commit("a fork sending the secrets elsewhere")
    # GitHub checks out the default branch's head for an issue_comment event, with the job's token in .git/config.
    repo.git("checkout", "-q", "main")
    repo.git("config", "http.https://github.com/.extraheader", f"AUTHORIZATION: basic {FAKE_TOKEN}")
    assert repo.head() == base
    number = 6000 + int(head[:3], 16)
    # the trigger reads both commits' files and main's head through the API (the stand-in knows no git)
    for sha in (base, head):
        admin(github_url, "commits", repo=repo.repository, sha=sha, files=repo.files_at(sha))
    admin(github_url, "branches", repo=repo.repository, branch="main", sha=base)
    admin(
        github_url,
        "pulls",
        repo=repo.repository,
        number=number,
        head_sha=head,
        head_repo="someone/fibonacci",
        head_ref="fork-endpoints",
        base_ref="main",
        base_sha=base,
    )
    admin(github_url, "collaborators", repo=repo.repository, user="mona", permission="write")
    body = f"/hpcci deploy @{head} local"
    made = admin(github_url, "comments", repo=repo.repository, issue=number, user="mona", body=body)
    payload = issue_comment_created(repo.repository, number, made["id"], body, "mona")
    env = {"GITHUB_RUN_ID": str(8_000_000 + uuid.uuid4().int % 1_000_000), "GITHUB_RUN_ATTEMPT": "1"}

    result = repo.act("issue_comment", payload, workflow=COMMENT_WORKFLOW, env=env)

    assert result.ok, result.tail()
    assert {"Build", "Publish", "Deploy and smoke-test"} <= result.steps_run(), result.steps_run()
    assert listener.received == [], f"the fork's endpoint got {len(listener.received)} connections"
    trusted = (f"configuration from the workspace's {base}", f"configuration from the base commit {base}")
    assert any(t in result.output for t in trusted), "hpcci.yaml was not read from the base commit"
    (run,) = check_runs(github_url, repo.repository, head)
    assert (run["name"], run["conclusion"]) == ("hpcci / local", "success"), run
    files = image_files(published_tar(repo, f"pr-{number}"))
    assert b"# the fork's code" in files.get("src/fib.py", b""), "the build context is not the pinned commit"
    assert "src/.github/workflows/hpcci.yml" in files, "the check for .git saw no file of the context"
    assert not [f for f in files if f == "src/.git" or f.startswith("src/.git/")], (
        "the published image holds .git"
    )
    assert not [f for f, data in files.items() if FAKE_TOKEN.encode() in data], "the image holds the token"
