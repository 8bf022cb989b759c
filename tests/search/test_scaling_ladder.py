"""The scaling ladder (algorithm: scaling) on a toy whose loss, lr and batch-size laws are known."""
from __future__ import annotations

import json
import math

import pytest

import search
from search.algorithms.base import History
from search.algorithms.scaling_ladder import ScalingLadder
from search.cli import main
from search.config import ConfigError, parse_study
from search.space import Space
from search_test_objectives import LADDER_TOY
from storage import TrialState, open_storage
from trials.models import lm_heads as heads_for
from trials.models import lm_param_counts

RUNGS = [{"layers": 2, "width": 16}, {"layers": 2, "width": 24}, {"layers": 2, "width": 32}]
# Token budgets divisible by every batch size x context, so every trial of a cell sees the same D.
TOKENS = [65536, 131072, 262144]
LRS = [0.0125, 0.025, 0.05, 0.1, 0.2, 0.4]
BATCH_SIZES = [1, 2, 4, 8]


def _options(**over):
    opts = {"target": {"layers": 3, "width": 64, "tokens": 1048576}, "rungs": RUNGS, "tokens": TOKENS,
            "lrs": LRS, "batch_sizes": BATCH_SIZES, "context": 64, "bootstrap": 20}
    opts.update(over)
    return opts


def _study(tmp_path, name="ladder", trials=400, parallel=2, **over):
    return {
        "name": name, "objective": {"metric": "val_loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:ladder_toy"},
        "algorithm": {"name": "scaling", "seed": 0, **_options(**over)},
        "budget": {"trials": trials, "parallel": parallel}, "backend": {"name": "inprocess"},
        "artifacts": str(tmp_path),
    }


def _state(url, name="ladder"):
    with open_storage(url, create=False) as st:
        study = st.get_study(name)
        return st.get_algorithm_state(study.id)["algorithm"], st.get_trials(study.id)


def _toy(n, d):
    k = LADDER_TOY
    return k["E"] + k["A"] / n ** k["alpha"] + k["B"] / d ** k["beta"]


def test_param_counts_match_the_built_model():
    from trials.models import ByteLM, count_params, normalize_layers

    for width, depth, context in ((16, 2, 64), (24, 3, 32), (64, 1, 128)):
        layers = normalize_layers(depth, {"width": width, "heads": heads_for(width, 16)})
        assert lm_param_counts(layers, context) == count_params(ByteLM(layers, context))


def test_plan_is_what_the_options_say():
    algo = ScalingLadder(Space(()), ("val_loss",), ("minimize",), seed=0,
                         **_options(tokens=None, tokens_per_param=[5, 20], batch_sizes=[8, 32]))
    assert len(algo.cells) == len(RUNGS) * 2
    computes = [c.compute for c in algo.cells]
    assert computes == sorted(computes)
    for c in algo.cells:
        width = RUNGS[c.rung]["width"]
        assert c.n_planned == lm_param_counts(c.layers, 64)[1]
        assert c.tokens == [5, 20][c.budget] * c.n_planned
        assert list(c.steps) == [math.ceil(c.tokens / (bs * 64)) for bs in (8, 32)]
        assert all(s == {"op": "attention", "width": width, "heads": heads_for(width, 16), "ffn": 4 * width}
                   for s in c.layers)
    # With nothing run, every cell starts at the middle learning rate and batch size.
    first = algo.propose(History((), ("val_loss",), ("minimize",)), 100)
    assert len(first) == len(algo.cells)
    assert {p.params["lr"] for p in first} == {LRS[len(LRS) // 2]}
    assert {p.params["batch_size"] for p in first} == {32}
    assert {p.params["context"] for p in first} == {64}


def test_ladder_pins_cells_early_and_recovers_the_toy_laws(tmp_path, sqlite_url):
    summary = search.run(_study(tmp_path, run_target=True), storage=sqlite_url)
    state, trials = _state(sqlite_url)
    assert state["complete"] and summary.failed == 0 and state["warnings"] == []
    k = LADDER_TOY

    # Early stopping: every line stopped once its best lr had a worse neighbour on each side.
    assert state["trials_run"] < 0.5 * state["trials_planned_grid"]
    grid = {}
    for t in trials:
        if t.number != state["target_run"]["trial"]:
            key = (t.params["steps"] * t.params["batch_size"], t.params["layers"][0]["width"], t.params["batch_size"])
            grid.setdefault(key, {})[LRS.index(t.params["lr"])] = t.value
    for losses in grid.values():
        best = min(losses, key=losses.get)
        assert all(i in losses for i in (best - 1, best + 1) if 0 <= i < len(LRS))
        assert len(losses) <= 4
    for cell in state["cells"]:
        assert cell["finished"] and cell["skipped"] > 0 and cell["N_source"] == "reported params_non_embedding"
        lr_opt = k["lr_coef"] * cell["N"] ** k["lr_N_exp"] * cell["D"] ** k["lr_D_exp"]
        assert cell["lr"] == pytest.approx(lr_opt, rel=1e-9)
        assert cell["batch_size"] == pytest.approx(k["bs_coef"] * cell["D"] ** k["bs_D_exp"], rel=1e-9)
        assert cell["loss"] == pytest.approx(_toy(cell["N"], cell["D"]), rel=1e-9)

    law = state["fit"]["hparam_law"]["constants"]
    for name in ("lr_coef", "lr_N_exp", "lr_D_exp", "bs_coef", "bs_D_exp"):
        assert law[name] == pytest.approx(k[name], rel=1e-6, abs=1e-9)
    pred = state["prediction"]
    n_target = lm_param_counts([{"width": 64, "heads": 4, "ffn": 256}] * 3, 64)[1]
    assert pred["N"] == n_target and pred["D"] == 1048576
    assert pred["loss"] == pytest.approx(_toy(n_target, 1048576), rel=0.01)
    assert pred["loss_interval"][0] <= pred["loss"] <= pred["loss_interval"][1]
    assert pred["lr"] == pytest.approx(k["lr_coef"] * n_target ** k["lr_N_exp"] * 1048576 ** k["lr_D_exp"], rel=1e-6)

    # run_target: the last trial is the target model at the predicted hyperparameters.
    run = state["target_run"]
    target = max(trials, key=lambda t: t.number)
    assert run["trial"] == target.number and target.params["lr"] == pred["lr"]
    assert target.params["batch_size"] == pred["batch_size"] == round(pred["batch_size_tokens"] / 64)
    assert [s["width"] for s in target.params["layers"]] == [64, 64, 64]
    assert run["observed_loss"] == pytest.approx(target.value)
    assert abs(run["relative_error"]) < 0.01


def test_one_budget_ladder_fits_the_size_law_at_the_targets_tokens(tmp_path, sqlite_url):
    # Every rung trains on the target's D: the loss law is E' + A/N^alpha with E' = E + B/D^beta,
    # and the lr law c*N^a at that D.
    k = LADDER_TOY
    d = 262144
    rungs = [{"layers": 2, "width": w} for w in (8, 12, 16, 20, 24)]
    opts = {"tokens": [d], "rungs": rungs, "batch_sizes": [4], "run_target": True,
            "target": {"layers": 2, "width": 64, "tokens": d}}
    search.run(_study(tmp_path, **opts), storage=sqlite_url)
    state, trials = _state(sqlite_url)
    assert state["complete"] and state["warnings"] == []
    assert len(state["cells"]) == len(rungs) and {c["D"] for c in state["cells"]} == {d}
    law = state["fit"]["loss_law"]
    assert law["form"] == "size-law" and law["D"] == d
    # one batch size, off the toy's optimum: the same penalty in every cell, so it joins E too
    bs_penalty = 0.02 * math.log(4 * 64 / (k["bs_coef"] * d ** k["bs_D_exp"])) ** 2
    assert law["params"]["E"] == pytest.approx(k["E"] + k["B"] / d ** k["beta"] + bs_penalty, rel=1e-5)
    assert law["params"]["alpha"] == pytest.approx(k["alpha"], rel=1e-4)
    hp = state["fit"]["hparam_law"]["constants"]
    assert hp["lr_N_exp"] == pytest.approx(k["lr_N_exp"], rel=1e-6) and hp["lr_D_exp"] == 0.0
    n_target = lm_param_counts([{"width": 64, "heads": 4, "ffn": 256}] * 2, 64)[1]
    pred = state["prediction"]
    assert pred["loss"] == pytest.approx(_toy(n_target, d) + bs_penalty, rel=1e-5)
    assert pred["loss_interval"][0] <= pred["loss"] <= pred["loss_interval"][1]
    assert pred["lr"] == pytest.approx(k["lr_coef"] * n_target ** k["lr_N_exp"] * d ** k["lr_D_exp"], rel=1e-6)
    # the toy's cells lie exactly on the lr law, so its interval collapses onto the prediction
    assert pred["lr_interval"] == pytest.approx([pred["lr"], pred["lr"]], rel=1e-6)
    run = state["target_run"]
    assert run["observed_N"] == n_target and abs(run["relative_error"]) < 1e-3
    assert [s["width"] for s in max(trials, key=lambda t: t.number).params["layers"]] == [64, 64]


def test_seeds_train_every_point_and_the_target_at_each_seed_and_average(tmp_path, sqlite_url):
    d = 262144
    rungs = [{"layers": 2, "width": w} for w in (8, 12, 16, 20)]
    opts = {"tokens": [d], "rungs": rungs, "batch_sizes": [4], "run_target": True, "seeds": 2, "bootstrap": 0,
            "target": {"layers": 2, "width": 40, "tokens": d}}
    search.run(_study(tmp_path, parallel=1, **opts), storage=sqlite_url)
    state, trials = _state(sqlite_url)
    assert state["complete"] and state["seeds"] == 2
    points: dict = {}
    for t in trials:
        key = json.dumps({k: v for k, v in t.params.items() if k != "seed"}, sort_keys=True)
        points.setdefault(key, []).append(t.params["seed"])
    assert all(sorted(seeds) == [0, 1] for seeds in points.values())
    assert state["trials_run"] == len(trials) - 2
    run = state["target_run"]
    assert len(run["trials"]) == 2 and run["seeds_not_started"] == []
    assert run["observed_loss"] == pytest.approx(sum(run["observed_losses"]) / 2)
    assert abs(run["relative_error"]) < 1e-3


def test_early_stop_false_runs_the_whole_grid(tmp_path, sqlite_url):
    opts = {"lrs": [0.025, 0.05, 0.1, 0.2], "batch_sizes": [4], "bootstrap": 0}
    search.run(_study(tmp_path, name="full", early_stop=False, **opts), storage=sqlite_url)
    search.run(_study(tmp_path, name="early", **opts), storage=sqlite_url)
    full, full_trials = _state(sqlite_url, "full")
    early, early_trials = _state(sqlite_url, "early")
    assert len(full_trials) == full["trials_planned_grid"] == 4 * len(RUNGS) * len(TOKENS)
    assert len(early_trials) < len(full_trials)
    # Same data where it matters: both find the same cell optima.
    assert [c["lr"] for c in early["cells"]] == pytest.approx([c["lr"] for c in full["cells"]])


def test_interrupted_ladder_resumes_without_repeating_cells(tmp_path, sqlite_url):
    # One trial at a time: with parallel trials the walk depends on the order results arrive in.
    reference_url = f"sqlite:///{tmp_path / 'reference.db'}"
    opts = {"bootstrap": 0, "parallel": 1, "batch_sizes": [4]}
    search.run(_study(tmp_path, **opts), storage=reference_url)
    _, reference = _state(reference_url)

    def interrupt(progress):
        if progress.done >= 15 and not progress.final:
            raise KeyboardInterrupt

    first = search.run(_study(tmp_path, **opts), storage=sqlite_url, on_progress=interrupt)
    assert first.interrupted
    state, _ = _state(sqlite_url)
    assert 0 < state["cells_finished"] < len(state["cells"])
    search.resume("ladder", storage=sqlite_url, backend="inprocess")
    state, trials = _state(sqlite_url)
    assert state["complete"]
    keys = [json.dumps(t.params, sort_keys=True) for t in trials if t.state == TrialState.COMPLETE]
    assert len(keys) == len(set(keys))  # nothing ran twice
    assert set(keys) == {json.dumps(t.params, sort_keys=True) for t in reference}


def test_compute_target_predicts_n_d_and_report_prints_it(tmp_path, sqlite_url, capsys):
    c = 6.0 * 60000 * 600000
    search.run(_study(tmp_path, target={"compute": c}, bootstrap=0), storage=sqlite_url)
    state, _ = _state(sqlite_url)
    pred = state["prediction"]
    assert 6.0 * pred["N"] * pred["D"] == pytest.approx(c)
    assert pred["tokens_per_param"] == pytest.approx(pred["D"] / pred["N"])
    law = state["fit"]["loss_law"]["params"]
    a, b, al, be = law["A"], law["B"], law["alpha"], law["beta"]
    n_opt = (al * a / (be * b)) ** (1 / (al + be)) * (c / 6) ** (be / (al + be))
    assert pred["N"] == pytest.approx(n_opt, rel=1e-9)

    capsys.readouterr()
    assert main(["scaling", "report", "ladder", "--storage", sqlite_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == state
    assert main(["scaling", "report", "ladder", "--storage", sqlite_url]) == 0
    text = capsys.readouterr().out
    assert "loss" in text and f"lr={pred['lr']:.4g}" in text


def test_report_on_other_studies_is_one_error_line(tmp_path, sqlite_url, capsys):
    search.run({"name": "plain", "objective": {"metric": "loss", "direction": "minimize"},
                "trial": {"entrypoint": "search_test_objectives:quadratic"},
                "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
                "algorithm": {"name": "random", "seed": 0}, "budget": {"trials": 2},
                "backend": {"name": "inprocess"}, "artifacts": str(tmp_path)}, storage=sqlite_url)
    capsys.readouterr()
    for name in ("plain", "missing"):
        assert main(["scaling", "report", name, "--storage", sqlite_url, "--json"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and name in err and err.count("\n") == 1


@pytest.mark.parametrize("over, needle", [
    ({"target": None}, "'target'"),
    ({"target": {"params": 1e5}}, "tokens"),
    ({"target": {"params": 1e5, "tokens": 1e6, "width": 3}}, "target"),
    ({"rungs": [{"layers": 2, "width": 16}]}, "'rungs'"),
    ({"rungs": [{"layers": 2, "width": 16}, {"layers": 2, "width": 16}]}, "distinct"),
    ({"rungs": [{"layers": 2, "width": 30, "heads": 4}, {"layers": 2, "width": 32}]}, "heads"),
    ({"rungs": [{"layers": 2, "width": 16}, {"layers": 2, "depth": 3}]}, "'depth'"),
    ({"lrs": [0.1, -0.1]}, "'lrs'"),
    ({"lrs": None}, "'lrs'"),
    ({"batch_sizes": [2.5]}, "'batch_sizes'"),
    ({"tokens_per_param": [5, 10]}, "exactly one token budget"),
    ({"tokens": [65536]}, "at least 4 model sizes"),
    ({"tokens": None, "tokens_per_param": [20]}, "at least 2"),
    ({"tokens": [1048576], "rungs": RUNGS + [{"layers": 2, "width": 40}], "target": {"compute": 1e12}}, "compute"),
    ({"tokens": [65536], "rungs": RUNGS + [{"layers": 2, "width": 40}]}, "target.tokens"),
    ({"tokens": None, "steps": [10, 20]}, "'steps'"),
    ({"size_metric": "flops"}, "'size_metric'"),
    ({"early_stop": "yes"}, "'early_stop'"),
    ({"bootstrap": -1}, "'bootstrap'"),
    ({"seeds": 0}, "'seeds'"),
    ({"typo": 1}, "'typo'"),
])
def test_bad_options_are_one_line_errors(tmp_path, over, needle):
    with pytest.raises(ConfigError) as info:
        parse_study(_study(tmp_path, **over))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("algorithm:") and needle in msg


def test_ladder_needs_a_minimized_objective_and_no_space(tmp_path):
    study = _study(tmp_path)
    study["objective"]["direction"] = "maximize"
    with pytest.raises(ConfigError, match="must be minimized"):
        parse_study(study)
    study = _study(tmp_path)
    study["space"] = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    with pytest.raises(ConfigError, match="remove space"):
        parse_study(study)


def test_example_study_parses_as_a_one_budget_ladder():
    import os

    import yaml

    path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "scaling_ladder.yaml")
    with open(path, encoding="utf-8") as f:
        study = yaml.safe_load(f)
    parse_study(study)
    opts = {k: v for k, v in study["algorithm"].items() if k not in ("name", "seed")}
    algo = ScalingLadder(Space(()), ("val_loss",), ("minimize",), seed=0, **opts)
    assert algo.fixed_d and len(algo.cells) == len(opts["rungs"])
    largest = max(c.n_planned for c in algo.cells)
    assert algo.target["params"] >= 4 * largest  # the target is a genuine 4x extrapolation


@pytest.mark.slow
def test_ladder_bench_quick_runs_end_to_end(tmp_path, capsys):
    import importlib
    import os
    import sys

    bench = os.path.join(os.path.dirname(__file__), "..", "..", "bench")
    sys.path.insert(0, os.path.abspath(bench))
    try:
        out = importlib.import_module("bench_scaling_ladder").main(["--quick", "--out", str(tmp_path)])
    finally:
        sys.path.remove(os.path.abspath(bench))
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(json.dumps(out))
    assert out["bench"] == "scaling_ladder" and len(out["cells"]) == len(out["rungs"])
    assert {c["D"] for c in out["cells"]} == {out["tokens"]} == {out["target_D"]}
    assert out["size_ratio"] == pytest.approx(out["target_N"] / out["largest_rung_N"])
    assert out["relative_error"] == pytest.approx((out["predicted_loss"] - out["observed_loss"]) / out["observed_loss"])
    assert len(out["sweep"]) == 3 and set(out["anchors"]) >= {"size_law_non_embedding", "pure_power_law_non_embedding"}


def test_report_summary_leaves_out_intervals_stored_as_null():
    # stored state turns NaN interval bounds (too few cells for the lr law's interval) into null
    from search.scaling_cli import _report_summary

    state = {"cells": [], "fit": {"final": True},
             "prediction": {"N": 1e5, "D": 1e6, "loss": 2.0, "loss_interval": [1.9, 2.1],
                            "lr": 0.01, "lr_interval": [None, None], "batch_size": 16, "batch_size_tokens": 1024}}
    text = _report_summary("ladder", state)
    assert "loss 2 [95% 1.9, 2.1]" in text and "lr=0.01, batch size 16" in text
