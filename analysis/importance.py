"""Parameter importance of a study, from its trials' records.

``importance_from_trials`` encodes the trials' parameters with ``surrogates.encoders.SpaceEncoder``
and hands the arrays to ``surrogates.importance.importance_from_arrays`` (fANOVA-style first-order
effects from a random forest). ``importance_view`` is the answer ``search importance`` and the
dashboard both show, for one objective: the newest ``MAX_IMPORTANCE_TRIALS`` completed trials'
final values (``basis: "final"``), or, in a multi-fidelity study where trials stopped early
outnumber complete ones (ASHA, Hyperband, freeze-thaw: 1 complete and 7 pruned would leave
nothing to rank), every trial's value at the largest step at least half of them reached
(``basis: "step"``, ``ReadAPI.values_at_step``): one fidelity, most of the trials.
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


def _params(space: Sequence[dict]) -> list[SimpleNamespace]:
    return [SimpleNamespace(name=p["name"], choices=tuple(p["choices"])) if p["type"] == "categorical"
            else SimpleNamespace(name=p["name"], low=p["low"], high=p["high"], log=p["log"],
                                 step=p["step"] if p["step"] is not None else (1 if p["type"] == "int" else None))
            for p in space]


def _ranked(imp: dict[str, float]) -> dict[str, float]:
    return dict(sorted(((k, float(v)) for k, v in imp.items()), key=lambda kv: -kv[1]))


def importance_view(api: "ReadAPI", name: str, objective: int = 0, *,
                    max_trials: int = MAX_IMPORTANCE_TRIALS) -> dict[str, Any]:
    """Parameter importance for objective ``objective``, ranked, with the method and its
    ``basis`` named: the newest ``max_trials`` completed trials' final values, or (objective 0
    of a study whose early-stopped, paused and running trials outnumber its complete ones) every
    trial's value at a common step."""
    from storage.read_api import declared_space

    study = api.get_study(name)
    if not 0 <= objective < len(study.directions):
        raise ValueError(f"objective must be in [0, {len(study.directions)}), got {objective}")
    space = [p for p in declared_space(study.spec) if p["type"] in ("float", "int", "categorical")]
    counts = api.study(name)["counts"]
    if objective == 0 and counts.get("COMPLETE", 0) < sum(counts.get(s, 0) for s in ("PRUNED", "PAUSED", "RUNNING")):
        return _importance_at_step(api, name, study, space)
    trials = [t for t in api.get_trials(name, [TrialState.COMPLETE], limit=max_trials, newest=True)
              if _usable(t, objective)]
    base = {"study": study.name, "metric": study.metrics[objective], "n_trials": len(trials), "basis": "final"}
    if len(trials) < 2 or not space:
        return {**base, "method": None, "importance": {},
                "note": "needs at least 2 completed trials and a declared numeric or categorical parameter"}
    imp = importance_from_trials(_params(space), trials, study.directions[objective], index=objective)
    return {**base, "method": METHOD, "importance": _ranked(imp)}


def _importance_at_step(api: "ReadAPI", name: str, study: Any, space: Sequence[dict]) -> dict[str, Any]:
    at = api.values_at_step(name)
    base = {"study": name, "metric": at["metric"], "n_trials": len(at["values"]), "basis": "step", "step": at["step"],
            "states": {s: at["states"].count(s) for s in dict.fromkeys(at["states"])}}
    if len(at["values"]) < 2 or not space:
        return {**base, "method": None, "importance": {},
                "note": "needs at least 2 trials with a value at a common step and a declared numeric or "
                        "categorical parameter"}
    params = _params(space)
    # importance_from_trials counts COMPLETE records only: each trial is handed over as a record
    # complete at the common step, its value there standing in for a final one.
    records = [SimpleNamespace(state=TrialState.COMPLETE, values=(v,), params=p)
               for v, p in zip(at["values"], at["params"]) if all(q.name in p for q in params)]
    if len(records) < 2:
        return {**base, "method": None, "importance": {}, "note": "fewer than 2 of those trials hold every parameter"}
    imp = importance_from_trials(params, records, study.directions[0])
    return {**base, "n_trials": len(records), "method": f"{METHOD}, on each trial's {at['metric']} at step {at['step']}",
            "importance": _ranked(imp)}
