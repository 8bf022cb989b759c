"""ScalingLawRegressor: the scikit-learn-style law for extrapolating to larger models (#23 item 3)."""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from surrogates.scaling import Runs, ScalingDataError, ScalingLawRegressor, fit_chinchilla
from testlib import SHARED_DATA

SCALING = Path(SHARED_DATA) / "scaling"
EPOCH_CSV = SCALING / "epoch_chinchilla" / "svg_extracted_data.csv"
GEM_COOL = SCALING / "gemstones" / "wandb_df_for_fitting_cool_end.jsonl"
TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
FAST = {"n_bootstrap": 0, "extrapolation": "none", "n_starts": 10}


def law(n, d, p):
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def grid(n_lo=1e7, n_hi=1e9, k=7):
    n, d = np.meshgrid(np.geomspace(n_lo, n_hi, k), np.geomspace(1e8, 1e11, k))
    return np.c_[n.ravel(), d.ravel()]


def test_init_stores_arguments_only_and_fit_returns_self():
    model = ScalingLawRegressor(**FAST)
    for name in inspect.signature(ScalingLawRegressor.__init__).parameters:
        if name != "self":
            assert hasattr(model, name), name
    assert not [a for a in vars(model) if a.endswith("_")]
    X = grid()
    assert model.fit(X, law(X[:, 0], X[:, 1], TRUE)) is model
    mean, var = model.predict(X[:5])
    assert mean.shape == (5,) and var.shape == (5,) and np.all(var >= 0)
    assert model.params_[0].keys() == {"E", "A", "B", "alpha", "beta"}


@pytest.mark.parametrize("form", ["chinchilla", "tied"])
def test_recovers_known_parameters(form):
    p = dict(TRUE, beta=TRUE["alpha"]) if form == "tied" else TRUE
    X = grid()
    fit = ScalingLawRegressor(form=form, **FAST).fit(X, law(X[:, 0], X[:, 1], p))
    for name, value in p.items():
        assert fit.params_[0][name] == pytest.approx(value, rel=2e-3), name
    assert fit.form_ == form and fit.residual_sd_ < 1e-4
    # exact law: a 30x larger model is predicted exactly
    far = np.array([[3e10, 6e11]])
    assert fit.predict(far)[0][0] == pytest.approx(law(3e10, 6e11, p), rel=1e-4)


def test_tied_form_satisfies_gadre_constant_ratio_power_law():
    # With alpha = beta, L - E is a power law in C at fixed tokens per parameter M (Gadre et al.).
    p = dict(TRUE, beta=TRUE["alpha"])
    X = grid()
    fit = ScalingLawRegressor(form="tied", **FAST).fit(X, law(X[:, 0], X[:, 1], p))
    e = fit.params_[0]["E"]
    m = 40.0
    n = np.geomspace(1e8, 1e11, 5)
    excess = fit.predict(np.c_[n, m * n])[0] - e
    slopes = np.diff(np.log(excess)) / np.diff(np.log(6 * n * m * n))
    assert np.allclose(slopes, -p["alpha"] / 2, atol=1e-3)


def test_shared_irreducible_loss_across_groups():
    X = grid()
    p2 = dict(TRUE, A=900.0, beta=0.3)
    y = np.r_[law(X[:, 0], X[:, 1], TRUE), law(X[:, 0], X[:, 1], p2)]
    groups = np.r_[np.full(len(X), "hot"), np.full(len(X), "cool")]
    fit = ScalingLawRegressor(form="chinchilla", shared=("E",), **FAST).fit(np.vstack([X, X]), y, groups=groups)
    assert fit.groups_ == ("cool", "hot")
    assert fit.params_["hot"]["E"] == fit.params_["cool"]["E"] == pytest.approx(TRUE["E"], rel=2e-3)
    assert fit.params_["cool"]["A"] == pytest.approx(900.0, rel=5e-3)
    assert fit.params_["hot"]["A"] == pytest.approx(TRUE["A"], rel=5e-3)
    mean, _ = fit.predict(X[:3], groups=["cool"] * 3)
    assert mean == pytest.approx(law(X[:3, 0], X[:3, 1], p2), rel=1e-4)
    with pytest.raises(ValueError, match="pass groups"):
        fit.predict(X[:3])
    with pytest.raises(ValueError, match="unknown group"):
        fit.predict(X[:3], groups=["warm"] * 3)


def test_auto_ties_exponents_only_when_the_floor_collapses():
    X = grid()
    kept = ScalingLawRegressor(form="auto", **FAST).fit(X, law(X[:, 0], X[:, 1], TRUE))
    assert kept.form_ == "chinchilla"
    # A floorless law (E = 0) with a small size exponent: the free fit's E collapses.
    floorless = {"E": 0.0, "A": 20.0, "B": 400.0, "alpha": 0.1, "beta": 0.3}
    tied = ScalingLawRegressor(form="auto", **FAST).fit(X, law(X[:, 0], X[:, 1], floorless))
    assert tied.form_ == "tied"
    assert tied.params_[0]["alpha"] == tied.params_[0]["beta"]
    assert tied.to_dict()["form"] == "chinchilla-tied"


def test_prediction_interval_nests_and_widens_past_the_fitted_sizes():
    rng = np.random.default_rng(0)
    X = grid(k=7)
    y = law(X[:, 0], X[:, 1], TRUE) * np.exp(0.01 * rng.standard_normal(len(X)))
    fit = ScalingLawRegressor(form="chinchilla", n_bootstrap=10, n_starts=5, random_state=1).fit(X, y)
    assert fit.bootstrap_params_.shape == (10, 1, 5)
    Xt = np.array([[5e8, 1e10], [4e9, 1e11], [3e10, 1e12]])
    mean, var = fit.predict(Xt)
    lo80, hi80 = fit.predict_interval(Xt, 0.8)
    lo95, hi95 = fit.predict_interval(Xt, 0.95)
    assert np.all(lo95 <= lo80) and np.all(lo80 <= mean) and np.all(mean <= hi80) and np.all(hi80 <= hi95)
    rel_width = (hi95 - lo95) / mean
    assert rel_width[0] < rel_width[1] < rel_width[2]
    # same seed, same answer
    again = ScalingLawRegressor(form="chinchilla", n_bootstrap=10, n_starts=5, random_state=1).fit(X, y)
    assert np.array_equal(again.predict_interval(Xt, 0.95)[1], hi95)


def test_bad_input_is_rejected():
    X = grid()
    y = law(X[:, 0], X[:, 1], TRUE)
    with pytest.raises(ValueError, match="2 columns"):
        ScalingLawRegressor(**FAST).fit(np.c_[X, X[:, :1]], y)
    with pytest.raises(ValueError, match="form"):
        ScalingLawRegressor(form="kaplan", **FAST).fit(X, y)
    with pytest.raises(ValueError, match="positive"):
        ScalingLawRegressor(**FAST).fit(np.r_[X, [[-1.0, 1e9]]], np.r_[y, 2.0])
    with pytest.raises(ScalingDataError, match="3 distinct model sizes"):
        ScalingLawRegressor(**FAST).fit(np.c_[np.r_[[1e8] * 5, [2e8] * 5], np.geomspace(1e9, 1e11, 10)], np.linspace(3, 2.5, 10))
    with pytest.raises(RuntimeError, match="not fitted"):
        ScalingLawRegressor().predict(X)


# --------------------------------------------------------------------------- public data


def _split(n, d, loss, cut):
    fit = n <= cut
    test = n >= 4 * n[fit].max()
    return fit, test


@pytest.mark.skipif(not EPOCH_CSV.exists(), reason="Epoch AI's digitised Chinchilla data is not on this machine")
def test_chinchilla_held_out_4x_larger_intervals_cover_where_the_plain_band_does_not():
    df = pd.read_csv(EPOCH_CSV).sort_values("loss", kind="stable").iloc[:-5]
    n = df["Model Size"].to_numpy(float)
    d = df["Training FLOP"].to_numpy(float) / (6 * n)
    loss = df["loss"].to_numpy(float)
    fit, test = _split(n, d, loss, 5e8)
    assert fit.sum() == 73 and test.sum() == 52
    plain = fit_chinchilla(Runs(N=n[fit], D=d[fit], C=6 * n[fit] * d[fit], loss=loss[fit]), n_bootstrap=20, n_starts=20)
    p_mean, p_lo, p_hi = plain.predict(n[test], d[test])
    model = ScalingLawRegressor(n_bootstrap=20, random_state=0).fit(np.c_[n[fit], d[fit]], loss[fit])
    mean, _ = model.predict(np.c_[n[test], d[test]])
    lo, hi = model.predict_interval(np.c_[n[test], d[test]], 0.95)
    mae = np.mean(np.abs(mean / loss[test] - 1))
    plain_mae = np.mean(np.abs(p_mean / loss[test] - 1))
    assert model.form_ == "chinchilla"
    assert mae <= plain_mae + 1e-3 and mae < 0.016
    assert np.mean((lo <= loss[test]) & (loss[test] <= hi)) >= 0.9
    assert np.mean((p_lo <= loss[test]) & (loss[test] <= p_hi)) < 0.75


@pytest.mark.skipif(not GEM_COOL.exists(), reason="the Gemstones checkpoints are not on this machine")
def test_gemstones_narrow_ladder_extrapolates_better_than_the_plain_fit():
    g = pd.read_json(GEM_COOL, lines=True)
    n = g["params_active_precise"].to_numpy(float)
    d = g["tokens"].to_numpy(float)
    loss = g["final_loss"].to_numpy(float)
    fit, test = _split(n, d, loss, 1.2e8)
    plain = fit_chinchilla(Runs(N=n[fit], D=d[fit], C=6 * n[fit] * d[fit], loss=loss[fit]), n_bootstrap=0, n_starts=20)
    plain_mae = np.mean(np.abs(plain.predict(n[test], d[test])[0] / loss[test] - 1))
    model = ScalingLawRegressor(n_bootstrap=0, extrapolation="none").fit(np.c_[n[fit], d[fit]], loss[fit])
    mae = np.mean(np.abs(model.predict(np.c_[n[test], d[test]])[0] / loss[test] - 1))
    assert plain.params["E"] < 0.1  # the free fit's floor collapses on a 2.4x range of sizes
    assert model.form_ == "tied"
    assert mae < plain_mae - 0.01


def test_form_names_are_known_to_the_fit_warnings():
    from analysis.scaling import fit_warnings

    X = grid()
    fit = ScalingLawRegressor(form="tied", **FAST).fit(X, law(X[:, 0], X[:, 1], dict(TRUE, beta=TRUE["alpha"])))
    form = fit.to_dict()["form"]
    assert fit_warnings(form, X[:, 0], X[:, 1], 6 * X[:, 0] * X[:, 1], fit.params_[0]) == []
    one_budget = np.full(len(X), 1e10)
    assert "every trial has the same D (tokens)" in fit_warnings(form, X[:, 0], one_budget, X[:, 0], fit.params_[0])[0]
    assert "degenerate" in fit_warnings(form, X[:, 0], X[:, 1], X[:, 0], dict(fit.params_[0], A=1e15))[0]
