"""The cluster's login node over SSH (paramiko): the one connection, and running argv on it with a timeout.

Every remote command is an argv list joined by ``hpcci.shell.command_line`` (the one place quoting happens).
Host keys are checked against login.known_hosts (``backends.known_hosts``), never accepted; files move over SFTP
(``backends.sftp``); what a failure says is built in ``backends.ssh_errors``.

One connection is kept for a whole deploy (keepalives on) and re-opened when it drops; uploads open one more per
extra stream.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hpcci.backends.ssh import errors as ssh_errors
from hpcci.backends.ssh.certs import Certificate, parse_certificate
from hpcci.backends.ssh.known_hosts import KnownHosts, host_key_policy, known_hosts_name, parse_known_hosts
from hpcci.backends.ssh.sftp import WINDOW, SFTPFiles
from hpcci.backends.ssh.target import SSHTarget
from hpcci.errors import HostKeyError, Interrupted, RemoteAuthError, RemoteError
from hpcci.process import Completed
from hpcci.shell import command_line

if TYPE_CHECKING:
    import paramiko

# -- the seam ------------------------------------------------------------------------------------------------------


class Remote(Protocol):
    """What the deploy stage needs from a login node."""

    host: str

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        stdin: str | None = None,
        check: bool = False,
        error: type[RemoteError] | None = None,
        echo: str | None = None,
        interruptible: bool = True,
    ) -> Completed: ...

    def put(
        self, local: Path, remote: str, *, streams: int = 4, progress: Callable[[int], None] | None = None
    ) -> None: ...

    def write_text(self, remote: str, text: str, *, mode: int = 0o644) -> None: ...

    def read_tail(self, remote: str, max_bytes: int) -> str: ...

    def close(self) -> None: ...


# -- paramiko ------------------------------------------------------------------------------------------------------

MAX_OUTPUT = 4 << 20  # bytes of a remote command's stdout/stderr kept (the tail)
CIPHERS = ("aes128-gcm@openssh.com", "aes128-ctr", "aes256-gcm@openssh.com", "aes256-ctr")


def _load_key(text: str, passphrase: str | None, what: str) -> paramiko.PKey:
    import paramiko

    last: Exception | None = None
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException as e:
            raise RemoteAuthError(
                f"{what} is encrypted; set login.key_passphrase in the cluster config"
            ) from e
        except (paramiko.SSHException, ValueError) as e:
            last = e
    msg = "wrong passphrase or not a private key" if passphrase else "not an ed25519/ECDSA/RSA private key"
    raise RemoteAuthError(f"{what}: cannot read the SSH key ({msg}); check login.key") from last


class SSHRemote:
    """A login node reached with paramiko. One connection (plus one per extra upload stream), re-opened on drop."""

    def __init__(
        self,
        target: SSHTarget,
        *,
        echo: Callable[[str], None] | None = None,
        mask: Callable[[str], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        cluster = target.cluster
        self._stop = (
            stop or threading.Event()
        )  # set on SIGTERM/SIGINT: a running command or upload stops early
        self.cluster = cluster
        self.login = target
        self.config_file = target.config_file  # named in connection errors ("check login.port in FILE")
        self.host = target.host
        self.user = target.user
        self._echo = echo or (lambda _line: None)
        self._mask = mask or (lambda _secret: None)
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._jump: paramiko.SSHClient | None = None
        self._extra: list[paramiko.SSHClient | None] = []  # extra connections for parallel upload streams
        self._pkey: paramiko.PKey | None = None
        self._cert: Certificate | None = None
        self._known: KnownHosts | None = None
        self._files = SFTPFiles(cluster, self._stream_client, target.connect_timeout, self._stop, self._echo)

    # -- connection --------------------------------------------------------------------------------------------
    def _credentials(self) -> tuple[paramiko.PKey, KnownHosts]:
        if self._pkey is None or self._known is None:
            what = f"cluster {self.cluster}: login.key"
            key_text = self.login.key()
            passphrase = self.login.key_passphrase().strip("\n") if self.login.key_passphrase else None
            if passphrase:
                self._mask(passphrase)
            self._pkey = _load_key(key_text, passphrase, what)
            if self.login.certificate is not None:
                self._cert = self._load_certificate(self._pkey)
            self._known = parse_known_hosts(
                self.login.known_hosts(), f"cluster {self.cluster}: login.known_hosts"
            )
        return self._pkey, self._known

    def _load_certificate(self, pkey: paramiko.PKey) -> Certificate:
        """login.certificate attached to the key; an expired (or not yet valid) one fails here, before connecting."""
        assert self.login.certificate is not None
        what = f"cluster {self.cluster}: login.certificate"
        text = self.login.certificate().strip()
        try:
            cert = parse_certificate(text)
            pkey.load_certificate(text)
        except ValueError as e:
            raise RemoteAuthError(
                f"{what}: {e}; check login.certificate (the KEY-cert.pub of login.key)"
            ) from e
        now = time.time()
        if cert.expired(now) or cert.not_yet_valid(now):
            raise ssh_errors.certificate_invalid(self.cluster, cert, now)
        return cert

    def _new_client(
        self, host: str, port: int, user: str, sock: Any = None, settings: str = "login.host and login.port"
    ) -> paramiko.SSHClient:
        import paramiko

        pkey, known = self._credentials()
        client = paramiko.SSHClient()
        # no key is preloaded into paramiko's store, so every offered key goes through check_host_key
        # (OpenSSH's matching: patterns, hashed names, several keys per type, @revoked) and paramiko's own
        # BadHostKeyException never arises
        client.set_missing_host_key_policy(host_key_policy(self.cluster, known, host, port))
        t = self.login.connect_timeout

        def transport(sock: Any, **kw: Any) -> paramiko.Transport:
            tr = paramiko.Transport(sock, default_window_size=WINDOW, default_max_packet_size=32768, **kw)
            opts = tr.get_security_options()
            opts.ciphers = tuple(c for c in CIPHERS if c in opts.ciphers) + tuple(
                c for c in opts.ciphers if c not in CIPHERS
            )
            return tr

        where = f"{user}@{known_hosts_name(host, port)}"
        try:
            client.connect(
                hostname=host,
                port=port,
                username=user,
                sock=sock,
                timeout=t,
                banner_timeout=t,
                auth_timeout=t,
                channel_timeout=t,
                allow_agent=False,
                look_for_keys=False,
                transport_factory=transport,
                auth_strategy=_key_only(user, pkey),  # never paramiko's own fallbacks (they prompt on stdin)
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.AuthenticationException as e:
            client.close()
            raise ssh_errors.auth_refused(
                self.cluster, where, ssh_errors.offered_methods(e), self._cert
            ) from e
        except (OSError, EOFError, paramiko.SSHException) as e:
            client.close()
            raise ssh_errors.connect_error(self.cluster, host, port, e, self.config_file, settings) from e
        tr = client.get_transport()
        if tr is None or not tr.is_authenticated():  # the key was only a first factor
            client.close()
            raise ssh_errors.second_factor(self.cluster, where)
        if self.login.keepalive:
            tr.set_keepalive(self.login.keepalive)
        return client

    def _connect(self) -> paramiko.SSHClient:
        sock = None
        jump = self.login.jump
        if jump is not None:
            if self._jump is None or not _active(self._jump):
                juser = jump.user()
                self._jump = self._new_client(
                    jump.host, jump.port, juser, settings="login.jump.host and login.jump.port"
                )
            jt = self._jump.get_transport()
            assert jt is not None
            try:
                sock = jt.open_channel(
                    "direct-tcpip",
                    (self.login.host, self.login.port),
                    ("127.0.0.1", 0),
                    timeout=self.login.connect_timeout,
                )
            except Exception as e:
                raise ssh_errors.jump_failed(
                    self.cluster, jump.host, self.login.host, self.login.port, e
                ) from e
        return self._new_client(self.login.host, self.login.port, self.user, sock)

    def connect(self, attempts: int = 3) -> paramiko.SSHClient:
        """The live connection: opened on first use and re-opened when it dropped (transient failures retried)."""
        with self._lock:
            if self._client is not None and _active(self._client):
                return self._client
            if self._client is not None:
                self._echo(f"cluster {self.cluster}: connection dropped; reconnecting")
                self._client.close()
                self._client = None
            for i in range(attempts):
                try:
                    self._client = self._connect()
                    return self._client
                except RemoteError as e:
                    if not e.transient or i == attempts - 1:
                        raise
                    self._echo(f"{e} (attempt {i + 1}/{attempts}, retrying)")  # e names the cluster already
                    time.sleep(min(2.0 * (i + 1), 5.0))
            raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for c in [*self._extra, self._client, self._jump]:
                if c is not None:
                    c.close()
            self._client = self._jump = None
            self._extra = []

    # -- commands ----------------------------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        stdin: str | None = None,
        check: bool = False,
        error: type[RemoteError] | None = None,
        echo: str | None = None,
        interruptible: bool = True,
    ) -> Completed:
        """Run ``argv`` on the login node; stdout/stderr kept (their last MAX_OUTPUT bytes); killed at ``timeout``.

        An ``interruptible`` command stops early when the deploy is stopped (SIGTERM/SIGINT); clean-up commands
        (scancel, removing a temporary file) are not interruptible.
        """
        import paramiko

        cmd = command_line(argv)
        limit = timeout if timeout is not None else self.login.command_timeout
        client = self.connect()
        self._echo(f"+ {echo if echo is not None else cmd}")  # once connected: only a command sent is shown
        try:
            tr = client.get_transport()
            assert tr is not None
            chan = tr.open_session(timeout=self.login.connect_timeout)
            try:
                chan.exec_command(cmd)
                if stdin is not None:
                    chan.sendall(stdin.encode())
                chan.shutdown_write()
                out, err, code = _collect(
                    chan, time.monotonic() + limit, self._stop if interruptible else None
                )
            finally:
                chan.close()
        except TimeoutError as e:
            raise ssh_errors.command_timed_out(self.cluster, echo or cmd, limit, error) from e
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise ssh_errors.command_dropped(self.cluster, echo or cmd, e) from e
        done = Completed(tuple(argv), code, out, err)
        if check and not done.ok:
            raise ssh_errors.command_failed(self.cluster, echo or cmd, code, out + err, error)
        return done

    # -- files (over SFTP) -------------------------------------------------------------------------------------
    def put(
        self, local: Path, remote: str, *, streams: int = 4, progress: Callable[[int], None] | None = None
    ) -> None:
        """Upload ``local`` to ``remote`` over ``streams`` parallel connections; a drop resumes (``SFTPFiles.put``)."""
        self._files.put(local, remote, streams=streams, progress=progress)

    def get(self, remote: str, local: Path) -> None:
        """Download ``remote`` to ``local`` (never half-written)."""
        self._files.get(remote, local)

    def write_text(self, remote: str, text: str, *, mode: int = 0o644) -> None:
        """Write a small file atomically, created with ``mode`` from the start."""
        self._files.write_text(remote, text, mode=mode)

    def read_tail(self, remote: str, max_bytes: int) -> str:
        """The last ``max_bytes`` of a remote file ('' when it does not exist)."""
        return self._files.read_tail(remote, max_bytes)

    def _stream_client(self, index: int) -> paramiko.SSHClient:
        """Connection ``index`` for an upload stream: 0 is the main one, others are opened once and reused."""
        if index == 0:
            return self.connect()
        with self._lock:
            while len(self._extra) < index:
                self._extra.append(None)
            client = self._extra[index - 1]
            if client is None or not _active(client):
                if client is not None:
                    client.close()
                client = self._connect()
                self._extra[index - 1] = client
            return client


def _key_only(user: str, pkey: paramiko.PKey) -> paramiko.auth_strategy.AuthStrategy:
    from paramiko import SSHConfig
    from paramiko.auth_strategy import AuthStrategy, InMemoryPrivateKey

    class KeyOnly(AuthStrategy):
        def get_sources(self) -> Iterator[InMemoryPrivateKey]:
            yield InMemoryPrivateKey(user, pkey)

    return KeyOnly(ssh_config=SSHConfig())


def _active(client: paramiko.SSHClient) -> bool:
    tr = client.get_transport()
    return tr is not None and tr.is_active()


def _collect(chan: paramiko.Channel, deadline: float, stop: threading.Event | None) -> tuple[str, str, int]:
    """Read a channel's stdout and stderr until the command exits; TimeoutError past ``deadline``."""
    out, err = bytearray(), bytearray()
    while True:
        busy = False
        if chan.recv_ready():
            out += chan.recv(1 << 16)
            busy = True
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(1 << 16)
            busy = True
        if len(out) > MAX_OUTPUT:
            del out[: len(out) - MAX_OUTPUT]
        if len(err) > MAX_OUTPUT:
            del err[: len(err) - MAX_OUTPUT]
        if not busy:
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            if chan.closed and not chan.exit_status_ready():
                raise EOFError("the channel closed before the command exited")
            if time.monotonic() > deadline:
                raise TimeoutError
            if stop is not None and stop.is_set():
                raise Interrupted("stopped by SIGTERM/SIGINT while a remote command ran")
            time.sleep(0.005)
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), chan.recv_exit_status()
