"""OpenSSH user certificates: their validity window read from the certificate itself (pure, no connection).

A certificate (``ssh-keygen -s CA -I ID -n USER -V WINDOW key.pub`` makes one; NERSC's sshproxy issues them for
a day) is refused by the server once expired; hpcci reads the window first so the error names the expiry time.
Format: PROTOCOL.certkeys in OpenSSH's source.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from datetime import datetime, timezone

# the public key fields between the nonce and the serial, per certificate type (string or mpint each)
_KEY_FIELDS = {
    "ssh-ed25519-cert-v01@openssh.com": 1,
    "ssh-rsa-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp256-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp384-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp521-cert-v01@openssh.com": 2,
}
FOREVER = (1 << 64) - 1


@dataclass(frozen=True)
class Certificate:
    key_id: str
    principals: list[str]
    valid_after: int  # seconds since the epoch
    valid_before: int  # FOREVER: no expiry

    def expired(self, now: float) -> bool:
        return self.valid_before != FOREVER and now >= self.valid_before

    def not_yet_valid(self, now: float) -> bool:
        return now < self.valid_after


def when(seconds: int) -> str:
    """A validity bound as UTC text (``forever`` for no bound)."""
    if seconds == FOREVER:
        return "forever"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ValueError("the certificate is truncated")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def string(self) -> bytes:
        (n,) = struct.unpack(">I", self.take(4))
        return self.take(n)

    def uint32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def uint64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])


def parse_certificate(text: str) -> Certificate:
    """The fields of a ``*-cert.pub`` line (``TYPE BASE64 [comment]``); ValueError when it is not a certificate."""
    words = text.split()
    if len(words) < 2 or words[0] not in _KEY_FIELDS:
        raise ValueError(
            "not an OpenSSH user certificate (expected a line like 'ssh-ed25519-cert-v01@openssh.com AAAA...')"
        )
    try:
        r = _Reader(base64.b64decode(words[1], validate=True))
    except ValueError as e:
        raise ValueError("the certificate's base64 text is damaged") from e
    kind = r.string().decode("ascii", "replace")
    if kind != words[0]:
        raise ValueError(f"the certificate says it is {kind}, its line says {words[0]}")
    r.string()  # nonce
    for _ in range(_KEY_FIELDS[kind]):
        r.string()
    r.uint64()  # serial
    if r.uint32() != 1:
        raise ValueError("this is a host certificate, not a user certificate")
    key_id = r.string().decode("utf-8", "replace")
    names, principals = _Reader(r.string()), []
    while names.at < len(names.data):
        principals.append(names.string().decode("utf-8", "replace"))
    return Certificate(key_id, principals, r.uint64(), r.uint64())
