"""A Gaussian process over (time, x) with the time-varying kernel of TV-GP-UCB, for PB2.

Bogunovic, Scarlett & Cevher (2016) model a reward function that drifts over time: data from ``t``
rounds ago is "forgotten" at rate ``eps`` per round, which gives the product kernel

    k((t, x), (t', x')) = s2 * exp(-||x - x'||^2 / (2 l^2)) * (1 - eps)^(|t - t'| / 2)

Population-Based Bandits (Parker-Holder et al. 2020) fit it to the population's recent reward
changes. Column 0 of ``X`` is the time, counted in rounds (one round per perturbation interval, as
in the paper's analysis); the other columns are the hyperparameters, scaled to [0, 1] by the
caller. ``s2``, ``l``, ``eps`` (bounded to [1e-4, 0.5] as in TV-GP-UCB) and the noise are set by
maximising the marginal likelihood. Targets are standardised inside the model.

``predict(X, pending=...)`` answers with the batch posterior of GP-BUCB (Desautels et al. 2014),
which PB2 uses when several members pick configurations before any of them has reported: the
variance is conditioned on the pending inputs too (it does not depend on their unknown targets),
while the mean comes from the observed data alone.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from surrogates._validation import check_fitted, check_X, check_Xy

__all__ = ["TimeVaryingGP"]

# Log-space bounds of the hyperparameters: lengthscale (inputs in [0, 1]), signal variance and
# noise (targets standardised), forgetting rate eps.
_BOUNDS = ((math.log(0.05), math.log(5.0)), (math.log(0.05), math.log(20.0)),
           (math.log(1e-4), math.log(0.5)), (math.log(1e-4), math.log(1.0)))
_JITTER = 1e-8


def _kernel(A: np.ndarray, B: np.ndarray, ls: float, s2: float, eps: float) -> np.ndarray:
    dt = np.abs(A[:, :1] - B[:, :1].T)
    d2 = ((A[:, None, 1:] - B[None, :, 1:]) ** 2).sum(-1)
    return s2 * np.exp(-0.5 * d2 / ls ** 2) * (1.0 - eps) ** (0.5 * dt)


class TimeVaryingGP:
    """GP regressor on ``[time, x_1..x_d]``: ``fit(X, y) -> self``, ``predict(X) -> (mean, var)``.

    Parameters
    ----------
    n_restarts: marginal-likelihood optimisations, from fixed, spread-out starting points (the
        fit is deterministic).
    max_iter: L-BFGS-B iterations per restart.
    """

    def __init__(self, *, n_restarts: int = 3, max_iter: int = 60) -> None:
        self.n_restarts = n_restarts
        self.max_iter = max_iter

    def _nll(self, theta: np.ndarray, X: np.ndarray, z: np.ndarray) -> float:
        ls, s2, eps, noise = np.exp(theta)
        K = _kernel(X, X, ls, s2, eps) + (noise + _JITTER) * np.eye(len(X))
        try:
            L = np.linalg.cholesky(K)
        except np.linalg.LinAlgError:
            return 1e10
        a = np.linalg.solve(L.T, np.linalg.solve(L, z))
        return float(0.5 * z @ a + np.log(np.diag(L)).sum())

    def fit(self, X: Any, y: Any) -> "TimeVaryingGP":
        from scipy.optimize import minimize

        X, y = check_Xy(X, y, min_samples=1)
        if X.shape[1] < 2:
            raise ValueError(f"expected X with a time column and at least one input column, got {X.shape[1]} column(s)")
        self.y_mean_ = float(y.mean())
        self.y_std_ = float(y.std()) or 1.0
        z = (y - self.y_mean_) / self.y_std_
        starts = [np.array([math.log(ls), 0.0, math.log(eps), math.log(0.1)])
                  for ls, eps in ((0.3, 0.1), (1.0, 0.01), (0.1, 0.3), (0.5, 0.05))[:max(1, self.n_restarts)]]
        best = None
        for x0 in starts:
            res = minimize(self._nll, x0, args=(X, z), method="L-BFGS-B", bounds=_BOUNDS,
                           options={"maxiter": self.max_iter})
            if best is None or res.fun < best.fun:
                best = res
        self.lengthscale_, self.signal_variance_, self.epsilon_, self.noise_ = (float(v) for v in np.exp(best.x))
        self.X_train_, self.z_train_ = X, z
        K = self._k(X, X) + (self.noise_ + _JITTER) * np.eye(len(X))
        self.L_ = np.linalg.cholesky(K)
        self.alpha_ = np.linalg.solve(self.L_.T, np.linalg.solve(self.L_, z))
        return self

    def _k(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        return _kernel(A, B, self.lengthscale_, self.signal_variance_, self.epsilon_)

    def predict(self, X: Any, pending: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of the latent function at ``X``, in the units of ``y``.
        With ``pending`` (rows like ``X``), the variance is also conditioned on those inputs."""
        check_fitted(self, "alpha_")
        X = check_X(X, self.X_train_.shape[1])
        Ks = self._k(X, self.X_train_)
        mean = Ks @ self.alpha_
        if pending is not None and len(pending):
            P = check_X(pending, self.X_train_.shape[1], name="pending")
            A = np.vstack([self.X_train_, P])
            L = np.linalg.cholesky(self._k(A, A) + (self.noise_ + _JITTER) * np.eye(len(A)))
            Ks = self._k(X, A)
        else:
            L = self.L_
        v = np.linalg.solve(L, Ks.T)
        var = np.maximum(self.signal_variance_ - (v ** 2).sum(0), 1e-12)
        return mean * self.y_std_ + self.y_mean_, var * self.y_std_ ** 2
