"""Deploy execution: runs a ClusterPlan's own steps on a login node over a Remote (stage, verify, convert, submit).

Every command run here is a step object of the plan (stages/steps.py), so what `hpcci plan` prints is what runs;
this module adds only the decisions between steps (a cached image skips the rest, a wrong sha256 stops) and the
secrets the plan must never hold (the presigned URL, registry credentials).
"""

from __future__ import annotations

import contextlib
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from hpcci.backends.runtime import Packing, choose_packing, parse_version
from hpcci.backends.schedulers import Scheduler
from hpcci.backends.ssh.remote import Remote
from hpcci.config.models import Cluster, Pipeline, resolve_value
from hpcci.digests import file_sha256, parse_sha256sum
from hpcci.errors import (
    HpcciError,
    Interrupted,
    RuntimeConvertError,
    SchedulerError,
    TransferError,
    UsageError,
)
from hpcci.process import Completed, tail
from hpcci.records import S3Object
from hpcci.shell import login_argv, parse_env0
from hpcci.stages.cluster import automation, remove_argv, runtime
from hpcci.stages.deploy.identity import RunIdentity
from hpcci.stages.deploy.image_plan import ImagePlan, curl_config, s3_curl_argv
from hpcci.stages.deploy.journal import Entry, Journal, Reattached
from hpcci.stages.deploy.paths import file_tag, needed_variables, require_absolute_paths, resolve_paths
from hpcci.stages.deploy.plan import ClusterPlan, plan_cluster
from hpcci.stages.layers.index import index_archive
from hpcci.stages.layers.stage import (
    LayerResult,
    LayerStager,
    OpenRegistry,
    Target,
    fetch_index,
    pull_range,
    registry_blobs,
    transient,
)
from hpcci.stages.layers.store import fetch_step
from hpcci.stages.sources import ImageSource
from hpcci.stages.steps import Command, Submit, Upload

Presign = Callable[[S3Object, str | None], str]  # (object, endpoint as the cluster reaches it) -> URL


@dataclass
class Staged:
    """What happened to one platform's image on one cluster."""

    plan: ImagePlan
    tar_sha256: str | None = None
    cache_hit: bool = False
    transferred: bool = False
    convert_job: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    layers: LayerResult | None = None  # staging.layers: which blobs were reused, fetched, evicted


class Deployer:
    """Runs a ClusterPlan on a login node: stage, verify, convert, submit. One instance per cluster."""

    def __init__(
        self,
        pipeline: Pipeline,
        cluster: Cluster,
        remote: Remote,
        scheduler: Scheduler,
        *,
        presign: Presign | None = None,
        open_registry: OpenRegistry | None = None,
        info: Callable[[str], None] = print,
        stop: threading.Event | None = None,
        run_id: str,
        mask: Callable[[str], None] = lambda _secret: None,
        journal: Journal | None = None,
    ) -> None:
        self.pipeline = pipeline
        # None: nothing is journaled and nothing re-attached (the step tests); `hpcci deploy` always passes one.
        self.journal = journal
        self.identity = journal.identity if journal else RunIdentity("", run_id)
        self.mask = mask  # every secret this deployer handles goes here before anything could print it
        self.cluster = cluster
        self.remote = remote
        self.scheduler = scheduler
        self.presign = presign
        self.open_registry = open_registry  # the registry's manifests, for layer staging from a registry
        self.info = info
        self.stop = stop or threading.Event()
        self.run_id = run_id
        self._tmpdir = cluster.paths.tmpdir or "paths.tmpdir"

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted(
                f"cluster {self.cluster.name}: deploy interrupted (SIGTERM/SIGINT) before any job ran"
            )

    def _run(
        self, step: Command, *, check: bool = False, stdin: str | None = None, echo: str | None = None
    ) -> Completed:
        return self.remote.run(step.argv, timeout=step.timeout, check=check, stdin=stdin, echo=echo)

    def remote_env(self) -> dict[str, str]:
        """The login shell's environment (for $SCRATCH and friends in cluster paths), asked once."""
        argv = login_argv([["env", "-0"]], modules=self.cluster.modules)
        done = self.remote.run(argv, timeout=60, check=True, echo="bash -lc 'env -0'")
        env = parse_env0(done.stdout)
        return {k: env[k] for k in needed_variables(self.cluster) if k in env}

    def login_facts(self) -> tuple[dict[str, str], str | None]:
        """The login shell's environment (for $SCRATCH and friends in cluster paths) and the runtime's version,
        asked once per connection and together, in one login shell after the runtime's modules load (one bash -l
        start-up for both). Where that fails (a login node without the runtime: runtime.convert_on compute) the
        environment alone is asked and the version is not known; so too when the runtime's packing does not
        depend on its version, or under login.mode automation (no login shell at all)."""
        if automation(self.cluster):
            return {}, None
        rt = runtime(self.cluster)
        if rt.takes_squashfs_options(None) is not None:
            return self.remote_env(), None
        modules = [*self.cluster.modules, *self.cluster.runtime.modules]
        argv = login_argv([["env", "-0"], rt.version()], modules=modules)
        done = self.remote.run(argv, timeout=60, echo=f"bash -lc 'env -0; {shlex.join(rt.version())}'")
        if not done.ok:
            self.info(f"{rt.name} not in a login shell: {tail(done.stdout + done.stderr)}")
            return self.remote_env(), None
        listed, _, printed = done.stdout.rpartition("\0")  # env -0 ends every variable with NUL
        env = parse_env0(listed + "\0")
        return {k: env[k] for k in needed_variables(self.cluster) if k in env}, parse_version(printed)

    def packing(self, version: str | None) -> Packing:
        """How this deploy packs its images, from runtime.compression and the runtime's version (choose_packing)."""
        rt, conf = runtime(self.cluster), self.cluster.runtime
        packing = choose_packing(rt, conf.compression, conf.convert_cpus, version)
        self.info(f"image packing: {packing.why}")
        return packing

    def plan(self, sources: dict[str, ImageSource]) -> ClusterPlan:
        if automation(self.cluster):
            require_absolute_paths(self.cluster)
        env, version = self.login_facts()
        paths = resolve_paths(self.cluster, env, self.run_id)
        self._tmpdir = paths.tmpdir
        # every later step (the conversion's --mksquashfs-args) sees the packing chosen for this runtime
        runtime_conf = self.cluster.runtime.with_packing(self.packing(version))
        self.cluster = self.cluster.model_copy(update={"runtime": runtime_conf})
        tag = file_tag(self.run_id, self.cluster)  # temporary files in the image cache clusters may share
        return plan_cluster(self.pipeline, self.cluster, sources, paths, tag, self.scheduler, self.identity)

    # -- image --------------------------------------------------------------------------------------------------
    def setup(self, plan: ClusterPlan) -> None:
        """The folders every later step writes to."""
        for step in plan.setup:
            self._run(step, check=True)

    def stage_image(self, image: ImagePlan) -> Staged:
        """Make the converted image exist on the cluster; a cached one is reused untouched."""
        staged = Staged(image)
        self._check_stop()
        if self._run(image.cached).ok:
            staged.cache_hit = True
            self.info(f"{image.source.platform} image cached at {image.image} (cache hit)")
            return staged
        t0 = time.monotonic()
        if image.checksum_file is not None:
            staged.transferred = self._stage_for_job(image, staged)
        elif image.layers is not None:
            staged.layers = self._stage_layers(image)
            staged.transferred = bool(staged.layers.fetched)
        elif image.fetch is not None:
            staged.transferred = self._stage_tar(image, staged)
        staged.seconds["stage"] = time.monotonic() - t0
        self._check_stop()
        t0 = time.monotonic()
        if image.registry_creds_file:
            self._write_registry_creds(image.registry_creds_file)
        try:
            if image.convert_job is not None:
                out = image.convert_job.script.path.rsplit(".", 1)[0] + ".out"
                entry = self.job_entry(
                    "convert", image.source.platform, "", image.source.platform, out, image
                )
                staged.convert_job = self.submit(
                    image.convert_job, [], what="the conversion job", entry=entry
                )
            else:
                self._convert(image)
        finally:
            if image.registry_creds_file and not staged.convert_job:
                self._remove(image.registry_creds_file)  # the script deletes it; this covers a failed start
        staged.seconds["convert"] = time.monotonic() - t0
        return staged

    def _write_registry_creds(self, path: str) -> None:
        reg = self.pipeline.publish.registry
        assert reg is not None and reg.username is not None and reg.password is not None
        user = resolve_value(reg.username, "publish.registry.username").strip()
        password = reg.password.resolve("publish.registry.password").strip()
        self.mask(password)
        env = runtime(self.cluster).registry_env(user, password)
        self.remote.write_text(path, "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()), mode=0o600)

    def _stage_for_job(self, image: ImagePlan, staged: Staged) -> bool:
        """login.mode automation: the tar over SFTP (or the presigned URL for the job's curl) and the checksum
        file; the conversion job downloads, checks and renames."""
        assert image.checksum_file is not None
        try:
            if isinstance(image.fetch, Upload):
                want = image.source.tar_sha256 or file_sha256(Path(image.fetch.local))
                self.info(
                    f"uploading {image.fetch.local} -> {image.fetch.remote} (SFTP; checked by the conversion job)"
                )
                self.remote.put(Path(image.fetch.local), image.fetch.remote, streams=image.fetch.streams)
            else:
                obj = image.source.s3
                assert obj is not None and image.url_file is not None
                want = image.source.tar_sha256 or obj.sha256
                self.remote.write_text(image.url_file, curl_config(self._presign(obj)), mode=0o600)
                self.info(f"the conversion job pulls s3://{obj.bucket}/{obj.key} ({obj.size} bytes)")
            staged.tar_sha256 = want
            self.remote.write_text(image.checksum_file, f"{want}  {image.tar_tmp}\n")
        except BaseException:
            self._remove(image.tar_tmp)
            raise
        return True

    def _stage_layers(self, image: ImagePlan) -> LayerResult:
        """Only the blobs the cluster's store lacks; the layout the conversion reads is assembled from the store."""
        assert image.layers is not None
        src = image.source
        if image.layers.via == "sftp":
            assert src.local_tar is not None
            index = index_archive(Path(src.local_tar), trust_diff_ids=True)  # the cluster hashes what it gets
            stager = LayerStager(self.remote, self.cluster.name, self.info, local_tar=Path(src.local_tar))
        elif image.layers.via == "registry":
            if self.open_registry is None:
                raise UsageError(
                    f"cluster {self.cluster.name}: layer staging from a registry needs a registry client"
                )
            reg = self.pipeline.publish.registry
            insecure = bool(reg and reg.insecure)
            index, config = registry_blobs(src, self.open_registry, insecure=insecure, mask=self.mask)
            stager = LayerStager(self.remote, self.cluster.name, self.info, curl_config=config)
        else:
            obj = src.s3
            assert obj is not None and self.presign is not None
            index = fetch_index(obj, self.presign)
            url = self._presign(obj)  # one URL for every blob: each is a byte range of the tar
            stager = LayerStager(
                self.remote, self.cluster.name, self.info, curl_config=lambda _b: curl_config(url)
            )
        try:
            return stager.stage(image.layers, index)
        except BaseException:
            self._remove_tree(image.layers.layout)
            raise

    def _remove_tree(self, path: str) -> None:
        with contextlib.suppress(HpcciError):
            self.remote.run(["rm", "-rf", "--", path], timeout=120, interruptible=False)

    def _sha256(self, step: Command) -> str | None:
        done = self._run(step)
        return parse_sha256sum(done.stdout) if done.ok else None

    def _stage_tar(self, image: ImagePlan, staged: Staged) -> bool:
        """Put the tar at image.tar via a temporary name and a sha256 check. False when it was already there."""
        assert image.tar_cached is not None and image.commit is not None
        want = image.source.tar_sha256
        if not want and image.source.local_tar:
            want = file_sha256(Path(image.source.local_tar))  # only now: a cache hit never reads the tar
        staged.tar_sha256 = want
        if want and self._sha256(image.tar_cached) == want:
            self.info(f"tar already staged at {image.tar} (sha256 matches)")
            return False
        try:
            if isinstance(image.fetch, Upload):
                self.info(f"uploading {image.fetch.local} -> {image.fetch.remote} (SFTP)")
                self.remote.put(Path(image.fetch.local), image.fetch.remote, streams=image.fetch.streams)
                got = self._sha256(image.verify) if image.verify else None
            else:
                got = self._pull_s3(image)
            if want and got != want:
                raise TransferError(
                    f"cluster {self.cluster.name}: the staged tar's sha256 is {got or 'unreadable'} but the "
                    f"published one is {want}; the copy is corrupt or the object changed - it was deleted, re-run "
                    "the deploy (or re-publish if the S3 object was replaced)"
                )
            self._run(image.commit, check=True)
        except BaseException:
            self._remove(image.tar_tmp)
            raise
        return True

    def _pull_s3(self, image: ImagePlan) -> str | None:
        """Download on the login node; returns the sha256 of the bytes written."""
        obj = image.source.s3
        assert obj is not None and isinstance(image.fetch, Command)
        endpoint = self.cluster.staging.s3_endpoint_url or obj.endpoint_url
        url = self._presign(obj)
        self.info(f"login node pulls s3://{obj.bucket}/{obj.key} ({obj.size} bytes)")
        echo = f"curl <presigned URL> | tee {image.tar_tmp} | sha256sum"
        done = self._run(image.fetch, stdin=curl_config(url), echo=echo)
        if done.ok:
            return parse_sha256sum(done.stdout)
        # a broken pull resumes by range where its bytes end (RHEL 8's curl 7.61 has no --retry-all-errors), then
        # the whole file is hashed on its own
        size = self.remote.run(["stat", "-c", "%s", "--", image.tar_tmp], timeout=60)
        have = int(size.stdout.strip()) if size.ok and size.stdout.strip().isdigit() else 0
        err = ((done.stderr or done.stdout).strip().splitlines() or [f"curl exit code {done.returncode}"])[-1]
        if not transient(done.returncode, done.stderr):
            raise TransferError(
                f"cluster {self.cluster.name}: the login node could not download s3://{obj.bucket}/{obj.key} "
                f"from {endpoint}: {err}; check that the login node reaches the S3 endpoint (staging.s3_endpoint_url) "
                "or use staging.method: sftp"
            )
        self.info(f"pull of s3://{obj.bucket}/{obj.key} broke at {have}/{obj.size} bytes ({err}); resuming")
        curl = s3_curl_argv(
            "-", max_time=int(image.fetch.timeout) - 30
        )  # as planned: the step allows 30 s more
        target = Target(self.cluster.name, image.tar_tmp, obj.size, f"s3://{obj.bucket}/{obj.key}")
        pull_range(
            self.remote,
            lambda start: login_argv([fetch_step(curl, start, obj.size - 1, image.tar_tmp)], modules=self.cluster.modules),
            curl_config(url), target, self.info, have=have,
        )  # fmt: skip
        return self._sha256(Command(["sha256sum", "--", image.tar_tmp], timeout=900))

    def _presign(self, obj: S3Object) -> str:
        """A presigned GET URL as the cluster reaches the endpoint; its signature is masked at once."""
        if self.presign is None:
            raise UsageError(f"cluster {self.cluster.name}: S3 staging needs S3 credentials to presign a URL")
        url = self.presign(obj, self.cluster.staging.s3_endpoint_url or obj.endpoint_url)
        self.mask(url.split("?", 1)[-1])  # the query string is the signature: a credential until it expires
        return url

    def _remove(self, path: str) -> None:
        with contextlib.suppress(HpcciError):
            self.remote.run(remove_argv(path), timeout=60, interruptible=False)

    def _convert(self, image: ImagePlan) -> None:
        assert image.convert is not None
        self.info(f"converting with {self.cluster.runtime.type} on the login node")
        done = self._run(image.convert)
        if not done.ok:
            if image.image_tmp != image.image:
                self._remove(image.image_tmp)
            if image.layers is not None:
                self._remove_tree(image.layers.layout)
            raise RuntimeConvertError(
                f"cluster {self.cluster.name}: {self.cluster.runtime.type} could not convert the image "
                f"(exit code {done.returncode}): {tail(done.stdout + done.stderr)}; check the runtime modules "
                f"({', '.join(self.cluster.runtime.modules) or 'none'}) and free space in "
                f"{self._tmpdir} (paths.tmpdir) and {image.image_tmp.rsplit('/', 1)[0]} (paths.image_cache)"
            )

    # -- jobs -----------------------------------------------------------------------------------------------------
    def submit(
        self, step: Submit, dependency: Sequence[str], *, what: str, entry: Entry | None = None
    ) -> str:
        """Write the script and submit it; a refusal raises SchedulerError with the scheduler's reason and what to do.

        The job id goes to the journal (``entry`` with it) before anything else happens.
        """
        self.remote.write_text(step.script.path, step.script.text)
        done = self.remote.run(step.argv(dependency), timeout=step.timeout)
        if not done.ok:
            why = self.scheduler.submit_refusal(done.stderr or done.stdout)
            raise SchedulerError(f"cluster {self.cluster.name}: {self.scheduler.NAME} refused {what}: {why}")
        job_id = self.scheduler.parse_submit(done.stdout)
        if self.journal is not None and entry is not None:
            self.journal.add(replace(entry, job_id=job_id, submitted_at=time.time()))
        return job_id

    def job_entry(self, kind: Literal["test", "convert"], key: str, name: str, platform: str, output: str,
               image: ImagePlan) -> Entry:  # fmt: skip
        i = self.identity
        return Entry(self.cluster.name, kind, key, "", name, platform, image.source.digest, output,
                     i.repo, i.run, i.attempt, 0.0)  # fmt: skip

    def test_job_name(self, test: str) -> str:
        return self.identity.test_job_name(self.cluster.name, test)

    def submit_tests(
        self, plan: ClusterPlan, staged: dict[str, Staged], attached: Reattached | None = None
    ) -> tuple[dict[int, str], dict[int, str]]:
        """Submit every test job not re-attached. Returns (test index -> job id, test index -> refusal reason)."""
        jobs: dict[int, str] = {i: f.job_id for i, f in (attached or Reattached()).tests.items()}
        refused: dict[int, str] = {}
        for job in plan.tests:
            if job.index in jobs:
                continue
            self._check_stop()
            after = staged.get(job.submit.after or "")
            dependency = [after.convert_job] if after is not None and after.convert_job else []
            try:
                entry = self.job_entry("test", job.test.name, self.test_job_name(job.test.name), job.platform,
                                    job.output_path, plan.images[job.platform])  # fmt: skip
                jobs[job.index] = self.submit(
                    job.submit, dependency, what=f"test {job.test.name}", entry=entry
                )
                self.info(f"test {job.test.name} submitted as job {jobs[job.index]}")
            except SchedulerError as e:
                refused[job.index] = str(e)
        return jobs, refused
