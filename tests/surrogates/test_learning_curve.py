"""The learning-curve model: the surrogate contract, extrapolation from a few points, honest
uncertainty, and one-line errors for bad input."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from surrogates.learning_curve import LearningCurve

T = np.arange(1.0, 28.0)
CURVES = {
    "power": lambda t: 0.3 + 2.0 * t**-0.7,
    "exponential": lambda t: 0.5 + 1.5 * np.exp(-t / 4.0),
    "logarithmic": lambda t: 0.2 + 0.8 / np.log(t + 1.0),
}


def _noisy(name, seed=0, sd=0.01):
    return CURVES[name](T) + np.random.default_rng(seed).normal(0.0, sd, len(T))


def test_init_stores_arguments_only():
    model = LearningCurve(noise=0.05)
    for name in inspect.signature(LearningCurve.__init__).parameters:
        if name != "self":
            assert hasattr(model, name)
    assert not [a for a in vars(model) if a.endswith("_")]


def test_fit_returns_self_and_predict_shapes():
    m = LearningCurve()
    assert m.fit(T[:5, None], _noisy("power")[:5]) is m
    X = np.array([[10.0], [27.0], [100.0]])
    mean, var = m.predict(X)
    assert mean.shape == (3,) and var.shape == (3,) and np.all(var > 0)
    # Deterministic: the same curve gives the same prediction.
    again = LearningCurve().fit(T[:5, None], _noisy("power")[:5]).predict(X)
    assert np.array_equal(again[0], mean) and np.array_equal(again[1], var)


@pytest.mark.parametrize("name", sorted(CURVES))
@pytest.mark.parametrize("n", [5, 9])
def test_extrapolates_better_than_the_last_value(name, n):
    """From the first 5 or 9 of 27 steps, over 5 noise draws, the predicted final value is closer
    to the truth than the last observed value, and the truth lies within 3 standard deviations."""
    truth = CURVES[name](27.0)
    for seed in range(5):
        y = _noisy(name, seed)
        mean, var = LearningCurve().fit(T[:n, None], y[:n]).predict(np.array([[27.0]]))
        assert abs(mean[0] - truth) < abs(y[n - 1] - truth), (seed, mean[0], truth, y[n - 1])
        assert abs(mean[0] - truth) < 3 * np.sqrt(var[0]), (seed, mean[0], np.sqrt(var[0]), truth)


def test_more_points_better_prediction():
    y = _noisy("power")
    truth = CURVES["power"](27.0)
    errs = [abs(LearningCurve().fit(T[:n, None], y[:n]).predict(np.array([[27.0]]))[0][0] - truth)
            for n in (3, 9, 18)]
    assert errs[2] < errs[0] and errs[1] < errs[0], errs


def test_uncertainty_grows_with_extrapolation_distance():
    m = LearningCurve().fit(T[:6, None], _noisy("exponential")[:6])
    _, var = m.predict(np.array([[6.0], [12.0], [60.0]]))
    assert var[0] < var[1] < var[2]


def test_one_and_two_points():
    mean, var = LearningCurve(prior_rel_std=0.5).fit([[3.0]], [2.0]).predict([[27.0]])
    assert mean[0] == 2.0 and var[0] == pytest.approx(1.0)  # (0.5 * |2.0|)^2: a prior, no shape
    mean, var = LearningCurve().fit([[1.0], [2.0]], [2.0, 1.5]).predict([[27.0]])
    assert mean[0] < 1.5 and np.isfinite(var[0]) and var[0] > 0  # a falling curve keeps falling


def test_flat_and_rising_curves():
    mean, var = LearningCurve().fit(T[:5, None], np.full(5, 0.7)).predict([[27.0]])
    assert mean[0] == pytest.approx(0.7) and var[0] > 0
    rising = 0.5 + 0.05 * T[:8]
    mean, _ = LearningCurve().fit(T[:8, None], rising).predict([[27.0]])
    assert mean[0] > rising[-1]


def test_repeated_step_keeps_the_latest_value():
    """A trial resumed from an older checkpoint reports a step again: the newer value wins."""
    a = LearningCurve().fit([[1.0], [2.0], [3.0], [3.0]], [2.0, 1.5, 9.0, 1.2]).predict([[9.0]])
    b = LearningCurve().fit([[1.0], [2.0], [3.0]], [2.0, 1.5, 1.2]).predict([[9.0]])
    assert a[0][0] == b[0][0]


@pytest.mark.parametrize("X, y, match", [
    ([1.0, 2.0], [1.0, 0.5], "2-D array"),
    ([[1.0, 1.0], [2.0, 2.0]], [1.0, 0.5], "steps in one column"),
    ([[0.0], [1.0]], [1.0, 0.5], "steps must be > 0"),
    ([[1.0], [2.0]], [1.0, float("nan")], "y must be finite"),
    ([[1.0], [2.0]], [1.0], "same number of rows"),
    (np.zeros((0, 1)), [], "at least 1 samples"),
])
def test_bad_input(X, y, match):
    with pytest.raises(ValueError, match=match):
        LearningCurve().fit(X, y)


@pytest.mark.parametrize("kwargs, match", [
    ({"forms": ("pow3", "sigmoid")}, "forms must be a non-empty subset"),
    ({"forms": ()}, "forms must be a non-empty subset"),
    ({"noise": 0.0}, "noise must be a positive number"),
    ({"prior_rel_std": float("inf")}, "prior_rel_std must be a positive number"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LearningCurve(**kwargs).fit([[1.0], [2.0]], [1.0, 0.5])


def test_predict_before_fit_and_bad_predict_input():
    with pytest.raises(RuntimeError, match="not fitted yet"):
        LearningCurve().predict([[27.0]])
    m = LearningCurve().fit([[1.0], [2.0]], [1.0, 0.5])
    with pytest.raises(ValueError, match="steps must be > 0"):
        m.predict([[-1.0]])
    with pytest.raises(ValueError, match="1 columns as in fit"):
        m.predict([[1.0, 2.0]])
