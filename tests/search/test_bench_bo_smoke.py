"""bench/bench_bo.py: Bayesmark's scoring (expected minimum, clipping, ratio of means), a tiny end
to end run, and scoring saved parts together."""
from __future__ import annotations

import importlib
import itertools
import json
import math
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(REPO, "bench")


def _bench():
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    return importlib.import_module("bench_bo")


def test_expected_min_matches_enumeration():
    bb = _bench()
    pool = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    for m in (1, 2, 3, 6):
        brute = np.mean([min(c) for c in itertools.combinations(pool, m)])
        assert bb.expected_min(pool, m) == pytest.approx(brute)
    with pytest.raises(ValueError, match="m <= n"):
        bb.expected_min(pool, 7)


def test_score_anchors_random_at_zero_and_optimum_at_100():
    bb = _bench()
    rng = np.random.default_rng(0)
    pool = list(rng.uniform(0.0, 1.0, 400))
    finals = {"p": {"best": [0.0, 0.0], "random": [min(pool[i:i + 8]) for i in range(0, 400, 8)],
                    "bad": [0.9, 0.95]}}
    res = bb.score(finals, {"p": pool}, {"p": 0.0}, 8)
    assert res["score"]["best"] == pytest.approx(100.0)
    assert abs(res["score"]["random"]) < 15.0  # the expected minimum of 8 vs 50 observed runs
    assert res["score"]["bad"] < -100.0
    assert res["leaderboard"]["best"] == pytest.approx(100.0)
    assert res["clip"]["p"] == pytest.approx(np.median(pool))
    # a method cut short on a second problem is scored over the problem it has
    finals["q"] = {"random": finals["p"]["random"], "best": [0.0]}
    res2 = bb.score(finals, {"p": pool, "q": pool}, {"p": 0.0, "q": 0.0}, 8)
    assert res2["problems"]["bad"] == ["p"] and res2["problems"]["best"] == ["p", "q"]
    assert res2["score"]["bad"] == pytest.approx(res["score"]["bad"])


def test_flat_problem_weighs_by_the_room_random_leaves():
    """On a problem where random search lands within a hair of the optimum, a run slightly worse
    than random costs little in the aggregate (Bayesmark's ratio of means) even though its
    per-problem ratio is hugely negative; per-run losses are clipped at the median random guess."""
    bb = _bench()
    rng = np.random.default_rng(1)
    wide = list(rng.uniform(0.0, 1.0, 256))
    # like linear_diabetes: many configurations within 1e-4 of the best, a long tail of bad ones
    flat = list(0.5 + 1e-4 * rng.uniform(0.0, 1.0, 100)) + list(rng.uniform(0.5, 1.0, 156))
    finals = {
        "wide": {"m": [0.0, 0.0], "random": [0.05, 0.05]},
        "flat": {"m": [0.5 + 2e-4, 0.5 + 2e-4], "random": [0.5, 0.5]},
    }
    res = bb.score(finals, {"wide": wide, "flat": flat}, {"wide": 0.0, "flat": None}, 16)
    assert res["per_problem"]["flat"]["m"] < -100.0
    assert res["score"]["m"] > 90.0
    finals["wide"]["m"] = [50.0, 0.0]  # a crashed run counts as at most one random guess
    res = bb.score(finals, {"wide": wide, "flat": flat}, {"wide": 0.0, "flat": None}, 16)
    assert res["normalised_loss"]["wide"]["m"] == pytest.approx(0.5)


@pytest.mark.slow
def test_tiny_run_and_combine(tmp_path, capsys):
    bb = _bench()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    common = ["--seeds", "2", "--rounds", "2", "--batch", "4", "--methods", "bo,tpe,random",
              "--no-latency"]
    assert bb.main(common + ["--problems", "branin", "--save", str(a)]) == 0
    assert bb.main(common + ["--problems", "hartmann6", "--save", str(b)]) == 0
    capsys.readouterr()
    assert bb.main(["--combine", f"{a},{b}", "--no-latency"]) == 0
    out = capsys.readouterr().out
    res = json.loads(out.strip().splitlines()[-1])
    assert res["problem_names"] == ["branin", "hartmann6"]
    assert set(res["score"]) == {"bo", "tpe", "random"}
    assert all(math.isfinite(v) for v in res["score"].values())
    assert json.loads(a.read_text())["finals"]["branin"]["bo"] != []
    assert "branin" in out and "hartmann6" in out
