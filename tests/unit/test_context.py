"""The GitHub event: which commit maintainers look at, for pushes, tags and pull requests."""

from __future__ import annotations

import json
from pathlib import Path

from hpcci.context import from_environ


def test_tag_push_is_a_tag_trigger_on_the_tagged_commit() -> None:
    ev = from_environ({"GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/tags/v1.2.3", "GITHUB_SHA": "abc"})
    assert (ev.trigger, ev.ref_name, ev.head_sha) == ("tag", "v1.2.3", "abc")


def test_pull_request_checks_go_on_the_head_sha_not_the_merge_commit(tmp_path: Path) -> None:
    payload = {
        "pull_request": {
            "number": 7,
            "head": {"sha": "head123", "repo": {"full_name": "fork/app"}},
            "base": {"repo": {"full_name": "org/app"}},
        }
    }
    event = tmp_path / "event.json"
    event.write_text(json.dumps(payload))
    ev = from_environ(
        {
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_REF": "refs/pull/7/merge",
            "GITHUB_SHA": "merge456",
            "GITHUB_EVENT_PATH": str(event),
        }
    )
    assert (ev.trigger, ev.pr_number, ev.head_sha, ev.pr_from_fork) == ("pull_request", 7, "head123", True)


def test_command_line_overrides_the_environment() -> None:
    ev = from_environ({"GITHUB_REF": "refs/heads/main"}, ref="refs/tags/v2.0.0", sha=None)
    assert ev.ref == "refs/tags/v2.0.0"


def test_run_url_points_at_the_workflow_run() -> None:
    ev = from_environ({"GITHUB_REPOSITORY": "org/app", "GITHUB_RUN_ID": "99"})
    assert ev.run_url == "https://github.com/org/app/actions/runs/99"
