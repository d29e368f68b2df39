"""Which clusters this event deploys to, as a JSON list for a workflow matrix (written to $GITHUB_OUTPUT).

  clusters.py CONFIG [CLUSTERS]

CLUSTERS (comma or space separated) overrides deploy.clusters from CONFIG. The list is empty when the event's
trigger (tag, push, pull_request, workflow_dispatch) is not in deploy.triggers, so the deploy matrix is skipped.
Each named cluster config must load: a typo fails here, before anything is deployed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from hpcci.config_load import load_clusters, load_pipeline
from hpcci.context import from_environ
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


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        sys.exit(__doc__)
    try:
        names, why = deploy_clusters(Path(argv[0]), argv[1] if len(argv) == 2 else "", from_environ().trigger)
    except HpcciError as e:
        print(f"::error title=hpcci deploy::{e}", flush=True)
        return e.exit_code
    print(f"hpcci: {why}")
    target = os.environ.get("GITHUB_OUTPUT")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(f"clusters={json.dumps(names)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
