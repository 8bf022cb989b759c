"""Callbacks for training frameworks, used inside a trial: ``search.integrations.lightning`` and
``search.integrations.transformers`` (extras ``search-service[lightning]``,
``search-service[transformers]``). They live on the worker side (``trials.integrations``); these
modules re-export them lazily, so importing one loads neither the framework nor the controller
until ``SearchCallback`` is used."""
from __future__ import annotations

__all__ = ["lightning", "transformers"]
