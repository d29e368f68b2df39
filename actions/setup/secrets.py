"""Secrets for the hpcci actions, standard library only (it runs before the kit is installed).

secrets.py mask [ENV_NAME...]     register every value of $HPCCI_SECRETS (a JSON object, e.g. the workflow's
                                  `toJSON(secrets)`) and of the named variables with `::add-mask::`, so the runner
                                  redacts them from all later output. Multi-line values are masked line by line too.
secrets.py exec [--only=NAMES] PROGRAM ARGS...
                                  run PROGRAM with each $HPCCI_SECRETS entry as an environment variable of the
                                  same name (so `{env: NAME}` in hpcci.yaml finds the repository secret NAME);
                                  variables already set win, and HPCCI_SECRETS itself is not passed on. With
                                  --only (comma separated, from secret_names.py), only those entries: a job gets
                                  the secrets its trusted configuration names, not every secret of the repository.
"""

from __future__ import annotations

import json
import os
import re
import sys

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Never exported from the secrets object: the runner's own variables (the token goes to `hpcci report` through its
# own input), and variables that change how programs start rather than what hpcci reads.
_RESERVED = re.compile(
    r"^(GITHUB_|RUNNER_|ACTIONS_|LD_|PYTHON|GIT_|PERL5|NODE_|DYLD_)"
    r"|_PROXY$|_CA_BUNDLE$"
    r"|^(github_token|PATH|HOME|BASH_ENV|ENV|SHELL|IFS|TMPDIR|SSL_CERT_FILE|SSL_CERT_DIR|CI)$",
    re.IGNORECASE,
)


def _escape(value: str) -> str:
    # https://github.com/actions/toolkit/blob/main/packages/core/src/command.ts (escapeData)
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def secrets_object() -> dict[str, str]:
    text = os.environ.get("HPCCI_SECRETS", "").strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        sys.exit("hpcci: error: the secrets input is not a JSON object; pass ${{ toJSON(secrets) }}")
    if not isinstance(data, dict):
        sys.exit("hpcci: error: the secrets input is not a JSON object; pass ${{ toJSON(secrets) }}")
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


def mask_lines(value: str) -> list[str]:
    """The `::add-mask::` commands that hide ``value``: whole, and each line of a multi-line value."""
    parts = [value] + [line.strip() for line in value.splitlines() if "\n" in value]
    seen: list[str] = []
    for part in parts:
        if part.strip() and part not in seen:
            seen.append(part)
    return [f"::add-mask::{_escape(p)}" for p in seen]


def mask(names: list[str]) -> int:
    values = list(secrets_object().values()) + [os.environ.get(n, "") for n in names]
    for value in values:
        for line in mask_lines(value):
            print(line, flush=True)
    return 0


def exported(
    secrets: dict[str, str], environ: dict[str, str], only: set[str] | None = None
) -> dict[str, str]:
    """The environment PROGRAM gets: ``environ`` plus the secrets it does not set itself (of ``only``, if given)."""
    env = {k: v for k, v in environ.items() if k != "HPCCI_SECRETS"}
    for name, value in secrets.items():
        if only is not None and name not in only:
            continue
        if _NAME.match(name) and not _RESERVED.search(name) and not env.get(name):
            env[name] = value
    return env


def exec_arguments(argv: list[str]) -> tuple[set[str] | None, list[str]]:
    """(the --only names, None without --only; PROGRAM and its arguments) of `exec`'s arguments."""
    if argv[:1] and argv[0].startswith("--only="):
        return {n for n in argv[0].removeprefix("--only=").split(",") if n}, argv[1:]
    return None, argv


def main(argv: list[str]) -> int:
    if argv[:1] == ["mask"]:
        return mask(argv[1:])
    if argv[:1] == ["exec"]:
        only, program = exec_arguments(argv[1:])
        if program:
            env = exported(secrets_object(), dict(os.environ), only)
            os.execve(program[0], program, env)  # noqa: S606 (argv, no shell)
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
