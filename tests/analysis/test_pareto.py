"""analysis.pareto: the one non-dominance helper (mask, fronts of records, non-dominated sorting)."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.pareto import pareto_front, pareto_mask, pareto_ranks
from search.algorithms.base import History
from storage.records import TrialRecord


def rec(i, params, value=None, state="COMPLETE"):
    values = None if value is None else (value if isinstance(value, tuple) else (value,))
    return TrialRecord(id=i, study_id=1, number=i, state=state, params=dict(params), values=values)


def test_pareto_front_helper():
    pts = [(1.0, 5.0), (2.0, 2.0), (3.0, 3.0), (5.0, 1.0), (2.0, 2.0)]
    trials = [rec(i, {"x": 0.1, "y": 0.1}, v) for i, v in enumerate(pts)]
    trials.append(rec(5, {"x": 0.1, "y": 0.1}, state="FAILED"))
    h = History(tuple(trials), ("a", "b"), ("minimize", "minimize"))
    assert [t.number for t in pareto_front(h.trials, h.directions)] == [0, 1, 3, 4]
    hmax = History(tuple(trials), ("a", "b"), ("maximize", "minimize"))
    assert [t.number for t in pareto_front(hmax.trials, hmax.directions)] == [3]  # (5, 1) is best on both


def test_pareto_ranks():
    assert pareto_ranks([(1, 5), (2, 2), (3, 3), (5, 1), (4, 4)]) == [0, 0, 1, 0, 2]


def test_pareto_mask_for_three_objectives_and_maximisation():
    pts = [[1, 1, 1], [0, 2, 1], [2, 2, 2], [1, 1, 1]]
    assert pareto_mask(pts) == [True, True, False, True]
    assert pareto_mask([[0, 0], [0, 0], [1, -1], [1, 0]]) == [True, True, True, False]


def _brute(P):
    return [not any(np.all(P[j] <= P[i]) and np.any(P[j] < P[i]) for j in range(len(P)) if j != i)
            for i in range(len(P))]


@pytest.mark.parametrize("k", [2, 3, 4])
def test_mask_matches_brute_force_with_ties(k):
    rng = np.random.default_rng(k)
    P = rng.integers(0, 6, size=(300, k)).astype(float)  # many ties and duplicates
    assert pareto_mask(P) == _brute(P)


def test_ranks_peel_fronts_like_brute_force():
    rng = np.random.default_rng(0)
    P = rng.integers(0, 8, size=(120, 3)).astype(float)
    ranks = pareto_ranks(P)
    remaining, rank = list(range(len(P))), 0
    while remaining:
        front = [i for i, on in zip(remaining, _brute(P[remaining])) if on]
        assert all(ranks[i] == rank for i in front)
        remaining = [i for i in remaining if i not in front]
        rank += 1


def test_non_finite_and_incomplete_trials_are_left_out():
    trials = [rec(0, {}, (1.0, float("nan"))), rec(1, {}, (2.0, 2.0)), rec(2, {}, (1.0,)),
              rec(3, {}, (0.5, 0.5), state="PRUNED")]
    assert [t.number for t in pareto_front(trials, ("minimize", "minimize"))] == [1]
    assert pareto_mask([]) == [] and pareto_ranks([]) == []
