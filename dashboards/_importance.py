"""Parameter importance as the study page shows it: over every trial with a value at a common step.

``analysis.importance.importance_view`` (what ``search importance`` prints) counts COMPLETE trials
only. In a multi-fidelity study (ASHA, Hyperband, freeze-thaw) most trials are stopped early, so
that leaves a handful, or one: an ASHA study with 1 complete and 7 pruned trials would show no
importance at all. When stopped, paused or running trials outnumber the complete ones, the page
ranks parameters on every trial's value at the largest step at least half of them reached
(``ReadAPI.values_at_step``): one fidelity, most of the trials. Otherwise the complete trials'
final values are used, as the CLI does.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from analysis.importance import METHOD, importance_from_trials, importance_view
from storage.read_api import ReadAPI, declared_space
from storage.records import TrialState

__all__ = ["study_importance"]


def study_importance(api: ReadAPI, name: str, objective: int = 0) -> dict[str, Any]:
    """The importance answer of ``analysis.importance.importance_view`` plus ``basis``: "final"
    (complete trials' objective values) or "step" (every trial's value at ``step``)."""
    study = api.study(name)
    early = sum(study["counts"][s] for s in ("PRUNED", "PAUSED", "RUNNING"))
    if objective != 0 or study["counts"]["COMPLETE"] >= early:
        return {**importance_view(api, name, objective), "basis": "final"}
    at = api.values_at_step(name)
    space = [p for p in declared_space(api.get_study(name).spec) if p["type"] in ("float", "int", "categorical")]
    base = {"study": name, "metric": at["metric"], "n_trials": len(at["values"]), "basis": "step", "step": at["step"],
            "states": {s: at["states"].count(s) for s in dict.fromkeys(at["states"])}}
    if len(at["values"]) < 2 or not space:
        return {**base, "method": None, "importance": {},
                "note": "needs at least 2 trials with a value at a common step and a declared numeric or "
                        "categorical parameter"}
    params = [SimpleNamespace(name=p["name"], choices=tuple(p["choices"])) if p["type"] == "categorical"
              else SimpleNamespace(name=p["name"], low=p["low"], high=p["high"], log=p["log"],
                                   step=p["step"] if p["step"] is not None else (1 if p["type"] == "int" else None))
              for p in space]
    # importance_from_trials counts COMPLETE records only: each trial is handed over as a record
    # complete at the common step, its value there standing in for a final one.
    records = [SimpleNamespace(state=TrialState.COMPLETE, values=(v,), params=p)
               for v, p in zip(at["values"], at["params"]) if all(q.name in p for q in params)]
    if len(records) < 2:
        return {**base, "method": None, "importance": {}, "note": "fewer than 2 of those trials hold every parameter"}
    imp = importance_from_trials(params, records, study["directions"][0])
    ranked = dict(sorted(((k, float(v)) for k, v in imp.items()), key=lambda kv: -kv[1]))
    return {**base, "n_trials": len(records), "method": f"{METHOD}, on each trial's {at['metric']} at step {at['step']}",
            "importance": ranked}
