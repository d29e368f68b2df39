"""`hpcci doctor --cluster NAME`: is the cluster reachable and ready, and if not, what to fix.

Checks, in order: SSH (reachability, host key, key), the login environment (paths), the container runtime after
its module loads and how conversions will pack images (runtime.compression for its version), Slurm (partitions, GPU gres, account), MPI, curl for S3 staging, free space on scratch, the size of the layer blob store.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpcci import wiring
from hpcci.commands import common
from hpcci.errors import HostKeyError, HpcciError, RemoteAuthError, RemoteError
from hpcci.log import Log

if TYPE_CHECKING:
    from hpcci.backends.schedulers.model import PartitionInfo
    from hpcci.backends.ssh.remote import SSHRemote
    from hpcci.config.models import Cluster

MIN_FREE_GIB = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_pipeline_arguments(p)
    common.add_cluster_arguments(p)
    p.add_argument(
        "--cluster-configs",
        metavar="DIR",
        help="folder of cluster configs when there is no hpcci.yaml (default: cluster-configs)",
    )


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | FAIL | skip
    detail: str
    fix: str = ""
    exit_code: int = 1  # a FAIL's: the code a deploy exits with for the same cause (hpcci.errors), else 1


def failed(name: str, e: HpcciError, fix: str) -> Check:
    """A FAIL from the error a deploy would raise for the same cause: its message and its exit code."""
    return Check(name, "FAIL", str(e), fix, e.exit_code)


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed; else the first failure's code, as a deploy stops at its first failure."""
    return next((c.exit_code for c in checks if c.status == "FAIL"), 0)


def check_cluster(cluster: Cluster, remote: SSHRemote) -> list[Check]:
    """Every check for one cluster; stops early only when SSH itself fails."""
    from hpcci.backends.ssh.known_hosts import fingerprint, known_hosts_name
    from hpcci.stages.cluster import automation

    login = cluster.login
    where = f"{remote.user}@{known_hosts_name(login.host, login.port)}"
    checks: list[Check] = []
    try:
        client = remote.connect(attempts=1)
        tr = client.get_transport()
        key = tr.get_remote_server_key() if tr else None
        shown = f"{key.get_name()} {fingerprint(key)}" if key else "?"
        checks.append(Check("ssh", "ok", f"connected to {where}; host key {shown} matches known_hosts"))
    except HpcciError as e:
        return [failed("ssh", e, ssh_fix(e))]
    checks += _automation_node(cluster, remote) if automation(cluster) else _environment(cluster, remote)
    return checks


NETWORK_FIX = "check login.host/login.port, the network and that the login node is up"


def ssh_fix(e: HpcciError) -> str:
    """What doctor adds to a failed connection: nothing when the error names its own cause and fix, as every
    refusal built in backends/ssh_errors.py and known_hosts.py does (an expired certificate: renew it; a refused
    key: authorized_keys; MFA: the ways out; a changed host key: ask the admins); a guess by error class would
    blame the key for an expired certificate. Only an error naming no setting gets the network's fix."""
    if isinstance(e, HostKeyError | RemoteAuthError) or "login." in str(e):
        return ""
    return NETWORK_FIX


def _automation_node(cluster: Cluster, remote: SSHRemote) -> list[Check]:
    """An automation node runs only its allowed commands, never a login shell: check the paths and the scheduler;
    the runtime, MPI and downloads are used inside jobs there, where a deploy's conversion job proves them."""
    from hpcci.stages.deploy.paths import resolve_paths

    scheduler = wiring.make_scheduler(cluster)
    checks: list[Check] = []
    try:
        paths = resolve_paths(cluster, {}, "doctor")
        checks.append(Check("paths", "ok", f"scratch {paths.scratch}, image cache {paths.cache}"))
    except HpcciError as e:
        checks.append(
            failed("paths", e, "login.mode automation needs absolute paths.* in the cluster config")
        )
    try:
        done = remote.run(scheduler.partitions_argv(), timeout=60)
    except RemoteError as e:
        done = None
        checks.append(
            Check("slurm", "FAIL", str(e), "ask the site which commands the automation node allows")
        )
    if done is not None and done.ok:
        checks += _partitions(cluster, scheduler.parse_partitions(done.stdout))
    elif done is not None:
        checks.append(Check("slurm", "FAIL", _last_line(done.stdout + done.stderr),
                            "ask the site which commands the automation node allows"))  # fmt: skip
    checks.append(Check("runtime", "skip", "login.mode automation: the runtime, MPI and S3 downloads run inside "
                        "jobs, not on the login node; a deploy's conversion job checks them"))  # fmt: skip
    checks.append(_compression(cluster, None))
    return checks


def _compression(cluster: Cluster, version: str | None) -> Check:
    """Which compression a deploy's conversions use with this runtime version, and why (choose_packing)."""
    from hpcci.backends.runtime import choose_packing, runtime_for

    conf = cluster.runtime
    rt = runtime_for(conf.type, conf.executable)
    try:
        packing = choose_packing(rt, conf.compression, conf.convert_cpus, version)
    except HpcciError as e:
        return failed("compression", e, "set runtime.compression: auto (zstd where the runtime takes it)")
    return Check("compression", "ok", packing.why)


def _run(
    remote: SSHRemote, steps: list[list[str]], modules: list[str], timeout: float = 60
) -> tuple[bool, str]:
    from hpcci.shell import login_argv

    try:
        done = remote.run(login_argv(steps, modules=modules), timeout=timeout)
    except RemoteError as e:
        return False, str(e)
    text = (done.stdout + done.stderr).strip()
    return done.ok, text


def _first_line(text: str) -> str:
    return text.splitlines()[0][:200] if text else "(no output)"


def _last_line(text: str) -> str:
    return text.splitlines()[-1][:300] if text else "(no output)"


def _environment(cluster: Cluster, remote: SSHRemote) -> list[Check]:
    from hpcci.backends.launchers import probe_argv
    from hpcci.backends.runtime import parse_version, runtime_for
    from hpcci.shell import parse_env0
    from hpcci.stages.deploy.paths import needed_variables, resolve_paths

    checks: list[Check] = []
    scheduler = wiring.make_scheduler(cluster)
    base = list(cluster.modules)
    ok, out = _run(remote, [["env", "-0"]], base)
    paths = None
    if ok:
        env = parse_env0(out)
        try:
            paths = resolve_paths(
                cluster, {k: env[k] for k in needed_variables(cluster) if k in env}, "doctor"
            )
            checks.append(
                Check(
                    "paths", "ok", f"scratch {paths.scratch}, image cache {paths.cache}, tmp {paths.tmpdir}"
                )
            )
        except HpcciError as e:
            checks.append(
                Check("paths", "FAIL", str(e), "set paths.* in the cluster config to paths that exist")
            )
    else:
        checks.append(Check("login shell", "FAIL", _last_line(out), "fix `modules` in the cluster config"))

    rt = runtime_for(cluster.runtime.type, cluster.runtime.executable)
    mods = [*base, *cluster.runtime.modules]
    ok, out = _run(remote, [rt.version()], mods)
    packing_check = _compression(cluster, parse_version(out) if ok else None)
    if ok:
        checks.append(
            Check("runtime", "ok", f"{_first_line(out)} (after module load {' '.join(mods) or '-'})")
        )
    elif cluster.runtime.convert_on == "compute":
        checks.append(Check("runtime", "warn", f"not on the login node: {_last_line(out)}",
                            "fine with runtime.convert_on: compute if compute nodes have it"))  # fmt: skip
    else:
        checks.append(Check("runtime", "FAIL", _last_line(out),
                            f"fix runtime.modules ({', '.join(cluster.runtime.modules) or 'none'}) or "
                            "runtime.executable, or set runtime.convert_on: compute"))  # fmt: skip
    checks.append(packing_check)

    ok, out = _run(remote, [scheduler.partitions_argv()], base)
    if not ok:
        checks.append(
            Check(
                "slurm",
                "FAIL",
                _last_line(out),
                f"make {scheduler.partitions_argv()[0]} work in a login shell (add e.g. 'slurm' to modules)",
            )
        )
    else:
        checks += _partitions(cluster, scheduler.parse_partitions(out))
    if cluster.scheduler.account:
        ok, out = _run(remote, [scheduler.accounts_argv(remote.user)], base)
        accounts = scheduler.parse_accounts(out) if ok else set()
        if not ok:
            checks.append(Check("account", "warn", f"cannot list associations: {_last_line(out)}"))
        elif cluster.scheduler.account in accounts:
            checks.append(
                Check("account", "ok", f"{remote.user} may use account {cluster.scheduler.account}")
            )
        else:
            checks.append(Check("account", "FAIL",
                                f"{remote.user} has no association with account {cluster.scheduler.account} "
                                f"(has: {', '.join(sorted(accounts)) or 'none'})",
                                "fix scheduler.account in the cluster config"))  # fmt: skip
    if cluster.mpi.modules:
        mods = [*base, *cluster.mpi.modules]
        ok, out = _run(remote, [probe_argv(cluster.mpi.launcher)], mods)
        checks.append(
            Check("mpi", "ok", _first_line(out))
            if ok
            else Check("mpi", "FAIL", _last_line(out), "fix mpi.modules / mpi.launcher in the cluster config")
        )
    ok, out = _run(remote, [["curl", "--version"]], base)
    checks.append(
        Check("curl", "ok", " ".join(_first_line(out).split()[:2]))
        if ok
        else Check(
            "curl", "warn", "curl is missing: the login node cannot pull from S3", "use staging.method: sftp"
        )
    )
    if ok and cluster.staging.s3_endpoint_url:
        checks.append(_s3_reachable(remote, cluster.staging.s3_endpoint_url, base))
    if paths is not None:
        checks.append(_space(remote, paths.scratch, base))
        checks.append(_blob_store(remote, cluster, paths.cache, base))
    return checks


def _blob_store(remote: SSHRemote, cluster: Cluster, cache: str, modules: list[str]) -> Check:
    """The size of the layer blob store (staging.layers) against its limit."""
    from hpcci.stages.layers import store as bs

    store = bs.store_for(cache)
    limit = int(cluster.staging.blob_store_gib * bs.GiB)
    state = "" if cluster.staging.layers else " (staging.layers is off)"
    ok, out = _run(remote, [["test", "-d", store.dir]], modules)
    if not ok:
        return Check("blob store", "ok", f"{store.dir}: empty{state}")
    ok, out = _run(remote, [bs.listing_argv(store)], modules, timeout=120)
    if not ok:
        return Check("blob store", "warn", f"cannot list {store.dir}: {_last_line(out)}")
    entries = bs.parse_listing(out)
    over = sum(e.size for e in entries) > limit
    detail = f"{store.dir}: {bs.describe(entries, limit)}{state}"
    if over:
        return Check("blob store", "warn", detail, "the kept and the last deployed images' blobs alone exceed "
                     "staging.blob_store_gib: raise it or shorten the keep-list (blobs/keep)")  # fmt: skip
    return Check("blob store", "ok", detail)


def _partitions(cluster: Cluster, listed: dict[str, PartitionInfo]) -> list[Check]:
    checks: list[Check] = []
    for key, part in cluster.scheduler.partitions.items():
        info = listed.get(part.name)
        if info is None:
            checks.append(Check(f"partition {key}", "FAIL", f"Slurm has no partition {part.name!r} "
                                f"(has: {', '.join(listed)})", f"fix scheduler.partitions.{key}.name"))  # fmt: skip
            continue
        if not info.up:
            checks.append(Check(f"partition {key}", "warn", f"{part.name} is {info.state}", "ask the admins"))
            continue
        # Only GPU tests ask for a partition's gres, and they run on the gpu partition.
        gpu = key == cluster.scheduler.gpu_partition
        if gpu and part.gres and part.gres.split(":")[0] not in info.gres:
            checks.append(Check(f"partition {key}", "FAIL", f"{part.name} offers gres {info.gres or '(null)'}, "
                                f"not {part.gres}", f"fix scheduler.partitions.{key}.gres"))  # fmt: skip
            continue
        gres = f", gres {info.gres}" if info.gres else ""
        checks.append(Check(f"partition {key}", "ok", f"{part.name} up, {info.nodes} node(s){gres}, "
                            f"limit {info.time_limit}"))  # fmt: skip
    return checks


def _s3_reachable(remote: SSHRemote, url: str, modules: list[str]) -> Check:
    argv = ["curl", "--silent", "--show-error", "--max-time", "10", "--output", "/dev/null", "--write-out",
            "%{http_code}", url]  # fmt: skip
    ok, out = _run(remote, [argv], modules, timeout=30)
    if ok:
        return Check("s3", "ok", f"the login node reaches {url} (HTTP {out.strip()[-3:]})")
    return Check("s3", "FAIL", f"the login node cannot reach {url}: {_last_line(out)}",
                 "fix staging.s3_endpoint_url (the S3 endpoint as the cluster sees it) or use staging.method: sftp")  # fmt: skip


def _space(remote: SSHRemote, path: str, modules: list[str]) -> Check:
    parent = path
    ok, out = False, ""
    for _ in range(6):
        ok, out = _run(remote, [["df", "-Pk", "--", parent]], modules)
        if ok or parent in ("", "/"):
            break
        parent = parent.rsplit("/", 1)[0] or "/"
    if not ok:
        return Check("space", "warn", f"df failed: {_last_line(out)}")
    cols = out.splitlines()[-1].split()
    free_gib = int(cols[3]) / (1 << 20)
    detail = f"{free_gib:.1f} GiB free at {parent}"
    if free_gib < MIN_FREE_GIB:
        return Check(
            "space", "warn", detail, "images need room to stage and convert: free some or move paths.*"
        )
    return Check("space", "ok", detail)


def main(args: argparse.Namespace, log: Log) -> int:
    clusters = common.named_clusters(args)
    every: list[Check] = []
    for name, cluster in clusters.items():
        try:
            remote = wiring.make_remote(cluster, log)
        except HpcciError as e:  # e.g. login.user is {env: X} and X is not set: this cluster's failure only
            checks = [failed("ssh", e, "set the secret the cluster config names, then re-run")]
        else:
            try:
                checks = check_cluster(cluster, remote)
            finally:
                remote.close()
        print(f"cluster {name}: {cluster.login.host}:{cluster.login.port}")
        for c in checks:
            print(f"  {c.status:5} {c.name:14} {c.detail}")
            if c.fix and c.status != "ok":
                print(f"  {'':5} {'':14} -> {c.fix}")
        bad = [c for c in checks if c.status == "FAIL"]
        every += checks
        print(f"  {'ready' if not bad else f'NOT ready: {len(bad)} problem(s)'}")
    return exit_code(every)
