"""The read-only web dashboard over ``storage.read_api``; ``search dashboard`` serves it.

FastAPI and uvicorn load on first use of ``create_app`` / ``serve``, so importing the package
(and ``search --help``) stays cheap.
"""
from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve", "ServerThread"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from dashboards.app import create_app

        return create_app
    if name in ("serve", "ServerThread"):
        from dashboards import server

        return getattr(server, name)
    raise AttributeError(f"module 'dashboards' has no attribute {name!r}")
