"""MLflow tracking for ``study.optimize(objective, callbacks=[MLflowCallback(uri)])``: each
finished trial becomes one MLflow run (params, every reported step, final metrics, state). Runs in
the controller's process; see ``search.tracking``."""
from __future__ import annotations

from search.tracking import MLflowCallback

__all__ = ["MLflowCallback"]
