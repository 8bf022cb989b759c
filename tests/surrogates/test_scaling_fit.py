from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from surrogates.scaling import (
    STEP_LAW_PUBLISHED,
    Runs,
    ScalingDataError,
    StepLawFit,
    fit_chinchilla,
    fit_kaplan,
    fit_size_law,
    fit_step_law,
    leave_largest_out,
    load_runs,
)
from testlib import SHARED_DATA

EPOCH_CSV = Path(SHARED_DATA) / "scaling" / "epoch_chinchilla" / "svg_extracted_data.csv"
needs_epoch = pytest.mark.skipif(not EPOCH_CSV.exists(), reason="Epoch AI's digitised Chinchilla data is not on this machine")

# Synthetic fits optimise only the 10 most promising of the 4,500 grid starts, to stay fast.
FAST = {"n_starts": 10}
TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def chinchilla_loss(n, d, p=TRUE):
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def synthetic_chinchilla(noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n, d = np.meshgrid(np.geomspace(1e7, 1e10, 8), np.geomspace(1e8, 1e12, 8))
    n, d = n.ravel(), d.ravel()
    loss = chinchilla_loss(n, d) * np.exp(noise * rng.standard_normal(n.size))
    return pd.DataFrame({"params": n, "tokens": d, "loss": loss})


@pytest.fixture(scope="module")
def epoch_runs():
    return load_runs(str(EPOCH_CSV), params_col="Model Size", flops_col="Training FLOP")


@pytest.fixture(scope="module")
def epoch_fit(epoch_runs):
    return fit_chinchilla(epoch_runs, drop_highest_loss=5, n_bootstrap=40, seed=0)


# --------------------------------------------------------------------------- Epoch AI refit


@needs_epoch
def test_epoch_refit_lies_in_published_intervals(epoch_runs, epoch_fit):
    assert len(epoch_runs) == 245
    p = epoch_fit.params
    # Epoch AI's bootstrap 95% intervals for their refit of Hoffmann et al.'s points.
    assert 1.77 <= p["E"] <= 1.87
    assert 0.32 <= p["alpha"] <= 0.37
    assert 0.33 <= p["beta"] <= 0.42
    # A and B trade off against the exponents; Epoch's point estimates are 482 and 2085.
    assert 482 / 1.5 <= p["A"] <= 482 * 1.5
    assert 2085 / 1.5 <= p["B"] <= 2085 * 1.5
    assert epoch_fit.n_points == 240 and epoch_fit.n_dropped == {"highest_loss": 5}
    assert epoch_fit.converged


@needs_epoch
def test_epoch_tokens_per_parameter_near_twenty(epoch_runs, epoch_fit):
    # Tolerance 10-40: the ratio drifts slowly with C (alpha != beta) and its interval is wide.
    for compute in (float(epoch_runs.C.max()), 5.76e23):
        opt = epoch_fit.compute_optimal(compute)
        assert 10 <= opt["tokens_per_param"] <= 40
        assert opt["intervals"]["tokens_per_param"][0] <= opt["tokens_per_param"] <= opt["intervals"]["tokens_per_param"][1]
        assert 6 * opt["N"] * opt["D"] == pytest.approx(compute)


@needs_epoch
def test_epoch_intervals_bracket_estimates(epoch_fit):
    for name, value in epoch_fit.params.items():
        low, high = epoch_fit.intervals[name]
        assert low < value < high, name


@needs_epoch
def test_epoch_leave_largest_out_matches_epoch_measurement(epoch_runs):
    # Epoch AI: fitting runs up to 1e20 FLOP predicts the rest with 0.89% mean error, 4.1% worst.
    result = leave_largest_out(epoch_runs, max_compute=1e20, drop_highest_loss=5, n_bootstrap=0)
    assert result["train_max_compute"] <= 1e20 < result["held_out_compute"][0]
    assert result["n_train"] + result["n_held_out"] == 240
    assert result["mean_abs_rel_error"] < 0.015
    assert result["max_abs_rel_error"] < 0.06
    assert len(result["held_out"]) == result["n_held_out"]


@needs_epoch
@pytest.mark.slow
def test_epoch_full_grid_and_full_bootstrap(epoch_runs, epoch_fit):
    full = fit_chinchilla(epoch_runs, drop_highest_loss=5, n_starts=None, n_bootstrap=1000, seed=1)
    assert full.n_starts == 4500
    assert full.objective <= epoch_fit.objective * (1 + 1e-9)
    for name in ("E", "alpha", "beta"):
        assert full.params[name] == pytest.approx(epoch_fit.params[name], rel=1e-3)
    published = {"E": (1.77, 1.87), "alpha": (0.32, 0.37), "beta": (0.33, 0.42)}
    for name, (low, high) in published.items():
        assert full.intervals[name][0] == pytest.approx(low, abs=0.015), name
        assert full.intervals[name][1] == pytest.approx(high, abs=0.015), name


# --------------------------------------------------------------------------- synthetic Chinchilla


def test_chinchilla_recovers_known_constants():
    fit = fit_chinchilla(load_runs(synthetic_chinchilla()), n_bootstrap=0, **FAST)
    for name, value in TRUE.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-3), name
    assert np.isnan(fit.intervals["E"][0])


def test_chinchilla_bootstrap_is_seeded_and_covers_truth():
    runs = load_runs(synthetic_chinchilla(noise=0.005, seed=3))
    a = fit_chinchilla(runs, n_bootstrap=30, seed=7, **FAST)
    b = fit_chinchilla(runs, n_bootstrap=30, seed=7, **FAST)
    c = fit_chinchilla(runs, n_bootstrap=30, seed=8, **FAST)
    assert a.intervals == b.intervals
    assert a.intervals != c.intervals
    assert a.intervals["E"][0] < TRUE["E"] < a.intervals["E"][1]
    mean, low, high = a.predict([1e8, 1e9], [1e10, 2e10])
    assert np.all(low <= mean) and np.all(mean <= high)


def test_predict_matches_formula_and_returns_floats_for_scalars():
    fit = fit_chinchilla(load_runs(synthetic_chinchilla(noise=0.002)), n_bootstrap=10, **FAST)
    mean, low, high = fit.predict(3e9, 6e10)
    assert isinstance(mean, float) and isinstance(low, float)
    assert mean == pytest.approx(chinchilla_loss(3e9, 6e10, fit.params))
    with pytest.raises(ValueError, match="N must be positive"):
        fit.predict(-1.0, 1e9)


def test_compute_optimal_matches_isoflop_scan():
    fit = fit_chinchilla(load_runs(synthetic_chinchilla()), n_bootstrap=0, **FAST)
    compute = 1e22
    n = np.geomspace(1e8, 1e12, 200001)
    scan_n = n[np.argmin(chinchilla_loss(n, compute / (6 * n), fit.params))]
    opt = fit.compute_optimal(compute)
    assert opt["N"] == pytest.approx(scan_n, rel=1e-3)
    assert opt["loss"] == pytest.approx(chinchilla_loss(opt["N"], opt["D"], fit.params))
    vec = fit.compute_optimal(np.array([1e20, 1e22]))
    assert vec["N"][1] == pytest.approx(opt["N"])
    # N* grows as C^(beta / (alpha + beta)).
    p = fit.params
    assert np.log(vec["N"][1] / vec["N"][0]) / np.log(100) == pytest.approx(p["beta"] / (p["alpha"] + p["beta"]))


def test_inference_aware_optimum():
    fit = fit_chinchilla(load_runs(synthetic_chinchilla(noise=0.002)), n_bootstrap=10, **FAST)
    compute = 1e22
    chin = fit.compute_optimal(compute)
    none = fit.inference_aware_optimal(inference_tokens=0, train_compute=compute)
    assert none["N"] == pytest.approx(chin["N"], rel=1e-4)
    assert none["loss"] == pytest.approx(chin["loss"])

    tokens = 1e13
    heavy = fit.inference_aware_optimal(inference_tokens=tokens, train_compute=compute)
    # Heavy inference: a smaller model trained longer reaches the same loss more cheaply.
    assert heavy["N"] < chin["N"] and heavy["D"] > chin["D"]
    assert chinchilla_loss(heavy["N"], heavy["D"], fit.params) == pytest.approx(chin["loss"], rel=1e-9)
    assert heavy["total_flops"] < heavy["chinchilla_total_flops"]
    # Brute force along the iso-loss curve.
    p = fit.params
    n = np.geomspace(heavy["N"] / 3, heavy["N"] * 3, 100001)
    rest = chin["loss"] - p["E"] - p["A"] / n ** p["alpha"]
    d = (p["B"] / rest) ** (1 / p["beta"])
    total = 6 * n * d + 2 * n * tokens
    assert heavy["N"] == pytest.approx(n[np.argmin(total)], rel=1e-3)
    assert heavy["intervals"]["N"][0] <= heavy["N"] <= heavy["intervals"]["N"][1]

    by_loss = fit.inference_aware_optimal(inference_tokens=tokens, target_loss=chin["loss"])
    assert by_loss["N"] == pytest.approx(heavy["N"], rel=1e-6)
    with pytest.raises(ValueError, match="irreducible loss"):
        fit.inference_aware_optimal(inference_tokens=tokens, target_loss=p["E"] - 0.1)
    with pytest.raises(ValueError, match="exactly one"):
        fit.inference_aware_optimal(inference_tokens=tokens)


def test_to_dict_reports_form_loss_optimizer_and_points():
    fit = fit_chinchilla(load_runs(synthetic_chinchilla(noise=0.002)), n_bootstrap=5, drop_highest_loss=2, **FAST)
    out = json.loads(json.dumps(fit.to_dict()))
    assert out["form"] == "chinchilla"
    assert set(out["params"]) == set(out["intervals"]) == {"E", "A", "B", "alpha", "beta"}
    assert "Huber(delta=0.001)" in out["fitting_loss"]
    assert "L-BFGS-B" in out["optimizer"]
    assert out["n_points"] == 62 and out["n_dropped"] == {"highest_loss": 2}


# --------------------------------------------------------------------------- Kaplan


@pytest.mark.parametrize("variable", ["N", "D", "C"])
def test_kaplan_recovers_power_law(variable):
    x = np.geomspace(1e7, 1e11, 12)
    xc, alpha = 8.8e13, 0.076
    loss = (xc / x) ** alpha
    n = x if variable == "N" else np.full_like(x, 1e9)
    d = x if variable == "D" else np.full_like(x, 1e10)
    frame = pd.DataFrame({"params": n, "tokens": d, "loss": loss})
    if variable == "C":
        frame = pd.DataFrame({"params": 1e9, "flops": x, "loss": loss})
    fit = fit_kaplan(load_runs(frame), variable, n_bootstrap=20)
    assert fit.params[f"{variable}c"] == pytest.approx(xc, rel=1e-6)
    assert fit.params[f"alpha_{variable}"] == pytest.approx(alpha, rel=1e-9)
    assert fit.predict(1e12)[0] == pytest.approx((xc / 1e12) ** alpha)
    assert fit.to_dict()["form"] == f"kaplan-{variable.lower()}"


def test_kaplan_frontier_keeps_lower_envelope():
    frame = pd.DataFrame({
        "params": [1e8, 1e8, 2e8, 4e8, 4e8, 8e8],
        "tokens": [1e9, 1e10, 1e9, 1e9, 1e10, 1e10],
        "loss": [3.5, 3.0, 3.6, 3.2, 2.8, 2.6],
    })
    runs = load_runs(frame)
    fit = fit_kaplan(runs, "N", n_bootstrap=0)
    # (2e8, 3.6) and (4e8, 3.2) are beaten by the 1e8 run at 3.0; (1e8, 3.5) by its twin.
    assert fit.n_points == 3 and fit.n_dropped["off_frontier"] == 3
    assert fit_kaplan(runs, "N", frontier=False, n_bootstrap=0).n_points == 6


def test_leave_largest_out_on_exact_law_is_exact():
    runs = load_runs(synthetic_chinchilla())
    result = leave_largest_out(runs, k=6, n_bootstrap=0, **FAST)
    assert result["n_held_out"] == 6
    assert result["held_out_compute"][0] >= result["train_max_compute"]
    assert result["max_abs_rel_error"] < 1e-3
    kaplan = leave_largest_out(runs, k=2, form="kaplan-c", n_bootstrap=0)
    assert kaplan["n_held_out"] == 2
    with pytest.raises(ValueError, match="exactly one"):
        leave_largest_out(runs)


# --------------------------------------------------------------------------- Step Law


def step_law_sweeps(constants=STEP_LAW_PUBLISHED, cells=None, offsets=range(-3, 4)) -> pd.DataFrame:
    rows = []
    cells = cells or list(itertools.product([1e8, 4e8, 1.6e9], [2e9, 8e9, 3.2e10]))
    for n, d in cells:
        lr0 = constants["lr_coef"] * n ** constants["lr_N_exp"] * d ** constants["lr_D_exp"]
        bs0 = constants["bs_coef"] * d ** constants["bs_D_exp"]
        for i, j in itertools.product(offsets, offsets):
            # Grid offset from the optimum so the optimum is never a swept point.
            u, v = (i + 0.3) * np.log(2), (j - 0.2) * np.log(2)
            loss = chinchilla_loss(n, d) + 0.02 * u * u + 0.01 * v * v + 0.003 * u * v
            rows.append({"params": n, "tokens": d, "lr": lr0 * np.exp(u), "batch_size": bs0 * np.exp(v), "loss": loss})
    return pd.DataFrame(rows)


def test_step_law_recovers_constants_from_sweeps():
    known = {"lr_coef": 0.5, "lr_N_exp": -0.3, "lr_D_exp": 0.1, "bs_coef": 2.0, "bs_D_exp": 0.4}
    law = fit_step_law(load_runs(step_law_sweeps(known)))
    for name, value in known.items():
        assert law.constants[name] == pytest.approx(value, rel=1e-6), name
    assert all(c.method == "quadratic" for c in law.cells)
    pred = law.predict(1e9, 1e10)
    assert pred["lr"] == pytest.approx(0.5 * 1e9**-0.3 * 1e10**0.1)
    assert pred["batch_size"] == pytest.approx(2.0 * 1e10**0.4)


def test_published_step_law_round_trips():
    published = StepLawFit.from_constants(**STEP_LAW_PUBLISHED)
    n, d = 1e9, 1e11
    pred = published.predict(n, d)
    assert pred["lr"] == pytest.approx(1.79 * n**-0.713 * d**0.307)
    assert pred["batch_size"] == pytest.approx(0.58 * d**0.571)
    refit = fit_step_law(load_runs(step_law_sweeps()))
    for name, value in STEP_LAW_PUBLISHED.items():
        assert refit.constants[name] == pytest.approx(value, rel=1e-6), name
    assert refit.predict(n, d)["lr"] == pytest.approx(pred["lr"], rel=1e-6)


def test_step_law_falls_back_to_grid_and_says_why():
    frame = step_law_sweeps()
    cell = (frame["params"] == 1e8) & (frame["tokens"] == 2e9)
    # Keep only the lowest learning rates of one cell: its optimum now lies beyond the sweep.
    low_lr = frame.loc[cell, "lr"] <= np.sort(frame.loc[cell, "lr"].unique())[2]
    frame = pd.concat([frame[~cell], frame[cell][low_lr]])
    # Make another cell concave in lr.
    other = (frame["params"] == 4e8) & (frame["tokens"] == 8e9)
    frame.loc[other, "loss"] = 5.0 - np.log(frame.loc[other, "lr"]) ** 2 * 1e-3
    law = fit_step_law(load_runs(frame))
    by_cell = {(c.N, c.D): c for c in law.cells}
    outside = by_cell[(1e8, 2e9)]
    assert outside.method == "grid" and "outside the swept range" in outside.reason
    assert outside.lr == pytest.approx(frame[(frame["params"] == 1e8) & (frame["tokens"] == 2e9)]["lr"].max())
    assert by_cell[(4e8, 8e9)].method == "grid" and "not convex" in by_cell[(4e8, 8e9)].reason
    assert sum(c.method == "quadratic" for c in law.cells) == 7


def test_critical_batch_size_is_largest_within_tolerance():
    law = fit_step_law(load_runs(step_law_sweeps()), critical_tolerance=0.01)
    cell = law.cells[0]
    frame = step_law_sweeps()
    sel = frame[(frame["params"] == cell.N) & (frame["tokens"] == cell.D)]
    tuned = sel.groupby("batch_size")["loss"].min()
    within = tuned[tuned <= tuned.min() * 1.01]
    assert cell.critical_batch_size == pytest.approx(within.index.max())
    assert cell.critical_batch_size_censored == (within.index.max() == tuned.index.max())
    loose = fit_step_law(load_runs(step_law_sweeps()), critical_tolerance=10.0)
    assert all(c.critical_batch_size_censored for c in loose.cells)


def test_step_law_needs_lr_batch_and_varied_cells():
    with pytest.raises(ScalingDataError, match="missing: lr, batch_size"):
        fit_step_law(load_runs(synthetic_chinchilla()))
    bad = step_law_sweeps()
    bad.loc[4, "lr"] = np.nan
    runs = load_runs(bad)  # a loss-law fit does not need lr
    assert fit_chinchilla(runs, n_bootstrap=0, **FAST).n_points == len(bad)
    with pytest.raises(ScalingDataError, match="positive, finite lr in every run, got 1 bad row.*row 4"):
        fit_step_law(runs)
    one_n = step_law_sweeps(cells=[(1e8, 2e9), (1e8, 8e9), (1e8, 3.2e10)])
    with pytest.raises(ScalingDataError, match="N and D vary independently"):
        fit_step_law(load_runs(one_n))


def test_step_law_at_one_budget_fits_lr_in_n_and_predicts_only_there():
    known = {"lr_coef": 0.5, "lr_N_exp": -0.3, "lr_D_exp": 0.1, "bs_coef": 2.0, "bs_D_exp": 0.4}
    d = 2e9
    law = fit_step_law(load_runs(step_law_sweeps(known, cells=[(1e8, d), (4e8, d), (1.6e9, d)])))
    assert law.D_fixed == d and law.constants["lr_D_exp"] == 0.0 and law.constants["bs_D_exp"] == 0.0
    assert law.constants["lr_N_exp"] == pytest.approx(-0.3, rel=1e-6)
    assert law.predict(1e10, d)["lr"] == pytest.approx(0.5 * 1e10**-0.3 * d**0.1, rel=1e-6)
    assert law.predict(1e10, d)["batch_size"] == pytest.approx(2.0 * d**0.4, rel=1e-6)
    assert law.to_dict()["D_fixed"] == d
    with pytest.raises(ValueError, match="one token budget"):
        law.predict(1e10, 2 * d)


def test_lr_interval_is_the_least_squares_t_interval_and_covers_the_law():
    from scipy import stats

    d = 2e9
    n = np.array([1e6, 2e6, 4e6, 8e6, 1.6e7, 3.2e7])
    noise = np.array([0.2, -0.15, 0.05, -0.1, 0.15, -0.05])  # scatter of the cells' optima in log lr
    lr = 0.5 * n**-0.3 * np.exp(noise)
    runs = Runs(N=n, D=np.full_like(n, d), C=6 * n * d, loss=np.ones_like(n), lr=lr, batch_size=np.full_like(n, 1e6))
    law = fit_step_law(runs)
    # the same interval by hand: OLS of log lr on [1, log N], t with n - 2 degrees of freedom
    x = np.column_stack([np.ones_like(n), np.log(n)])
    coef, *_ = np.linalg.lstsq(x, np.log(lr), rcond=None)
    resid = np.log(lr) - x @ coef
    cov = resid @ resid / 4 * np.linalg.inv(x.T @ x)
    z = np.array([1.0, np.log(1e9)])
    half = stats.t.ppf(0.975, 4) * np.sqrt(z @ cov @ z)
    low, high = law.lr_interval(1e9, d)
    assert law.lr_dof == 4
    assert np.log(low) == pytest.approx(z @ coef - half) and np.log(high) == pytest.approx(z @ coef + half)
    assert low < 0.5 * 1e9**-0.3 < high  # the true law lies inside
    # wider the further it extrapolates; arrays in, arrays out
    lows, highs = law.lr_interval(np.array([4e6, 1e9]), d)
    assert highs[0] / lows[0] < highs[1] / lows[1]
    # exact optima: the interval collapses onto the law; a law from constants has none
    exact = fit_step_law(Runs(N=n, D=runs.D, C=runs.C, loss=runs.loss, lr=0.5 * n**-0.3, batch_size=runs.batch_size))
    assert exact.lr_interval(1e9, d) == pytest.approx((0.5 * 1e9**-0.3,) * 2, rel=1e-6)
    assert all(np.isnan(v) for v in StepLawFit.from_constants(**STEP_LAW_PUBLISHED).lr_interval(1e9, 1e11))
    two = fit_step_law(runs.subset(np.arange(2)))
    assert two.lr_dof == 0 and all(np.isnan(v) for v in two.lr_interval(1e9, d))


# --------------------------------------------------------------------------- size law at one budget


def test_size_law_recovers_constants_and_extrapolates():
    n = np.geomspace(3e3, 2e4, 6)
    loss = 1.1 + 30.0 / n**0.45
    runs = load_runs(pd.DataFrame({"params": n, "tokens": 1e6, "loss": loss}))
    fit = fit_size_law(runs, n_bootstrap=30, seed=0)
    assert fit.params == pytest.approx({"E": 1.1, "A": 30.0, "alpha": 0.45}, rel=1e-4)
    mean, low, high = fit.predict(1e5)
    assert mean == pytest.approx(1.1 + 30.0 / 1e5**0.45, rel=1e-6)
    assert low <= mean <= high
    assert fit.to_dict()["form"] == "size-law" and fit.D == 1e6


def test_size_law_bootstrap_is_seeded_and_alpha_bounded():
    rng = np.random.default_rng(1)
    n = np.geomspace(3e3, 2e4, 6)
    loss = (1.1 + 30.0 / n**0.45) * np.exp(0.003 * rng.standard_normal(n.size))
    runs = load_runs(pd.DataFrame({"params": n, "tokens": 1e6, "loss": loss}))
    a, b = fit_size_law(runs, n_bootstrap=20, seed=3), fit_size_law(runs, n_bootstrap=20, seed=3)
    assert np.array_equal(a.bootstrap_params, b.bootstrap_params)
    assert a.intervals["alpha"][0] <= a.params["alpha"] <= a.intervals["alpha"][1]
    # a step down between two plateaus wants a huge exponent; the bound holds it
    step = load_runs(pd.DataFrame({"params": n, "tokens": 1e6, "loss": np.where(n < 8e3, 3.0, 2.0)}))
    assert fit_size_law(step, n_bootstrap=0, alpha_bounds=(0.0, 1.5)).params["alpha"] <= 1.5


def test_size_law_needs_one_budget_and_four_sizes():
    frame = pd.DataFrame({"params": [1e3, 2e3, 4e3, 8e3], "tokens": [1e6, 1e6, 1e6, 2e6], "loss": [3.0, 2.8, 2.7, 2.6]})
    with pytest.raises(ScalingDataError, match="one token budget, got 2 distinct D"):
        fit_size_law(load_runs(frame))
    frame["tokens"] = 1e6
    frame.loc[3, "params"] = 4e3
    with pytest.raises(ScalingDataError, match="at least 4 distinct model sizes, got 3"):
        fit_size_law(load_runs(frame))


# --------------------------------------------------------------------------- bad tables


def test_missing_params_column_lists_columns_and_flag():
    frame = pd.DataFrame({"Model Size": [1e8], "tokens": [1e9], "loss": [3.0]})
    with pytest.raises(ScalingDataError) as err:
        load_runs(frame)
    message = str(err.value)
    assert "'params'" in message and "'Model Size'" in message and "--params-col" in message
    assert "\n" not in message


def test_missing_tokens_and_flops():
    with pytest.raises(ScalingDataError, match="--tokens-col or --flops-col"):
        load_runs(pd.DataFrame({"params": [1e8], "loss": [3.0]}))
    with pytest.raises(ScalingDataError, match="--loss-col"):
        load_runs(pd.DataFrame({"params": [1e8], "tokens": [1e9]}))


def test_tokens_from_flops_and_flops_from_tokens():
    runs = load_runs(pd.DataFrame({"params": [1e8, 2e8], "flops": [6e17, 2.4e18], "loss": [3.0, 2.9]}))
    np.testing.assert_allclose(runs.D, [1e9, 2e9])
    runs = load_runs(pd.DataFrame({"params": [1e8], "tokens": [1e9], "loss": [3.0]}))
    np.testing.assert_allclose(runs.C, [6e17])


@pytest.mark.parametrize(
    "column,values",
    [("params", [1e8, -5.0, 1e9]), ("tokens", [1e9, np.inf, 1e9]), ("flops", [0.0, 1e18, 1e18])],
)
def test_non_positive_or_non_finite_rejected(column, values):
    frame = pd.DataFrame({"params": [1e8, 2e8, 4e8], "tokens": [1e9, 2e9, 4e9], "loss": [3.0, 2.9, 2.8]})
    frame[column] = values
    with pytest.raises(ScalingDataError, match=f"column '{column}' must be positive and finite.*1 bad row"):
        load_runs(frame)


def test_nan_losses_counted_and_named():
    frame = pd.DataFrame({"params": [1e8] * 4, "tokens": [1e9] * 4, "final": [3.0, np.nan, 2.9, np.nan]})
    with pytest.raises(ScalingDataError, match=r"column 'final' has NaN in 2 of 4 rows \(rows 1, 3\)"):
        load_runs(frame, loss_col="final")


def test_non_numeric_and_missing_file(tmp_path):
    frame = pd.DataFrame({"params": ["1e8", "big"], "tokens": [1e9, 1e9], "loss": [3.0, 2.9]})
    with pytest.raises(ScalingDataError, match="column 'params' must be numeric.*'big'"):
        load_runs(frame)
    with pytest.raises(ScalingDataError, match="does not exist"):
        load_runs(str(tmp_path / "nope.csv"))


def test_too_few_points_say_how_many():
    runs = load_runs(synthetic_chinchilla().iloc[:4])
    with pytest.raises(ScalingDataError, match="at least 5 runs, got 4"):
        fit_chinchilla(runs)
    with pytest.raises(ScalingDataError, match="at least 5 runs, got 4 after dropping 2"):
        fit_chinchilla(load_runs(synthetic_chinchilla().iloc[:6]), drop_highest_loss=2)
    two = load_runs(pd.DataFrame({"params": [1e8, 1e9], "tokens": [1e9, 1e9], "loss": [3.0, 2.8]}))
    with pytest.raises(ScalingDataError, match="at least 3 runs"):
        fit_kaplan(two, "N", frontier=False)
