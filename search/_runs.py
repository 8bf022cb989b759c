"""A study's trials as a table of runs, for `search scaling ... STUDY`."""
from __future__ import annotations

__all__ = ["load_study_runs"]


def load_study_runs(name: str, storage_url: str | None):
    """One row per COMPLETE trial: the study's fixed trial params, the trial's params, every
    metric it recorded (``params``, ``tokens``, ``flops`` from the built-in trainers), and
    ``loss`` = the trial's first objective value."""
    import pandas as pd

    from storage import TrialState, open_storage

    with open_storage(storage_url, create=False) as st:
        study = st.get_study(name)
        trials = st.get_trials(study.id, states=[TrialState.COMPLETE])
    fixed = dict(study.spec.get("trial", {}).get("params") or {})
    rows = []
    for t in trials:
        row = {k: v for k, v in {**fixed, **t.params}.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        row.update({k: v for k, v in t.metrics.items() if v is not None})
        row["loss"] = t.value
        row["trial"] = t.number
        rows.append(row)
    return pd.DataFrame(rows)
