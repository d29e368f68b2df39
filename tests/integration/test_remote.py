"""The SSH seam against the local cluster's real login node (sshd in its own network namespace).

Needs `scripts/local-stack up cluster`; skips without it (fails under CI=true).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_support import REPO, unique

from hpcci.backends.ssh import sftp
from hpcci.backends.ssh.remote import SSHRemote
from hpcci.config.load import load_cluster
from hpcci.config.models import Cluster
from hpcci.errors import HostKeyError, RemoteAuthError, RemoteError
from hpcci.process import run
from hpcci.shell import login_argv
from hpcci.wiring import ssh_target

NASTY = [
    "it's",
    'say "hi"',
    "a; touch {m}",
    "$(touch {m})",
    "`touch {m}`",
    "${{HOME}}",
    "x\ny",
    "a|b>c",
    "*",
    "-rf",
]


def cluster(**changes: Any) -> Cluster:
    base = load_cluster(REPO / "cluster-configs" / "local.yaml")
    data = base.model_dump(exclude_none=True)
    for dotted, value in changes.items():
        node = data
        *path, last = dotted.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return Cluster.model_validate(data)


@pytest.fixture
def remote(require: Callable[..., None]) -> Iterator[SSHRemote]:
    require("cluster")
    c = cluster()
    r = SSHRemote(ssh_target(c.name, c.login))
    yield r
    r.close()


@pytest.fixture
def scratch(remote: SSHRemote) -> Iterator[str]:
    base = remote.run(login_argv([["printenv", "SCRATCH"]]), check=True).stdout.strip()
    path = f"{base}/{unique('remote-test')}"
    remote.run(["mkdir", "-p", path], check=True)
    yield path
    remote.run(["rm", "-rf", "--", path])


def test_nasty_arguments_arrive_as_literal_words(remote: SSHRemote, scratch: str) -> None:
    marker = f"{scratch}/pwned"
    words = [w.format(m=marker) for w in NASTY]
    done = remote.run(["printf", "%s\\0", *words], check=True)
    assert done.stdout.split("\0")[:-1] == words
    assert not remote.run(["test", "-e", marker]).ok  # nothing ran as shell


def test_nasty_arguments_stay_literal_inside_a_login_shell_script(remote: SSHRemote, scratch: str) -> None:
    marker = f"{scratch}/pwned"
    words = [w.format(m=marker) for w in NASTY]
    done = remote.run(login_argv([["printf", "%s\\0", *words]], modules=["apptainer"]), check=True)
    assert done.stdout.split("\0")[:-1] == words
    assert not remote.run(["test", "-e", marker]).ok


def test_a_command_past_its_timeout_is_stopped_and_the_connection_reused(remote: SSHRemote) -> None:
    with pytest.raises(RemoteError, match="did not finish within 1s") as e:
        remote.run(["sleep", "30"], timeout=1)
    assert e.value.transient
    assert remote.run(["echo", "still here"], check=True).stdout == "still here\n"


def test_a_dropped_connection_is_reopened(remote: SSHRemote) -> None:
    first = remote.connect()
    transport = first.get_transport()
    assert transport is not None
    transport.close()
    assert remote.run(["echo", "back"], check=True).stdout == "back\n"
    assert remote.connect() is not first


def test_parallel_upload_is_byte_exact(
    remote: SSHRemote, scratch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sftp, "PIECE", 1 << 20)
    local = tmp_path / "blob"
    local.write_bytes(os.urandom((5 << 20) + 12345))
    remote.put(local, f"{scratch}/blob", streams=3)
    got = remote.run(["sha256sum", f"{scratch}/blob"], check=True).stdout.split()[0]
    assert got == hashlib.sha256(local.read_bytes()).hexdigest()


def test_an_upload_resumes_after_the_connection_drops(
    remote: SSHRemote, scratch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sftp, "PIECE", 1 << 20)
    messages: list[str] = []
    remote._files._echo = messages.append  # the upload reports its resumption here
    local = tmp_path / "blob"
    local.write_bytes(os.urandom(8 << 20))
    dropped: list[int] = []

    def drop_once(n: int) -> None:
        if not dropped:
            dropped.append(n)
            for client in [remote._client, *remote._extra]:
                tr = client.get_transport() if client is not None else None
                if tr is not None:
                    tr.close()

    remote.put(local, f"{scratch}/blob", streams=2, progress=drop_once)
    assert any("upload interrupted" in m and "resuming" in m for m in messages), messages
    got = remote.run(["sha256sum", f"{scratch}/blob"], check=True).stdout.split()[0]
    assert got == hashlib.sha256(local.read_bytes()).hexdigest()


def test_read_tail_returns_only_the_last_bytes(remote: SSHRemote, scratch: str) -> None:
    remote.write_text(f"{scratch}/out", "".join(f"line {i}\n" for i in range(10000)))
    tail = remote.read_tail(f"{scratch}/out", 100)
    assert tail.endswith("line 9999\n") and len(tail) <= 100 and tail.startswith("line ")
    assert remote.read_tail(f"{scratch}/missing", 100) == ""


def test_key_from_an_environment_variable(
    require: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    require("cluster")
    monkeypatch.setenv("H4_TEST_KEY", Path(os.environ["HPCCI_LOCAL_SSH_KEY_FILE"]).read_text())
    c = cluster(**{"login.key": {"env": "H4_TEST_KEY"}})
    r = SSHRemote(ssh_target(c.name, c.login))
    try:
        assert r.run(["whoami"], check=True).stdout.strip() == "hpcci"
    finally:
        r.close()


def test_passphrase_protected_key(
    require: Callable[..., None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require("cluster")
    key = tmp_path / "key"
    shutil.copy(os.environ["HPCCI_LOCAL_SSH_KEY_FILE"], key)
    key.chmod(0o600)
    run(["ssh-keygen", "-q", "-p", "-N", "s3cret-pass", "-f", str(key)], timeout=30)
    without = cluster(**{"login.key": {"file": str(key)}})
    with pytest.raises(RemoteAuthError, match=r"encrypted; set login\.key_passphrase"):
        SSHRemote(ssh_target(without.name, without.login)).connect(attempts=1)
    monkeypatch.setenv("H4_TEST_PASS", "s3cret-pass")
    c = cluster(**{"login.key": {"file": str(key)}, "login.key_passphrase": {"env": "H4_TEST_PASS"}})
    r = SSHRemote(ssh_target(c.name, c.login))
    try:
        assert r.run(["whoami"], check=True).stdout.strip() == "hpcci"
    finally:
        r.close()


def test_a_key_the_server_does_not_know_is_refused(require: Callable[..., None], tmp_path: Path) -> None:
    require("cluster")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], timeout=30)
    c = cluster(**{"login.key": {"file": str(tmp_path / "stranger")}})
    with pytest.raises(RemoteAuthError, match="refused the SSH key"):
        SSHRemote(ssh_target(c.name, c.login)).connect(attempts=1)


def test_through_a_jump_host(require: Callable[..., None]) -> None:
    # the login node doubles as its own jump host: the second hop is a direct-tcpip channel through the first
    require("cluster")
    c = cluster(**{"login.jump": {"host": "10.77.0.2", "port": 2222, "user": "hpcci"}})
    r = SSHRemote(ssh_target(c.name, c.login))
    try:
        assert r.run(["whoami"], check=True).stdout.strip() == "hpcci"
        assert r._jump is not None
    finally:
        r.close()


def test_an_unreachable_login_node_is_a_transient_error_naming_the_host(require: Callable[..., None]) -> None:
    require("cluster")
    c = cluster(**{"login.port": 2299, "login.connect_timeout": 3})
    echoed: list[str] = []
    r = SSHRemote(ssh_target(c.name, c.login, "cluster-configs/local.yaml"), echo=echoed.append)
    with pytest.raises(RemoteError) as e:
        r.connect(attempts=2)
    assert str(e.value) == (
        "cluster local: cannot connect to 10.77.0.2:2299 (connection refused); is the login host up? "
        "check login.host and login.port in cluster-configs/local.yaml"
    )
    assert e.value.transient
    (retry,) = echoed
    assert retry.startswith("cluster local: cannot connect") and retry.count("cluster local:") == 1


def test_get_downloads_a_file_byte_exact(remote: SSHRemote, scratch: str, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    (tmp_path / "up").write_bytes(data)
    remote.put(tmp_path / "up", f"{scratch}/f", streams=2)
    remote.get(f"{scratch}/f", tmp_path / "down")
    assert (tmp_path / "down").read_bytes() == data


def test_a_hashed_known_hosts_entry_is_accepted_and_a_revoked_key_refused(
    require: Callable[..., None], tmp_path: Path
) -> None:
    require("cluster")
    line = Path(os.environ["HPCCI_LOCAL_KNOWN_HOSTS"]).read_text().split("\n")[0]
    hashed = tmp_path / "known_hosts"
    hashed.write_text(line + "\n")
    run(["ssh-keygen", "-q", "-H", "-f", str(hashed)], timeout=30)  # HashKnownHosts form: |1|salt|hash
    assert hashed.read_text().startswith("|1|")
    c = cluster(**{"login.known_hosts": {"file": str(hashed)}})
    r = SSHRemote(ssh_target(c.name, c.login))
    try:
        assert r.run(["whoami"], check=True).stdout.strip() == "hpcci"
    finally:
        r.close()
    _, kind, blob = line.split()[:3]
    revoked = tmp_path / "revoked"
    revoked.write_text(f"{line}\n@revoked * {kind} {blob}\n")
    c = cluster(**{"login.known_hosts": {"file": str(revoked)}})
    with pytest.raises(HostKeyError, match="marked @revoked"):
        SSHRemote(ssh_target(c.name, c.login)).connect(attempts=1)


def test_a_private_file_is_created_with_its_mode_not_chmodded_after(
    remote: SSHRemote, scratch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import paramiko

    opened: list[int | None] = []
    real = paramiko.SFTPClient._request  # type: ignore[attr-defined]

    def spy(self: Any, t: int, *args: Any) -> Any:  # watches the real request; the real server answers it
        if t == paramiko.sftp.CMD_OPEN:
            attrs = args[-1]
            opened.append(attrs.st_mode if isinstance(attrs, paramiko.SFTPAttributes) else None)
        return real(self, t, *args)

    monkeypatch.setattr(paramiko.SFTPClient, "_request", spy)
    remote.write_text(f"{scratch}/creds.env", "PASSWORD=secret\n", mode=0o600)
    assert opened == [0o600]  # the permissions travel in the OPEN request itself: no readable window
    mode = remote.run(["stat", "-c", "%a", "--", f"{scratch}/creds.env"], check=True).stdout.strip()
    assert mode == "600"
    remote.write_text(f"{scratch}/creds.env", "PASSWORD=other\n", mode=0o600)  # replaced atomically
    assert remote.read_tail(f"{scratch}/creds.env", 100) == "PASSWORD=other\n"


def test_a_write_that_cannot_be_renamed_into_place_leaves_no_temporary_file(
    remote: SSHRemote, scratch: str
) -> None:
    from hpcci.errors import RemoteError

    target = f"{scratch}/taken"
    remote.run(
        ["mkdir", "-p", "--", f"{target}/inside"], check=True
    )  # a non-empty folder: rename onto it fails
    with pytest.raises(RemoteError, match="cannot write"):
        remote.write_text(target, "text\n")
    left = remote.run(["ls", "-A", "--", scratch], check=True).stdout.split()
    assert left == ["taken"], left
