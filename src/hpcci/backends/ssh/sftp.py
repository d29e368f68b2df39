"""SFTP file transfer with the login node: parallel upload that resumes piece by piece, download, tail, small writes.

The connections come from SSHRemote: ``client(0)`` is its main connection, ``client(i)`` the one for upload stream
``i``; each is re-opened by SSHRemote when it dropped, so a dropped upload resumes at its unfinished pieces.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hpcci.errors import HpcciError, Interrupted, RemoteError, TransferError

if TYPE_CHECKING:
    import paramiko

PIECE = 64 << 20  # upload piece: the unit of resumption
WINDOW = 64 << 20  # SSH channel window: a large one is what makes SFTP fast on fat links
# SFTP write size: paramiko's default 32 KiB costs a Python round per request; OpenSSH's sftp-server takes up to
# 255 KiB (its limits@openssh.com extension). 128 KiB measured 1.4-1.6x faster here (bench_deploy.py).
SFTP_REQUEST = 128 << 10
ROUNDS = 3  # upload rounds: the first, then resumptions after a drop

Piece = tuple[int, int]  # (offset, length) of a part of the file
Failure = tuple[Piece, Exception]


class SFTPFiles:
    """Files on the login node over SFTP, on the connections ``client(index)`` gives (0: the main one)."""

    def __init__(
        self,
        cluster: str,
        client: Callable[[int], paramiko.SSHClient],
        timeout: float,
        stop: threading.Event,
        echo: Callable[[str], None],
    ) -> None:
        self.cluster = cluster
        self._client = client
        self._timeout = timeout  # for each SFTP request, as for connecting
        self._stop = stop  # set on SIGTERM/SIGINT: an upload stops early
        self._echo = echo

    @contextlib.contextmanager
    def session(self, index: int = 0) -> Iterator[paramiko.SFTPClient]:
        """An SFTP session on connection ``index``, closed afterwards (quietly: the connection may be gone)."""
        import paramiko

        tr = self._client(index).get_transport()
        assert tr is not None
        sftp = paramiko.SFTPClient.from_transport(tr, window_size=WINDOW, max_packet_size=32768)
        if sftp is None:
            raise RemoteError(
                f"cluster {self.cluster}: the login node refused an SFTP session", transient=True
            )
        sftp.get_channel().settimeout(self._timeout)  # type: ignore[union-attr]
        try:
            yield sftp
        finally:
            with contextlib.suppress(Exception):  # paramiko raises EOFError closing on a dead connection
                sftp.close()

    def write_text(self, remote: str, text: str, *, mode: int = 0o644) -> None:
        """Write a small file atomically (temporary name, then rename), created with ``mode`` from the start."""
        tmp = f"{remote}.tmp{os.getpid()}"
        try:
            with self.session() as sftp:
                try:
                    f = open_new(sftp, tmp, mode)
                except OSError:  # a temporary file left by a killed run with this pid: never reused as is
                    sftp.remove(tmp)
                    f = open_new(sftp, tmp, mode)
                try:
                    with f:
                        f.write(text.encode())
                    sftp.posix_rename(tmp, remote)
                except OSError:
                    with contextlib.suppress(OSError):  # no half-written temporary file stays behind
                        sftp.remove(tmp)
                    raise
        except OSError as e:
            raise RemoteError(f"cluster {self.cluster}: cannot write {remote}: {e}") from e

    def get(self, remote: str, local: Path) -> None:
        """Download ``remote`` to ``local`` (via a temporary name, so ``local`` is never half-written)."""
        tmp = local.with_name(f".{local.name}.part")
        try:
            with self.session() as sftp:
                sftp.get(remote, str(tmp))
            tmp.replace(local)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise TransferError(f"cluster {self.cluster}: cannot download {remote}: {e}") from e

    def read_tail(self, remote: str, max_bytes: int) -> str:
        """The last ``max_bytes`` of a remote file ('' when it does not exist)."""
        try:
            with self.session() as sftp:
                size = sftp.stat(remote).st_size or 0
                with sftp.open(remote, "r") as f:
                    f.seek(max(0, size - max_bytes))
                    data = f.read(max_bytes)
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
        todo = [(off, min(PIECE, size - off)) for off in range(0, size, PIECE)] or [(0, 0)]
        self._create(remote, size)
        for attempt in range(ROUNDS):
            failed = self._put_pieces(local, remote, todo, streams, progress)
            if not failed:
                return
            todo = [p for p, _ in failed]
            cause = failed[0][1]
            final = next((e for _, e in failed if isinstance(e, HpcciError) and not e.transient), None)
            if final is not None or self._stop.is_set():
                raise final or Interrupted("upload stopped by SIGTERM/SIGINT")
            self._echo(
                f"cluster {self.cluster}: upload interrupted ({cause or type(cause).__name__}); resuming "
                f"{len(todo)} piece(s) (round {attempt + 2}/{ROUNDS})"
            )
            time.sleep(1.0 + attempt)
        raise TransferError(
            f"cluster {self.cluster}: upload of {local.name} to {remote} failed after {ROUNDS} rounds: {cause}; "
            "check the connection and free space on the cluster"
        ) from cause

    def _create(self, remote: str, size: int) -> None:
        """Create ``remote`` at its full ``size``, so the streams can write their pieces in any order."""
        with self.session() as sftp:
            try:
                with sftp.open(remote, "w") as f:
                    f.truncate(size)
            except OSError as e:
                raise TransferError(
                    f"cluster {self.cluster}: cannot create {remote}: {e}; check free space"
                ) from e

    def _put_pieces(
        self,
        local: Path,
        remote: str,
        pieces: list[Piece],
        streams: int,
        progress: Callable[[int], None] | None,
    ) -> list[Failure]:
        """Send ``pieces`` over parallel streams; the pieces not sent, each with why (empty when all were)."""
        work = _Pieces(pieces)

        def stream(index: int) -> None:
            piece: Piece | None = None
            try:
                with self.session(index) as sftp:
                    fd = os.open(local, os.O_RDONLY)
                    try:
                        while (piece := work.take()) is not None:
                            if self._stop.is_set():
                                raise Interrupted("upload stopped by SIGTERM/SIGINT")
                            _send_piece(sftp, fd, remote, piece, progress)
                    finally:
                        os.close(fd)
            except Exception as e:
                work.fail(piece, e)

        n = max(1, min(streams, len(pieces)))  # no connection is opened for a stream with nothing to send
        threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return work.failed


class _Pieces:
    """The pieces still to send, shared by the upload streams; a stream that fails gives up the rest with it."""

    def __init__(self, pieces: list[Piece]) -> None:
        self._queue = list(reversed(pieces))
        self._lock = threading.Lock()
        self.failed: list[Failure] = []

    def take(self) -> Piece | None:
        with self._lock:
            return self._queue.pop() if self._queue else None

    def fail(self, piece: Piece | None, e: Exception) -> None:
        """``piece`` (the one in hand, if any) and every piece not yet taken failed with ``e``."""
        with self._lock:
            if piece is not None:
                self.failed.append((piece, e))
            self.failed.extend((p, e) for p in self._queue)
            self._queue.clear()


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
    piece: Piece,
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
