"""Learning-curve extrapolation: predict a trial's value at a later step from its partial curve.

A weighted ensemble of parametric curve forms, after Domhan, Springenberg & Hutter (2015), fitted
by least squares instead of MCMC so that a fit takes about a millisecond:

- ``pow3``:  y = c + a * t^(-alpha), 0.01 <= alpha <= 4   (power law to an asymptote c)
- ``exp3``:  y = c + a * exp(-b * t / t_n), 0.05 <= b <= 20 (exponential decay; t_n = last step seen)
- ``ilog2``: y = c + a / log(t + 1)                       (slow, logarithmic convergence)
- ``last``:  y = c                                        (the curve has flattened)

Each form is linear in (c, a): its shape parameter runs over a grid, each grid point an exact
linear least-squares fit, so a fit is global and deterministic. A form is fitted when there are at
least as many points as it has parameters; forms are weighted by their BIC, with the residual
variance floored at ``(noise * range of y)^2`` so that a form that interpolates the points exactly
is not infinitely sure of itself (with few points the simpler forms dominate, with many the one
that fits best). Within a form the shapes are weighted by their likelihood. The prediction is the
mixture over forms and shapes: the mean of their extrapolations (each clipped to within one range
of y of the observed values), the variance their spread plus the linear-regression prediction
variance (which grows as the target step leaves the observed range) plus the residual variance.
From a single point the prediction is that point, with a standard deviation of ``prior_rel_std``
times its magnitude.

scikit-learn contract: ``fit(X, y) -> self`` with ``X`` the steps as an ``(n, 1)`` array (steps
> 0) and ``y`` the values, ``predict(X) -> (mean, variance)`` at the steps in ``X``.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from surrogates._validation import check_fitted, check_X, check_Xy

__all__ = ["LearningCurve", "FORMS"]


def _pow(t: np.ndarray, t_last: float, alpha: float) -> np.ndarray:
    return np.power(t / t_last, -alpha)


def _exp(t: np.ndarray, t_last: float, b: float) -> np.ndarray:
    return np.exp(-b * t / t_last)


def _ilog(t: np.ndarray, t_last: float, _unused: float) -> np.ndarray:
    return 1.0 / np.log(t + 1.0)


# name -> (basis g(t, t_last, theta), grid of the shape parameter theta, or None for y = c). Every
# form is y = c + a * g(t; theta): linear in (c, a), so each theta on the grid is an exact linear
# least-squares fit and the best theta is kept (a global fit in microseconds, no local optimiser).
FORMS: dict[str, tuple[Callable[..., np.ndarray] | None, np.ndarray | None]] = {
    "pow3": (_pow, np.geomspace(0.01, 4.0, 96)),
    "exp3": (_exp, np.geomspace(0.05, 20.0, 96)),
    "ilog2": (_ilog, np.zeros(1)),
    "last": (None, None),
}
_N_PARAMS = {"pow3": 3, "exp3": 3, "ilog2": 2, "last": 1}


class LearningCurve:
    """Fit one learning curve (value vs step) and extrapolate it. See the module docstring."""

    def __init__(self, forms: tuple[str, ...] = ("pow3", "exp3", "ilog2", "last"), noise: float = 0.01,
                 prior_rel_std: float = 0.5) -> None:
        self.forms = forms
        self.noise = noise
        self.prior_rel_std = prior_rel_std

    def _check_params(self) -> None:
        unknown = [f for f in self.forms if f not in FORMS]
        if not self.forms or unknown:
            raise ValueError(f"forms must be a non-empty subset of {sorted(FORMS)}, got {list(self.forms)!r}")
        if not (self.noise > 0 and math.isfinite(self.noise)):
            raise ValueError(f"noise must be a positive number, got {self.noise!r}")
        if not (self.prior_rel_std > 0 and math.isfinite(self.prior_rel_std)):
            raise ValueError(f"prior_rel_std must be a positive number, got {self.prior_rel_std!r}")

    @staticmethod
    def _steps(X: Any, n_features: int | None = None) -> np.ndarray:
        arr = check_X(X, n_features)
        if arr.shape[1] != 1:
            raise ValueError(f"expected X as steps in one column, shape (n, 1), got {arr.shape[1]} columns")
        t = arr[:, 0]
        if np.any(t <= 0):
            raise ValueError(f"steps must be > 0, got {t[t <= 0][0]}")
        return t

    def fit(self, X: Any, y: Any) -> "LearningCurve":
        self._check_params()
        _, ya = check_Xy(X, y, min_samples=1)
        t = self._steps(X)
        order = np.argsort(t, kind="stable")
        t, ya = t[order], ya[order]
        # A step reported twice (a resumed trial re-reporting from an older checkpoint): keep the latest.
        keep = np.append(t[1:] != t[:-1], True)
        t, ya = t[keep], ya[keep]
        self.t_last_ = float(t[-1])
        self.y_last_ = float(ya[-1])
        self.y_range_ = (float(ya.min()), float(ya.max()))
        n = self.n_points_ = len(t)
        scale = float(ya.max() - ya.min())
        floor = (self.noise * scale) ** 2 if scale > 0 else (self.noise * max(abs(self.y_last_), 1e-12)) ** 2
        fits: list[dict[str, Any]] = []
        yc = ya - ya.mean()
        for name in self.forms if n >= 2 else ():
            k = _N_PARAMS[name]
            if n < k:
                continue
            g, grid = FORMS[name]
            if g is None:
                fit = {"theta": np.zeros(1), "c": np.array([ya.mean()]), "a": np.zeros(1), "gbar": np.zeros(1),
                       "sgg": np.ones(1), "rss": np.array([float(np.sum(yc**2))])}
            else:
                # Simple regression of y on g for every theta at once: a = S_gy / S_gg.
                G = np.stack([g(t, self.t_last_, float(theta)) for theta in grid])  # (grid, n)
                gbar = G.mean(axis=1)
                gc = G - gbar[:, None]
                sgg = np.sum(gc**2, axis=1)
                sgy = gc @ yc
                ok = np.isfinite(sgg) & (sgg > 1e-12) & np.isfinite(sgy)
                if not ok.any():
                    continue
                slope = sgy[ok] / sgg[ok]
                fit = {"theta": grid[ok], "c": ya.mean() - slope * gbar[ok], "a": slope, "gbar": gbar[ok],
                       "sgg": sgg[ok], "rss": np.maximum(np.sum(yc**2) - slope * sgy[ok], 0.0)}
            rss = float(fit["rss"].min())
            var = max(rss / n, floor)
            # Shape parameters weighted by their likelihood: the extrapolation's spread over the
            # shapes the points allow is part of its uncertainty.
            w = np.exp(-0.5 * (fit["rss"] - rss) / var)
            fit.update(name=name, w=w / w.sum(), var=var, bic=n * math.log(var) + k * math.log(max(n, 2)))
            fits.append(fit)
        self.fits_ = fits
        if fits:
            b = np.array([f["bic"] for f in fits])
            w = np.exp(-0.5 * (b - b.min()))
            self.weights_ = w / w.sum()
        else:
            self.weights_ = np.zeros(0)
        return self

    def predict(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        check_fitted(self, "fits_")
        t = self._steps(X, 1)
        if not self.fits_:
            # One point: no shape to extrapolate, only a level and a prior on how far it may move.
            sd = self.prior_rel_std * max(abs(self.y_last_), 1e-12)
            return np.full(len(t), self.y_last_), np.full(len(t), sd**2)
        lo, hi = self.y_range_
        span = max(hi - lo, 1e-12 * max(abs(hi), 1.0))
        means, variances = [], []
        for fit in self.fits_:
            g = FORMS[fit["name"]][0]
            gs = np.zeros((1, len(t))) if g is None else np.stack([g(t, self.t_last_, th) for th in fit["theta"]])
            pred = np.clip(fit["c"][:, None] + fit["a"][:, None] * gs, lo - span, hi + span)  # (shapes, m)
            # Linear-regression prediction variance: grows as g(t) leaves the observed range.
            pv = fit["var"] * (1.0 / self.n_points_ + (gs - fit["gbar"][:, None]) ** 2 / fit["sgg"][:, None])
            m = fit["w"] @ pred
            means.append(m)
            variances.append(fit["w"] @ (pv + (pred - m) ** 2) + fit["var"])
        M, V = np.array(means), np.array(variances)  # (forms, m)
        w = self.weights_[:, None]
        mean = (w * M).sum(axis=0)
        var = (w * (V + (M - mean) ** 2)).sum(axis=0)
        return mean, var
