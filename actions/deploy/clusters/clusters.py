"""Which clusters this event deploys to, as a JSON list for a workflow matrix (written to $GITHUB_OUTPUT).

  clusters.py CONFIG [CLUSTERS]

CLUSTERS (comma or space separated) overrides deploy.clusters from CONFIG. The list is empty when the event's
trigger (tag, push, pull_request, workflow_dispatch; a trusted `/hpcci deploy` comment counts as workflow_dispatch)
is not in deploy.triggers, so the deploy matrix is skipped. Each named cluster config must load: a typo fails here,
before anything is deployed. On a re-run (GITHUB_RUN_ATTEMPT > 1) the list keeps only the clusters whose check run
of this workflow run did not succeed in an earlier attempt (hpcci.stages.report.rerun; needs GITHUB_TOKEN, checks: read).
Also writes `environments`, a JSON object: each cluster's GitHub environment (the cluster config's `environment`,
default hpcci-<name>), which its deploy job declares so that only it reads that environment's secrets.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from hpcci.config.load import load_clusters, load_pipeline
from hpcci.context import GitEvent, from_environ
from hpcci.errors import HpcciError


def deploy_clusters(config: Path, override: str, trigger: str) -> tuple[list[str], str]:
    """(cluster names, why) for an event with this ``trigger``."""
    pipe = load_pipeline(config)
    names = [n for n in re.split(r"[\s,]+", override) if n] or list(pipe.deploy.clusters)
    if trigger not in pipe.deploy.triggers:
        return (
            [],
            f"a {trigger} event does not deploy (deploy.triggers in {config} is {list(pipe.deploy.triggers)})",
        )
    load_clusters(pipe, names, config.resolve().parent)
    return names, f"a {trigger} event deploys to {', '.join(names) or 'no cluster'}"


def environments(config: Path, names: list[str]) -> dict[str, str]:
    """{cluster: the GitHub environment its deploy job runs in} for the named clusters."""
    pipe = load_pipeline(config)
    loaded = load_clusters(pipe, names, config.resolve().parent)
    return {name: loaded[name].environment or f"hpcci-{name}" for name in names}


def not_yet_succeeded(config: Path, names: list[str], event: GitEvent) -> tuple[list[str], str]:
    """On a re-run: the clusters whose check run of this workflow run did not succeed, and why."""
    from hpcci.backends.github.client import RestGitHub, TokenAuth
    from hpcci.stages.report.outputs import Target
    from hpcci.stages.report.rerun import still_needed

    token = os.environ.get("GITHUB_TOKEN", "")
    if not token or not event.head_sha or not event.repository:
        return names, f"re-run (attempt {event.run_attempt}): no GITHUB_TOKEN or commit; deploying all"
    pipe = load_pipeline(config)
    api = RestGitHub(
        api_url=os.environ.get("GITHUB_API_URL") or "https://api.github.com",
        repository=event.repository,
        auth=TokenAuth(token),
    )
    try:
        target = Target(sha=event.head_sha, run_key=event.run_id, check_name=pipe.report.check_name)
        selection = still_needed(api, target, names)
    finally:
        api.close()
    return selection.deploy, selection.why(event.run_attempt)


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        sys.exit(__doc__)
    event = from_environ()
    config = Path(argv[0])
    try:
        names, why = deploy_clusters(config, argv[1] if len(argv) == 2 else "", event.trigger)
        if names and event.run_attempt not in ("", "1"):
            print(f"hpcci: {why}")
            names, why = not_yet_succeeded(config, names, event)
        envs = environments(config, names)
    except HpcciError as e:
        print(f"::error title=hpcci deploy::{e}", flush=True)
        return e.exit_code
    print(f"hpcci: {why}")
    target = os.environ.get("GITHUB_OUTPUT")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(f"clusters={json.dumps(names)}\n")
            f.write(f"environments={json.dumps(envs)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
