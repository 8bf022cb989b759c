"""The worker side: a trial gets a spec and a reporter, trains, reports, checkpoints.

Nothing here imports from ``search``, ``storage`` or ``surrogates``: a worker runs wherever Ray
places it with only this package and its own dependencies.
"""
from __future__ import annotations

from trials.api import Reporter, TrialEvent, TrialSpec
from trials.runner import run_trial

__all__ = ["Reporter", "TrialEvent", "TrialSpec", "run_trial"]
