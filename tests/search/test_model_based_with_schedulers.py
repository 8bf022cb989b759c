"""Model-based proposers learn from the trials a scheduler stopped (BOHB-style), not only from the
few that finish."""
from __future__ import annotations

import numpy as np
import pytest

import search
from search.algorithms import make_algorithm
from search.algorithms.base import History
from search.space import FloatParam, Space
from storage import TrialState, open_storage
from storage.records import TrialRecord

SPACE = Space.of([FloatParam("q", 0.0, 1.0)])


def stopped_history(n: int = 24, direction: str = "minimize") -> History:
    """``n`` trials stopped by successive halving on loss = q + 1/step: the lower q, the further
    the trial got (rungs 1, 3, 9) and the lower its loss there. None finished."""
    sign = -1.0 if direction == "maximize" else 1.0
    trials = []
    for i, q in enumerate(np.random.default_rng(5).uniform(0, 1, n)):
        step = 9 if q < 0.15 else 3 if q < 0.4 else 1
        trials.append(TrialRecord(id=i + 1, study_id=1, number=i, state=TrialState.PRUNED, params={"q": float(q)},
                                  metrics={"loss": sign * (float(q) + 1.0 / step)}, last_step=step))
    return History(tuple(trials), ("loss",), (direction,))


@pytest.mark.parametrize("name", ["bo", "tpe"])
@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_stopped_trials_guide_the_proposals(name, direction):
    algo = make_algorithm(name, SPACE, ["loss"], [direction], seed=0, n_initial=8) if name == "bo" else \
        make_algorithm(name, SPACE, ["loss"], [direction], seed=0)
    qs = [p.params["q"] for p in algo.propose(stopped_history(direction=direction), 8)]
    # Ignoring stopped trials, bo would fall back to its space-filling design and TPE would see
    # 24 equally bad trials: both spread over [0, 1] (median about 0.5).
    assert np.median(qs) < 0.25, qs


def test_bo_ranks_finished_then_by_step_reached_then_by_value():
    trials = [
        TrialRecord(id=1, study_id=1, number=0, state=TrialState.PRUNED, params={"q": 0.1},
                    metrics={"loss": 0.5}, last_step=3),
        TrialRecord(id=2, study_id=1, number=1, state=TrialState.COMPLETE, params={"q": 0.2},
                    values=(0.9,), metrics={"loss": 0.9}, last_step=9),
        TrialRecord(id=3, study_id=1, number=2, state=TrialState.PRUNED, params={"q": 0.3},
                    metrics={"loss": 0.2}, last_step=1),
        TrialRecord(id=4, study_id=1, number=3, state=TrialState.PRUNED, params={"q": 0.4},
                    metrics={"loss": 0.4}, last_step=3),
        TrialRecord(id=5, study_id=1, number=4, state=TrialState.FAILED, params={"q": 0.5}),
        TrialRecord(id=6, study_id=1, number=5, state=TrialState.PRUNED, params={"q": 0.6},
                    metrics={"loss": float("nan")}, last_step=1),  # no usable value: left out
    ]
    algo = make_algorithm("bo", SPACE, ["loss"], ["minimize"], seed=0)
    records = tuple(trials)
    data = algo._with_stopped(History(records, ("loss",), ("minimize",)), records,
                              algo._encoder.encode_trials(records, 0, "minimize"))
    by_number = dict(zip(data.numbers.tolist(), data.y.tolist()))
    assert set(by_number) == {0, 1, 2, 3, 4}
    assert np.isnan(by_number[4])  # failed stays infeasible
    # finished (1) < step 3 with loss 0.4 (3) < step 3 with loss 0.5 (0) < step 1 (2)
    assert by_number[1] < by_number[3] < by_number[0] < by_number[2]
    # without stopped trials the data are the GP's usual ones
    plain = tuple(t for t in trials if t.state != TrialState.PRUNED)
    data = algo._with_stopped(History(plain, ("loss",), ("minimize",)), plain,
                              algo._encoder.encode_trials(plain, 0, "minimize"))
    assert data.y[~np.isnan(data.y)].tolist() == [0.9]


@pytest.mark.parametrize("name", ["bo", "tpe"])
def test_asha_with_a_model_based_proposer_end_to_end(name, tmp_path, sqlite_url):
    """BOHB-style on the simulated backend, end to end: later proposals concentrate on low q and a
    second run decides the same. (Here the few finished trials alone would do; the tests above are
    the ones that need the stopped trials.)"""
    spec = {"name": f"bohb-{name}", "objective": {"metric": "loss", "direction": "minimize"},
            "trial": {"entrypoint": "search_test_objectives:curve", "params": {"steps": 27}},
            "space": {"q": {"type": "float", "low": 0.0, "high": 1.0}},
            "algorithm": {"name": name, "seed": 3},
            "scheduler": {"name": "asha", "min_resource": 1, "reduction_factor": 3, "max_resource": 27},
            "budget": {"trials": 30, "parallel": 1}, "backend": {"name": "simulated"}, "artifacts": str(tmp_path)}
    runs = []
    for url in (sqlite_url, f"sqlite:///{tmp_path / 'again.db'}"):
        search.run(spec, storage=url)
        with open_storage(url) as st:
            runs.append(sorted(st.get_trials(st.get_study(spec["name"]).id), key=lambda t: t.number))
    trials = runs[0]
    assert len(trials) == 30 and all(t.is_finished for t in trials)
    assert any(t.state == TrialState.PRUNED for t in trials)
    late = [t.params["q"] for t in trials[15:]]
    assert np.median(late) < 0.2, late
    assert [(t.params, t.state, t.last_step) for t in runs[1]] == [(t.params, t.state, t.last_step) for t in trials]
