"""analysis.importance: trial records to arrays, then the forest-based importance of surrogates."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from analysis.importance import importance_from_trials
from storage.records import TrialRecord


def test_importance_from_trials_with_categorical_and_failures():
    params = [SimpleNamespace(name="opt", choices=("sgd", "adam")),
              SimpleNamespace(name="lr", low=1e-4, high=1e-1, log=True, step=None),
              SimpleNamespace(name="noise", low=0.0, high=1.0, log=False, step=None)]
    rng = np.random.default_rng(0)
    trials = []
    for i in range(120):
        c = {"opt": ["sgd", "adam"][i % 2], "lr": float(10 ** rng.uniform(-4, -1)),
             "noise": float(rng.random())}
        acc = (0.9 if c["opt"] == "adam" else 0.5) + 0.01 * c["noise"]
        state = "FAILED" if i % 17 == 0 else "COMPLETE"
        trials.append(TrialRecord(id=i, study_id=1, number=i, state=state, params=c,
                                  values=None if state == "FAILED" else (acc,)))
    imp = importance_from_trials(params, trials, "maximize")
    assert max(imp, key=imp.get) == "opt"
    assert abs(sum(imp.values()) - 1) < 1e-9
    with pytest.raises(ValueError, match="at least 2 completed"):
        importance_from_trials(params, trials[:1], "maximize")


def test_second_objective_and_bad_direction():
    params = [SimpleNamespace(name="a", low=0.0, high=1.0, log=False, step=None),
              SimpleNamespace(name="b", low=0.0, high=1.0, log=False, step=None)]
    rng = np.random.default_rng(1)
    trials = []
    for i in range(80):
        a, b = float(rng.random()), float(rng.random())
        trials.append(TrialRecord(id=i, study_id=1, number=i, state="COMPLETE", params={"a": a, "b": b},
                                  values=(a, 3 * b ** 2)))
    assert importance_from_trials(params, trials, index=0)["a"] > 0.9
    imp = importance_from_trials(params, trials, index=1)
    assert imp["b"] > 0.9
    with pytest.raises(ValueError, match="direction"):
        importance_from_trials(params, trials, "up")
