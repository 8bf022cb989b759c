"""`search dashboard`: serve the read-only web dashboard over a storage.

FastAPI and uvicorn are imported inside `run` so that `search --help` stays instant.
"""
from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number in [1, 65535], got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in [1, 65535], got {value}")
    return value


def _poll(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def add_parser(subparsers: Any) -> None:
    """Add the `dashboard` command to an argparse subparsers object."""
    p = subparsers.add_parser(
        "dashboard", help="serve the read-only web dashboard",
        description="Browse studies, trials, learning curves, Pareto fronts and scaling fits in a browser. "
                    "Read-only. Binds 127.0.0.1 by default; any other --host requires a token "
                    "(given by $SEARCH_DASHBOARD_TOKEN, else generated and printed).")
    p.add_argument("--storage", metavar="URL",
                   help="SQLAlchemy URL (default: $SEARCH_STORAGE, then the URL in the file "
                        "$SEARCH_STORAGE_FILE, then sqlite:///search.db)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port (default: 8080)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="another host name browsers may use to reach the server (repeatable); "
                        "requests whose Host header names anything else get 400")
    p.add_argument("--poll", type=_poll, default=3.0, metavar="SECONDS",
                   help="how often pages refresh running studies (default: 3)")


def run(args: argparse.Namespace) -> int:
    from dashboards.server import serve
    from search.cli import InputError

    try:
        serve(args.storage, host=args.host, port=args.port, allowed_hosts=args.allowed_host,
              poll_seconds=args.poll)
    except ValueError as exc:  # a port in use, an address this machine does not have
        raise InputError(str(exc)) from None
    return 0
