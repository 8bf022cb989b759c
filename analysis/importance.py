"""Parameter importance of a study, from its completed trials' records.

``importance_from_trials`` encodes the trials' parameters with ``surrogates.encoders.SpaceEncoder``
and hands the arrays to ``surrogates.importance.importance_from_arrays`` (fANOVA-style first-order
effects from a random forest). ``importance_view`` is the answer ``search importance`` and the
dashboard both show: the newest ``MAX_IMPORTANCE_TRIALS`` completed trials, one objective.
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Sequence

from storage.records import TrialRecord, TrialState

if TYPE_CHECKING:
    from storage.read_api import ReadAPI

__all__ = ["MAX_IMPORTANCE_TRIALS", "importance_from_trials", "importance_view"]

MAX_IMPORTANCE_TRIALS = 500
METHOD = "fANOVA-style first-order importance from a random forest (surrogates.importance)"


def _usable(t: TrialRecord, index: int) -> bool:
    if t.state != TrialState.COMPLETE or t.values is None or len(t.values) <= index:
        return False
    v = t.values[index]
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def importance_from_trials(params: Sequence[Any], trials: Sequence[TrialRecord],
                           metric_direction: str = "minimize", *, index: int = 0,
                           random_state: Any = 0) -> dict[str, float]:
    """Importance of each parameter (duck-typed, see ``SpaceEncoder``) for objective ``index`` of
    frozen trial records; only COMPLETE trials with finite values count."""
    import numpy as np

    from surrogates.encoders import SpaceEncoder
    from surrogates.importance import importance_from_arrays

    if metric_direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {metric_direction!r}")
    done = [t for t in trials if _usable(t, index)]
    if len(done) < 2:
        raise ValueError(f"parameter importance needs at least 2 completed trials with values, got {len(done)}")
    enc = SpaceEncoder(params)
    sign = -1.0 if metric_direction == "maximize" else 1.0
    y = np.array([sign * float(t.values[index]) for t in done])
    return importance_from_arrays(enc.encode([t.params for t in done]), y, enc.groups, random_state=random_state)


def importance_view(api: "ReadAPI", name: str, objective: int = 0, *,
                    max_trials: int = MAX_IMPORTANCE_TRIALS) -> dict[str, Any]:
    """Parameter importance for objective ``objective`` from the newest ``max_trials`` completed
    trials, ranked, with the method named."""
    from storage.read_api import declared_space

    study = api.get_study(name)
    if not 0 <= objective < len(study.directions):
        raise ValueError(f"objective must be in [0, {len(study.directions)}), got {objective}")
    space = [p for p in declared_space(study.spec) if p["type"] in ("float", "int", "categorical")]
    trials = [t for t in api.get_trials(name, [TrialState.COMPLETE], limit=max_trials, newest=True)
              if _usable(t, objective)]
    base = {"study": study.name, "metric": study.metrics[objective], "n_trials": len(trials)}
    if len(trials) < 2 or not space:
        return {**base, "method": None, "importance": {},
                "note": "needs at least 2 completed trials and a declared numeric or categorical parameter"}
    params = [SimpleNamespace(name=p["name"], choices=tuple(p["choices"])) if p["type"] == "categorical"
              else SimpleNamespace(name=p["name"], low=p["low"], high=p["high"], log=p["log"],
                                   step=p["step"] if p["step"] is not None else (1 if p["type"] == "int" else None))
              for p in space]
    imp = importance_from_trials(params, trials, study.directions[objective], index=objective)
    ranked = dict(sorted(((k, float(v)) for k, v in imp.items()), key=lambda kv: -kv[1]))
    return {**base, "method": METHOD, "importance": ranked}
