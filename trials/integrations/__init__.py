"""Callbacks that plug a training framework's own loop into the running trial (worker side).

``lightning.SearchCallback`` and ``transformers.SearchCallback`` report evaluations, store the
framework's checkpoints in the study's artifact store, resume a retried, thawed or exploiting trial
from them, and stop training when a scheduler or algorithm says so. Each module imports its
framework when it is imported; ``search.integrations`` re-exports them lazily.
"""
from __future__ import annotations

__all__: list[str] = []
