"""Deploy: put the image on a cluster (stage, check, convert, cache) and submit the smoke tests as Slurm jobs.

The plan (``plan_cluster``) is pure data - every remote command as an argv list and every sbatch script as
text - so `hpcci plan` prints exactly what `hpcci deploy` runs. ``Deployer`` then executes a plan against a
``Remote`` (the login node) and hands the submitted jobs to stages.smoke to follow and judge.

Staging never leaves a half-copied file in use: the tar goes to a temporary name, its sha256 is checked, then it
is renamed; the converted image likewise. Converted images are cached by content (the image digest), so a
re-deploy of an unchanged image transfers and converts nothing.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import tarfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from hpcci.backends import scheduler as slurm
from hpcci.backends.remote import Remote
from hpcci.backends.runtime import ExecOptions, Runtime, runtime_for
from hpcci.config import Cluster, Pipeline, SmokeTest
from hpcci.digests import file_sha256, parse_sha256sum
from hpcci.errors import (
    ConfigError,
    DeadlineExceeded,
    HpcciError,
    Interrupted,
    RemoteError,
    RuntimeConvertError,
    SchedulerError,
    TransferError,
    UsageError,
)
from hpcci.platforms import image_platform, machine_platform, platform_machine
from hpcci.process import tail
from hpcci.records import ClusterDeploy, ClusterResult, PublishRecord, S3Object, TestResult
from hpcci.shell import Pipe, command_line, expand, login_argv, parse_env0, path_variables, with_env
from hpcci.stages import smoke

# -- what image to stage -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSource:
    """One platform's image and every place it can be fetched from."""

    platform: str
    digest: str  # sha256:... - the content key of the cache
    tar_sha256: str | None = None
    size: int = 0
    s3: S3Object | None = None
    local_tar: str | None = None
    registry_ref: str | None = None  # repo@sha256:... for `apptainer pull docker://`

    @property
    def key(self) -> str:
        return self.digest.removeprefix("sha256:")


def sources_from_publish(record: PublishRecord) -> dict[str, ImageSource]:
    """Per platform, where the published image can be fetched from (S3 tar and/or registry)."""
    out: dict[str, ImageSource] = {}
    for obj in record.s3:
        out[obj.platform] = ImageSource(
            platform=obj.platform,
            digest=obj.digest or f"sha256:{obj.sha256}",
            tar_sha256=obj.sha256,
            size=obj.size,
            s3=obj,
        )
    reg = record.registry
    if reg is not None and reg.refs:
        repo = _strip_tag(reg.refs[0])
        for platform, digest in reg.platforms.items():
            src = out.get(platform) or ImageSource(platform=platform, digest=digest)
            out[platform] = replace(src, registry_ref=f"{repo}@{digest}")
    return out


def _strip_tag(ref: str) -> str:
    ref = ref.split("@", 1)[0]
    name, _, last = ref.rpartition("/")
    if ":" in last:
        last = last.split(":", 1)[0]
    return f"{name}/{last}" if name else last


def docker_archive_info(path: Path) -> tuple[str, str]:
    """(image id 'sha256:...', platform) of a `docker save` tar: the id is its config digest, stable across saves."""
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            manifest = json.load(member)
            config_name = manifest[0]["Config"]
            cfg_member = tar.extractfile(config_name)
            config = json.load(cfg_member) if cfg_member else {}
    except (OSError, KeyError, IndexError, ValueError, tarfile.TarError) as e:
        raise UsageError(
            f"{path}: not a docker-archive tar ({e}); make one with `docker save IMAGE -o FILE.tar`"
        ) from e
    hexdigest = re.search(r"[0-9a-f]{64}", config_name)
    if not hexdigest:
        raise UsageError(f"{path}: manifest.json names no config digest; make the tar with `docker save`")
    arch = str(config.get("architecture", "amd64"))
    variant = config.get("variant")
    platform = image_platform(arch, str(variant) if variant else None)
    return f"sha256:{hexdigest.group(0)}", platform


# -- the plan ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    """Where things go on the cluster (variables such as $SCRATCH resolved, or shown unresolved in a plan)."""

    scratch: str
    cache: str
    tmpdir: str
    run_dir: str


@dataclass(frozen=True)
class ImagePlan:
    source: ImageSource
    staging: str  # s3 | sftp | registry
    tar: str  # staged docker-archive (deleted after conversion)
    tar_tmp: str
    image: str  # converted image (content-addressed)
    image_tmp: str
    exists_argv: list[str]
    convert_argv: list[str]  # login shell: module loads, conversion to the temporary name, rename
    convert_script: str | None  # sbatch script when runtime.convert_on is compute
    convert_script_path: str | None
    registry_creds_file: str | None = None  # written (mode 600) just before a registry pull, deleted by it


@dataclass(frozen=True)
class TestJob:
    index: int
    test: SmokeTest
    platform: str
    partition: str
    script_path: str
    output_path: str
    script: str
    time_limit: str


@dataclass(frozen=True)
class ClusterPlan:
    cluster: Cluster
    paths: Paths
    images: dict[str, ImagePlan]  # platform -> plan
    tests: list[TestJob]
    modules: list[str]  # cluster.modules: loaded first by every remote step (e.g. slurm)


def tests_for(pipeline: Pipeline, cluster: str) -> list[tuple[int, SmokeTest]]:
    return [(i, t) for i, t in enumerate(pipeline.tests) if t.clusters is None or cluster in t.clusters]


def partition_key(cluster: Cluster, test: SmokeTest) -> str:
    """The cluster-config partition a test runs on; a GPU test on a cluster without one says how to fix it."""
    if test.resources.partition:
        return test.resources.partition
    if test.gpu and cluster.scheduler.gpu_partition not in cluster.scheduler.partitions:
        known = ", ".join(cluster.scheduler.partitions)
        raise ConfigError(
            f"test {test.name!r} needs a GPU partition but cluster {cluster.name} has none named "
            f"{cluster.scheduler.gpu_partition!r} (partitions: {known}); add one to {cluster.source.file} "
            f"(scheduler.partitions / scheduler.gpu_partition) or limit the test with `clusters:` in hpcci.yaml"
        )
    return cluster.scheduler.gpu_partition if test.gpu else cluster.scheduler.default_partition


def platforms_needed(pipeline: Pipeline, cluster: Cluster) -> list[str]:
    """The image platforms this cluster's tests need: aarch64 partitions run linux/arm64, and so on."""
    needed: list[str] = []
    tests = tests_for(pipeline, cluster.name) or [(0, SmokeTest(name="none", command="true"))]
    for _, test in tests:
        arch = cluster.partition(partition_key(cluster, test)).arch
        platform = machine_platform(arch)
        if platform not in needed:
            needed.append(platform)
    return needed


def choose_staging(pipeline: Pipeline, cluster: Cluster, source: ImageSource) -> str:
    """s3 (the login node pulls a presigned URL), sftp (upload from here) or registry (the runtime pulls)."""
    wanted = cluster.staging.method if cluster.staging.method != "auto" else pipeline.deploy.staging
    available = {
        "s3": source.s3 is not None,
        "sftp": source.local_tar is not None,
        "registry": source.registry_ref is not None,
    }
    if wanted == "auto":
        for method in ("s3", "sftp", "registry"):
            if available[method]:
                return method
        raise UsageError(
            f"cluster {cluster.name}: nothing to stage for {source.platform}: no S3 object or registry image in the "
            "publish record and no --image-tar; run `hpcci publish` or pass --image-tar FILE (from `docker save`)"
        )
    if not available[wanted]:
        need = {
            "s3": "an S3 object in the publish record (publish.s3 in hpcci.yaml)",
            "sftp": "a local tar (--image-tar FILE, made by `docker save`)",
            "registry": "a registry publication in the publish record",
        }[wanted]
        raise UsageError(
            f"cluster {cluster.name}: staging method {wanted} for {source.platform} needs {need}"
        )
    return wanted


def resolve_paths(cluster: Cluster, env: dict[str, str], run_id: str) -> Paths:
    """The cluster's paths with $VARS replaced by the values from the login shell."""
    p = cluster.paths
    scratch = expand(p.scratch, env, what=f"cluster {cluster.name}: paths.scratch")
    cache = expand(p.image_cache, env, what=f"cluster {cluster.name}: paths.image_cache")
    tmpdir = (
        expand(p.tmpdir, env, what=f"cluster {cluster.name}: paths.tmpdir") if p.tmpdir else f"{scratch}/tmp"
    )
    return Paths(scratch, cache, tmpdir, f"{scratch}/runs/{run_id}")


def unresolved_paths(cluster: Cluster, run_id: str) -> Paths:
    p = cluster.paths
    return Paths(p.scratch, p.image_cache, p.tmpdir or f"{p.scratch}/tmp", f"{p.scratch}/runs/{run_id}")


def needed_variables(cluster: Cluster) -> list[str]:
    p = cluster.paths
    return path_variables([p.scratch, p.image_cache, p.tmpdir or ""]) + ["HOME"]


def _runtime(cluster: Cluster) -> Runtime:
    return runtime_for(cluster.runtime.type, cluster.runtime.executable)


def plan_image(
    pipeline: Pipeline, cluster: Cluster, source: ImageSource, paths: Paths, run_id: str
) -> ImagePlan:
    rt = _runtime(cluster)
    staging = choose_staging(pipeline, cluster, source)
    key = source.key
    tar = f"{paths.cache}/{key}.tar"
    tar_tmp = f"{paths.cache}/.{key}.{run_id}.tar.part"
    image = rt.image_path(paths.cache, key)
    image_tmp = f"{paths.cache}/.{key}.{run_id}.part{rt.suffix}" if rt.is_file() else image
    env = rt.tmp_env(paths.tmpdir)
    mkdir = ["mkdir", "-p", "--", paths.tmpdir, f"{paths.tmpdir}/cache"]
    creds_file = None
    if staging == "registry":
        assert source.registry_ref is not None
        reg = pipeline.publish.registry
        steps = [
            with_env(env, s)
            for s in rt.pull(source.registry_ref, image_tmp, insecure=bool(reg and reg.insecure))
        ]
        if reg is not None and reg.username is not None and reg.password is not None:
            # credentials reach the runtime through a private file sourced by the script, never through argv
            creds_file = f"{paths.run_dir}/.registry-{key[:12]}.env"
            steps = [["set", "-a"], [".", creds_file], ["set", "+a"], ["rm", "-f", "--", creds_file], *steps]
    else:
        steps = [with_env(env, s) for s in rt.convert(tar, image_tmp)]
    finish = [["mv", "-f", "--", image_tmp, image]] if rt.is_file() else []
    if staging != "registry":
        finish.append(["rm", "-f", "--", tar])
    body_steps = [mkdir, *steps, *finish]
    modules = [*cluster.modules, *cluster.runtime.modules]
    convert = login_argv(body_steps, modules=modules)
    script = script_path = None
    if cluster.runtime.convert_on == "compute":
        spec = slurm.JobSpec(
            job_name=f"hpcci-convert-{key[:12]}",
            output=f"{paths.run_dir}/convert-{key[:12]}.out",
            partition=cluster.partition(cluster.scheduler.default_partition).name,
            account=cluster.scheduler.account,
            reservation=cluster.scheduler.reservation,
            qos=cluster.scheduler.qos,
            time="00:30:00",
            memory="4G",
            chdir=paths.run_dir,
            extra=[*cluster.scheduler.directives],
            body=[
                "set -e",
                *[command_line(["module", "load", m]) for m in modules],
                *[command_line(s) for s in body_steps],
            ],
            comment=f"hpcci: convert image {source.digest} ({source.platform}) on a compute node",
        )
        script = slurm.render_script(spec, _template(cluster))
        script_path = f"{paths.run_dir}/convert-{key[:12]}.sbatch"
    return ImagePlan(
        source=source,
        staging=staging,
        tar=tar,
        tar_tmp=tar_tmp,
        image=image,
        image_tmp=image_tmp,
        exists_argv=rt.exists(image),
        convert_argv=convert,
        registry_creds_file=creds_file,
        convert_script=script,
        convert_script_path=script_path,
    )


def _template(cluster: Cluster) -> str | None:
    """The cluster's own sbatch template, if it names one (relative to its config file)."""
    if not cluster.scheduler.template:
        return None
    path = Path(cluster.source.file).parent / cluster.scheduler.template
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        where = cluster.source.where(("scheduler", "template"))
        raise ConfigError(f"{where}: scheduler.template: cannot read {path}: {e.strerror}") from e


def test_body(cluster: Cluster, test: SmokeTest, image: str) -> list[str]:
    """The script lines that run ``test`` in ``image``: module loads, then the (MPI-launched) container command."""
    rt = _runtime(cluster)
    opts = ExecOptions(
        gpu=cluster.runtime.gpu if test.gpu else None,
        binds=[*cluster.runtime.binds, *test.binds],
        cleanenv=cluster.runtime.cleanenv,
        env=test.env,
        exec_args=cluster.runtime.type_exec_args,
    )
    try:
        argv = test.argv
    except ValueError as e:  # shlex: an unbalanced quote
        raise ConfigError(
            f"test {test.name}: command {test.command!r} cannot be split into words ({e}); "
            "balance its quotes or write it as a list"
        ) from e
    run = rt.exec(image, argv, opts)
    modules = [*cluster.modules, *cluster.runtime.modules]
    if test.mpi:
        modules = [*cluster.modules, *cluster.mpi.modules, *cluster.runtime.modules]
        launcher = cluster.mpi.launcher
        if launcher == "srun":
            run = ["srun", *cluster.mpi.args, *run]
        else:
            run = [launcher, "-n", str(test.resources.tasks), *cluster.mpi.args, *run]
    return [
        *[command_line(["module", "load", m]) for m in dict.fromkeys(modules)],
        command_line(run),
    ]


def plan_test(
    cluster: Cluster, index: int, test: SmokeTest, images: dict[str, ImagePlan], paths: Paths, label: str = ""
) -> TestJob:
    key = partition_key(cluster, test)
    part = cluster.partition(key)
    platform = machine_platform(part.arch)
    image = images[platform].image
    r = test.resources
    gres = (part.gres or "gpu:1") if test.gpu else None
    spec = slurm.JobSpec(
        job_name=f"hpcci-{test.name}",
        output=f"{paths.run_dir}/{test.name}.out",
        partition=part.name,
        account=cluster.scheduler.account,
        reservation=cluster.scheduler.reservation,
        qos=cluster.scheduler.qos,
        nodes=r.nodes,
        tasks=r.tasks,
        tasks_per_node=r.tasks_per_node,
        cpus_per_task=r.cpus_per_task,
        time=r.time,
        memory=r.memory,
        gres=gres,
        chdir=paths.run_dir,
        extra=[*cluster.scheduler.directives, *part.directives],
        body=test_body(cluster, test, image),
        comment=f"hpcci smoke test {test.name!r} on cluster {cluster.name}{label}",
    )
    return TestJob(
        index=index,
        test=test,
        platform=platform,
        partition=part.name,
        script_path=f"{paths.run_dir}/{test.name}.sbatch",
        output_path=spec.output,
        script=slurm.render_script(spec, _template(cluster)),
        time_limit=r.time,
    )


def plan_cluster(
    pipeline: Pipeline, cluster: Cluster, sources: dict[str, ImageSource], paths: Paths, run_id: str
) -> ClusterPlan:
    """Every command and script a deploy of ``sources`` to ``cluster`` runs (pure)."""
    images: dict[str, ImagePlan] = {}
    for platform in platforms_needed(pipeline, cluster):
        source = sources.get(platform)
        if source is None:
            have = ", ".join(sources) or "none"
            arch = platform_machine(platform) or platform
            raise UsageError(
                f"cluster {cluster.name}: its partitions are {arch} and need a {platform} image, but only "
                f"{have} were published; add {platform} to image.platforms in hpcci.yaml"
            )
        images[platform] = plan_image(pipeline, cluster, source, paths, run_id)
    tests = [plan_test(cluster, i, t, images, paths) for i, t in tests_for(pipeline, cluster.name)]
    return ClusterPlan(cluster, paths, images, tests, list(cluster.modules))


def make_dirs_argv(paths: Paths) -> list[list[str]]:
    """The image cache, and this run's folder mode 700: it holds job scripts, outputs and registry credentials."""
    return [["mkdir", "-p", "--", paths.cache], ["mkdir", "-p", "-m", "700", "--", paths.run_dir]]


def stage_s3_step(plan: ImagePlan, *, max_time: int) -> Pipe:
    """curl on the login node, hashing while it writes: `curl | tee TMP | sha256sum` (one pass over the bytes).

    The presigned URL comes on stdin (`--config -`), never on a command line.
    """
    curl = ["curl", "--fail", "--silent", "--show-error", "--location", "--retry", "3", "--retry-delay", "2",
            "--connect-timeout", "20", "--max-time", str(max_time), "--config", "-"]  # fmt: skip
    return Pipe(curl, ["tee", "--", plan.tar_tmp], ["sha256sum"])


def curl_config(url: str) -> str:
    escaped = url.replace("\\", "\\\\").replace('"', '\\"')
    return f'url = "{escaped}"\n'


# -- running it ----------------------------------------------------------------------------------------------------

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


class Deployer:
    """Runs a ClusterPlan on a login node: stage, verify, convert, submit. One instance per cluster."""

    def __init__(
        self,
        pipeline: Pipeline,
        cluster: Cluster,
        remote: Remote,
        *,
        presign: Presign | None = None,
        info: Callable[[str], None] = print,
        stop: threading.Event | None = None,
        run_id: str,
        mask: Callable[[str], None] = lambda _secret: None,
    ) -> None:
        self.pipeline = pipeline
        self.mask = mask  # every secret this deployer handles goes here before anything could print it
        self.cluster = cluster
        self.remote = remote
        self.presign = presign
        self.info = info
        self.stop = stop or threading.Event()
        self.run_id = run_id
        self.modules = list(cluster.modules)
        self._tmpdir = cluster.paths.tmpdir or "paths.tmpdir"

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted(
                f"cluster {self.cluster.name}: deploy interrupted (SIGTERM/SIGINT) before any job ran"
            )

    def login(self, steps: Sequence[Sequence[str]], *, runtime: bool = False) -> list[str]:
        """``steps`` in a login shell after the cluster's modules (and the runtime's, with ``runtime``)."""
        extra = self.cluster.runtime.modules if runtime else []
        return login_argv(steps, modules=[*self.modules, *extra])

    def remote_env(self) -> dict[str, str]:
        """The login shell's environment (for $SCRATCH and friends in cluster paths), asked once."""
        done = self.remote.run(self.login([["env", "-0"]]), timeout=60, check=True, echo="bash -lc 'env -0'")
        env = parse_env0(done.stdout)
        return {k: env[k] for k in needed_variables(self.cluster) if k in env}

    def plan(self, sources: dict[str, ImageSource]) -> ClusterPlan:
        paths = resolve_paths(self.cluster, self.remote_env(), self.run_id)
        self._tmpdir = paths.tmpdir
        return plan_cluster(self.pipeline, self.cluster, sources, paths, self.run_id)

    # -- image --------------------------------------------------------------------------------------------------
    def stage_image(self, plan: ClusterPlan, image: ImagePlan) -> Staged:
        """Make the converted image exist on the cluster; a cached one is reused untouched."""
        staged = Staged(image)
        self._check_stop()
        for argv in make_dirs_argv(plan.paths):
            self.remote.run(argv, timeout=60, check=True)
        rt_file = runtime_for(self.cluster.runtime.type).is_file()
        exists = self.remote.run(
            image.exists_argv if rt_file else self.login([image.exists_argv], runtime=True), timeout=60
        )
        if exists.ok:
            staged.cache_hit = True
            self.info(f"{image.source.platform} image cached at {image.image} (cache hit)")
            return staged
        t0 = time.monotonic()
        if image.staging != "registry":
            staged.transferred = self._stage_tar(image, staged)
        staged.seconds["stage"] = time.monotonic() - t0
        self._check_stop()
        t0 = time.monotonic()
        if image.registry_creds_file:
            self._write_registry_creds(image.registry_creds_file)
        try:
            if self.cluster.runtime.convert_on == "compute":
                staged.convert_job = self._submit_convert(image)
            else:
                self._convert(image)
        finally:
            if image.registry_creds_file and not staged.convert_job:
                self._remove(image.registry_creds_file)  # the script deletes it; this covers a failed start
        staged.seconds["convert"] = time.monotonic() - t0
        return staged

    def _write_registry_creds(self, path: str) -> None:
        from hpcci.config import resolve_value

        reg = self.pipeline.publish.registry
        assert reg is not None and reg.username is not None and reg.password is not None
        user = resolve_value(reg.username, "publish.registry.username").strip()
        password = reg.password.resolve("publish.registry.password").strip()
        self.mask(password)
        env = _runtime(self.cluster).registry_env(user, password)
        self.remote.write_text(path, "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()), mode=0o600)

    def _sha256(self, path: str, timeout: float = 900) -> str | None:
        done = self.remote.run(["sha256sum", "--", path], timeout=timeout)
        return parse_sha256sum(done.stdout) if done.ok else None

    def _stage_tar(self, image: ImagePlan, staged: Staged) -> bool:
        """Put the tar at image.tar via a temporary name and a sha256 check. False when it was already there."""
        want = image.source.tar_sha256
        if not want and image.source.local_tar:
            want = file_sha256(Path(image.source.local_tar))  # only now: a cache hit never reads the tar
        staged.tar_sha256 = want
        if want and self._sha256(image.tar) == want:
            self.info(f"tar already staged at {image.tar} (sha256 matches)")
            return False
        src = image.source
        try:
            if image.staging == "s3":
                got = self._pull_s3(image)
            else:
                assert src.local_tar is not None
                self.info(f"uploading {src.local_tar} -> {image.tar_tmp} (SFTP)")
                self.remote.put(Path(src.local_tar), image.tar_tmp, streams=self.cluster.staging.streams)
                got = self._sha256(image.tar_tmp)
            if want and got != want:
                raise TransferError(
                    f"cluster {self.cluster.name}: the staged tar's sha256 is {got or 'unreadable'} but the "
                    f"published one is {want}; the copy is corrupt or the object changed - it was deleted, re-run "
                    "the deploy (or re-publish if the S3 object was replaced)"
                )
            self.remote.run(["mv", "-f", "--", image.tar_tmp, image.tar], timeout=60, check=True)
        except BaseException:
            self._remove(image.tar_tmp)
            raise
        return True

    def _pull_s3(self, image: ImagePlan) -> str | None:
        """Download on the login node; returns the sha256 of the bytes written."""
        obj = image.source.s3
        assert obj is not None
        if self.presign is None:
            raise UsageError(f"cluster {self.cluster.name}: S3 staging needs S3 credentials to presign a URL")
        endpoint = self.cluster.staging.s3_endpoint_url or obj.endpoint_url
        url = self.presign(obj, endpoint)
        self.mask(url.split("?", 1)[-1])  # the query string is the signature: a credential until it expires
        timeout = max(600, obj.size // (5 << 20))  # at least 5 MiB/s
        argv = login_argv([stage_s3_step(image, max_time=timeout)], modules=self.modules)
        self.info(f"login node pulls s3://{obj.bucket}/{obj.key} ({obj.size} bytes)")
        done = self.remote.run(
            argv,
            timeout=timeout + 30,
            stdin=curl_config(url),
            echo=f"curl <presigned URL> | tee {image.tar_tmp} | sha256sum",
        )
        if not done.ok:
            err = (done.stderr or done.stdout).strip().splitlines()
            raise TransferError(
                f"cluster {self.cluster.name}: the login node could not download s3://{obj.bucket}/{obj.key} "
                f"from {endpoint}: {err[-1] if err else f'curl exit code {done.returncode}'}; check that the login "
                "node reaches the S3 endpoint (staging.s3_endpoint_url) or use staging.method: sftp"
            )
        return parse_sha256sum(done.stdout)

    def _remove(self, path: str) -> None:
        with contextlib.suppress(HpcciError):
            self.remote.run(["rm", "-f", "--", path], timeout=60, interruptible=False)

    def _convert(self, image: ImagePlan) -> None:
        self.info(f"converting with {self.cluster.runtime.type} on the login node")
        done = self.remote.run(image.convert_argv, timeout=3600)
        if not done.ok:
            if image.image_tmp != image.image:
                self._remove(image.image_tmp)
            from hpcci.process import tail

            raise RuntimeConvertError(
                f"cluster {self.cluster.name}: {self.cluster.runtime.type} could not convert the image "
                f"(exit code {done.returncode}): {tail(done.stdout + done.stderr)}; check the runtime modules "
                f"({', '.join(self.cluster.runtime.modules) or 'none'}) and free space in "
                f"{self._tmpdir} (paths.tmpdir) and {image.image_tmp.rsplit('/', 1)[0]} (paths.image_cache)"
            )

    def _submit_convert(self, image: ImagePlan) -> str:
        assert image.convert_script is not None and image.convert_script_path is not None
        self.remote.write_text(image.convert_script_path, image.convert_script)
        return self.submit(image.convert_script_path, [], what="the conversion job")

    # -- jobs -----------------------------------------------------------------------------------------------------
    def submit(self, script_path: str, dependency: Sequence[str], *, what: str) -> str:
        """sbatch --parsable; a refusal raises SchedulerError with sbatch's reason and what to do."""
        done = self.remote.run(
            self.login([slurm.sbatch_argv(script_path, dependency=dependency)]), timeout=120
        )
        if not done.ok:
            raise SchedulerError(
                f"cluster {self.cluster.name}: sbatch refused {what}: {slurm.sbatch_refusal(done.stderr or done.stdout)}"
            )
        return slurm.parse_sbatch(done.stdout)

    def submit_tests(
        self, plan: ClusterPlan, staged: dict[str, Staged]
    ) -> tuple[dict[int, str], dict[int, str]]:
        """Write and submit every test script. Returns (test index -> job id, test index -> refusal reason)."""
        jobs: dict[int, str] = {}
        refused: dict[int, str] = {}
        for job in plan.tests:
            self._check_stop()
            self.remote.write_text(job.script_path, job.script)
            dep = [
                s.convert_job
                for s in staged.values()
                if s.convert_job and s.plan.source.platform == job.platform
            ]
            try:
                jobs[job.index] = self.submit(job.script_path, dep, what=f"test {job.test.name}")
                self.info(f"test {job.test.name} submitted as job {jobs[job.index]}")
            except SchedulerError as e:
                refused[job.index] = str(e)
        return jobs, refused


# -- one cluster, start to finish --------------------------------------------------------------------------


@dataclass
class Outcome:
    deploy: ClusterDeploy
    result: ClusterResult
    error: HpcciError | None = None


def deploy_cluster(
    pipe: Pipeline,
    cluster: Cluster,
    sources: dict[str, ImageSource],
    remote: Remote,
    *,
    presign: Presign | None,
    run_id: str,
    deadline: float,
    deadline_text: str,
    stop: threading.Event,
    info: Callable[[str], None],
    mask: Callable[[str], None] = lambda _secret: None,
) -> Outcome:
    """Stage, convert, submit, follow and judge on one cluster. Never raises: errors become its result."""
    deployer = Deployer(
        pipe, cluster, remote, presign=presign, info=info, stop=stop, run_id=run_id, mask=mask
    )
    plan: ClusterPlan | None = None
    staged: dict[str, Staged] = {}
    jobs: dict[int, str] = {}
    refused: dict[int, str] = {}
    followed: smoke.Followed | None = None
    outputs: dict[int, str] = {}
    error: HpcciError | None = None
    try:
        plan = deployer.plan(sources)
        for platform, image in plan.images.items():
            staged[platform] = deployer.stage_image(plan, image)
        if time.monotonic() > deadline:
            raise DeadlineExceeded(
                f"cluster {cluster.name}: the deploy deadline ({deadline_text}) passed while staging the image; "
                "no job was submitted - raise deploy.deadline or stage faster (staging.method: s3)"
            )
        jobs, refused = deployer.submit_tests(plan, staged)
        convert_jobs = [s.convert_job for s in staged.values() if s.convert_job]
        followed = smoke.follow(
            smoke.SlurmJobs(remote, plan.modules, info),
            [*convert_jobs, *jobs.values()],
            poll=cluster.scheduler.poll,
            deadline=deadline,
            stop=stop,
            info=info,
            deadline_text=deadline_text,
        )
        for s in staged.values():
            if s.convert_job:
                error = error or _convert_job_error(cluster, s, followed, remote, info)
        for job in plan.tests:
            if job.index in jobs:
                outputs[job.index] = _tail(remote, job.output_path, info)
        if followed.error:
            error = error or SchedulerError(f"cluster {cluster.name}: {followed.error}")
    except Exception as e:  # a bug or an unexpected library error must not hide the other clusters
        error = cluster_error(cluster.name, e)
    return _outcome(pipe, cluster, sources, plan, staged, jobs, refused, followed, outputs, error)


def cluster_error(name: str, e: BaseException) -> HpcciError:
    """Any exception as this cluster's error: one line, prefixed once with "cluster NAME:", never a traceback."""
    prefix = f"cluster {name}: "
    if isinstance(e, HpcciError):
        text = " ".join(str(e).split()) or type(e).__name__
        e.message = text if text.startswith(prefix) else prefix + text
        e.args = (e.message,)
        return e
    text = " ".join(str(e).split())
    out = HpcciError(f"{prefix}internal error: {type(e).__name__}: {text} (please report it)")
    out.__cause__ = e
    return out


def failed_outcome(
    pipe: Pipeline, cluster: Cluster, sources: dict[str, ImageSource], error: HpcciError
) -> Outcome:
    """The outcome of a cluster that failed before its deploy started (e.g. its SSH secret is not set)."""
    return _outcome(pipe, cluster, sources, None, {}, {}, {}, None, {}, error)


def _tail(remote: Remote, path: str, info: Callable[[str], None]) -> str:
    try:
        return remote.read_tail(path, smoke.OUTPUT_TAIL_BYTES)
    except HpcciError as e:
        info(f"output not read: {e}")  # e names the cluster and the file
        return ""


def _convert_job_error(
    cluster: Cluster, staged: Staged, followed: smoke.Followed, remote: Remote, info: Callable[[str], None]
) -> HpcciError | None:
    job_id = staged.convert_job
    assert job_id is not None and staged.plan.convert_script_path is not None
    st = followed.states.get(job_id)
    if st is not None and st.state == slurm.COMPLETED and not st.exit_code:
        return None
    out = _tail(remote, staged.plan.convert_script_path.removesuffix(".sbatch") + ".out", info)
    if staged.plan.image_tmp != staged.plan.image:
        with contextlib.suppress(HpcciError):
            remote.run(
                ["rm", "-f", "--", staged.plan.image_tmp], timeout=60, interruptible=False
            )  # a half-written image is never kept
    what = st.sentence() if st is not None else "its state is unknown"
    return RuntimeConvertError(
        f"cluster {cluster.name}: the conversion job {job_id} did not succeed ({what}): {tail(out)}"
    )


def _outcome(
    pipe: Pipeline,
    cluster: Cluster,
    sources: dict[str, ImageSource],
    plan: ClusterPlan | None,
    staged: dict[str, Staged],
    jobs: dict[int, str],
    refused: dict[int, str],
    followed: smoke.Followed | None,
    outputs: dict[int, str],
    error: HpcciError | None,
) -> Outcome:
    images = list(plan.images.values()) if plan else []
    first = images[0] if images else None
    platform = first.source.platform if first else next(iter(sources), "")
    source = first.source if first else sources.get(platform)
    tests_by_index = {t.index: t for t in plan.tests} if plan else {}
    names = {i: t.test.name for i, t in tests_by_index.items()}
    results: list[TestResult] = []
    for index, test in tests_for(pipe, cluster.name):
        job = tests_by_index.get(index)
        job_id = jobs.get(index)
        st = slurm.JobState(job_id or "", slurm.NOT_RUN)
        output = ""
        if job_id is None or followed is None:
            why = refused.get(index) or (f"not run: {error}" if error else "not run")
            v = smoke.Verdict("error" if index in refused or error else "skipped", why)
        else:
            st = followed.states.get(job_id, slurm.JobState(job_id, slurm.UNKNOWN))
            cancelled = followed.cancelled.get(job_id)
            output = outputs.get(index, "")
            if st.state == slurm.CANCELLED and not cancelled and error is not None:
                v = smoke.Verdict("error", f"not run: {error}")
            else:
                action = followed.action_required.get(job_id)
                v = smoke.judge(test, st, output, cancelled_why=cancelled, action_required=action)
        results.append(
            TestResult(
                cluster=cluster.name,
                test=test.name,
                platform=job.platform if job else platform,
                job_id=job_id,
                state=st.state,
                exit_code=st.exit_code,
                elapsed_s=st.elapsed_s,
                verdict=v.verdict,
                reason=v.reason,
                output_tail=smoke.bounded_tail(output),
                source_file=pipe.source.file,
                source_line=pipe.test_line(index),
            )
        )
    any_staged = list(staged.values())
    deploy = ClusterDeploy(
        cluster=cluster.name,
        login_host=cluster.login.host,
        platform=platform,
        staging=first.staging if first else "",
        tar_path=first.tar if first and first.staging != "registry" else None,
        tar_sha256=next(
            (s.tar_sha256 for s in any_staged if s.tar_sha256), source.tar_sha256 if source else None
        ),
        sif_path=first.image if first else "",
        image_digest=source.digest if source else "",
        cache_hit=bool(any_staged) and all(s.cache_hit for s in any_staged),
        jobs={names.get(i, str(i)): j for i, j in jobs.items()},
        error=str(error) if error else None,
    )
    result = ClusterResult(
        cluster=cluster.name,
        platform=platform,
        tests=results,
        image_digest=deploy.image_digest,
        tar_sha256=deploy.tar_sha256,
        sif_path=deploy.sif_path or None,
        error=str(error) if error else None,
    )
    return Outcome(deploy, result, error)


def describe_error(e: BaseException) -> str:
    return str(e) if isinstance(e, HpcciError) else f"{type(e).__name__}: {e}"


__all__ = [
    "ClusterPlan",
    "Deployer",
    "ImagePlan",
    "ImageSource",
    "Paths",
    "RemoteError",
    "TestJob",
    "docker_archive_info",
    "plan_cluster",
    "sources_from_publish",
]
