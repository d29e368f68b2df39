"""The adoption workflow (examples/fibonacci/.github/workflows/hpcci.yml) run by act, as GitHub would run it.

Push: build both platforms and publish to the registry and S3 (no deploy: deploy.triggers is [tag,
workflow_dispatch]). Tag v1.2.3: also deploy to the local cluster and end with a completed, successful check run
on the tagged commit. Pull request (deploy.triggers including pull_request): the checks land on the PR's head
commit, not on the merge commit. A pull request from a fork: built, but neither published nor deployed (it has
no secrets on GitHub). A failing smoke test: the workflow fails and the check run says failure. An unreachable
cluster or a manual dispatch: the check run is completed either way, never left in progress.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from act_harness import UserRepo

from hpcci.config.load import load_pipeline

PLATFORMS = {"linux/amd64", "linux/arm64"}
MANIFEST_LISTS = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def repository_payload(repo: UserRepo) -> dict[str, Any]:
    owner, name = repo.repository.split("/")
    return {"full_name": repo.repository, "name": name, "owner": {"login": owner}, "default_branch": "main"}


def push_event(repo: UserRepo, ref: str, sha: str) -> dict[str, Any]:
    return {"ref": ref, "before": "0" * 40, "after": sha, "head_commit": {"id": sha}, **_repo(repo)}


def _repo(repo: UserRepo) -> dict[str, Any]:
    return {"repository": repository_payload(repo)}


def registry_platforms(repo: UserRepo, tag: str) -> set[str]:
    """The platforms of the manifest list the registry serves for ``tag``."""
    import httpx

    stack = repo.stack
    url = f"http://{stack['HPCCI_REGISTRY']}/v2/octo-org/fibonacci/manifests/{tag}"
    auth = (stack["HPCCI_REGISTRY_USERNAME"], stack["HPCCI_REGISTRY_PASSWORD"])
    r = httpx.get(url, auth=auth, headers={"Accept": MANIFEST_LISTS}, timeout=30)
    assert r.status_code == 200, f"{url}: {r.status_code} {r.text[:200]}"
    index = r.json()
    return {f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index.get("manifests", [])}


def registry_has(repo: UserRepo, tag: str) -> bool:
    import httpx

    stack = repo.stack
    url = f"http://{stack['HPCCI_REGISTRY']}/v2/octo-org/fibonacci/manifests/{tag}"
    auth = (stack["HPCCI_REGISTRY_USERNAME"], stack["HPCCI_REGISTRY_PASSWORD"])
    r = httpx.head(url, auth=auth, headers={"Accept": MANIFEST_LISTS}, timeout=30)
    assert r.status_code in (200, 404), f"{url}: {r.status_code}"
    return r.status_code == 200


def s3_tars(repo: UserRepo, tag: str) -> dict[str, int]:
    """platform -> size of the docker-archive tar that the S3 index files under ``tag`` (each object HEADed)."""
    import boto3

    from hpcci.stages.publish import s3_index_key

    stack = repo.stack
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name=stack["AWS_DEFAULT_REGION"])
    bucket = stack.get("HPCCI_S3_BUCKET", "hpcci")
    index_key = s3_index_key("images", "127.0.0.1:5000/octo-org/fibonacci")
    index = json.loads(s3.get_object(Bucket=bucket, Key=index_key)["Body"].read())
    entry = index["tags"].get(tag)
    assert entry, f"s3://{bucket}/{index_key} does not list tag {tag} (it lists {sorted(index['tags'])})"
    return {
        platform: s3.head_object(Bucket=bucket, Key=obj["key"])["ContentLength"]
        for platform, obj in entry["platforms"].items()
    }


def completed(runs: list[dict[str, Any]]) -> dict[str, str | None]:
    return {r["name"]: r["conclusion"] for r in runs if r["status"] == "completed"}


def test_push_builds_both_platforms_and_publishes_to_registry_and_s3(
    make_repo: Callable[[], UserRepo],
) -> None:
    repo = make_repo()
    sha = repo.head()

    result = repo.act("push", push_event(repo, "refs/heads/main", sha))

    assert result.ok, result.tail()
    tag = f"sha-{sha[:7]}"
    assert registry_platforms(repo, tag) >= PLATFORMS
    tars = s3_tars(repo, tag)
    assert set(tars) >= PLATFORMS
    assert all(size > 0 for size in tars.values())
    assert repo.check_runs(sha) == [], (
        "a branch push deploys (and reports) only when deploy.triggers has push"
    )


def test_tag_push_deploys_to_the_cluster_and_completes_a_successful_check_run(
    make_repo: Callable[[], UserRepo],
) -> None:
    repo = make_repo()
    sha = repo.head()
    repo.git("tag", "v1.2.3")

    result = repo.act("push", push_event(repo, "refs/tags/v1.2.3", sha))

    assert result.ok, result.tail()
    assert registry_platforms(repo, "1.2.3") >= PLATFORMS
    runs = repo.check_runs(sha)
    assert runs and all(r["status"] == "completed" for r in runs), runs
    assert set(completed(runs).values()) == {"success"}, runs
    (local,) = [r for r in runs if "local" in r["name"]]
    assert "fib" in local["output"]["summary"], local["output"]


def test_pull_request_puts_the_checks_on_the_head_commit(make_repo: Callable[[], UserRepo]) -> None:
    repo = make_repo()
    repo.edit(
        "hpcci.yaml", "triggers: [tag, workflow_dispatch]", "triggers: [tag, workflow_dispatch, pull_request]"
    )
    base = repo.commit("deploy pull requests too")
    repo.git("checkout", "-q", "-b", "feature")
    repo.edit("fib.py", "fib_num = int(sys.argv[1])", "fib_num = int(sys.argv[1])  # the n-th number")
    head = repo.commit("explain fib_num")
    # GitHub runs pull requests on a merge commit (refs/pull/N/merge); the checks belong on the PR's head.
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "Merge feature into main", "feature")
    merge = repo.head()
    payload = {
        "action": "synchronize",
        "number": 7,
        "pull_request": {
            "number": 7,
            "head": {"sha": head, "ref": "feature", "repo": repository_payload(repo)},
            "base": {"sha": base, "ref": "main", "repo": repository_payload(repo)},
        },
        **_repo(repo),
    }

    result = repo.act("pull_request", payload)

    assert result.ok, result.tail()
    runs = repo.check_runs(head)
    assert runs and set(completed(runs).values()) == {"success"}, runs
    assert repo.check_runs(merge) == [], "checks went to the merge commit instead of the PR's head"


def test_pull_request_from_a_fork_is_built_but_neither_published_nor_deployed(
    make_repo: Callable[[], UserRepo],
) -> None:
    repo = make_repo()
    repo.edit(
        "hpcci.yaml", "triggers: [tag, workflow_dispatch]", "triggers: [tag, workflow_dispatch, pull_request]"
    )
    head = repo.commit("a contribution from a fork")
    number = 9000 + int(head[:4], 16)  # its own pr-N tag: nothing else ever pushed it
    fork = {**repository_payload(repo), "full_name": "someone/fibonacci", "owner": {"login": "someone"}}
    payload = {
        "action": "opened",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"sha": head, "ref": "patch-1", "repo": fork},
            "base": {"sha": head, "ref": "main", "repo": repository_payload(repo)},
        },
        **_repo(repo),
    }

    result = repo.act("pull_request", payload)

    assert result.ok, result.tail()
    ran = result.steps_run()
    assert "Build" in ran
    assert "Publish" not in ran and "Deploy and smoke-test" not in ran, ran
    assert not registry_has(repo, f"pr-{number}")
    assert repo.check_runs(head) == []


def test_failing_smoke_test_fails_the_workflow_and_the_check_run(make_repo: Callable[[], UserRepo]) -> None:
    repo = make_repo()
    repo.edit("hpcci.yaml", 'output: "^55$"', 'output: "^56$"')
    sha = repo.commit("expect the wrong Fibonacci number")
    repo.git("tag", "v1.2.4")

    result = repo.act("push", push_event(repo, "refs/tags/v1.2.4", sha))

    assert not result.ok, "the workflow passed although the smoke test's expected output is wrong"
    runs = repo.check_runs(sha)
    assert runs and all(r["status"] == "completed" for r in runs), runs
    (local,) = [r for r in runs if "local" in r["name"]]
    assert local["conclusion"] == "failure", local
    assert "^56$" in local["output"]["summary"], local["output"]
    fib_line = load_pipeline(repo.path / "hpcci.yaml").test_line(0)
    assert [(a["path"], a["start_line"], a["annotation_level"]) for a in local["annotations"]] == [
        ("hpcci.yaml", fib_line, "failure")
    ], "the failure is annotated on the smoke test's line in hpcci.yaml"


def test_unreachable_cluster_still_completes_its_check_run_as_failed(
    make_repo: Callable[[], UserRepo],
) -> None:
    repo = make_repo()
    repo.edit("cluster-configs/local.yaml", "port: 2222", "port: 2299")  # nothing listens there
    sha = repo.commit("point the cluster at a closed port")
    repo.git("tag", "v1.2.5")

    result = repo.act("push", push_event(repo, "refs/tags/v1.2.5", sha))

    assert not result.ok, "the workflow passed although the cluster cannot be reached"
    runs = repo.check_runs(sha)
    assert runs and all(r["status"] == "completed" for r in runs), f"a check run was left in progress: {runs}"
    assert {r["conclusion"] for r in runs} == {"failure"}, runs


def test_manual_dispatch_deploys_the_branch(make_repo: Callable[[], UserRepo]) -> None:
    repo = make_repo()
    sha = repo.head()

    result = repo.act("workflow_dispatch", {"ref": "refs/heads/main", "inputs": {}, **_repo(repo)})

    assert result.ok, result.tail()
    runs = repo.check_runs(sha)
    assert runs and {r["conclusion"] for r in runs} == {"success"}, runs
