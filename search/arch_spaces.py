"""Architecture spaces usable as study-file parameters (``space: {arch: {type: ...}}``).

``ARCH_TYPES`` maps a ``type`` name to a factory ``(name, spec, when, path) -> Param``; the
returned object follows the parameter protocol of ``search.space`` (``name``, ``when``,
``sample(rng)``, ``grid(n)``, ``contains(value)``).
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["ARCH_TYPES"]

ARCH_TYPES: dict[str, Callable[..., Any]] = {}
