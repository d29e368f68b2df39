"""The GitHub seam's pure parts: rate-limit detection, Retry-After, the GitHub App JWT, the commit-status body;
and `hpcci plan`'s section."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from hpcci.backends.github.client import app_jwt
from hpcci.backends.github.errors import is_rate_limited, retry_after
from hpcci.commands import common
from hpcci.commands.report import locate_tests, plan_section, workspace_path
from hpcci.config.load import load_pipeline
from hpcci.context import GitEvent
from hpcci.errors import GitHubError
from hpcci.records import ClusterResult, Results
from hpcci.records import TestResult as SmokeResult
from hpcci.stages.report.outputs import Target, status_body

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "fibonacci" / "hpcci.yaml"


def test_secondary_rate_limit_403_is_recognised() -> None:
    assert is_rate_limited(403, {"retry-after": "5"}, "whatever")
    assert is_rate_limited(403, {}, "You have exceeded a secondary rate limit.")
    assert is_rate_limited(403, {"x-ratelimit-remaining": "0"}, "")
    assert is_rate_limited(429, {}, "")


def test_permission_403_is_not_a_rate_limit() -> None:
    assert not is_rate_limited(403, {}, "Resource not accessible by integration")
    assert not is_rate_limited(500, {"retry-after": "1"}, "")


def test_retry_after_reads_seconds_dates_and_reset_times() -> None:
    assert retry_after({"retry-after": "7"}, now=0) == 7
    assert retry_after({"retry-after": "Thu, 01 Jan 1970 00:01:40 GMT"}, now=40) == 60
    assert retry_after({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "130"}, now=100) == 30
    assert retry_after({}, now=0) is None


def _private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_app_jwt_is_rs256_signed_with_github_claims() -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    pem = _private_key()
    token = app_jwt("12345", pem, now=1_000_000)
    head, payload, sig = token.split(".")

    def decode(s: str) -> bytes:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

    assert json.loads(decode(head)) == {"alg": "RS256", "typ": "JWT"}
    assert json.loads(decode(payload)) == {"iat": 999_940, "exp": 1_000_540, "iss": "12345"}
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    key.public_key().verify(decode(sig), f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())


def test_app_jwt_refuses_a_key_that_is_not_pem() -> None:
    with pytest.raises(GitHubError, match="not a PEM RSA key"):
        app_jwt("1", "not a key")


def test_a_commit_status_stands_in_for_the_check_run() -> None:
    t = Target(sha="a" * 40, run_key="7", details_url="https://ci/run/7")
    running = status_body(t, "local", None, "Deploying and smoke-testing on local")
    assert running == {
        "state": "pending",
        "context": "hpcci / local",
        "description": "Deploying and smoke-testing on local",
        "target_url": "https://ci/run/7",
    }
    done = status_body(t, "local", "timed_out", "1 of 2 smoke tests timed out")
    assert (done["state"], done["description"]) == ("failure", "timed out: 1 of 2 smoke tests timed out")
    assert status_body(t, "local", "action_required", "x")["state"] == "error"


def test_a_commit_status_description_is_cut_to_githubs_140_characters() -> None:
    body = status_body(Target(sha="a" * 40, run_key=""), "local", "failure", "y" * 300)
    assert len(body["description"]) == 140 and body["description"].endswith("…")
    assert "target_url" not in body  # no workflow run to link to


def test_annotation_paths_are_relative_to_the_workspace(tmp_path: Path) -> None:
    assert workspace_path(str(tmp_path / "sub" / "hpcci.yaml"), tmp_path) == "sub/hpcci.yaml"
    assert workspace_path("/elsewhere/hpcci.yaml", tmp_path) == "/elsewhere/hpcci.yaml"


def test_tests_without_a_recorded_line_get_it_from_the_config() -> None:
    pipe = load_pipeline(EXAMPLE)
    t = SmokeResult("local", "fib", "linux/amd64", "1", "FAILED", 1, 1.0, "fail", "r")
    r = Results(image="i", clusters=[ClusterResult("local", "linux/amd64", [t])])
    (located,) = locate_tests(r, pipe, str(EXAMPLE), REPO).clusters[0].tests
    assert located.source_file == "examples/fibonacci/hpcci.yaml"
    assert located.source_line == pipe.test_line(0) and located.source_line is not None


def _ctx(event: GitEvent) -> common.PlanContext:
    pipe = load_pipeline(EXAMPLE)
    return common.PlanContext(pipe, {}, event, EXAMPLE.parent, Path(".hpcci"))


def test_plan_names_the_check_runs_and_the_pr_head_sha() -> None:
    ev = GitEvent(
        event_name="workflow_dispatch", sha="m" * 40, pr_head_sha="h" * 40, repository="o/r", run_id="99"
    )
    text = plan_section(_ctx(ev))
    assert "'hpcci / local'" in text
    assert "h" * 40 in text and "m" * 40 not in text
    assert "hpcci:local@99" in text


def test_plan_says_no_check_runs_for_events_that_do_not_deploy() -> None:
    text = plan_section(_ctx(GitEvent(event_name="push", ref="refs/heads/main", sha="a" * 40)))
    assert text.startswith("no check runs")


def test_plan_says_fork_prs_get_no_check_runs() -> None:
    ev = GitEvent(event_name="pull_request", sha="a" * 40, pr_head_sha="b" * 40, pr_from_fork=True)
    assert "fork" in plan_section(_ctx(ev))
