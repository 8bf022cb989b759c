"""From frozen trial records to the arrays the surrogates fit: the record-to-array step, kept on
the search side so that ``surrogates`` sees only arrays (it imports neither ``storage`` nor
``search``).

``TrialEncoder`` is ``surrogates.encoders.SpaceEncoder`` (configurations <-> rows in [0, 1]) plus
``encode_trials``: finished trials as ``EncodedTrials`` (rows, losses, feasibility, numbers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from storage.records import TrialRecord, TrialState
from surrogates.encoders import SpaceEncoder

__all__ = ["TrialEncoder", "EncodedTrials"]


@dataclass(frozen=True)
class EncodedTrials:
    """Finished trials as arrays. ``y`` is the objective as a loss (lower is better) and NaN where
    the trial failed; ``feasible`` is False exactly there. ``numbers`` are the trial numbers."""

    X: np.ndarray
    y: np.ndarray
    feasible: np.ndarray
    numbers: np.ndarray


class TrialEncoder(SpaceEncoder):
    """A ``SpaceEncoder`` that also encodes frozen trial records (see the module doc)."""

    def encode_trials(self, trials: Sequence[TrialRecord], index: int = 0,
                      direction: str = "minimize") -> EncodedTrials:
        """COMPLETE trials with values and FAILED trials; others (running, pruned) are left out.
        ``direction`` of objective ``index`` turns values into losses."""
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
        kept, ys, ok = [], [], []
        for t in trials:
            if t.state == TrialState.COMPLETE and t.values is not None:
                v = float(t.values[index])
                feasible = math.isfinite(v)
                kept.append(t)
                ys.append((-v if direction == "maximize" else v) if feasible else math.nan)
                ok.append(feasible)
            elif t.state == TrialState.FAILED:
                kept.append(t)
                ys.append(math.nan)
                ok.append(False)
        X = self.encode([t.params for t in kept]) if kept else np.zeros((0, self.n_features))
        return EncodedTrials(X=X, y=np.array(ys, dtype=float), feasible=np.array(ok, dtype=bool),
                             numbers=np.array([t.number for t in kept], dtype=int))
