"""Which secrets one job of the kit may hand to hpcci: the `{env: NAME}` names its trusted configuration uses.

  secret_names.py build CONFIG            build.registries and publish.registry (bases and the layer cache)
  secret_names.py publish CONFIG          publish.registry and publish.s3
  secret_names.py deploy CONFIG CLUSTER   publish (the deploy stages the published image) and that one cluster's
                                          config; CLUSTER empty: every cluster of deploy.clusters

Prints the names comma separated, for `secrets.py exec --only=NAMES`: every other secret of the workflow's
`toJSON(secrets)` stays out of hpcci's environment. Runs with the kit's virtualenv Python (it reads the config with
hpcci.config.load); `$NAME` and `${NAME}` in a `{file: ...}` path count as names too, and a publish.s3 without
keys names boto3's own variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), which it reads then.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from hpcci.config.load import load_clusters, load_pipeline
from hpcci.config.types import FromEnv, FromFile
from hpcci.errors import HpcciError

_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
# boto3's credential chain: what hpcci's S3 client reads when publish.s3 names no keys of its own
AWS_CHAIN = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def env_names(obj: object) -> set[str]:
    """Every environment variable a config object reads a value from."""
    if isinstance(obj, FromEnv):
        return {obj.env}
    if isinstance(obj, FromFile):
        return set(_VAR.findall(obj.file))
    if isinstance(obj, BaseModel):
        return env_names([getattr(obj, name) for name in type(obj).model_fields])
    if isinstance(obj, dict):
        return env_names(list(obj.values()))
    if isinstance(obj, (list, tuple)):
        return set().union(*(env_names(item) for item in obj)) if obj else set()
    return set()


def names_for(purpose: str, config: Path, cluster: str = "") -> list[str]:
    """The sorted names ``purpose`` (build, publish, deploy) may use under the trusted ``config``."""
    pipe = load_pipeline(config)
    parts: list[object]
    if purpose == "build":
        parts = [pipe.build, pipe.publish.registry]
    elif purpose == "publish":
        parts = [pipe.publish.registry, pipe.publish.s3]
    elif purpose == "deploy":
        wanted: Iterable[str] = [cluster] if cluster else pipe.deploy.clusters
        parts = [pipe.publish, *load_clusters(pipe, wanted, config.resolve().parent).values()]
    else:
        raise ValueError(purpose)
    names = env_names(parts)
    s3 = pipe.publish.s3
    if (
        purpose in ("publish", "deploy")
        and s3 is not None
        and s3.access_key is None
        and s3.secret_key is None
    ):
        names |= set(AWS_CHAIN)
    return sorted(names)


def main(argv: list[str]) -> int:
    if (
        len(argv) not in (2, 3)
        or argv[0] not in ("build", "publish", "deploy")
        or (len(argv) == 3) != (argv[0] == "deploy")
    ):
        sys.exit(__doc__)
    try:
        print(",".join(names_for(argv[0], Path(argv[1]), argv[2] if len(argv) == 3 else "")))
    except HpcciError as e:
        # stderr: the actions read stdout into a variable, and the runner reads workflow commands on both
        print(f"::error title=hpcci secrets::{e}", file=sys.stderr, flush=True)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
