"""`hpcci deploy` when a cluster fails before it is contacted: every failure becomes that cluster's error.

Nothing here reaches a network: the clusters fail while their SSH settings are read (an unset `{env: X}`), which
is the point - a missing secret must fail the deploy with a one-line error, never pass with a traceback.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpcci import cli
from hpcci.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def docker_archive(path: Path) -> Path:
    """A minimal `docker save` tar: manifest.json and a config naming its architecture."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    name = "ab" * 32 + ".json"
    manifest = json.dumps([{"Config": name, "RepoTags": ["fib:1"], "Layers": []}]).encode()
    with tarfile.open(path, "w") as tar:
        for member, data in (("manifest.json", manifest), (name, config)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def cluster(name: str, **login: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "cluster-configs" / "local.yaml").read_text())
    data["name"] = name
    data["login"].update(login)
    return data


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("H7_UNSET_SSH_USER", raising=False)
    monkeypatch.delenv("H7_UNSET_SSH_KEY", raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    configs = tmp_path / "cluster-configs"
    configs.mkdir()
    clusters = {
        "nouser": cluster("nouser", user={"env": "H7_UNSET_SSH_USER"}),
        "nokey": cluster("nokey", user="hpcci", key={"env": "H7_UNSET_SSH_KEY"}),
    }
    for name, data in clusters.items():
        (configs / f"{name}.yaml").write_text(yaml.safe_dump(data))
    pipeline = {
        "image": {"name": "org/fib", "platforms": ["linux/amd64"]},
        "deploy": {"clusters": list(clusters)},
        "tests": [{"name": "fib", "command": "python3 /app/fib.py 10"}],
    }
    (tmp_path / "hpcci.yaml").write_text(yaml.safe_dump(pipeline))
    docker_archive(tmp_path / "fib.tar")
    return tmp_path


def deploy(project: Path) -> int:
    return cli.main(
        ["deploy", "--config", str(project / "hpcci.yaml"), "--records", str(project / ".hpcci"),
         "--image-tar", str(project / "fib.tar"), "--run-id", "r1"]
    )  # fmt: skip


def test_a_cluster_whose_ssh_secret_is_unset_fails_the_deploy_with_its_own_error(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    died: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda a: died.append(a.exc_value))

    rc = deploy(project)

    assert rc == ConfigError.exit_code
    assert died == []  # no worker thread ended with an exception
    results = json.loads((project / ".hpcci" / "results.json").read_text())
    errors = {c["cluster"]: c["error"] for c in results["clusters"]}
    assert set(errors) == {"nouser", "nokey"}  # one failing cluster does not hide the other
    assert "H7_UNSET_SSH_USER" in errors["nouser"] and "login.user" in errors["nouser"]
    assert "H7_UNSET_SSH_KEY" in errors["nokey"] and "login.key" in errors["nokey"]
    for error in errors.values():
        assert "\n" not in error and "Traceback" not in error
        assert error.count("cluster ") == 1  # "cluster nouser: ..." once, not twice
    for c in results["clusters"]:
        assert [t["verdict"] for t in c["tests"]] == ["error"]
    assert "Traceback" not in capsys.readouterr().err


def test_a_cluster_that_ends_without_an_outcome_is_an_error(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpcci.commands import deploy as command

    def crash(*_a: Any, **_kw: Any) -> Any:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(command, "connect_and_deploy", crash)
    monkeypatch.setattr(threading, "excepthook", lambda a: pytest.fail(f"worker died: {a.exc_value!r}"))

    rc = deploy(project)

    assert rc != 0
    results = json.loads((project / ".hpcci" / "results.json").read_text())
    errors = {c["cluster"]: c["error"] for c in results["clusters"]}
    assert set(errors) == {"nouser", "nokey"}
    assert all("internal error" in e and "boom" in e and "\n" not in e for e in errors.values())
