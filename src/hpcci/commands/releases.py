"""`hpcci releases --cluster NAME`: the versions installed as modules there; also `hpcci plan`'s release section.

Reads the manifest hpcci keeps next to the releases (<root>/<name>/releases.json) over SSH: plain `cat`, so it
works through an automation node's allowed commands. `hpcci rollback` shares the loading (commands/common.py, wiring.py).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from hpcci import wiring
from hpcci.commands import common
from hpcci.log import Log

if TYPE_CHECKING:
    from hpcci.config.models import Cluster
    from hpcci.stages.release.manifest import Manifest


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_release_cluster_arguments(p)
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")


def table(manifest: Manifest) -> list[str]:
    """One line per installed version: what `hpcci releases` prints."""
    head = ("VERSION", "DEFAULT", "TAG", "COMMIT", "IMAGE DIGEST", "SIF SHA256", "INSTALLED", "RUN")
    rows = [head] + [
        (e.version, "*" if e.version == manifest.default else "", e.tag, e.commit[:12] or "-",
         e.image_digest[:19], e.sif_sha256[:12] or "-", e.installed, e.run_url or e.run_id or "-")
        for e in manifest.releases
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def main(args: argparse.Namespace, log: Log) -> int:
    cluster, name = common.release_target(args)
    remote, releases = wiring.connect_releases(cluster, name, log)
    try:
        manifest = releases.manifest()
    finally:
        remote.close()
    if args.json:
        print(json.dumps(asdict(manifest), indent=2))
        return 0
    assert cluster.release is not None
    default = manifest.default or "none"
    print(f"{name} on {cluster.name}: {len(manifest.releases)} installed, default {default} "
          f"(module use {releases.paths.modules.rsplit('/', 1)[0]})")  # fmt: skip
    if manifest.releases:
        print("\n".join(table(manifest)))
    return 0


# -- plan -----------------------------------------------------------------------------------------------------------


def plan_section(ctx: common.PlanContext) -> str:
    """Per cluster with a release section: the steps that install a tested release, the modulefile and wrappers."""
    from hpcci.stages.release.plan import ReleaseRequest, release_request

    pipe = ctx.pipeline
    request = release_request(ctx.event, pipe.image.name, "RUN_ID")
    out = []
    if request is None:
        out.append(
            "(not a release tag: showing what tag vVERSION would install once every smoke test passed)"
        )
        request = ReleaseRequest("vVERSION", "VERSION", ctx.event.sha or "COMMIT", pipe.image.name, "RUN_ID")
    for name, cluster in ctx.clusters.items():
        if cluster.release is None:
            out.append(f"### cluster {name}: no release section (a release installs nothing there)")
            continue
        out += _cluster_lines(ctx, cluster, request)
    return "\n".join(out)


def _cluster_lines(ctx: common.PlanContext, cluster: Cluster, request: object) -> list[str]:
    from dataclasses import replace

    from hpcci.stages.cluster import runtime
    from hpcci.stages.deploy.paths import unresolved_paths
    from hpcci.stages.release import plan as R
    from hpcci.stages.release.manifest import Entry, Manifest
    from hpcci.stages.release.modulefile import ModuleInfo

    assert isinstance(request, R.ReleaseRequest) and cluster.release is not None
    cfg, v = cluster.release, request.version
    paths = R.release_paths(cluster, R.module_name(cfg, request.image), None)
    digest = _digest(ctx, cluster)
    cache_sif = runtime(cluster).image_path(unresolved_paths(cluster, "RUN_ID").cache, digest.split(":")[-1])
    tests = ", ".join(f"{t.name} (job JOB_ID)" for t in ctx.pipeline.tests) or "none"
    info = ModuleInfo(
        paths.name, v, request.tag, request.commit, request.image, digest, paths.sif(v),
        f"{paths.version_dir(v)}/bin", tuple(dict.fromkeys([*cluster.modules, *cluster.runtime.modules])),
        f"smoke tests passed on cluster {cluster.name}: {tests}", "RUN_URL",
    )  # fmt: skip
    install = R.plan_install(cluster, paths, info, cache_sif, "RUN_ID")
    entry = Entry(v, request.tag, request.commit, request.image, digest, info.sif, "SIF_SHA256", "DATE", cluster.name,
                  "RUN_ID", "RUN_URL", info.tested)  # fmt: skip
    manifest = replace(Manifest(paths.name).with_entry(entry), default=v if cfg.make_default else None)
    pointer = R.pointer_steps(cfg, paths, v, "RUN_ID") if cfg.make_default else []
    return [
        f"### cluster {cluster.name}: {paths.name}/{v} as a {cfg.module_system} module, only when every smoke test "
        "passed (paths resolved in a login shell at deploy time)",
        *R.step_lines([*R.mkdir_steps(cfg, paths), R.lock_step(paths), R.read_manifest_step(paths)]),
        "the version installed already from this image: nothing else runs; from another image: refused unless "
        "--replace-release; else:",
        *R.step_lines(install.steps()),
        *(
            ["the default moves (not to a pre-release or an older version):", *R.step_lines(pointer)]
            if pointer
            else []
        ),
        *R.step_lines(R.manifest_steps(cfg, paths, manifest, "RUN_ID")),
        f"retention keeps {cfg.keep} versions (never the default); each older one:",
        *R.step_lines([*R.removal_steps(cfg, paths, "OLD_VERSION"), R.unlock_step(paths)]),
        f"users: module use {cfg.modulefiles}; module load {paths.name}/{v}; {paths.name}-run ARGS",
    ]


def _digest(ctx: common.PlanContext, cluster: Cluster) -> str:
    """The image digest the cluster would run: from the publish record when there is one."""
    from hpcci import records as rec
    from hpcci.stages.deploy.plan import platforms_needed
    from hpcci.stages.sources import sources_from_publish

    path = ctx.records / rec.RECORD_FILES[rec.PublishRecord]
    if path.exists():
        sources = sources_from_publish(rec.read(rec.PublishRecord, path))
        for platform in platforms_needed(ctx.pipeline, cluster):
            if platform in sources:
                return sources[platform].digest
    return "sha256:" + "0" * 64
