"""Registry credentials handed to the builder and push tools as throw-away files, never on a command line."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hpcci.backends.builders.spec import RegistryAuth


@contextmanager
def docker_config(auths: Iterable[RegistryAuth]) -> Iterator[dict[str, str]]:
    """A throw-away DOCKER_CONFIG holding the credentials (never the user's ~/.docker/config.json)."""
    auths = [a for a in auths if a.has_login]
    if not auths:
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="hpcci-docker-") as d:
        _write_authfile(Path(d) / "config.json", auths)
        plugins = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "cli-plugins"
        if plugins.is_dir():
            (Path(d) / "cli-plugins").symlink_to(plugins)
        yield {"DOCKER_CONFIG": d}


@contextmanager
def authfile(auths: Iterable[RegistryAuth]) -> Iterator[str | None]:
    """A containers-auth.json for buildah/skopeo in a private temp dir, removed afterwards."""
    auths = [a for a in auths if a.has_login]
    if not auths:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="hpcci-auth-") as d:
        path = Path(d) / "auth.json"
        _write_authfile(path, auths)
        yield str(path)


def _write_authfile(path: Path, auths: Iterable[RegistryAuth]) -> None:
    data = {
        "auths": {
            a.host: {"auth": base64.b64encode(f"{a.username}:{a.password}".encode()).decode()} for a in auths
        }
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
