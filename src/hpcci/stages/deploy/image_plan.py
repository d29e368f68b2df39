"""The plan for one image on one cluster, pure data: how it is staged, checked, converted and cached.

Staging never leaves a half-copied file in use: the tar goes to a temporary name, its sha256 is checked, then it
is renamed; the converted image likewise. Converted images are cached by content (the image digest), so a
re-deploy of an unchanged image transfers and converts nothing. Imports no transport (a unit test checks).
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcci.backends.runtime import Runtime
from hpcci.backends.schedulers import Scheduler
from hpcci.backends.schedulers.model import JobSpec
from hpcci.config.models import Cluster, Pipeline
from hpcci.errors import ConfigError, UsageError
from hpcci.modules import load_argv
from hpcci.shell import Pipe, command_line, login_argv, with_env
from hpcci.stages.cluster import automation, remove_argv, runtime, shell_modules, template
from hpcci.stages.deploy.identity import RunIdentity, labelled
from hpcci.stages.deploy.paths import Paths
from hpcci.stages.layers.index import LAYOUT_TAG
from hpcci.stages.layers.store import GiB, LayerPlan, store_for
from hpcci.stages.sources import ImageSource
from hpcci.stages.steps import Command, Step, Submit, Upload, WriteFile


@dataclass(frozen=True)
class ImagePlan:
    """One platform's image on one cluster: its places, and the steps that make it exist there."""

    source: ImageSource
    staging: str  # s3 | sftp | registry
    tar: str  # staged docker-archive (deleted after conversion)
    tar_tmp: str
    image: str  # converted image (content-addressed)
    image_tmp: str
    cached: Command  # succeeds when the converted image is there already: then nothing else runs
    tar_cached: Command | None  # sha256sum of a tar staged by an earlier deploy
    fetch: Command | Upload | None  # the tar to tar_tmp: curl on the login node (S3) or SFTP
    verify: Command | None  # sha256sum of tar_tmp when the fetch did not hash it
    commit: Command | None  # tar_tmp -> tar once its sha256 is right
    convert: Command | None  # conversion on the login node (module loads, to the temporary name, rename)
    convert_job: Submit | None  # ... or as a batch job on a compute node (runtime.convert_on: compute)
    registry_creds_file: str | None = None  # written (mode 600) just before a registry pull, deleted by it
    checksum_file: str | None = None  # login.mode automation: "SHA  TAR_TMP", checked by the conversion job
    url_file: str | None = None  # login.mode automation + S3: curl config with the presigned URL (mode 600)
    layers: LayerPlan | None = None  # staging.layers: only missing blobs, into the cluster's blob store

    def steps(self) -> list[Step]:
        staging = (
            self.layers.steps() if self.layers else [self.tar_cached, self.fetch, self.verify, self.commit]
        )
        order = [self.cached, *staging, self.convert, self.convert_job]
        return [s for s in order if s is not None]


def setup_steps(paths: Paths) -> list[Command]:
    """The image cache, and this run's folder mode 700: it holds job scripts, outputs and registry credentials."""
    return [
        Command(["mkdir", "-p", "--", paths.cache]),
        Command(["mkdir", "-p", "-m", "700", "--", *paths.private_folders]),
    ]


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


def s3_curl_argv(config: str, *, max_time: int) -> list[str]:
    """curl reading the presigned URL from ``config`` (a curl config file, or - for stdin): never on a command line."""
    return ["curl", "--fail", "--silent", "--show-error", "--location", "--retry", "3", "--retry-delay", "2",
            "--connect-timeout", "20", "--max-time", str(max_time), "--config", config]  # fmt: skip


def stage_s3_step(plan_tar_tmp: str, *, max_time: int) -> Pipe:
    """curl on the login node, hashing while it writes: `curl | tee TMP | sha256sum` (one pass over the bytes).

    The presigned URL comes on stdin (`--config -`), never on a command line.
    """
    return Pipe(s3_curl_argv("-", max_time=max_time), ["tee", "--", plan_tar_tmp], ["sha256sum"])


def curl_config(url: str) -> str:
    escaped = url.replace("\\", "\\\\").replace('"', '\\"')
    return f'url = "{escaped}"\n'


def plan_image(
    pipeline: Pipeline,
    cluster: Cluster,
    source: ImageSource,
    paths: Paths,
    run_id: str,
    scheduler: Scheduler,
    identity: RunIdentity | None = None,
) -> ImagePlan:
    """The steps that make ``source`` exist, converted, in the cluster's image cache."""
    rt = runtime(cluster)
    staging = choose_staging(pipeline, cluster, source)
    robot = automation(cluster)
    if robot:
        _check_automation(cluster, rt)
    key = source.key
    tar, tar_tmp = f"{paths.cache}/{key}.tar", f"{paths.cache}/.{key}.{run_id}.tar.part"
    image = rt.image_path(paths.cache, key)
    image_tmp = f"{paths.cache}/.{key}.{run_id}.part{rt.suffix}" if rt.is_file() else image
    modules = [*cluster.modules, *cluster.runtime.modules]
    exists = rt.exists(image) if rt.is_file() else login_argv([rt.exists(image)], modules=modules)
    layers = _layer_plan(cluster, source, staging, paths, run_id)
    login = _registry_login(pipeline, staging) and layers is None  # with layers, curl fetches the blobs
    creds_file = f"{paths.run_dir}/.registry-{key[:12]}.env" if login else None
    checksum = f"{tar_tmp}.sha256" if robot and staging != "registry" else None
    url_file = f"{paths.run_dir}/.s3-{key[:12]}.curl" if checksum and staging == "s3" else None
    # login.mode automation: the job converts straight from the temporary tar and keeps its inputs until its last
    # line, so a job requeued after a node failure runs again from the start
    body = _convert_body(
        pipeline,
        cluster,
        source,
        staging,
        (tar_tmp if checksum else tar, image_tmp, image),
        paths.tmpdir,
        creds_file,
        layers.layout if layers else None,
    )
    if checksum:  # fetched (S3) and verified by the job, not on the login node
        body = [*_job_fetch(source, tar_tmp, url_file), ["sha256sum", "--check", "--strict", "--quiet", "--", checksum],
                *body, remove_argv(checksum) if url_file is None else ["rm", "-f", "--", checksum, url_file]]  # fmt: skip
    convert = convert_job = None
    if cluster.runtime.convert_on == "compute" or robot:
        spec = JobSpec(
            job_name=f"hpcci-convert-{key[:12]}",
            output=f"{paths.run_dir}/convert-{key[:12]}.out",
            partition=cluster.partition(cluster.scheduler.default_partition).name,
            account=cluster.scheduler.account,
            reservation=cluster.scheduler.reservation,
            qos=cluster.scheduler.qos,
            time="00:30:00",
            cpus_per_task=cluster.runtime.convert_cpus,
            memory="4G" if cluster.scheduler.memory_per != "none" else None,
            chdir=paths.run_dir,
            extra=[*cluster.scheduler.directives],
            body=[
                "set -e",
                *[command_line(load_argv(m)) for m in modules],
                *map(command_line, body),
            ],
            comment=f"hpcci: convert image {source.digest} ({source.platform}) on a compute node",
        )
        spec = labelled(spec, identity, cluster.name)
        script = WriteFile(f"{paths.run_dir}/convert-{key[:12]}{scheduler.SCRIPT_SUFFIX}",
                           scheduler.render_script(spec, template(cluster)))  # fmt: skip
        convert_job = Submit(script, scheduler, shell_modules(cluster))
    else:
        convert = Command(login_argv(body, modules=modules), timeout=3600)
    if checksum:
        upload = (
            Upload(source.local_tar, tar_tmp, cluster.staging.streams)
            if source.local_tar and not url_file
            else None
        )
        staged: tuple[Command | None, Command | Upload | None, Command | None, Command | None] = (
            None, upload, None, None)  # fmt: skip
    elif layers:
        staged = (None, None, None, None)
    else:
        staged = _tar_steps(source, staging, tar, tar_tmp, cluster, list(cluster.modules))
    return ImagePlan(source, staging, tar, tar_tmp, image, image_tmp,
                     Command(exists, note="cached already? then skip to the tests"), *staged,
                     convert, convert_job, creds_file, checksum, url_file, layers)  # fmt: skip


def _layer_plan(
    cluster: Cluster, source: ImageSource, staging: str, paths: Paths, run_id: str
) -> LayerPlan | None:
    """staging.layers where it applies: a runtime that builds from an OCI layout, a login shell to run the store's
    commands in (not login.mode automation); elsewhere the whole tar or the runtime's own pull, as before."""
    on = cluster.staging.layers and runtime(cluster).builds_from_layout
    if not on or automation(cluster):
        return None
    max_time = max(600, (source.s3.size if source.s3 else source.size) // (5 << 20))  # at least 5 MiB/s
    return LayerPlan(
        store=store_for(paths.cache),
        image=source.digest,
        layout=f"{paths.cache}/.layout-{source.key[:12]}.{run_id}",
        cache=paths.cache,
        limit=int(cluster.staging.blob_store_gib * GiB),
        run_id=run_id,
        via=staging,
        curl=tuple(s3_curl_argv("-", max_time=max_time)),
        modules=tuple(cluster.modules),
        local_tar=source.local_tar,
        streams=cluster.staging.streams,
    )


def layout_convert(rt: Runtime, layout: str, image: str) -> list[list[str]]:
    """The runtime's own build command with the assembled OCI layout as its source instead of a tar."""
    if not rt.builds_from_layout:  # the others' images are not built from a build source
        raise ValueError(f"{rt.name}: layer staging needs a runtime that builds from an OCI layout")
    return rt.build(f"oci:{layout}:{LAYOUT_TAG}", image)


def _job_fetch(source: ImageSource, tar_tmp: str, url_file: str | None) -> list[list[str]]:
    """login.mode automation + S3: the batch job downloads the tar (the URL in a private file, deleted at its end)."""
    if url_file is None:
        return []
    assert source.s3 is not None
    max_time = max(600, source.s3.size // (5 << 20))  # at least 5 MiB/s
    return [[*s3_curl_argv(url_file, max_time=max_time), "--output", tar_tmp]]


def _check_automation(cluster: Cluster, rt: Runtime) -> None:
    """What login.mode automation cannot do: a runtime whose images are not files."""
    where = cluster.source.where(("login", "mode"))
    if not rt.is_file():
        raise ConfigError(
            f"{where}: login.mode automation needs a runtime whose images are files (apptainer, singularity, "
            f"charliecloud): {cluster.runtime.type} keeps them in a store only a login shell reaches"
        )


def _registry_login(pipeline: Pipeline, staging: str) -> bool:
    reg = pipeline.publish.registry
    return staging == "registry" and reg is not None and reg.username is not None and reg.password is not None


def _convert_body(
    pipeline: Pipeline,
    cluster: Cluster,
    source: ImageSource,
    staging: str,
    files: tuple[str, str, str],
    tmpdir: str,
    creds_file: str | None,
    layout: str | None = None,
) -> list[list[str]]:
    """Conversion (or a registry pull) to the temporary name, then the rename: the commands, in order."""
    rt = runtime(cluster)
    tar, image_tmp, image = files
    env = rt.tmp_env(tmpdir)
    if layout:
        steps = [with_env(env, s) for s in layout_convert(rt, layout, image_tmp)]
    elif staging == "registry":
        assert source.registry_ref is not None
        reg = pipeline.publish.registry
        insecure = bool(reg and reg.insecure)
        steps = [with_env(env, s) for s in rt.pull(source.registry_ref, image_tmp, insecure=insecure)]
        if creds_file:
            # credentials reach the runtime through a private file sourced by the script, never through argv
            steps = [["set", "-a"], [".", creds_file], ["set", "+a"], remove_argv(creds_file), *steps]
    else:
        steps = [with_env(env, s) for s in rt.convert(tar, image_tmp)]
    finish = [["mv", "-f", "--", image_tmp, image]] if rt.is_file() else []
    if layout:
        finish.append(["rm", "-rf", "--", layout])  # hard links: the store keeps the blobs
    elif staging != "registry":
        finish.append(remove_argv(tar))
    return [["mkdir", "-p", "--", tmpdir, f"{tmpdir}/cache"], *steps, *finish]


def _tar_steps(
    source: ImageSource, staging: str, tar: str, tar_tmp: str, cluster: Cluster, modules: list[str]
) -> tuple[Command | None, Command | Upload | None, Command | None, Command | None]:
    """(is it staged already, fetch, verify, commit) for a tar; all None when the runtime pulls from a registry."""
    if staging == "registry":
        return None, None, None, None
    want = f"must equal {source.tar_sha256 or 'the tar sha256'}"
    cached = Command(["sha256sum", "--", tar], timeout=900, note=f"staged already? {want}")
    verify: Command | None = None
    fetch: Command | Upload
    if staging == "s3":
        assert source.s3 is not None
        max_time = max(600, source.s3.size // (5 << 20))  # at least 5 MiB/s
        pull = login_argv([stage_s3_step(tar_tmp, max_time=max_time)], modules=modules)
        fetch = Command(
            pull,
            timeout=max_time + 30,
            note=f"stdin: {curl_config('PRESIGNED-URL').strip()}; a broken "
            "pull resumes with --range where its bytes end, then sha256sum TMP",
        )
    else:
        assert source.local_tar is not None
        fetch = Upload(source.local_tar, tar_tmp, cluster.staging.streams)
        verify = Command(["sha256sum", "--", tar_tmp], timeout=900, note=want)
    return cached, fetch, verify, Command(["mv", "-f", "--", tar_tmp, tar])
