"""The equal-compute protocol of bench_multifidelity and the PB2 row of bench_pbt."""
from __future__ import annotations

import importlib
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")


def _bench(name: str):
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    return importlib.import_module(name)


def test_within_budget_cuts_a_sequential_run_at_the_budget():
    mf = _bench("bench_multifidelity")
    curves = [[(1, 0.9), (3, 0.8)], [(1, 0.5)], [(1, 0.7), (3, 0.4)], [(1, 0.3)]]
    assert mf.within_budget(curves, 100) == curves
    assert mf.within_budget(curves, 5) == [[(1, 0.9), (3, 0.8)], [(1, 0.5)], [(1, 0.7)]]
    assert mf.within_budget(curves, 4) == [[(1, 0.9), (3, 0.8)], [(1, 0.5)]]
    assert mf.within_budget(curves, 2) == [[(1, 0.9)]]
    # The cut run costs at most the budget, and a report past it is never counted as reached.
    cut = mf.within_budget(curves, 6)
    assert mf.Run("x", cut, 0.0).compute == 5 and mf.compute_to_reach(cut, 0.4) is None
    assert mf.compute_to_reach(curves, 0.4) == 7


@pytest.mark.slow
def test_multifidelity_quick_equal_compute_protocol(capsys):
    out = _bench("bench_multifidelity").main(["--quick", "--skip-ray", "--tasks", "cnn", "--proposers", "bo"])
    task = out["tasks"]["cnn"]
    seed = task["seeds"]["0"]
    random, budgeted, same = seed["random"], seed["asha@budget"], seed["asha"]
    assert budgeted["compute"] <= random["compute"] and same["compute"] <= random["compute"]
    # BOHB-style row: ASHA with bo's proposals, cut at the same budget
    assert 0 < seed["asha+bo@budget"]["compute"] <= random["compute"]
    # With random's compute as its budget ASHA tries more configurations (random's first): it
    # never does worse than ASHA over random's configurations only.
    assert budgeted["best_val_loss"] <= same["best_val_loss"] + 1e-9
    assert budgeted["compute"] > same["compute"]


@pytest.mark.slow
def test_pbt_quick_has_a_pb2_row_with_a_schedule(capsys):
    out = _bench("bench_pbt").main(["--quick", "--skip-ray", "--tasks", "lm"])
    task = out["tasks"]["lm"]
    seed = task["seeds"]["0"]
    pbt, pb2 = seed["pbt"], seed["pb2"]
    assert pb2["initial_lrs"] == pbt["initial_lrs"]  # the same initial population
    assert len(pb2["members_final"]) == task["population"] and pb2["final_val_loss"] == pb2["members_final"][0]
    assert pb2["schedule"][0]["from_step"] == 0 and pb2["compute"] > 0
    assert task["paired"]["pb2 - fixed"]["n"] == 1 and task["paired"]["pb2 - fixed"]["wins"] in (0, 1)
