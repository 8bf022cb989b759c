"""search-service: hyperparameter and architecture search over real PyTorch trials.

    import search
    study = search.create_study("study.yaml", load_if_exists=True)   # or a dict with the same keys
    study.optimize(objective)                                          # or: search.run("study.yaml")

Inside an objective: ``search.report(step, loss=...)``, ``search.should_stop()``,
``search.save_checkpoint(state, step)``, ``search.load_checkpoint()``, ``search.get_trial()``.
Those come from the worker side (``trials.context``) and importing ``search`` loads nothing else:
the controller, storage and Ray's driver side are imported on first use of the names below.
"""
from __future__ import annotations

import importlib
from typing import Any

from trials.context import get_trial, load_checkpoint, report, save_checkpoint, should_stop

__all__ = [
    "create_study", "load_study", "Study", "AskedTrial", "run", "resume", "load_config", "ConfigError",
    "StudyConfig", "report", "should_stop", "save_checkpoint", "load_checkpoint", "get_trial",
]

_LAZY = {
    "create_study": "search.api", "load_study": "search.api", "Study": "search.api", "AskedTrial": "search.api",
    "run": "search.study", "resume": "search.study", "load_config": "search.study",
    "ConfigError": "search.config", "StudyConfig": "search.config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
