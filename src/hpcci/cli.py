"""Command line: argument parsing only. Each command lives in hpcci.commands.<name>; errors map to exit codes."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from hpcci import __version__
from hpcci.errors import INTERNAL_ERROR_EXIT, HpcciError, UsageError

COMMANDS = {
    "build": "build multi-arch images from the Dockerfile in hpcci.yaml",
    "publish": "push images to a registry and/or upload docker-archive tars to S3",
    "deploy": "stage and convert the image on clusters, run the smoke tests as Slurm jobs, judge them",
    "report": "post results as GitHub check runs (and a job summary)",
    "run": "build, publish, deploy and report in one go",
    "plan": "print what a run would do (tags, targets, remote commands, batch scripts); touches nothing",
    "validate": "check hpcci.yaml and cluster configs; print their JSON schemas",
    "doctor": "check that a cluster is reachable and ready (host key, runtime, scheduler, space)",
    "trigger": "a maintainer's `/hpcci deploy` PR comment: check the commenter's permission, pin the PR head",
    "releases": "list the releases installed as modules on a cluster (version, tag, digests, default)",
    "rollback": "make an installed release the module's default again",
}


def _command(name: str) -> ModuleType:
    return importlib.import_module(f"hpcci.commands.{name}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hpcci",
        description="Get containers from a GitHub repository onto HPC clusters, tested and trusted.",
    )
    p.add_argument("--version", action="version", version=f"hpcci {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        _command(name).add_arguments(sp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from hpcci.log import Log

    log = Log()
    args = None
    try:
        args = parser().parse_args(argv)
        module = _command(args.command)
        rc: int = module.main(args, log)
        return rc
    except HpcciError as e:
        if args is not None and args.debug:
            import traceback

            traceback.print_exc()
        for line in str(e).splitlines() or [type(e).__name__]:
            log.error(line) if log.github else print(f"hpcci: error: {log.redact(line)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("hpcci: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hpcci plan | head`: the reader left; that is not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SystemExit as e:  # argparse: usage errors exit 2 with their own message
        return e.code if isinstance(e.code, int) else UsageError.exit_code
    except Exception as e:  # the last resort: a one-line message, never a bare traceback
        if args is not None and args.debug:
            raise
        print(
            f"hpcci: internal error: {type(e).__name__}: {log.redact(str(e))[:300]} "
            "(re-run with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return INTERNAL_ERROR_EXIT


if __name__ == "__main__":
    raise SystemExit(main())
