"""Promotion runs the plan's own steps, in order, and decides from the manifest: install, no-op, refuse, retention."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hpcci import records
from hpcci.config.load import load_cluster
from hpcci.config.models import Cluster
from hpcci.errors import RemoteError
from hpcci.process import Completed
from hpcci.records import ClusterDeploy, ClusterResult
from hpcci.stages.deploy.outcome import Outcome
from hpcci.stages.deploy.run import promote
from hpcci.stages.release.manifest import Entry, Manifest, render
from hpcci.stages.release.modulefile import ModuleInfo
from hpcci.stages.release.plan import (
    LinkOrCopy,
    ReleaseRequest,
    ReleaseStep,
    lock_step,
    manifest_steps,
    mkdir_steps,
    plan_install,
    pointer_steps,
    read_manifest_step,
    release_paths,
    unlock_step,
)
from hpcci.stages.release.promote import Releases, where_tested
from hpcci.stages.steps import Command

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab" * 32
CACHE = "/scratch/images/" + "ab" * 32 + ".sif"


class FilesRemote:
    """A login node as far as promotion sees it: commands succeed, except reading a manifest that is not there,
    `test -e` of what does not exist and moving aside a folder that is not there. Records what ran."""

    host = "login"

    def __init__(self, manifest: str = "", existing: Sequence[str] = ()) -> None:
        self.manifest = manifest
        self.existing = set(existing)
        self.ran: list[list[str]] = []

    def run(self, argv: Sequence[str], *, check: bool = False, **_: Any) -> Completed:
        done = self.answer(list(argv))
        if check and not done.ok:
            raise RemoteError(f"cluster local: {argv[0]} failed: {done.stderr}")
        return done

    def answer(self, argv: list[str]) -> Completed:
        self.ran.append(argv)
        if argv[:2] == ["bash", "-lc"]:
            return Completed(tuple(argv), 0, "PROJECT=/proj\0HOME=/home/u\0", "")
        if argv[0] == "cat":
            ok = bool(self.manifest)
            return Completed(tuple(argv), 0 if ok else 1, self.manifest, "" if ok else "cat: No such file")
        if argv[0] == "test":
            return Completed(tuple(argv), 0 if argv[-1] in self.existing else 1, "", "")
        if argv[0] == "sha256sum":
            return Completed(tuple(argv), 0, "f" * 64 + "  " + argv[-1] + "\n", "")
        if argv[:2] == ["mv", "-T"] and argv[-1].endswith(".old") and argv[-2] not in self.existing:
            return Completed(tuple(argv), 1, "", "mv: cannot stat")
        return Completed(tuple(argv), 0, "", "")

    def write_text(self, remote: str, text: str, *, mode: int = 0o644) -> None:
        self.ran.append(["write", remote, text])

    def put(self, *_: Any, **__: Any) -> None:
        raise AssertionError("promotion uploads nothing")

    def read_tail(self, remote: str, max_bytes: int) -> str:
        raise AssertionError("promotion reads with cat")

    def close(self) -> None:
        pass


def local(**release: Any) -> Cluster:
    cluster = load_cluster(ROOT / "cluster-configs" / "local.yaml")
    assert cluster.release is not None
    return cluster.model_copy(update={"release": cluster.release.model_copy(update=release)})


def result(verdict: str = "pass") -> ClusterResult:
    test = records.TestResult("local", "fib", "linux/amd64", "7", "COMPLETED", 0, 1.0, verdict, "")  # type: ignore[arg-type]
    return ClusterResult("local", "linux/amd64", [test], DIGEST, sif_path=CACHE)


def outcome(verdict: str = "pass") -> Outcome:
    deploy = ClusterDeploy("local", "h", "linux/amd64", "sftp", None, None, CACHE, DIGEST)
    return Outcome(deploy, result(verdict))


REQUEST = ReleaseRequest("v0.1.0", "0.1.0", "c" * 40, "docker.io/o/fibonacci", "run-1", "https://gh/runs/1")


def shown(step: ReleaseStep) -> list[str]:
    """What the remote saw of a step: a command's argv, a file written, or the hard link (it succeeds here)."""
    if isinstance(step, LinkOrCopy):
        return step.link.argv
    return step.argv if isinstance(step, Command) else ["write", step.path, step.text]


def test_a_fresh_install_runs_exactly_the_planned_steps_in_order() -> None:
    cluster, remote = local(), FilesRemote()
    done = promote(outcome(), cluster, remote, REQUEST, lambda _: None)
    assert done.error is None and done.result.release is not None
    assert done.result.release.status == "installed" and done.result.release.default
    cfg = cluster.release
    assert cfg is not None
    paths = release_paths(cluster, "fibonacci", {"PROJECT": "/proj"})
    info = ModuleInfo("fibonacci", "0.1.0", "v0.1.0", "c" * 40, "docker.io/o/fibonacci", DIGEST,
                      paths.sif("0.1.0"), "/proj/apps/fibonacci/0.1.0/bin", ("apptainer",),
                      where_tested(result()), "https://gh/runs/1")  # fmt: skip
    plan = plan_install(cluster, paths, info, CACHE, "run-1")
    stage = [shown(s) for s in plan.stage]
    written = [r for r in remote.ran if r[0] == "write" and r[1].endswith("releases.json.run-1.part")]
    manifest = json.loads(written[0][2])
    expected_manifest = [
        shown(s) for s in manifest_steps(cfg, paths, Manifest(**_manifest(manifest)), "run-1")
    ]
    assert remote.ran[1:] == [
        *[s.argv for s in mkdir_steps(cfg, paths)],
        lock_step(paths).argv,
        read_manifest_step(paths).argv,
        ["test", "-e", paths.manifest],  # cat failed: is there no manifest yet, or an unreadable one?
        *stage,
        plan.checksum.argv,
        ["test", "-e", paths.version_dir("0.1.0")],  # nothing to move aside: no `mv -T` that fails
        *[s.argv for s in plan.commit],
        *[shown(s) for s in pointer_steps(cfg, paths, "0.1.0", "run-1")],
        *expected_manifest,
        unlock_step(paths).argv,
    ]
    assert manifest["default"] == "0.1.0" and manifest["releases"][0]["sif_sha256"] == "f" * 64


def test_the_sif_sha256_the_deploy_recorded_is_not_computed_again() -> None:
    remote, known = FilesRemote(), "a" * 64
    before = outcome()
    before = Outcome(before.deploy, dataclasses.replace(before.result, sif_sha256=known))
    done = promote(before, local(), remote, REQUEST, lambda _: None)
    assert done.error is None
    assert not [r for r in remote.ran if r and r[0] == "sha256sum"]
    written = [r for r in remote.ran if r[0] == "write" and r[1].endswith("releases.json.run-1.part")]
    assert json.loads(written[0][2])["releases"][0]["sif_sha256"] == known


def _manifest(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": data["name"],
        "default": data["default"],
        "releases": [Entry(**e) for e in data["releases"]],
    }


def installed(*versions: str, default: str, digest: str = DIGEST) -> str:
    m = Manifest("fibonacci", default)
    for v in versions:
        m = m.with_entry(Entry(v, f"v{v}", "c" * 40, "i", digest, f"/proj/apps/fibonacci/{v}/fibonacci.sif", "f" * 64,
                               "2026-11-26T00:00:00Z"))  # fmt: skip
    return render(m)


def test_the_same_image_again_changes_nothing() -> None:
    remote = FilesRemote(installed("0.1.0", default="0.1.0"), ["/proj/modulefiles/fibonacci/0.1.0.lua"])
    done = promote(outcome(), local(), remote, REQUEST, lambda _: None)
    assert done.result.release is not None and done.result.release.status == "unchanged"
    assert not any(r[0] in ("ln", "write") or r[:2] == ["mv", "-T"] for r in remote.ran)


def test_another_image_under_the_version_is_refused_and_nothing_is_written() -> None:
    remote = FilesRemote(installed("0.1.0", default="0.1.0", digest="sha256:" + "0" * 64))
    done = promote(outcome(), local(), remote, REQUEST, lambda _: None)
    assert done.result.release is not None and done.result.release.status == "refused"
    assert done.error is not None and done.error.exit_code == 92
    assert str(done.error).startswith(
        "cluster local: fibonacci/0.1.0 is installed already from image sha256:000"
    )
    assert "--replace-release" in str(done.error)
    assert not any(r[0] in ("ln", "write") for r in remote.ran)
    assert remote.ran[-1] == ["rm", "-rf", "--", "/proj/apps/fibonacci/.hpcci-lock"]  # the lock is released


def test_a_failed_test_installs_nothing_and_contacts_nobody() -> None:
    remote = FilesRemote()
    done = promote(outcome("timed_out"), local(), remote, REQUEST, lambda _: None)
    assert done.result.release is not None and done.result.release.status == "not_installed"
    assert done.error is None and remote.ran == []


def test_retention_removes_the_oldest_modulefile_first_then_its_folder() -> None:
    logged: list[str] = []
    manifest = installed("0.0.1", "0.0.2", "0.0.3", default="0.0.3")
    remote = FilesRemote(manifest)
    request = replace(REQUEST, tag="v0.1.0")
    done = promote(outcome(), local(keep=3), remote, request, logged.append)
    assert done.result.release is not None and done.result.release.removed == ["0.0.1"]
    removal = remote.ran[-3:-1]
    assert removal == [["rm", "-f", "--", "/proj/modulefiles/fibonacci/0.0.1.lua"],
                       ["rm", "-rf", "--", "/proj/apps/fibonacci/0.0.1"]]  # fmt: skip
    assert "retention (keep 3): removing fibonacci/0.0.1" in logged


def test_a_release_whose_install_fails_leaves_no_temporary_files() -> None:
    class Refusing(FilesRemote):
        def answer(self, argv: list[str]) -> Completed:
            done = super().answer(argv)
            return (
                replace(done, returncode=1, stderr="chgrp: permission denied")
                if argv[:2] == ["chgrp", "-R"]
                else done
            )

    remote = Refusing()
    done = promote(outcome(), local(), remote, REQUEST, lambda _: None)
    assert done.result.release is not None and done.result.release.status == "failed"
    assert done.error is not None and done.error.exit_code == 90
    assert remote.ran[-3:] == [
        ["rm", "-rf", "--", "/proj/apps/fibonacci/.0.1.0.run-1.part"],
        ["rm", "-f", "--", "/proj/modulefiles/fibonacci/.0.1.0.lua.run-1.part"],
        ["rm", "-rf", "--", "/proj/apps/fibonacci/.hpcci-lock"],
    ]
    assert not any(r[:2] == ["mv", "-T"] for r in remote.ran)  # nothing was renamed into sight


def test_releases_holds_its_paths_resolved_in_a_login_shell() -> None:
    releases = Releases(local(), FilesRemote(), "fibonacci", print)
    assert releases.paths.app == "/proj/apps/fibonacci"


def test_an_image_name_that_would_leave_the_release_root_installs_nothing() -> None:
    remote = FilesRemote()
    request = replace(REQUEST, image="docker.io/o/..")
    done = promote(outcome(), local(name=None), remote, request, lambda _: None)
    assert done.result.release is not None and done.result.release.status == "failed"
    assert done.error is not None and "set release.name" in str(done.error)
    assert remote.ran == []


def test_rollback_to_a_version_that_is_not_installed_changes_nothing_on_the_cluster() -> None:
    from hpcci.errors import ReleaseNotInstalled

    cluster, remote = local(), FilesRemote()  # no manifest: e.g. a mistyped --name
    releases = Releases(cluster, remote, "fibonaci", lambda _: None)
    with pytest.raises(ReleaseNotInstalled, match=r"fibonaci/0\.1\.0 is not installed \(installed: none\)"):
        releases.rollback("0.1.0", "rollback-1")
    changed = [r for r in remote.ran if r[0] not in ("bash", "cat", "test")]
    assert changed == []


class NoWriteRemote(FilesRemote):
    """A release root this user may not write in: the lock's mkdir fails, and no lock exists."""

    def answer(self, argv: list[str]) -> Completed:
        if argv[0] == "mkdir" and argv[-1].endswith(".hpcci-lock"):
            self.ran.append(argv)
            return Completed(tuple(argv), 1, "", "mkdir: cannot create directory: Permission denied")
        return super().answer(argv)


def test_a_lock_that_cannot_be_made_is_said_at_once_not_blamed_on_another_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hpcci.errors import ReleaseError
    from hpcci.stages.release import promote as promote_module

    monkeypatch.setattr(promote_module, "LOCK_WAIT", 0.0)
    releases = Releases(local(), NoWriteRemote(manifest="x"), "fibonacci", lambda _: None)
    with (
        pytest.raises(
            ReleaseError, match=r"cannot make the lock .*: Permission denied; check that you may write"
        ),
        releases.locked(),
    ):
        pass


def test_a_replacement_that_fails_after_moving_the_old_folder_aside_moves_it_back() -> None:
    v_dir, tmp = "/proj/apps/fibonacci/0.1.0", "/proj/apps/fibonacci/.0.1.0.run-1.part"
    old = "/proj/apps/fibonacci/.0.1.0.run-1.old"

    class FullDisk(FilesRemote):
        def answer(self, argv: list[str]) -> Completed:
            done = super().answer(argv)
            return (
                replace(done, returncode=1, stderr="mv: No space left") if argv[-2:] == [tmp, v_dir] else done
            )

    manifest = installed("0.1.0", default="0.1.0", digest="sha256:" + "0" * 64)
    remote = FullDisk(manifest, [v_dir, "/proj/modulefiles/fibonacci/0.1.0.lua"])
    done = promote(outcome(), local(), remote, replace(REQUEST, replace=True), lambda _: None)
    assert done.result.release is not None and done.result.release.status == "failed"
    assert ["mv", "-T", "--", v_dir, old] in remote.ran
    assert remote.ran[-2:] == [
        ["mv", "-T", "--", old, v_dir],
        ["rm", "-rf", "--", "/proj/apps/fibonacci/.hpcci-lock"],
    ]


def test_a_failed_fresh_install_moves_nothing_back() -> None:
    tmp, v_dir = "/proj/apps/fibonacci/.0.1.0.run-1.part", "/proj/apps/fibonacci/0.1.0"

    class FullDisk(FilesRemote):
        def answer(self, argv: list[str]) -> Completed:
            done = super().answer(argv)
            return (
                replace(done, returncode=1, stderr="mv: No space left") if argv[-2:] == [tmp, v_dir] else done
            )

    remote = FullDisk()
    promote(outcome(), local(), remote, REQUEST, lambda _: None)
    assert not any(r[:4] == ["mv", "-T", "--", "/proj/apps/fibonacci/.0.1.0.run-1.old"] for r in remote.ran)


def test_no_manifest_yet_is_recognised_whatever_language_cat_speaks() -> None:
    class German(FilesRemote):
        def answer(self, argv: list[str]) -> Completed:
            done = super().answer(argv)
            if argv[0] == "cat":
                return replace(done, stderr="cat: releases.json: Datei oder Verzeichnis nicht gefunden")
            return done

    assert Releases(local(), German(), "fibonacci", lambda _: None).manifest().releases == []


def test_a_manifest_that_exists_but_cannot_be_read_is_an_error() -> None:
    from hpcci.errors import ReleaseError

    manifest = "/proj/apps/fibonacci/releases.json"

    class Unreadable(FilesRemote):
        def answer(self, argv: list[str]) -> Completed:
            done = super().answer(argv)
            return replace(done, returncode=1, stderr="cat: Permission denied") if argv[0] == "cat" else done

    releases = Releases(local(), Unreadable(existing=[manifest]), "fibonacci", lambda _: None)
    with pytest.raises(
        ReleaseError, match=r"cannot read /proj/apps/fibonacci/releases\.json: cat: Permission denied"
    ):
        releases.manifest()


def test_a_first_install_runs_no_mv_aside_that_fails_and_a_replacement_moves_the_old_folder() -> None:
    v_dir, old = "/proj/apps/fibonacci/0.1.0", "/proj/apps/fibonacci/.0.1.0.run-1.old"
    remote = FilesRemote()
    promote(outcome(), local(), remote, REQUEST, lambda _: None)
    assert [r for r in remote.ran if old in r] == []
    manifest = installed("0.1.0", default="0.1.0", digest="sha256:" + "0" * 64)
    remote = FilesRemote(manifest, [v_dir, "/proj/modulefiles/fibonacci/0.1.0.lua"])
    done = promote(outcome(), local(), remote, replace(REQUEST, replace=True), lambda _: None)
    assert done.result.release is not None and done.result.release.status == "installed"
    assert [r for r in remote.ran if old in r] == [["mv", "-T", "--", v_dir, old], ["rm", "-rf", "--", old]]
