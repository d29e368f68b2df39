"""login.known_hosts read the way OpenSSH reads it (pure: keys are made in memory, nothing connects)."""

from __future__ import annotations

import base64

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hpcci.backends.ssh.known_hosts import check_host_key, parse_known_hosts
from hpcci.errors import ConfigError, HostKeyError


def new_key() -> tuple[str, paramiko.PKey]:
    """(the 'ssh-ed25519 BASE64' text, the same key as paramiko sees it)."""
    text = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
        .decode()
    )
    kind, blob = text.split()
    return text, paramiko.PKey.from_type_string(kind, base64.b64decode(blob))


SERVER, SERVER_KEY = new_key()
OTHER, OTHER_KEY = new_key()


def test_a_listed_key_for_host_and_port_is_accepted() -> None:
    known = parse_known_hosts(f"# comment\n\n[10.77.0.2]:2222 {SERVER}\n")
    check_host_key("c", known, "10.77.0.2", 2222, SERVER_KEY)  # no error
    with pytest.raises(HostKeyError, match=r"host key of 10.77.0.2 is not in login.known_hosts"):
        check_host_key("c", known, "10.77.0.2", 22, SERVER_KEY)  # same host, other port: another entry


def test_a_hashed_host_entry_matches() -> None:
    hashed = paramiko.HostKeys.hash_host("[login.example.org]:2222")
    known = parse_known_hosts(f"{hashed} {SERVER}\n")
    check_host_key("c", known, "login.example.org", 2222, SERVER_KEY)
    with pytest.raises(HostKeyError, match=r"not in login\.known_hosts"):
        check_host_key("c", known, "login2.example.org", 2222, SERVER_KEY)


def test_host_patterns_and_negations_match_like_openssh() -> None:
    known = parse_known_hosts(f"login?.example.org,*.hpc.example.org,!bad.hpc.example.org {SERVER}\n")
    check_host_key("c", known, "login1.example.org", 22, SERVER_KEY)
    check_host_key("c", known, "node.hpc.example.org", 22, SERVER_KEY)
    with pytest.raises(HostKeyError, match=r"not in login\.known_hosts"):
        check_host_key("c", known, "bad.hpc.example.org", 22, SERVER_KEY)


def test_a_revoked_key_is_refused_even_when_listed_elsewhere() -> None:
    known = parse_known_hosts(f"login.example.org {SERVER}\n@revoked * {SERVER}\n")
    with pytest.raises(HostKeyError, match="marked @revoked"):
        check_host_key("c", known, "login.example.org", 22, SERVER_KEY)


def test_a_changed_key_names_both_fingerprints() -> None:
    known = parse_known_hosts(f"login.example.org {OTHER}\n")
    with pytest.raises(HostKeyError, match="CHANGED") as e:
        check_host_key("c", known, "login.example.org", 22, SERVER_KEY)
    assert "SHA256:" in str(e.value) and str(e.value).count("SHA256:") == 2


def test_several_keys_of_one_type_for_a_host_are_all_accepted() -> None:
    known = parse_known_hosts(f"login.example.org {OTHER}\nlogin.example.org {SERVER}\n")
    check_host_key("c", known, "login.example.org", 22, SERVER_KEY)
    check_host_key("c", known, "login.example.org", 22, OTHER_KEY)


def test_cert_authority_lines_are_a_config_error_naming_the_line() -> None:
    with pytest.raises(ConfigError, match=r"login.known_hosts line 2: @cert-authority .* not supported"):
        parse_known_hosts(f"login.example.org {SERVER}\n@cert-authority *.example.org {OTHER}\n")


def test_a_broken_line_is_a_config_error_naming_the_line() -> None:
    with pytest.raises(ConfigError, match=r"login\.known_hosts line 1: not a known_hosts line"):
        parse_known_hosts("login.example.org ssh-ed25519 not-base64!\n")
