"""Shared pieces of the deploy/remote/doctor integration tests: a real fibonacci image tar (docker save), a
throw-away project folder (hpcci.yaml + cluster-configs/local.yaml), running `hpcci` as a process, and an SSH
connection to the local cluster's login node for looking at jobs from the outside.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hpcci.backends.ssh.remote import SSHRemote
from hpcci.config.load import load_cluster
from hpcci.config.models import Cluster
from hpcci.process import Completed, run
from hpcci.shell import login_argv
from hpcci.wiring import ssh_target

REPO = Path(__file__).resolve().parents[2]
FIB_TAG = "hpcci-test/fibonacci:h4"
BASE_TAG = "hpcci-test/base:amd64-h4"


def build_fib_tar(out: Path, arch: str = "amd64") -> Path:
    """The examples/fibonacci image for linux/ARCH, built from the stack's base image and saved as a tar.

    The base is copied out of the registry for amd64 under a private name (the shared local tag may hold
    another platform's image), then loaded into Docker and used as FROM.
    """
    import base64
    import json as _json

    registry = os.environ.get("HPCCI_REGISTRY", "127.0.0.1:5000")
    base = os.environ.get("HPCCI_BASE_IMAGE", f"{registry}/hpcci/base:bookworm")
    auth = out.parent / "auth.json"
    user, password = (
        os.environ.get("HPCCI_REGISTRY_USERNAME", ""),
        os.environ.get("HPCCI_REGISTRY_PASSWORD", ""),
    )
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    auth.write_text(_json.dumps({"auths": {registry: {"auth": token}}}))
    base_tar = out.parent / "base.tar"
    run(
        ["skopeo", "copy", "--quiet", "--authfile", str(auth), "--src-tls-verify=false", "--override-arch", arch,
         f"docker://{base}", f"docker-archive:{base_tar}:{BASE_TAG}-{arch}"],
        timeout=300,
    )  # fmt: skip
    auth.unlink()
    run(["docker", "load", "--quiet", "--input", str(base_tar)], timeout=300)
    run(
        ["docker", "build", "--build-arg", f"BASE_IMAGE={BASE_TAG}-{arch}", "--build-arg",
         f"TARGETPLATFORM=linux/{arch}", "-t", f"{FIB_TAG}-{arch}", str(REPO / "examples" / "fibonacci")],
        timeout=600,
        env={"DOCKER_BUILDKIT": "0"},
    )  # fmt: skip
    if arch == "amd64":
        run(["docker", "tag", f"{FIB_TAG}-{arch}", FIB_TAG], timeout=60)
    run(["docker", "save", f"{FIB_TAG}-{arch}", "-o", str(out)], timeout=300)
    return out


def cluster_config(**changes: Any) -> dict[str, Any]:
    """cluster-configs/local.yaml as data, with dotted-key changes."""
    data: dict[str, Any] = yaml.safe_load((REPO / "cluster-configs" / "local.yaml").read_text())
    for dotted, value in changes.items():
        node = data
        *path, last = dotted.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return data


@dataclass
class Project:
    root: Path

    @property
    def records(self) -> Path:
        return self.root / ".hpcci"

    def results(self) -> dict[str, Any]:
        return json.loads((self.records / "results.json").read_text())  # type: ignore[no-any-return]

    def deploy_record(self) -> dict[str, Any]:
        return json.loads((self.records / "deploy.json").read_text())  # type: ignore[no-any-return]

    def tests(self) -> dict[str, dict[str, Any]]:
        """test name -> TestResult dict, for the one cluster."""
        (cluster,) = self.results()["clusters"]
        return {t["test"]: t for t in cluster["tests"]}

    def cluster_error(self) -> str | None:
        (cluster,) = self.results()["clusters"]
        return cluster["error"]  # type: ignore[no-any-return]


def make_project(root: Path, tests: list[dict[str, Any]], *, cluster: dict[str, Any] | None = None,
                 deadline: str = "00:10:00", registry: dict[str, Any] | None = None) -> Project:  # fmt: skip
    (root / "cluster-configs").mkdir(parents=True, exist_ok=True)
    (root / "cluster-configs" / "local.yaml").write_text(yaml.safe_dump(cluster or cluster_config()))
    pipeline: dict[str, Any] = {
        "image": {"name": FIB_TAG.split(":")[0], "platforms": ["linux/amd64"]},
        "publish": {"s3": {"bucket": os.environ.get("HPCCI_S3_BUCKET", "hpcci"), "path_style": True,
                           "endpoint_url": os.environ.get("AWS_ENDPOINT_URL")}},
        "deploy": {"clusters": ["local"], "cluster_configs": "cluster-configs", "deadline": deadline},
        "tests": tests,
    }  # fmt: skip
    if registry:
        pipeline["publish"]["registry"] = registry
    (root / "hpcci.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return Project(root)


def journaled_job(project: Project, test: str) -> str:
    """The job id a running `hpcci deploy` journaled for ``test`` ('' until sbatch has answered)."""
    path = project.records / "journal.json"
    jobs = json.loads(path.read_text())["jobs"] if path.exists() else []
    return next((str(e["job_id"]) for e in jobs if e["kind"] == "test" and e["key"] == test), "")


def hpcci(project: Project, *args: str, timeout: float = 900) -> Completed:
    """`hpcci ARGS` run as its own process in the project folder (what CI does)."""
    return run([sys.executable, "-m", "hpcci", *args], timeout=timeout, check=False, cwd=str(project.root))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def login(cluster: Cluster | None = None) -> SSHRemote:
    c = cluster or load_cluster(REPO / "cluster-configs" / "local.yaml")
    return SSHRemote(ssh_target(c.name, c.login))


def on_login(remote: SSHRemote, argv: list[str], timeout: float = 60) -> Completed:
    return remote.run(login_argv([argv]), timeout=timeout)


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.5) -> Any:
    """Poll ``predicate`` until it returns something truthy (a guard against hangs, not a timing assertion)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
