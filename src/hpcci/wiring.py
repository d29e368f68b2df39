"""The composition root: the one place that builds real clients (SSH, scheduler, object store, registry, GitHub).

Commands call these with their configuration and context; stages receive what they return and never pick an
implementation themselves. Imports of backends stay inside the functions so that `hpcci --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hpcci import context
from hpcci.errors import ConfigError, UsageError
from hpcci.log import Log

if TYPE_CHECKING:
    from hpcci.backends.builders.spec import RegistryAuth
    from hpcci.backends.github.client import RestGitHub
    from hpcci.backends.s3.store import ObjectStore, S3Settings
    from hpcci.backends.schedulers import Scheduler
    from hpcci.backends.schedulers.jobs import RemoteJobs
    from hpcci.backends.ssh.remote import SSHRemote
    from hpcci.backends.ssh.target import SSHTarget
    from hpcci.config.models import Cluster, LoginConfig, Pipeline
    from hpcci.records import S3Object
    from hpcci.references import Destination
    from hpcci.stages.deploy.identity import RunIdentity
    from hpcci.stages.layers.stage import OpenRegistry
    from hpcci.stages.release.promote import Releases

DEFAULT_API_URL = "https://api.github.com"


class Resolvable(Protocol):
    """A secret reference of the config ({env: NAME} or {file: PATH})."""

    def resolve(self, what: str) -> str: ...


# -- SSH and the scheduler ------------------------------------------------------------------------------------------


def ssh_target(cluster: str, login: LoginConfig, config_file: str | None = None) -> SSHTarget:
    """login: as the transport's frozen target; secrets resolve when the connection first needs them."""
    from hpcci.backends.ssh.target import SSHHop, SSHTarget
    from hpcci.config.models import resolve_value

    def lazy(secret: Resolvable, what: str) -> Callable[[], str]:
        return lambda: secret.resolve(f"cluster {cluster}: {what}")

    jump = login.jump
    hop = None
    if jump is not None:
        juser = jump.user
        hop = SSHHop(
            jump.host, jump.port, lambda: resolve_value(juser, f"cluster {cluster}: login.jump.user")
        )
    return SSHTarget(
        cluster=cluster,
        host=login.host,
        port=login.port,
        user=resolve_value(login.user, f"cluster {cluster}: login.user"),
        key=lazy(login.key, "login.key"),
        known_hosts=lazy(login.known_hosts, "login.known_hosts"),
        key_passphrase=lazy(login.key_passphrase, "login.key_passphrase") if login.key_passphrase else None,
        certificate=lazy(login.certificate, "login.certificate") if login.certificate else None,
        mode=login.mode,
        jump=hop,
        connect_timeout=login.connect_timeout,
        command_timeout=login.command_timeout,
        keepalive=login.keepalive,
        config_file=config_file,
    )


def make_remote(
    cluster: Cluster,
    log: Log,
    *,
    echo: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> SSHRemote:
    """The cluster's login node over SSH (not connected yet: the first command connects)."""
    from hpcci.backends.ssh.remote import SSHRemote

    target = ssh_target(cluster.name, cluster.login, cluster.source.file)
    return SSHRemote(target, echo=echo, mask=log.mask, stop=stop)


def make_scheduler(cluster: Cluster) -> Scheduler:
    """The cluster's scheduler backend (scheduler.type in its config)."""
    from hpcci.backends.schedulers import SCHEDULERS

    return SCHEDULERS[cluster.scheduler.type]


@contextlib.contextmanager
def cluster_jobs(cluster: Cluster, log: Log) -> Iterator[RemoteJobs]:
    """The cluster's jobs (query, cancel) over one SSH connection, closed afterwards."""
    from hpcci.backends.schedulers.jobs import RemoteJobs
    from hpcci.stages.cluster import shell_modules

    remote = make_remote(cluster, log, echo=log.info)
    try:
        yield RemoteJobs(remote, make_scheduler(cluster), shell_modules(cluster), log.info)
    finally:
        remote.close()


def run_identity(pipe: Pipeline, run_id: str | None, default_run: str = "") -> RunIdentity:
    """The workflow run the jobs carry: --run-id, else the GitHub run; the repository, else the image's name."""
    from hpcci.stages.deploy.identity import run_identity as identity

    env = context.variables()
    return identity(run_id, default_run, env.get("GITHUB_REPOSITORY") or pipe.image.name, env)


def connect_releases(cluster: Cluster, name: str, log: Log) -> tuple[SSHRemote, Releases]:
    """The cluster's installed releases of module NAME, over a new SSH connection (the caller closes it)."""
    from hpcci.stages.release.promote import Releases

    remote = make_remote(cluster, log, echo=log.info)
    try:
        return remote, Releases(cluster, remote, name, log.info)
    except BaseException:
        remote.close()
        raise


# -- registries and the object store --------------------------------------------------------------------------------


def registry_auths(pipe: Pipeline, log: Log, *, required: bool) -> list[RegistryAuth]:
    """Credentials for publish.registry: from hpcci.yaml (env/file refs), else HPCCI_REGISTRY_USERNAME/PASSWORD."""
    from hpcci.backends.builders.spec import RegistryAuth
    from hpcci.config.models import resolve_value
    from hpcci.references import destination

    reg = pipe.publish.registry
    if reg is None:
        return []
    try:
        user = resolve_value(reg.username, "publish.registry.username") if reg.username else None
        password = reg.password.resolve("publish.registry.password").strip() if reg.password else None
    except ConfigError:
        if required:
            raise
        return []
    user = user or context.var("HPCCI_REGISTRY_USERNAME")
    password = password or context.var("HPCCI_REGISTRY_PASSWORD")
    log.mask(password)
    if not (user and password):
        if required and (reg.username or reg.password):
            raise ConfigError("publish.registry: username and password must both be set")
        return []
    host = destination(reg.url, reg.repository, pipe.image.name, insecure=reg.insecure).host
    return [RegistryAuth(host=host, username=user, password=password, insecure=reg.insecure)]


def registry_opener(pipe: Pipeline, log: Log) -> OpenRegistry:
    """Opens the image's registry for layer staging, with publish.registry's credentials (masked) when it has them."""
    from hpcci.backends.builders.spec import RegistryAuth
    from hpcci.backends.registry import RegistryClient
    from hpcci.config.models import resolve_value

    def open_registry(dest: Destination) -> RegistryClient:
        reg = pipe.publish.registry
        auth = None
        if reg is not None and reg.username is not None and reg.password is not None:
            user = resolve_value(reg.username, "publish.registry.username").strip()
            password = reg.password.resolve("publish.registry.password").strip()
            log.mask(password)
            auth = RegistryAuth(host=dest.host, username=user, password=password)
        return RegistryClient(dest, auth)

    return open_registry


def s3_settings(pipe: Pipeline, log: Log) -> S3Settings:
    """publish.s3 as store settings; keys from hpcci.yaml (env/file refs), else boto3's usual chain (AWS_*)."""
    from hpcci.backends.s3.store import S3Settings
    from hpcci.config.models import resolve_value

    s3 = pipe.publish.s3
    assert s3 is not None
    key_id = resolve_value(s3.access_key, "publish.s3.access_key").strip() if s3.access_key else None
    secret = s3.secret_key.resolve("publish.s3.secret_key").strip() if s3.secret_key else None
    if bool(key_id) != bool(secret):
        raise ConfigError(
            "publish.s3: access_key and secret_key must be set together (or neither: AWS_* env)"
        )
    log.mask(secret)
    log.mask(context.var("AWS_SECRET_ACCESS_KEY"))
    return S3Settings(
        bucket=s3.bucket,
        endpoint_url=s3.endpoint_url,
        region=s3.region,
        path_style=s3.path_style,
        access_key=key_id,
        secret_key=secret,
        outage_window=outage_window(s3.outage_window, context.variables()),
    )


def outage_window(configured: float, env: Mapping[str, str]) -> float:
    """publish.s3.outage_window, unless $HPCCI_S3_OUTAGE_WINDOW (seconds) overrides it."""
    raw = env.get("HPCCI_S3_OUTAGE_WINDOW", "").strip()
    if not raw:
        return configured
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"HPCCI_S3_OUTAGE_WINDOW={raw!r} is not a number of seconds") from None
    if value < 0:
        raise ConfigError(f"HPCCI_S3_OUTAGE_WINDOW={raw!r} is negative")
    return value


def make_store(settings: S3Settings) -> ObjectStore:
    """The S3 object store for these settings."""
    from hpcci.backends.s3.store import make_store as store

    return store(settings)


def presigner(pipe: Pipeline, log: Log) -> Callable[[S3Object, str | None], str]:
    """Presigned GETs made for the endpoint as the cluster reaches it (the URL signs the Host header)."""

    def presign(obj: S3Object, endpoint: str | None) -> str:
        from dataclasses import replace

        from hpcci.backends.s3.store import S3Settings

        base = s3_settings(pipe, log) if pipe.publish.s3 else S3Settings(bucket=obj.bucket, path_style=True)
        settings = replace(base, bucket=obj.bucket, endpoint_url=endpoint, region=obj.region or base.region)
        url = make_store(settings).presign_get(obj.key)
        log.mask(url.split("?", 1)[-1])  # the signature is a credential for an hour
        return url

    return presign


# -- GitHub ---------------------------------------------------------------------------------------------------------


def github_client(args: argparse.Namespace, log: Log, repository: str) -> RestGitHub | None:
    """The GitHub client from $GITHUB_TOKEN or a GitHub App; None when there are no credentials."""
    from hpcci.backends.github.client import AppAuth, RestGitHub, TokenAuth

    api_url = getattr(args, "api_url", None) or context.var("GITHUB_API_URL") or DEFAULT_API_URL
    app_id = getattr(args, "app_id", None) or context.var("HPCCI_GITHUB_APP_ID")
    key_file = getattr(args, "app_private_key_file", None)
    key = context.var("HPCCI_GITHUB_APP_PRIVATE_KEY")
    if key_file:
        try:
            key = Path(key_file).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--app-private-key-file {key_file}: {e.strerror}; fix the path") from e
    auth: AppAuth | TokenAuth
    if app_id and key:
        log.mask(key)
        auth = AppAuth(str(app_id), key)
    elif app_id or key_file:
        raise UsageError(
            "a GitHub App needs both its id (--app-id) and its private key (--app-private-key-file)"
        )
    else:
        token = context.var("GITHUB_TOKEN")
        if not token:
            return None
        log.mask(token)
        auth = TokenAuth(token)
    return RestGitHub(api_url=api_url, repository=repository, auth=auth, log=log.info, on_secret=log.mask)
