"""What a stage needs to know of a cluster beside its config: login mode, the login shell's modules, the runtime.

Deploy planning and release installation both read these, so they live beside both rather than in either.
"""

from __future__ import annotations

from pathlib import Path

from hpcci.backends.runtime import Runtime, runtime_for
from hpcci.config.models import Cluster
from hpcci.errors import ConfigError


def runtime(cluster: Cluster) -> Runtime:
    return runtime_for(cluster.runtime.type, cluster.runtime.executable, cluster.runtime.squashfs)


def template(cluster: Cluster) -> str | None:
    """The cluster's own batch script template, if it names one (relative to its config file)."""
    if not cluster.scheduler.template:
        return None
    path = Path(cluster.source.file).parent / cluster.scheduler.template
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        where = cluster.source.where(("scheduler", "template"))
        raise ConfigError(f"{where}: scheduler.template: cannot read {path}: {e.strerror}") from e


def automation(cluster: Cluster) -> bool:
    """login.mode automation: nothing but plain file and scheduler commands on the login node (no login shell)."""
    return cluster.login.mode == "automation"


def shell_modules(cluster: Cluster) -> list[str] | None:
    """The modules a login-node command loads in a login shell; None: no login shell (login.mode automation)."""
    return None if automation(cluster) else list(cluster.modules)


def remove_argv(path: str) -> list[str]:
    return ["rm", "-f", "--", path]
