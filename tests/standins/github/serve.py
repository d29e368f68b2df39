"""Serve the GitHub API stand-in: python serve.py --port 8990 --token-file FILE (threaded Werkzeug server)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# tests/ on the path: the stand-in is the package standins.github (run as a script by scripts/stack/github.sh).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from standins.github.app import make_app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="GitHub REST API stand-in (check runs, statuses, comments, app tokens)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8990)
    p.add_argument("--token-file", required=True, help="file holding the token clients must send")
    args = p.parse_args(argv)
    token = Path(args.token_file).read_text(encoding="utf-8").strip()
    if not token:
        p.error(f"{args.token_file} is empty")
    from werkzeug.serving import run_simple

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(f"github stand-in: serving on http://{args.host}:{args.port}", flush=True)
    run_simple(args.host, args.port, make_app(token), threaded=True, use_reloader=False, use_debugger=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
