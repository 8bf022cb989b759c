"""bench/bench_bo.py: Bayesmark's scoring (expected minimum, clipping, ratio of means, failures),
the problem set's known optima, and a tiny end-to-end run through the JSONL cache and --report,
with a peer that is not installed skipped cleanly (CI installs only ``.[test]``)."""
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


def test_failures_rank_worst():
    """A run with no successful evaluation scores as one random guess (N = 1); failed random
    evaluations rank worst in the median and the expected minimum instead of poisoning them."""
    bb = _bench()
    assert bb.best_of([math.nan, 2.0, 1.0]) == 1.0
    assert bb.best_of([math.nan, math.nan]) == math.inf
    rng = np.random.default_rng(2)
    pool = list(rng.uniform(0.0, 1.0, 200)) + [math.nan] * 100
    finals = {"p": {"m": [math.inf, 0.0], "random": [0.1, 0.2]}}
    res = bb.score(finals, {"p": pool}, {"p": 0.0}, 8)
    assert res["normalised_loss"]["p"]["m"] == pytest.approx(0.5)
    assert res["clip"]["p"] == pytest.approx(np.median(bb._finite_pool(pool)))
    assert math.isfinite(res["score"]["m"])
    assert res["clip"]["p"] > np.nanmedian(pool)  # the failures count, as the worst losses


def test_problem_set_and_known_optima():
    bb = _bench()
    P = bb.PROBLEMS
    assert len(P) >= 24
    kinds = {p.kind for p in P.values()}
    assert kinds == {"synthetic", "mixed", "failures", "sklearn"}
    dims = [len(p.space) for p in P.values() if p.kind == "synthetic"]
    assert min(dims) == 2 and max(dims) == 20
    at = {
        "branin": {"x0": math.pi, "x1": 2.275},
        "six_hump_camel": {"x0": 0.0898, "x1": -0.7126},
        "hartmann3": {"x0": 0.114614, "x1": 0.555649, "x2": 0.852547},
        "hartmann6": dict(zip([f"x{i}" for i in range(6)],
                              [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573])),
        "styblinski_tang8": {f"x{i}": -2.903534 for i in range(8)},
        "ackley20": {f"x{i}": 0.0 for i in range(20)},
        "mixed_quadratic": {"a": "a1", "b": "b2", "c": "c3", "k": 10, "m": 30,
                            "x0": 0.7, "x1": 0.3, "x2": 0.6},
    }
    for name, x in at.items():
        assert P[name].fn(x) == pytest.approx(P[name].optimum, abs=1e-4), name
    rng = np.random.default_rng(0)
    for name, p in P.items():
        if p.kind == "sklearn":
            continue
        for _ in range(20):
            v = bb.evaluate(p, p.space.sample(rng))
            assert math.isnan(v) or v >= p.optimum - 1e-9, name
    # the failure problems fail in part of the space, and only there
    assert math.isnan(bb.evaluate(P["branin_nan"], {"x0": 0.0, "x1": 10.0}))
    assert math.isnan(bb.evaluate(P["hartmann6_raises"], {f"x{i}": 0.9 for i in range(6)}))
    assert math.isfinite(bb.evaluate(P["hartmann6_raises"], at["hartmann6"]))
    # every scikit-learn problem runs and gives a loss (an inactive parameter is dropped)
    for name, p in P.items():
        if p.kind == "sklearn":
            assert math.isfinite(bb.evaluate(p, p.space.sample(rng))), name


@pytest.mark.slow
def test_tiny_run_cache_and_report(tmp_path, capsys):
    bb = _bench()
    cache = tmp_path / "runs.jsonl"
    common = ["--seeds", "0,1", "--rounds", "3", "--batch", "4", "--cache", str(cache),
              "--problems", "branin,branin_nan"]
    assert bb.main(common + ["--optimizers", "bo,tpe,random,hebo", "--hebo-python", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "skipping hebo" in out
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(rows) == 2 * 2 * 3 and {r["method"] for r in rows} == {"bo", "tpe", "random"}
    assert all(len(r["values"]) == 12 for r in rows)
    assert any(v is None for r in rows if r["problem"] == "branin_nan" for v in r["values"])
    # a second call finds the runs in the cache and does not repeat them
    assert bb.main(common + ["--optimizers", "bo,random"]) == 0
    assert len(cache.read_text().splitlines()) == len(rows)
    capsys.readouterr()
    assert bb.main(["--report", "--rounds", "3", "--batch", "4", "--cache", str(cache),
                    "--problems", "branin,branin_nan", "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    res = json.loads(out.strip().splitlines()[-1])
    assert res["problem_names"] == ["branin", "branin_nan"]
    assert set(res["score"]) == {"bo", "tpe", "random"}
    assert all(math.isfinite(v) for v in res["score"].values())
    assert set(res["bo_minus_peer"]) == {"tpe", "random"}
    assert res["seeds"]["bo"] == {"branin": 2, "branin_nan": 2}
    lo, hi = res["intervals"]["bo"]["score"]
    assert lo <= res["score"]["bo"] <= hi
    assert "bo - tpe" in out and "branin_nan" in out
