"""The cluster's login node over SSH (paramiko): run argv, put/get files. Host keys are checked, never accepted.

Every remote command is an argv list joined by ``hpcci.shell.command_line`` (the one place quoting happens).

One connection is kept for a whole deploy (keepalives on) and re-opened when it drops. Uploads use several SFTP
channels in parallel, piece by piece, so a dropped connection resumes at the last finished piece.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import hmac
import io
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hpcci.errors import (
    ConfigError,
    HostKeyError,
    HpcciError,
    Interrupted,
    RemoteAuthError,
    RemoteError,
    TransferError,
)
from hpcci.process import Completed
from hpcci.shell import command_line

if TYPE_CHECKING:
    import paramiko

    from hpcci.config import LoginConfig


def _close_quietly(sftp: Any) -> None:
    """Close an SFTP session whose connection may already be dead (paramiko raises EOFError then)."""
    with contextlib.suppress(Exception):
        sftp.close()


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a host key: 'SHA256:base64'."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


_ERRNO_WHY = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "timed out",
    errno.ECONNRESET: "connection reset",
}


def connect_failure_reason(e: BaseException) -> str:
    """A few words for why a TCP/SSH connection failed (paramiko's own texts such as "[Errno None]" hidden)."""
    import socket

    errors = getattr(e, "errors", None)  # paramiko's NoValidConnectionsError: {(addr, port): OSError}
    if isinstance(errors, dict) and errors:
        reasons = dict.fromkeys(connect_failure_reason(x) for x in errors.values())
        return " / ".join(reasons)
    if isinstance(e, socket.gaierror):
        return "unknown host name"
    if isinstance(e, TimeoutError | socket.timeout):
        return "timed out: no answer"
    if isinstance(e, OSError) and e.errno in _ERRNO_WHY:
        return _ERRNO_WHY[e.errno]
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    text = " ".join(str(e).split())
    return f"the SSH handshake failed: {text}" if text else f"the SSH handshake failed ({type(e).__name__})"


def connect_error(
    cluster: str,
    host: str,
    port: int,
    e: BaseException,
    config_file: str | None,
    settings: str = "login.host and login.port",
) -> RemoteError:
    """One line: what could not be reached, why, and which settings to check."""
    where = "the cluster config"
    if config_file:
        rel = os.path.relpath(config_file)
        where = config_file if rel.startswith("..") else rel
    what = "jump host" if "jump" in settings else "login host"
    return RemoteError(
        f"cluster {cluster}: cannot connect to {host}:{port} ({connect_failure_reason(e)}); is the {what} up? "
        f"check {settings} in {where}",
        transient=True,
    )


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

PIECE = 64 << 20  # upload piece: the unit of resumption
WINDOW = 64 << 20  # SSH channel window: a large one is what makes SFTP fast on fat links
# SFTP write size: paramiko's default 32 KiB costs a Python round per request; OpenSSH's sftp-server takes up to
# 255 KiB (its limits@openssh.com extension). 128 KiB measured 1.4-1.6x faster here (bench_deploy.py).
SFTP_REQUEST = 128 << 10
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


@dataclass(frozen=True)
class KnownHostEntry:
    line: int
    names: tuple[str, ...]  # plain names, [host]:port, hashed |1|salt|hash, patterns with * ? and !negation
    key: paramiko.PKey


@dataclass
class KnownHosts:
    """login.known_hosts parsed like OpenSSH does: hashed names, [host]:port, patterns, @revoked keys."""

    entries: list[KnownHostEntry] = field(default_factory=list)
    revoked: list[paramiko.PKey] = field(default_factory=list)

    def keys_for(self, host: str, port: int) -> list[paramiko.PKey]:
        """The keys listed for ``host:port`` that are not revoked."""
        name = known_hosts_name(host, port)
        return [e.key for e in self.entries if _names_match(e.names, name) and not self.is_revoked(e.key)]

    def is_revoked(self, key: paramiko.PKey) -> bool:
        blob = key.asbytes()
        return any(r.asbytes() == blob for r in self.revoked)


def _name_matches(pattern: str, name: str) -> bool:
    import paramiko

    if pattern.startswith("|1|"):  # hashed (HashKnownHosts yes): HMAC-SHA1 of the name with the entry's salt
        salt = pattern.split("|")[2]
        return hmac.compare_digest(paramiko.HostKeys.hash_host(name, salt), pattern)
    # OpenSSH patterns know only * and ? ("[" and "]" are literal, as in [host]:port)
    regex = re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, name.lower()) is not None


def _names_match(patterns: Sequence[str], name: str) -> bool:
    """OpenSSH's rule: a matching negated pattern (!pat) excludes the line; otherwise any match selects it."""
    hit = False
    for p in patterns:
        if p.startswith("!"):
            if _name_matches(p[1:], name):
                return False
        elif _name_matches(p, name):
            hit = True
    return hit


def parse_known_hosts(text: str, what: str = "login.known_hosts") -> KnownHosts:
    """Parse known_hosts text. ``@revoked`` keys are refused wherever else they are listed; ``@cert-authority``
    (host certificates) is not supported and is a ConfigError naming the line, never silently skipped."""
    import paramiko

    out = KnownHosts()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker = ""
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
            line = line.strip()
            if marker == "@cert-authority":
                raise ConfigError(
                    f"{what} line {n}: @cert-authority (host certificates) is not supported by hpcci; list the "
                    "login host's own public key instead (ssh-keyscan -p PORT HOST), after checking its "
                    "fingerprint with the cluster's admins"
                )
            if marker != "@revoked":
                raise ConfigError(f"{what} line {n}: unknown marker {marker!r} (known: @revoked)")
        fields = line.split()
        if marker == "@revoked" and len(fields) == 2:  # "@revoked KEYTYPE BASE64" without host names
            fields = ["*", *fields]
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(" ".join(fields[:3]), n)
        except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey, ValueError) as e:
            raise ConfigError(
                f"{what} line {n}: not a known_hosts line (HOSTS KEYTYPE BASE64): {e}; "
                "copy the line from `ssh-keyscan`"
            ) from e
        if entry is None or entry.key is None:
            if marker == "@revoked":
                raise ConfigError(
                    f"{what} line {n}: @revoked key of an unknown type cannot be checked; remove it or fix it"
                )
            continue  # a key type paramiko does not know: OpenSSH skips those too
        if marker == "@revoked":
            out.revoked.append(entry.key)
        else:
            out.entries.append(KnownHostEntry(n, tuple(entry.hostnames), entry.key))
    return out


def check_host_key(cluster: str, known: KnownHosts, host: str, port: int, key: paramiko.PKey) -> None:
    """Accept ``key`` for host:port only if known_hosts lists it and does not revoke it; else HostKeyError."""
    name = known_hosts_name(host, port)
    offered = f"{key.get_name()} {fingerprint(key)}"
    if known.is_revoked(key):
        raise HostKeyError(
            f"cluster {cluster}: the host key of {name} ({offered}) is marked @revoked in login.known_hosts; "
            "refusing it - ask the cluster's admins for the current key"
        )
    listed = known.keys_for(host, port)
    blob = key.asbytes()
    if any(k.asbytes() == blob for k in listed):
        return
    if listed:
        have = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in listed)
        raise HostKeyError(
            f"cluster {cluster}: the host key of {name} CHANGED: the server offered {offered} but "
            f"login.known_hosts has {have}; this may be an attack - confirm the new fingerprint with the "
            "cluster's admins before updating known_hosts"
        )
    raise HostKeyError(
        f"cluster {cluster}: the host key of {name} is not in login.known_hosts (the server offered {offered}); "
        "never accepted automatically: confirm this fingerprint with the cluster's admins, then add the host's "
        "line (ssh-keyscan) to known_hosts"
    )


class SSHRemote:
    """A login node reached with paramiko. One connection (plus one per extra upload stream), re-opened on drop."""

    def __init__(
        self,
        cluster: str,
        login: LoginConfig,
        *,
        echo: Callable[[str], None] | None = None,
        mask: Callable[[str], None] | None = None,
        stop: threading.Event | None = None,
        config_file: str | None = None,
    ) -> None:
        from hpcci.config import resolve_value

        self._stop = (
            stop or threading.Event()
        )  # set on SIGTERM/SIGINT: a running command or upload stops early
        self.cluster = cluster
        self.login = login
        self.config_file = config_file  # named in connection errors ("check login.port in FILE")
        self.host = login.host
        self.user = resolve_value(login.user, f"cluster {cluster}: login.user")
        self._echo = echo or (lambda _line: None)
        self._mask = mask or (lambda _secret: None)
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._jump: paramiko.SSHClient | None = None
        self._extra: list[Any] = []  # extra connections for parallel upload streams
        self._pkey: paramiko.PKey | None = None
        self._known: KnownHosts | None = None

    # -- connection --------------------------------------------------------------------------------------------
    def _credentials(self) -> tuple[paramiko.PKey, KnownHosts]:
        if self._pkey is None or self._known is None:
            what = f"cluster {self.cluster}: login.key"
            key_text = self.login.key.resolve(what)
            passphrase = (
                self.login.key_passphrase.resolve(f"cluster {self.cluster}: login.key_passphrase").strip("\n")
                if self.login.key_passphrase
                else None
            )
            if passphrase:
                self._mask(passphrase)
            self._pkey = _load_key(key_text, passphrase, what)
            self._known = parse_known_hosts(
                self.login.known_hosts.resolve(f"cluster {self.cluster}: login.known_hosts"),
                f"cluster {self.cluster}: login.known_hosts",
            )
        return self._pkey, self._known

    def _new_client(
        self, host: str, port: int, user: str, sock: Any = None, settings: str = "login.host and login.port"
    ) -> paramiko.SSHClient:
        import paramiko

        pkey, known = self._credentials()
        client = paramiko.SSHClient()
        # no key is preloaded into paramiko's store, so every offered key goes through check_host_key
        # (OpenSSH's matching: patterns, hashed names, several keys per type, @revoked)
        client.set_missing_host_key_policy(_HostKeyCheck(self.cluster, known, host, port))
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
                pkey=pkey,
                sock=sock,
                timeout=t,
                banner_timeout=t,
                auth_timeout=t,
                channel_timeout=t,
                allow_agent=False,
                look_for_keys=False,
                transport_factory=transport,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as e:
            client.close()
            raise HostKeyError(
                f"cluster {self.cluster}: the host key of {known_hosts_name(host, port)} CHANGED: the server offered "
                f"{e.key.get_name()} {fingerprint(e.key)} but login.known_hosts has {fingerprint(e.expected_key)}; "
                "this may be an attack - confirm the new fingerprint with the cluster's admins before updating "
                "known_hosts"
            ) from e
        except paramiko.AuthenticationException as e:
            client.close()
            raise RemoteAuthError(
                f"cluster {self.cluster}: {where} refused the SSH key; check login.user and login.key "
                "(is the public key in ~/.ssh/authorized_keys there?)"
            ) from e
        except (OSError, EOFError, paramiko.SSHException) as e:
            client.close()
            raise connect_error(self.cluster, host, port, e, self.config_file, settings) from e
        tr = client.get_transport()
        if tr is not None and self.login.keepalive:
            tr.set_keepalive(self.login.keepalive)
        return client

    def _connect(self) -> paramiko.SSHClient:
        sock = None
        jump = self.login.jump
        if jump is not None:
            from hpcci.config import resolve_value

            if self._jump is None or not _active(self._jump):
                juser = resolve_value(jump.user, f"cluster {self.cluster}: login.jump.user")
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
                raise RemoteError(
                    f"cluster {self.cluster}: the jump host {jump.host} could not open a connection to "
                    f"{self.login.host}:{self.login.port}: {e}; check login.host/port as seen from the jump host",
                    transient=True,
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
        self._echo(f"+ {echo if echo is not None else cmd}")
        client = self.connect()
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
            raise (error or RemoteError)(
                f"cluster {self.cluster}: `{_short(echo or cmd)}` did not finish within {limit:g}s and was stopped",
                transient=True,
            ) from e
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise RemoteError(
                f"cluster {self.cluster}: the connection dropped while running `{_short(echo or cmd)}`: "
                f"{e or type(e).__name__}",
                transient=True,
            ) from e
        done = Completed(tuple(argv), code, out, err)
        if check and not done.ok:
            from hpcci.process import tail

            raise (error or RemoteError)(
                f"cluster {self.cluster}: `{_short(echo or cmd)}` failed with exit code {code}: "
                f"{tail(out + err)}"
            )
        return done

    # -- files ---------------------------------------------------------------------------------------------------
    def _sftp(self, client: paramiko.SSHClient | None = None) -> paramiko.SFTPClient:
        import paramiko

        tr = (client or self.connect()).get_transport()
        assert tr is not None
        sftp = paramiko.SFTPClient.from_transport(tr, window_size=WINDOW, max_packet_size=32768)
        if sftp is None:
            raise RemoteError(
                f"cluster {self.cluster}: the login node refused an SFTP session", transient=True
            )
        sftp.get_channel().settimeout(self.login.connect_timeout)  # type: ignore[union-attr]
        return sftp

    def write_text(self, remote: str, text: str, *, mode: int = 0o644) -> None:
        """Write a small file atomically (temporary name, then rename), created with ``mode`` from the start."""
        tmp = f"{remote}.tmp{os.getpid()}"
        try:
            sftp = self._sftp()
            try:
                try:
                    f = open_new(sftp, tmp, mode)
                except OSError:  # a temporary file left by a killed run with this pid: never reused as is
                    sftp.remove(tmp)
                    f = open_new(sftp, tmp, mode)
                with f:
                    f.write(text.encode())
                sftp.posix_rename(tmp, remote)
            finally:
                _close_quietly(sftp)
        except OSError as e:
            raise RemoteError(f"cluster {self.cluster}: cannot write {remote}: {e}") from e

    def get(self, remote: str, local: Path) -> None:
        """Download ``remote`` to ``local`` (via a temporary name, so ``local`` is never half-written)."""
        tmp = local.with_name(f".{local.name}.part")
        try:
            sftp = self._sftp()
            try:
                sftp.get(remote, str(tmp))
            finally:
                _close_quietly(sftp)
            tmp.replace(local)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise TransferError(f"cluster {self.cluster}: cannot download {remote}: {e}") from e

    def read_tail(self, remote: str, max_bytes: int) -> str:
        """The last ``max_bytes`` of a remote file ('' when it does not exist)."""
        try:
            sftp = self._sftp()
            try:
                size = sftp.stat(remote).st_size or 0
                with sftp.open(remote, "r") as f:
                    f.seek(max(0, size - max_bytes))
                    data = f.read(max_bytes)
            finally:
                _close_quietly(sftp)
        except FileNotFoundError:
            return ""
        except OSError as e:
            raise RemoteError(f"cluster {self.cluster}: cannot read {remote}: {e}", transient=True) from e
        text = data.decode("utf-8", errors="replace")
        return text if size <= max_bytes else text.split("\n", 1)[-1]

    def put(
        self, local: Path, remote: str, *, streams: int = 4, progress: Callable[[int], None] | None = None
    ) -> None:
        """Upload ``local`` to ``remote`` over ``streams`` parallel SFTP connections, piece by piece.

        A dropped connection is re-opened and only unfinished pieces are sent again (up to 3 rounds).
        """
        size = local.stat().st_size
        pieces = [(off, min(PIECE, size - off)) for off in range(0, size, PIECE)] or [(0, 0)]
        sftp = self._sftp()
        try:
            with sftp.open(remote, "w") as f:
                f.truncate(size)
        except OSError as e:
            raise TransferError(
                f"cluster {self.cluster}: cannot create {remote}: {e}; check free space"
            ) from e
        finally:
            _close_quietly(sftp)
        todo = list(pieces)
        for attempt in range(3):
            failed = self._put_pieces(local, remote, todo, streams, progress)
            if not failed:
                return
            todo = [p for p, _ in failed]
            cause = failed[0][1]
            final = next((e for _, e in failed if isinstance(e, HpcciError) and not e.transient), None)
            if final is not None or self._stop.is_set():
                raise final or Interrupted("upload stopped by SIGTERM/SIGINT")
            self._echo(
                f"cluster {self.cluster}: upload interrupted ({cause or type(cause).__name__}); resuming {len(todo)} piece(s) "
                f"(round {attempt + 2}/3)"
            )
            time.sleep(1.0 + attempt)
        raise TransferError(
            f"cluster {self.cluster}: upload of {local.name} to {remote} failed after 3 rounds: {cause}; "
            "check the connection and free space on the cluster"
        ) from cause

    def _put_pieces(
        self,
        local: Path,
        remote: str,
        pieces: list[tuple[int, int]],
        streams: int,
        progress: Callable[[int], None] | None,
    ) -> list[tuple[tuple[int, int], Exception]]:
        queue = list(reversed(pieces))
        qlock = threading.Lock()
        failed: list[tuple[tuple[int, int], Exception]] = []

        def worker(index: int) -> None:
            try:
                client = self._stream_client(index)
                sftp = self._sftp(client)
            except Exception as e:
                with qlock:
                    failed.extend((p, e) for p in queue)
                    queue.clear()
                return
            try:
                fd = os.open(local, os.O_RDONLY)
                try:
                    while True:
                        with qlock:
                            if not queue:
                                return
                            piece = queue.pop()
                        if self._stop.is_set():
                            with qlock:
                                failed.append((piece, Interrupted("upload stopped by SIGTERM/SIGINT")))
                                failed.extend((p, Interrupted("upload stopped")) for p in queue)
                                queue.clear()
                            return
                        try:
                            _send_piece(sftp, fd, remote, piece, progress)
                        except Exception as e:
                            with qlock:
                                failed.append((piece, e))
                                failed.extend((p, e) for p in queue)
                                queue.clear()
                            return
                finally:
                    os.close(fd)
            finally:
                _close_quietly(sftp)

        n = max(1, min(streams, len(pieces)))  # no connection is opened for a stream with nothing to send
        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return failed

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
            assert client is not None
            return client  # type: ignore[no-any-return]


def open_new(sftp: paramiko.SFTPClient, path: str, mode: int) -> paramiko.SFTPFile:
    """Create ``path`` (it must not exist: O_EXCL) with permissions ``mode`` in the SFTP OPEN request itself.

    paramiko's ``open`` sends no permissions, so the server creates the file 0666 & ~umask and a chmod would come
    after - a window in which another user of the login node could open a credentials file.
    """
    from paramiko import sftp as proto
    from paramiko.sftp_attr import SFTPAttributes
    from paramiko.sftp_file import SFTPFile

    attrs = SFTPAttributes()
    attrs.st_mode = mode
    flags = proto.SFTP_FLAG_WRITE | proto.SFTP_FLAG_CREATE | proto.SFTP_FLAG_EXCL | proto.SFTP_FLAG_TRUNC
    # paramiko's own open() minus its empty attribute block (private API, stable since paramiko 1.x)
    kind, msg = sftp._request(proto.CMD_OPEN, sftp._adjust_cwd(path), flags, attrs)  # type: ignore[attr-defined]
    if kind != proto.CMD_HANDLE:
        raise OSError(f"SFTP open of {path} returned no handle")
    return SFTPFile(sftp, msg.get_binary(), "w")


def _send_piece(
    sftp: paramiko.SFTPClient,
    fd: int,
    remote: str,
    piece: tuple[int, int],
    progress: Callable[[int], None] | None,
) -> None:
    offset, length = piece
    block = 1 << 20
    with sftp.open(remote, "r+") as f:
        f.MAX_REQUEST_SIZE = SFTP_REQUEST
        f.set_pipelined(True)
        f.seek(offset)
        done = 0
        while done < length:
            data = os.pread(fd, min(block, length - done), offset + done)
            if not data:
                raise TransferError(f"local file shrank while uploading (at byte {offset + done})")
            f.write(data)
            done += len(data)
        f.flush()
    if progress:
        progress(length)


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


def _short(cmd: str, width: int = 160) -> str:
    one = cmd.replace("\n", "; ")
    return one if len(one) <= width else one[: width - 3] + "..."


def _host_key_policy_class() -> type:
    import paramiko

    class Check(paramiko.MissingHostKeyPolicy):
        def __init__(self, cluster: str, known: KnownHosts, host: str, port: int) -> None:
            self.cluster, self.known, self.host, self.port = cluster, known, host, port

        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            check_host_key(self.cluster, self.known, self.host, self.port, key)  # raises unless listed

    return Check


def _HostKeyCheck(cluster: str, known: KnownHosts, host: str, port: int) -> paramiko.MissingHostKeyPolicy:
    return _host_key_policy_class()(cluster, known, host, port)  # type: ignore[no-any-return]
