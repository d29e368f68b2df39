"""Promotion: after a release-tag deploy whose smoke tests all passed, install the release as a module; rollback.

Runs the steps of stages/release.py over the cluster's Remote (plain commands and SFTP, so an automation node's
allowed commands suffice), one install or rollback at a time per application (a lock folder). A release is promoted
only when every smoke test on the cluster passed: one failure, timeout, cancellation or cluster problem means
nothing is installed, and the record says why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

from hpcci.backends.ssh.remote import Remote
from hpcci.config.models import Cluster
from hpcci.digests import parse_sha256sum
from hpcci.errors import ConfigError, HpcciError, ReleaseError, ReleaseNotInstalled, ReleaseRefused
from hpcci.records import ClusterResult, ReleaseOutcome
from hpcci.shell import login_argv, parse_env0
from hpcci.stages.cluster import automation
from hpcci.stages.release import manifest as rm
from hpcci.stages.release.keep import keep_release
from hpcci.stages.release.modulefile import ModuleInfo
from hpcci.stages.release.plan import (
    REPLACE_HOW,
    LinkOrCopy,
    ReleasePaths,
    ReleaseRequest,
    ReleaseStep,
    lock_step,
    manifest_steps,
    mkdir_steps,
    module_name,
    plan_install,
    pointer_steps,
    read_manifest_step,
    release_paths,
    release_variables,
    removal_steps,
    require_absolute,
    unlock_step,
)
from hpcci.stages.report.text import release_line
from hpcci.stages.steps import Command, WriteFile

LOCK_WAIT = 120.0  # seconds another install or rollback may hold the lock before this one gives up


def untested(result: ClusterResult) -> str | None:
    """Why ``result`` does not let a release be installed, or None when every smoke test passed."""
    if result.error:
        return f"the deploy failed ({result.error})"
    if not result.tests:
        return "no smoke test ran on this cluster; hpcci installs only tested releases"
    bad = [t for t in result.tests if t.verdict != "pass"]
    if not bad:
        return None
    words = ", ".join(f"{t.test} ({t.verdict.replace('_', ' ')})" for t in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return f"{len(bad)} of {len(result.tests)} smoke tests did not pass: {words}{more}"


def where_tested(result: ClusterResult) -> str:
    jobs = ", ".join(f"{t.test} (job {t.job_id})" for t in result.tests)
    return f"smoke tests passed on cluster {result.cluster} ({result.platform}): {jobs}"


class Releases:
    """One application's releases on one cluster, over a Remote: read, install, roll back."""

    def __init__(self, cluster: Cluster, remote: Remote, name: str, info: Callable[[str], None]) -> None:
        assert cluster.release is not None
        self.cluster = cluster
        self.cfg = cluster.release
        self.remote = remote
        self.info = info
        self.paths = self._paths(name)

    def _paths(self, name: str) -> ReleasePaths:
        if automation(self.cluster):
            require_absolute(self.cluster)
            return release_paths(self.cluster, name, {})
        argv = login_argv([["env", "-0"]], modules=self.cluster.modules)
        env = parse_env0(self.remote.run(argv, timeout=60, check=True, echo="bash -lc 'env -0'").stdout)
        return release_paths(
            self.cluster, name, {k: env[k] for k in release_variables(self.cluster) if k in env}
        )

    def run(self, step: ReleaseStep) -> str:
        """Run one step; a failing command raises (its message names the command and its output)."""
        if isinstance(step, WriteFile):
            self.remote.write_text(step.path, step.text)
            return ""
        if isinstance(step, LinkOrCopy):
            if self.remote.run(step.link.argv, timeout=step.link.timeout).ok:
                return ""
            self.info("hard link refused (another file system?): copying the SIF")
            step = step.copy
        return self.remote.run(step.argv, timeout=step.timeout, check=True).stdout

    def _quietly(self, steps: list[Command]) -> None:
        for step in steps:
            with contextlib.suppress(HpcciError):
                self.remote.run(step.argv, timeout=step.timeout, interruptible=False)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The application's lock held (its folders made first); released whatever happens."""
        for step in mkdir_steps(self.cfg, self.paths):
            self.run(step)
        end = time.monotonic() + LOCK_WAIT
        while not (done := self.remote.run(lock_step(self.paths).argv, timeout=60)).ok:
            if not self._exists(self.paths.lock):  # not held: mkdir itself failed (permissions, no space)
                raise ReleaseError(
                    f"cluster {self.cluster.name}: cannot make the lock {self.paths.lock}: "
                    f"{done.stderr.strip() or 'mkdir failed'}; check that you may write in {self.paths.app}"
                )
            if time.monotonic() > end:
                raise ReleaseError(
                    f"cluster {self.cluster.name}: {self.paths.lock} has been held for over {LOCK_WAIT:.0f} s by "
                    "another install or rollback; if none is running (a killed deploy left it), remove that folder"
                )
            time.sleep(2)
        try:
            yield
        finally:
            self._quietly([unlock_step(self.paths)])

    def manifest(self) -> rm.Manifest:
        done = self.remote.run(read_manifest_step(self.paths).argv, timeout=60)
        # asked with `test`, not read from cat's message: that is in the login node's language
        if not done.ok and self._exists(self.paths.manifest):
            raise ReleaseError(
                f"cluster {self.cluster.name}: cannot read {self.paths.manifest}: {done.stderr.strip()}"
            )
        where = f"cluster {self.cluster.name}: {self.paths.manifest}"
        return rm.parse(done.stdout if done.ok else "", source=where, name=self.paths.name)

    def _exists(self, path: str) -> bool:
        return self.remote.run(["test", "-e", path], timeout=60).ok

    def _write_manifest(self, manifest: rm.Manifest, run_id: str) -> None:
        for step in manifest_steps(self.cfg, self.paths, manifest, run_id):
            self.run(step)

    def _move_default(self, version: str, run_id: str) -> None:
        for step in pointer_steps(self.cfg, self.paths, version, run_id):
            self.run(step)

    # -- install ------------------------------------------------------------------------------------------------
    def install(self, result: ClusterResult, request: ReleaseRequest) -> ReleaseOutcome:
        v, module = request.version, f"{self.paths.name}/{request.version}"
        with self.locked():
            manifest = self.manifest()
            again = rm.reinstall(manifest, v, result.image_digest, replace=request.replace, how=REPLACE_HOW)
            if again is None and self._exists(self.paths.modulefile(self.cfg, v)):
                why = f"installed already from this image ({result.image_digest}); nothing changed"
                return ReleaseOutcome(module, "unchanged", why, manifest.default == v, sif=self.paths.sif(v))
            default, why_not = rm.takes_default(manifest, v, make_default=self.cfg.make_default)
            entry = self._install_files(result, request)
            manifest = manifest.with_entry(entry)
            if default:
                self._move_default(v, request.run_id)
                manifest = dataclasses.replace(manifest, default=v)
            keep = [x for x in (manifest.default, v) if x]
            removed = rm.retention(manifest, self.cfg.keep, protect=keep)
            self._write_manifest(manifest.without(removed), request.run_id)
            self._remove(removed)
            keep_release(
                self.remote,
                self.cluster,
                result,
                request,
                (self.paths.name, manifest.without(removed).versions()),
                self.info,
            )
        note = "" if default else f"the default stays {manifest.default or 'unset'}: {why_not}"
        return ReleaseOutcome(
            module, "installed", note, default, removed, self.paths.sif(v), self.paths.modulefile(self.cfg, v)
        )

    def _install_files(self, result: ClusterResult, request: ReleaseRequest) -> rm.Entry:
        v = request.version
        info = ModuleInfo(
            name=self.paths.name, version=v, tag=request.tag, commit=request.commit, image=request.image,
            digest=result.image_digest, sif=self.paths.sif(v), bin_dir=f"{self.paths.version_dir(v)}/bin",
            modules=tuple(dict.fromkeys([*self.cluster.modules, *self.cluster.runtime.modules])),
            tested=where_tested(result), run_url=request.run_url,
        )  # fmt: skip
        assert result.sif_path, "a passing deploy has its SIF"
        plan = plan_install(self.cluster, self.paths, info, result.sif_path, request.run_id)
        moved_aside = False
        try:
            for step in plan.stage:
                self.run(step)
            # the deploy hashed this SIF already (stages/provenance.py); a hard link or copy of it is the same bytes
            sha = result.sif_sha256 or parse_sha256sum(self.run(plan.checksum)) or ""
            # only a replacement has an older folder to move aside: a first install runs no `mv` that must fail
            if self._exists(self.paths.version_dir(v)):
                self.run(plan.aside)
                moved_aside = True
            for step in plan.commit:
                self.run(step)
        except BaseException:
            self._quietly([*plan.discard, *([plan.restore] if moved_aside else [])])
            raise
        if moved_aside:
            self._quietly(plan.cleanup)
        self.info(
            f"installed {info.name}/{v}: {self.paths.version_dir(v)}, {self.paths.modulefile(self.cfg, v)}"
        )
        return rm.Entry(
            version=v, tag=request.tag, commit=request.commit, image=request.image, image_digest=result.image_digest,
            sif=info.sif, sif_sha256=sha, installed=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            cluster=self.cluster.name, run_id=request.run_id, run_url=request.run_url, tested=info.tested,
        )  # fmt: skip

    def _remove(self, versions: list[str]) -> None:
        """Retention: each version's modulefile, then its folder; a failure is logged, the install stands."""
        for v in versions:
            self.info(f"retention (keep {self.cfg.keep}): removing {self.paths.name}/{v}")
            try:
                for step in removal_steps(self.cfg, self.paths, v):
                    self.run(step)
            except HpcciError as e:
                self.info(f"warning: {self.paths.name}/{v} not fully removed: {e}")

    # -- rollback -----------------------------------------------------------------------------------------------
    def rollback(self, version: str, run_id: str) -> rm.Manifest:
        """Move the default to ``version`` (installed), changing nothing else."""
        self._require_installed(
            self.manifest(), version
        )  # before the lock: it makes the folders of a mistyped name
        with self.locked():
            manifest = self.manifest()
            self._require_installed(manifest, version)
            self._move_default(version, run_id)
            manifest = dataclasses.replace(manifest, default=version)
            self._write_manifest(manifest, run_id)
        return manifest

    def _require_installed(self, manifest: rm.Manifest, version: str) -> None:
        if manifest.get(version) is None or not self._exists(self.paths.modulefile(self.cfg, version)):
            have = ", ".join(manifest.versions()) or "none"
            raise ReleaseNotInstalled(
                f"cluster {self.cluster.name}: {self.paths.name}/{version} is not installed (installed: {have}); "
                "nothing was changed"
            )


def _named(cluster: str, e: HpcciError) -> ReleaseError:
    """``e`` as a ReleaseError whose message starts "cluster NAME:" once (its own class and exit code kept)."""
    text = str(e) if str(e).startswith(f"cluster {cluster}: ") else f"cluster {cluster}: {e}"
    out = e if isinstance(e, ReleaseError) else ReleaseError(text)
    out.message, out.args = text, (text,)
    return out


def promote(
    result: ClusterResult,
    cluster: Cluster,
    remote: Remote,
    request: ReleaseRequest,
    info: Callable[[str], None],
) -> tuple[ClusterResult, HpcciError | None]:
    """The deploy's result with its release installed (or why not), and the install's error if it failed.
    Never raises: a failed install is returned, so it cannot hide the deploy's own result."""
    assert cluster.release is not None
    error: HpcciError | None = None
    try:
        name = module_name(cluster.release, request.image)
    except ConfigError as e:
        name, error = "?", _named(cluster.name, e)
    module = f"{name}/{request.version}"
    if error is not None:
        release = ReleaseOutcome(module, "failed", str(error))
    elif (why := untested(result)) is not None:
        release = ReleaseOutcome(module, "not_installed", why)
    else:
        try:
            release = Releases(cluster, remote, name, info).install(result, request)
        except HpcciError as e:
            error = _named(cluster.name, e)
            refused = isinstance(e, ReleaseRefused)
            release = ReleaseOutcome(module, "refused" if refused else "failed", str(e))
        except Exception as e:  # a bug must not hide the deploy's own result
            error = ReleaseError(
                f"cluster {cluster.name}: internal error installing {module}: {e!r} (please report it)"
            )
            release = ReleaseOutcome(module, "failed", str(error))
    result = dataclasses.replace(result, release=release)
    info(release_line(result) or "")
    return result, error
