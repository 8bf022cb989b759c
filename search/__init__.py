"""search-service: hyperparameter and architecture search over real PyTorch trials.

    import search
    summary = search.run("study.yaml")            # or a dict with the same keys
    summary = search.resume("quickstart")
"""
from __future__ import annotations

from search.config import ConfigError, StudyConfig
from search.study import load_config, resume, run

__all__ = ["run", "resume", "load_config", "ConfigError", "StudyConfig"]
