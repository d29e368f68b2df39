"""An installed release keeps its blobs in the cluster's blob store (staging.layers + a `release` section): a
release-tag deploy of a layer-staged image writes the image's blobs into `<image_cache>/blobs/keep`; an eviction under
a tiny staging.blob_store_gib then spares them while an unrelated image's blobs go; a release retention removes loses
its lines.

The session has its own image cache (its own blob store) and its own release folders on the login node. Needs
`scripts/local-stack up docker registry cluster`; skips without them (fails under CI=true).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from deploy_support import on_login
from layer_support import MiB, Session, write_archive
from test_release import hpcci as tagged
from test_release import release_record

from hpcci.config.load import load_cluster
from hpcci.stages.layers.index import index_archive

FIB = {"name": "fib", "command": "python3 /app/fib.py 10", "expect": {"output": "^55$"},
       "resources": {"time": "00:05:00", "memory": "512M"}}  # fmt: skip


def _with_release(s: Session, keep: int) -> None:
    """The session's cluster config with a release section in the session's own folder."""
    path = s.project.root / "cluster-configs" / "local.yaml"
    data = yaml.safe_load(path.read_text())
    base = s.cache.rsplit("/", 1)[0]
    data["release"] = {"root": f"{base}/apps", "modulefiles": f"{base}/modulefiles", "module_system": "lmod",
                       "keep": keep}  # fmt: skip
    path.write_text(yaml.safe_dump(data))
    s.cluster = load_cluster(path)


def _keep_lines(s: Session) -> list[str]:
    done = on_login(s.remote, ["cat", "--", f"{s.cache}/blobs/keep"])
    return done.stdout.splitlines() if done.ok else []


def _present(s: Session) -> set[str]:
    return {f"sha256:{n}" for n in on_login(s.remote, ["ls", "-1", "--", s.store()]).stdout.split()}


def test_an_installed_releases_blobs_are_kept_and_an_unrelated_images_are_evicted(
    fib_tar: Path, tmp_path: Path, require: Callable[..., None]
) -> None:
    require("docker", "cluster")
    s = Session(tmp_path, "sftp", limit_gib=1 * MiB / (1 << 30), tests=(FIB,))  # less than any one image
    try:
        _with_release(s, keep=1)
        fib = index_archive(fib_tar)
        first = tagged(s.project, "deploy", "--image-tar", str(fib_tar), tag="v0.1.0")
        assert first.returncode == 0, first.stderr[-3000:]
        module = release_record(s.project)["module"]
        assert release_record(s.project)["status"] == "installed" and module.endswith("/0.1.0"), first.stderr
        name = module.split("/", 1)[0]
        listed = on_login(
            s.remote, ["cat", "--", f"{s.cache}/blobs/images/{fib.image_id.removeprefix('sha256:')}"]
        )
        assert listed.stdout.split() == [b.digest for b in fib.blobs()]  # written by the layer staging
        assert _keep_lines(s) == [f"{b.digest}  # {name}/0.1.0" for b in fib.blobs()]
        assert f"blob store keep-list: {name}/0.1.0: {len(fib.blobs())} blob(s) kept" in first.stderr

        # two unrelated images: the second deploy finds the store over its limit and evicts what is not kept
        a = write_archive(tmp_path / "a.tar", [("keep-a-1", 1 * MiB), ("keep-a-2", 1 * MiB)])
        b = write_archive(tmp_path / "b.tar", [("keep-b-1", 1 * MiB)])
        s.deploy(s.source(a))
        s.deploy(s.source(b))
        now = _present(s)
        assert {x.digest for x in fib.blobs()} <= now, "an installed release's blobs were evicted"
        assert {x.digest for x in index_archive(b).blobs()} <= now  # the image being deployed
        assert not {x.digest for x in index_archive(a).blobs()} & now, "an unrelated image's blobs were kept"

        # 0.2.0 of the same image with keep: 1 - retention removes 0.1.0, and its lines go with it
        second = tagged(s.project, "deploy", "--image-tar", str(fib_tar), tag="v0.2.0")
        assert second.returncode == 0, second.stderr[-3000:]
        assert release_record(s.project)["removed"] == ["0.1.0"], release_record(s.project)
        assert _keep_lines(s) == [f"{b.digest}  # {name}/0.2.0" for b in fib.blobs()]
    finally:
        s.close()
