"""``SearchCallback`` for a Lightning ``Trainer``: see ``trials.integrations.lightning``. Loaded on
first use of the name, so importing this module imports neither Lightning nor the controller."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trials.integrations.lightning import SearchCallback

__all__ = ["SearchCallback"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("trials.integrations.lightning"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
