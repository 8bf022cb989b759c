"""The multi-fidelity and PBT benchmarks: their --quick paths run end to end, and the figures they
print hold together (same configurations across methods, compute that adds up)."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(REPO, "bench")


def _bench(name: str):
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    return importlib.import_module(name)


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_compute_to_reach_counts_in_run_order():
    mf = _bench("bench_multifidelity")
    curves = [[(1, 0.9), (2, 0.8)], [(1, 0.5)], [(1, 0.7), (3, 0.4)]]
    assert mf.compute_to_reach(curves, 0.8) == 2
    assert mf.compute_to_reach(curves, 0.5) == 3
    assert mf.compute_to_reach(curves, 0.45) == 6  # 2 + 1 + 3: the third trial's report at 3
    assert mf.compute_to_reach(curves, 0.1) is None
    run = mf.Run("x", curves, 0.0)
    assert run.compute == 6 and run.best == 0.4 and run.stopped == 2


@pytest.mark.slow
def test_multifidelity_quick_runs_and_adds_up(capsys):
    out = _bench("bench_multifidelity").main(["--quick", "--skip-ray"])
    assert _last_json(capsys.readouterr().out)["bench"] == "multifidelity"
    assert set(out["tasks"]) == {"cnn", "lm"}
    saved = 0
    for task in out["tasks"].values():
        seed = task["seeds"]["0"]
        random, asha = seed["random"], seed["asha"]
        assert random["compute"] == task["trials"] * task["max_resource"] and random["stopped"] == 0
        # ASHA trains prefixes of random search's curves (same draws, same trial seeds): it can
        # only match random's best, never beat it, and random reaches its own best.
        assert asha["best_val_loss"] >= random["best_val_loss"] - 1e-9
        assert random["compute_to_reach"] is not None and random["random_over_method"] == 1.0
        assert asha["compute"] <= random["compute"]
        saved += random["compute"] - asha["compute"]
    assert saved > 0


@pytest.mark.slow
def test_pbt_quick_runs_and_adds_up(capsys):
    out = _bench("bench_pbt").main(["--quick", "--skip-ray"])
    assert _last_json(capsys.readouterr().out)["bench"] == "pbt"
    assert set(out["tasks"]) == {"lm", "cnn"}
    for task in out["tasks"].values():
        seed = task["seeds"]["0"]
        budget = task["population"] * task["steps"]
        assert seed["fixed"]["compute"] == budget and seed["fixed+cosine"]["compute"] == budget
        pbt = seed["pbt"]
        assert len(pbt["members_final"]) == task["population"] and pbt["final_val_loss"] == pbt["members_final"][0]
        assert 0 < pbt["compute"]
        sched = pbt["schedule"]
        assert sched[0]["from_step"] == 0 and sched[0]["lr"] in pbt["initial_lrs"]
        assert len(set(pbt["initial_lrs"])) == task["population"]  # each member's own draw
        assert [s["from_step"] for s in sched] == sorted(s["from_step"] for s in sched)
    assert sum(t["seeds"]["0"]["pbt"]["exploits"] for t in out["tasks"].values()) > 0


def _run_script(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _last_json(proc.stdout)


@pytest.mark.slow
@pytest.mark.ray
def test_multifidelity_quick_with_ray_tune_trains_the_same_trials():
    out = _run_script("bench/bench_multifidelity.py", "--quick", "--tasks", "cnn")
    seed = out["tasks"]["cnn"]["seeds"]["0"]
    # Tune's first trial runs to max_t like ours, on the same configuration and seed: the same
    # deterministic curve, so the same best loss within float summation noise.
    assert seed["ray-asha"]["best_val_loss"] == pytest.approx(seed["random"]["best_val_loss"], rel=1e-5)
    assert 0 < seed["ray-asha"]["compute"] <= seed["random"]["compute"]


@pytest.mark.slow
@pytest.mark.ray
def test_pbt_quick_with_ray_tune_runs():
    out = _run_script("bench/bench_pbt.py", "--quick", "--tasks", "cnn")
    seed = out["tasks"]["cnn"]["seeds"]["0"]
    ray_pbt = seed["ray-pbt"]
    assert len(ray_pbt["members_final"]) == out["tasks"]["cnn"]["population"]
    assert ray_pbt["compute"] > 0 and ray_pbt["final_val_loss"] == ray_pbt["members_final"][0]


@pytest.mark.slow
def test_nas_lm_quick_compares_like_with_like():
    out = _run_script("bench/bench_nas_lm.py", "--quick")
    base = out["best_homogeneous"]
    assert len({json.dumps(layer, sort_keys=True) for layer in base["layers"]}) == 1  # homogeneous
    # kernel sizes are part of the space: 2 widths x (attention, linear, conv k3, conv k7)
    assert out["space"]["kernels"] == [3, 7] and out["n_homogeneous"] == 8
    if out["best_searched"] is not None:
        assert out["best_searched"]["params"] <= base["params"]
        assert out["searched_beats_homogeneous"] == (out["best_searched"]["val_loss"] < base["val_loss"])


@pytest.mark.slow
def test_nas_lm_quick_capped_search_stays_under_the_best_homogeneous_size():
    out = _run_script("bench/bench_nas_lm.py", "--quick", "--cap")
    from trials.models import lm_non_embedding_params, normalize_layers

    cap = out["max_params"]
    assert cap == lm_non_embedding_params(normalize_layers(out["best_homogeneous"]["layers"], {}))
    assert out["searched_max_non_embedding"] <= cap  # every searched model was under the cap
    assert out["best_searched"] is not None
    free = _run_script("bench/bench_nas_lm.py", "--quick")
    assert free["max_params"] is None and free["searched_max_non_embedding"] > cap  # without it, some are not


@pytest.mark.slow
def test_nas_lm_quick_repeats_rank_by_seed_means(tmp_path):
    """--repeats 2: the baseline and the search trials are ranked by their mean over seeds 0 and 1
    (the best homogeneous model's figure is that mean, retrained here), and the fresh seeds skip them."""
    nas = _bench("bench_nas_lm")
    tiny = ["--steps", "5", "--trials", "1", "--layers", "1", "--widths", "16", "--ffn-mult", "2", "--kernels", "3"]
    with pytest.raises(SystemExit, match="fresh seeds"):
        nas.main(["--repeats", "2", "--confirm-seeds", "1,2", *tiny])  # refused before any training
    with pytest.raises(SystemExit, match="--repeats"):
        nas.main(["--check", "c16f2k3", "--against", "c16f2k7", "--repeats", "2", "--confirm-seeds", "4", *tiny])
    with pytest.raises(SystemExit, match="--corpus"):
        nas.main(["--corpus", str(tmp_path / "missing"), *tiny])
    out = _run_script("bench/bench_nas_lm.py", "--quick", "--repeats", "2")
    assert out["best_searched"] is not None and out["confirmation"] is not None
    assert out["repeats"] == 2 and out["confirmation"]["seeds"] == [2]
    fixed = {"steps": 20, "context": 32, "batch_size": 16, "lr": 2e-3, "eval_every": 20, "checkpoint_every": 0,
             "checkpoint_final": False, "seed": 0, "device": "auto", "precision": "auto"}
    # Both the baseline's and the search's figures are means over seeds 0 and 1, retrained here.
    for tag in ("best_homogeneous", "best_searched"):
        best = out[tag]
        runs = nas.train_side_by_side([(best["layers"], s, f"{tag}-{s}") for s in (0, 1)], fixed, str(tmp_path), 2)
        assert best["val_loss"] == pytest.approx((runs[0][0] + runs[1][0]) / 2, rel=1e-9), tag
        assert runs[0][0] != runs[1][0]  # two seeds, two different runs


@pytest.mark.slow
def test_nas_lm_check_compares_two_given_architectures():
    out = _run_script("bench/bench_nas_lm.py", "--quick", "--check", "c16f2k3 c16f2k7", "--against", "c16f2k7 x2")
    assert out["bench"] == "nas_lm_check"
    assert [layer["kernel"] for layer in out["check"]] == [3, 7] and len(out["against"]) == 2
    assert out["params"]["check"] < out["params"]["against"]  # a smaller kernel, fewer weights
    assert out["confirmation"]["seeds"] == [1] and out["confirmation"]["win"] is False  # one seed: no verdict

