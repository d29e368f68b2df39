"""Where the time and allocation went, and provenance that works: `hpcci publish` (registry and S3), `hpcci deploy` on
the local Slurm cluster, `hpcci report` to the GitHub stand-in; the check run shows queue wait, run time, nodes,
core-hours and the SIF's sha256, and its image reference is one the local registry resolves (pulled here).

Needs `scripts/local-stack up docker registry s3 cluster github`; skips without them (fails under CI=true).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_support import FIB_TAG, Project, cluster_config, hpcci, login, make_project, on_login, unique

from hpcci import cli, records
from hpcci.process import run
from swift_cleanup import delete_keys

FIB = {"name": "fib", "command": "python3 /app/fib.py 10", "expect": {"output": "^55$"},
       "resources": {"time": "00:05:00", "memory": "512M"}}  # fmt: skip
SHA = "acc0" * 10
ROW = re.compile(
    r"^\| fib \| linux/amd64 \| (?P<job>\d+) \| COMPLETED \| 0 \| (?P<wait>[^|]+) \| (?P<run>[^|]+) \| "
    r"(?P<nodes>[^|]+) \| (?P<core_h>[^|]+) \| ✅ pass \|$",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def reported(
    fib_tar: Path, tmp_path_factory: pytest.TempPathFactory, stack_env: dict[str, str]
) -> Iterator[tuple[Project, dict[str, Any]]]:
    """The fibonacci image published to the registry and S3, deployed (converted afresh into a private image
    cache), and reported to a repository of its own on the GitHub stand-in: (project, the check run)."""
    from stack_env import require_services

    require_services("registry", "s3", "github")
    cache = f"$SCRATCH/{unique('h4-acct-cache')}"
    reg = stack_env.get("HPCCI_REGISTRY", "127.0.0.1:5000")
    proj = make_project(
        tmp_path_factory.mktemp("acct"),
        [FIB],
        cluster=cluster_config(**{"paths.image_cache": cache}),
        registry={"url": reg, "repository": f"h4-acct/fib-{uuid.uuid4().hex[:8]}", "insecure": True,
                  "username": {"env": "HPCCI_REGISTRY_USERNAME"}, "password": {"env": "HPCCI_REGISTRY_PASSWORD"}},
    )  # fmt: skip
    _write_build(proj)
    published: records.PublishRecord | None = None
    try:
        done = hpcci(proj, "publish", "--to", "registry", "--to", "s3")
        assert done.returncode == 0, done.stderr[-3000:]
        published = records.read(records.PublishRecord, proj.records / "publish.json")
        done = hpcci(proj, "deploy")
        assert done.returncode == 0, done.stderr[-3000:]
        yield proj, _report(proj, stack_env)
    finally:
        remote = login()
        remote.run(["bash", "-c", f'rm -rf -- "$SCRATCH/{cache.split("/", 1)[1]}"'], timeout=60)
        remote.close()
        if published is not None:
            _remove_s3_objects(published)


def _write_build(proj: Project) -> None:
    """A build record for the image the fib_tar fixture built (docker builder), under a fresh tag."""
    image_id = run(["docker", "image", "inspect", "--format", "{{.Id}}", FIB_TAG], timeout=60).stdout.strip()
    platform = records.PlatformImage(platform="linux/amd64", digest=image_id, ref=FIB_TAG)
    build = records.BuildRecord(
        image=FIB_TAG.split(":")[0], tags=[unique("acct")], platforms=[platform], builder="docker"
    )
    records.write(build, proj.records / "build.json")


def _report(proj: Project, env: dict[str, str]) -> dict[str, Any]:
    """`hpcci report` from the deploy's results into a fresh repository on the stand-in; its one check run."""
    repo = f"octo-org/r-{uuid.uuid4().hex[:12]}"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"GITHUB_REPOSITORY": repo, "GITHUB_SHA": SHA, "GITHUB_RUN_ID": "1414",
                            "GITHUB_EVENT_NAME": "workflow_dispatch", "GITHUB_REF": "refs/heads/main"}.items():  # fmt: skip
            mp.setenv(name, value)
        for name in ("GITHUB_EVENT_PATH", "GITHUB_STEP_SUMMARY"):
            mp.delenv(name, raising=False)
        code = cli.main(["report", "-c", str(proj.root / "hpcci.yaml"), "--records", str(proj.records)])
    assert code == 0
    r = httpx.get(
        f"{env['GITHUB_API_URL']}/_standin/state",
        params={"repo": repo},
        headers={"Authorization": f"Bearer {env['GITHUB_TOKEN']}"},
        timeout=30,
    )
    r.raise_for_status()
    (check_run,) = r.json()["check_runs"]
    return check_run  # type: ignore[no-any-return]


def _remove_s3_objects(published: records.PublishRecord) -> None:
    for obj in published.s3:
        delete_keys(obj.bucket, [obj.key])  # its multipart segments too


def test_the_check_run_shows_queue_wait_run_time_nodes_and_core_hours(
    reported: tuple[Project, dict[str, Any]],
) -> None:
    proj, check_run = reported
    summary = check_run["output"]["summary"]
    assert check_run["conclusion"] == "success"
    assert "| Queue wait | Run time | Nodes | Core-h | Verdict |" in summary
    row = ROW.search(summary)
    assert row is not None, summary
    test = proj.tests()["fib"]
    assert row["job"] == test["job_id"]
    assert row["wait"].strip() != "-" and row["run"].strip() != "-" and row["core_h"].strip() != "-"
    assert re.fullmatch(r"node\d", row["nodes"].strip())  # the compute node it ran on
    usage = test["usage"]
    assert usage["cpus"] >= 1 and usage["node_count"] == 1 and usage["queue_wait_s"] is not None
    assert usage["core_hours"] == pytest.approx(usage["cpus"] * usage["run_s"] / 3600)


def test_the_check_run_says_where_the_clusters_time_went(reported: tuple[Project, dict[str, Any]]) -> None:
    proj, check_run = reported
    (cluster,) = proj.results()["clusters"]
    assert cluster["usage"]["stage_s"] > 0 and cluster["usage"]["convert_s"] > 0  # a fresh image cache
    line = next(
        ln for ln in check_run["output"]["summary"].splitlines() if ln.startswith("**Time and allocation")
    )
    assert "staging " in line and "conversion " in line and "queue wait up to " in line
    assert "core-hours allocated to 1 job." in line


def test_the_sif_sha256_is_recorded_and_shown(reported: tuple[Project, dict[str, Any]]) -> None:
    proj, check_run = reported
    (deployed,) = proj.deploy_record()["clusters"]
    remote = login()
    try:
        seen = on_login(remote, ["sha256sum", "--", deployed["sif_path"]]).stdout.split()[0]
    finally:
        remote.close()
    assert deployed["sif_sha256"] == seen == proj.results()["clusters"][0]["sif_sha256"]
    assert f"(sha256 `{seen}`)" in check_run["output"]["summary"]


def test_the_image_reference_is_one_the_registry_resolves(reported: tuple[Project, dict[str, Any]]) -> None:
    from hpcci.backends.builders.spec import RegistryAuth
    from hpcci.backends.registry import RegistryClient
    from hpcci.references import Destination, parse_reference

    proj, check_run = reported
    found = re.search(r"\*\*Image:\*\* `([^`]+)`", check_run["output"]["summary"])
    assert found is not None
    ref = parse_reference(found[1])
    assert ref.digest.startswith("sha256:") and ref.host == os.environ.get("HPCCI_REGISTRY", "127.0.0.1:5000")
    auth = RegistryAuth(
        ref.host, os.environ["HPCCI_REGISTRY_USERNAME"], os.environ["HPCCI_REGISTRY_PASSWORD"], insecure=True
    )
    with RegistryClient(Destination(ref.host, ref.path, insecure=True), auth) as client:
        info = client.head(ref.digest)
        manifest = client.get(ref.digest)  # the pull: the manifest by the reference the check run shows
    assert info is not None and info.digest == ref.digest
    # ... and it is the very image that was deployed: its config digest is the image id the SIF was made from
    assert manifest["config"]["digest"] == proj.results()["clusters"][0]["image_digest"]


def test_a_redeploy_from_the_cache_reads_the_recorded_sif_sha256_instead_of_hashing(
    reported: tuple[Project, dict[str, Any]],
) -> None:
    proj, _ = reported  # last in this module: it rewrites the project's records
    first = proj.deploy_record()["clusters"][0]
    done = hpcci(proj, "deploy")
    assert done.returncode == 0, done.stderr[-3000:]
    again = proj.deploy_record()["clusters"][0]
    assert again["cache_hit"] and again["sif_sha256"] == first["sif_sha256"]
    assert f"+ cat -- {first['sif_path']}.sha256" in done.stderr
    assert f"sha256sum -- {first['sif_path']}" not in done.stderr
    (cluster,) = proj.results()["clusters"]
    assert cluster["usage"]["stage_s"] is None and cluster["usage"]["convert_s"] is None  # nothing staged
