"""OpenSSH known_hosts for the login node: parsing, matching a host's keys, and the check every offered key passes.

Parsed like OpenSSH does: hashed names (|1|salt|hash), [host]:port, * ? patterns with !negation, several keys per
type, @revoked keys; @cert-authority (host certificates) is refused with a ConfigError naming the line.
paramiko loads only when a key is checked (``hpcci --help`` imports no SDK).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hpcci.errors import ConfigError, HostKeyError

if TYPE_CHECKING:
    import paramiko


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a host key: 'SHA256:base64'."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """The name known_hosts lists ``host:port`` under: the bare host on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


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
        return _among(key, self.revoked)


def _among(key: paramiko.PKey, keys: Sequence[paramiko.PKey]) -> bool:
    """Whether ``key`` is one of ``keys`` (compared as wire blobs: type and key material)."""
    blob = key.asbytes()
    return any(k.asbytes() == blob for k in keys)


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


def _marker(line: str, n: int, what: str) -> tuple[str, str]:
    """(the line's @marker or '', the rest of the line); ConfigError for a marker hpcci does not support."""
    if not line.startswith("@"):
        return "", line
    marker, _, rest = line.partition(" ")
    if marker == "@cert-authority":
        raise ConfigError(
            f"{what} line {n}: @cert-authority (host certificates) is not supported by hpcci; list the "
            "login host's own public key instead (ssh-keyscan -p PORT HOST), after checking its "
            "fingerprint with the cluster's admins"
        )
    if marker != "@revoked":
        raise ConfigError(f"{what} line {n}: unknown marker {marker!r} (known: @revoked)")
    return marker, rest.strip()


def parse_known_hosts(text: str, what: str = "login.known_hosts") -> KnownHosts:
    """Parse known_hosts text. ``@revoked`` keys are refused wherever else they are listed; ``@cert-authority``
    (host certificates) is not supported and is a ConfigError naming the line, never silently skipped."""
    import paramiko

    out = KnownHosts()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker, line = _marker(line, n, what)
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
    if _among(key, listed):
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


def host_key_policy(cluster: str, known: KnownHosts, host: str, port: int) -> paramiko.MissingHostKeyPolicy:
    """paramiko's hook for an offered host key, answered by ``check_host_key`` (raises unless listed).

    The client's own key store stays empty, so paramiko asks this policy about every key a server offers.
    """
    import paramiko

    class Check(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            check_host_key(cluster, known, host, port, key)

    return Check()
