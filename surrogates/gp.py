"""Gaussian process regression with an ARD Matérn-5/2 kernel, in numpy/scipy.

The recipe follows what won the NeurIPS 2020 black-box optimisation challenge (HEBO): targets go
through a power transform (Yeo-Johnson) so heavy tails do not flatten the fit, inputs may go
through a learned Kumaraswamy CDF warping, and kernel hyperparameters are set by maximising the
marginal likelihood (with priors, i.e. MAP) with L-BFGS on analytic gradients. Lengthscales get
a log-normal prior: by default the dimension-scaled one of Hvarfner et al. (2024),
LogNormal(sqrt(2) + log(d)/2, sqrt(3)), or LogNormal(0, sqrt(3)) ("unit": median lengthscale one
input range whatever the dimension, close to the prior of Optuna's GP sampler).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from surrogates._validation import as_generator, check_fitted, check_X, check_Xy

__all__ = ["GaussianProcess", "LENGTHSCALE_PRIORS"]

_SQRT5 = math.sqrt(5.0)
_EPS = 1e-6
# Upper bound on the lengthscale of a one-hot column. Two categories differ in two such columns,
# so at this bound switching category leaves a Matérn-5/2 correlation of about 0.3. Left free, the
# marginal likelihood happily makes every category look alike (lengthscales in the tens) after
# the first rounds sampled mostly one category, and the model then carries that category's
# response into the others (lasso's poor large-alpha losses predicted for ridge): the search
# never returns to the other categories.
_CAT_MAX_LS = 1.0
LENGTHSCALE_PRIORS = ("dim-scaled", "unit")


def _yj(y: np.ndarray, lam: float) -> np.ndarray:
    out = np.empty_like(y)
    pos = y >= 0
    out[pos] = np.log1p(y[pos]) if abs(lam) < 1e-8 else ((y[pos] + 1) ** lam - 1) / lam
    out[~pos] = (-np.log1p(-y[~pos]) if abs(lam - 2) < 1e-8
                 else -((1 - y[~pos]) ** (2 - lam) - 1) / (2 - lam))
    return out


def _yj_inverse(t: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse Yeo-Johnson and its derivative (for delta-method variances)."""
    y = np.empty_like(t)
    dy = np.empty_like(t)
    pos = t >= 0
    tp, tn = t[pos], t[~pos]
    if abs(lam) < 1e-8:
        y[pos] = np.expm1(tp)
        dy[pos] = np.exp(tp)
    else:
        base = np.maximum(tp * lam + 1, 1e-12)
        y[pos] = base ** (1 / lam) - 1
        dy[pos] = base ** (1 / lam - 1)
    if abs(lam - 2) < 1e-8:
        y[~pos] = -np.expm1(-tn)
        dy[~pos] = np.exp(-tn)
    else:
        base = np.maximum(1 - (2 - lam) * tn, 1e-12)
        y[~pos] = 1 - base ** (1 / (2 - lam))
        dy[~pos] = base ** (1 / (2 - lam) - 1)
    return y, dy


def _yj_lambda(y: np.ndarray) -> float:
    """Maximum-likelihood Yeo-Johnson exponent on a grid over [-2, 4] (a grid is ample for a
    transform of the targets and several times faster than a scalar optimiser at this size)."""
    grid = np.linspace(-2.0, 4.0, 61)
    jac = (np.sign(y) * np.log1p(np.abs(y))).sum()
    best, best_lam = -math.inf, 1.0
    for lam in grid:
        var = _yj(y, lam).var()
        if var <= 0:
            continue
        ll = -0.5 * len(y) * math.log(var) + (lam - 1) * jac
        if ll > best:
            best, best_lam = ll, float(lam)
    return best_lam


class GaussianProcess:
    """GP regressor: ``fit(X, y) -> self``, ``predict(X) -> (mean, variance)``.

    ``predict`` answers in the units of ``y``: the mean is the back-transformed latent mean (the
    predictive median when a power transform is on) and the variance that of a new observation by
    the delta method. ``predict_latent`` answers in the model's working space (standardised,
    transformed targets), which is what acquisition functions should use together with
    ``transform_y``.

    Parameters
    ----------
    y_transform: "yeo-johnson" (default) or "standardize".
    input_warping: learn a Kumaraswamy CDF per column in ``warp_columns`` (all by default).
        Warped columns must lie in [0, 1] (after ``normalize_inputs``).
    normalize_inputs: scale each column to [0, 1] by the training range; turn off when the
        inputs already live in the unit cube (encoded search spaces).
    n_restarts: marginal-likelihood optimisations from different starts (the first from the
        prior's centre, the others drawn from the priors).
    max_iter: L-BFGS iterations per restart.
    max_fit_samples: above this many rows, hyperparameters are fitted on a random subset of this
        size (the posterior still conditions on every row); None fits on all.
    lengthscale_prior: "dim-scaled" (default; median lengthscale exp(sqrt(2)) * sqrt(d), which
        assumes a smoother function the more inputs there are) or "unit" (median 1 in every
        dimension, for multimodal functions in many inputs; measured in ``bench/bench_bo.py``).
    categorical_columns: indices of one-hot columns; their lengthscales are capped at 1 so a
        change of category always decorrelates the function noticeably.
    random_state: seed for restart draws.
    """

    def __init__(self, *, y_transform: str = "yeo-johnson", input_warping: bool = False,
                 warp_columns: Any = None, normalize_inputs: bool = True, n_restarts: int = 1,
                 max_iter: int = 50, max_fit_samples: int | None = 160,
                 categorical_columns: Any = None, lengthscale_prior: str = "dim-scaled",
                 random_state: Any = None) -> None:
        self.y_transform = y_transform
        self.input_warping = input_warping
        self.warp_columns = warp_columns
        self.normalize_inputs = normalize_inputs
        self.n_restarts = n_restarts
        self.max_iter = max_iter
        self.max_fit_samples = max_fit_samples
        self.categorical_columns = categorical_columns
        self.lengthscale_prior = lengthscale_prior
        self.random_state = random_state

    # -- transforms ----------------------------------------------------------------------------
    def _scale_X(self, X: np.ndarray) -> np.ndarray:
        Z = (X - self.x_offset_) / self.x_scale_
        if self.warp_idx_.size:
            Z = Z.copy()
            raw = Z[:, self.warp_idx_]
            # Beyond the training range the warp continues with slope one, so points outside
            # stay apart from the boundary instead of collapsing onto it.
            inside = np.clip(raw, 0.0, 1.0)
            Z[:, self.warp_idx_] = self._warp(inside, self.warp_a_, self.warp_b_)[0] + (raw - inside)
        return Z

    @staticmethod
    def _warp(U: np.ndarray, a: np.ndarray, b: np.ndarray):
        U = np.clip(U, _EPS, 1 - _EPS)
        ua = U ** a
        one_m = np.maximum(1 - ua, 1e-300)
        W = 1 - one_m ** b
        dWda = b * one_m ** (b - 1) * ua * np.log(U)  # d/da
        dWdb = -(one_m ** b) * np.log(one_m)           # d/db
        return W, dWda, dWdb

    def transform_y(self, y: Any) -> np.ndarray:
        """Targets in the working space of ``predict_latent`` (monotone increasing in ``y``)."""
        check_fitted(self, "alpha_")
        y0 = (np.asarray(y, dtype=float) - self.y_mean_) / self.y_std_
        if self.lambda_ is not None:
            y0 = _yj(y0, self.lambda_)
        return (y0 - self.z_mean_) / self.z_std_

    def _inverse_y(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = z * self.z_std_ + self.z_mean_
        if self.lambda_ is None:
            y0, dy = t, np.ones_like(t)
        else:
            y0, dy = _yj_inverse(t, self.lambda_)
        return y0 * self.y_std_ + self.y_mean_, dy * self.y_std_ * self.z_std_

    # -- kernel --------------------------------------------------------------------------------
    @staticmethod
    def _kernel(A: np.ndarray, B: np.ndarray, ls: np.ndarray, s2: float) -> np.ndarray:
        A2, B2 = A / ls, B / ls
        r2 = (A2 * A2).sum(1)[:, None] + (B2 * B2).sum(1)[None, :] - 2.0 * A2 @ B2.T
        r = np.sqrt(np.maximum(r2, 0.0))
        return s2 * (1 + _SQRT5 * r + 5.0 / 3.0 * r * r) * np.exp(-_SQRT5 * r)

    # -- fitting -------------------------------------------------------------------------------
    def _unpack(self, theta: np.ndarray, d: int, w: int):
        ls = np.exp(theta[:d])
        s2 = math.exp(theta[d])
        noise = math.exp(theta[d + 1])
        a = np.exp(theta[d + 2:d + 2 + w])
        b = np.exp(theta[d + 2 + w:d + 2 + 2 * w])
        return ls, s2, noise, a, b

    def _objective(self, theta, U, z, warp_idx, prior_mu, D2=None):
        from scipy.linalg import cho_solve
        from scipy.linalg.lapack import dpotri
        n, d = U.shape
        w = warp_idx.size
        ls, s2, noise, a, b = self._unpack(theta, d, w)
        X = U
        if w:
            X = U.copy()
            Wv, dWa, dWb = self._warp(U[:, warp_idx], a, b)
            X[:, warp_idx] = Wv
        if D2 is None:
            D2 = ((X[:, None, :] - X[None, :, :]) ** 2).reshape(n * n, d)
        inv_l2 = 1.0 / ls ** 2
        r2 = (D2 @ inv_l2).reshape(n, n)
        r = np.sqrt(r2)
        e = np.exp(-_SQRT5 * r)
        Kf = s2 * (1 + _SQRT5 * r + 5.0 / 3.0 * r2) * e
        K = Kf + (noise + 1e-8) * np.eye(n)
        try:
            L = np.linalg.cholesky(K)
        except np.linalg.LinAlgError:
            return 1e10, np.zeros_like(theta)
        alpha = cho_solve((L, True), z)
        nll = 0.5 * z @ alpha + np.log(np.diag(L)).sum() + 0.5 * n * math.log(2 * math.pi)
        Kinv, info = dpotri(L, lower=1)
        Kinv = np.tril(Kinv) + np.tril(Kinv, -1).T
        Wm = Kinv - np.outer(alpha, alpha)
        common = s2 * (5.0 / 3.0) * (1 + _SQRT5 * r) * e
        M = Wm * common
        grad = np.zeros_like(theta)
        grad[:d] = 0.5 * (M.ravel() @ D2) * inv_l2
        grad[d] = 0.5 * (Wm * Kf).sum()
        grad[d + 1] = 0.5 * np.trace(Wm) * noise
        if w:
            Xw = X[:, warp_idx]
            # dNLL/dx_ik = -(x_ik * sum_j M_ij - sum_j M_ij x_jk) / l_k^2
            dx = -(Xw * M.sum(1)[:, None] - M @ Xw) * inv_l2[warp_idx]
            grad[d + 2:d + 2 + w] = (dx * dWa).sum(0) * a
            grad[d + 2 + w:] = (dx * dWb).sum(0) * b
        # priors (negative log densities up to constants)
        ls_mu, ls_sd = prior_mu, math.sqrt(3.0)
        nll += 0.5 * (((theta[:d] - ls_mu) / ls_sd) ** 2).sum()
        grad[:d] += (theta[:d] - ls_mu) / ls_sd ** 2
        nll += 0.5 * theta[d] ** 2
        grad[d] += theta[d]
        nz_mu, nz_sd = math.log(1e-2), 2.0
        nll += 0.5 * ((theta[d + 1] - nz_mu) / nz_sd) ** 2
        grad[d + 1] += (theta[d + 1] - nz_mu) / nz_sd ** 2
        if w:
            wt = theta[d + 2:]
            nll += 0.5 * (wt ** 2).sum() / 0.75 ** 2
            grad[d + 2:] += wt / 0.75 ** 2
        return float(nll), grad

    def fit(self, X: Any, y: Any) -> "GaussianProcess":
        from scipy.optimize import minimize

        if self.lengthscale_prior not in LENGTHSCALE_PRIORS:
            raise ValueError(f"lengthscale_prior must be one of {list(LENGTHSCALE_PRIORS)}, "
                             f"got {self.lengthscale_prior!r}")
        if self.y_transform not in ("yeo-johnson", "standardize"):
            raise ValueError(
                f"y_transform must be 'yeo-johnson' or 'standardize', got {self.y_transform!r}")
        X, y = check_Xy(X, y, min_samples=1)
        n, d = X.shape
        rng = as_generator(self.random_state)

        if self.normalize_inputs:
            lo, hi = X.min(0), X.max(0)
            self.x_offset_, self.x_scale_ = lo, np.where(hi > lo, hi - lo, 1.0)
        else:
            self.x_offset_, self.x_scale_ = np.zeros(d), np.ones(d)
        U = (X - self.x_offset_) / self.x_scale_
        if self.input_warping:
            idx = np.arange(d) if self.warp_columns is None else np.asarray(self.warp_columns, dtype=int)
            if idx.size and (U[:, idx].min() < -1e-9 or U[:, idx].max() > 1 + 1e-9):
                raise ValueError(
                    "input_warping needs warped columns in [0, 1]; got values in "
                    f"[{U[:, idx].min():.3g}, {U[:, idx].max():.3g}]; set normalize_inputs=True "
                    "or scale X to the unit cube")
        else:
            idx = np.zeros(0, dtype=int)
        self.warp_idx_ = idx

        self.y_mean_ = float(y.mean())
        std = float(y.std())
        self.y_std_ = std if std > 1e-12 else 1.0
        y0 = (y - self.y_mean_) / self.y_std_
        self.lambda_ = None
        if self.y_transform == "yeo-johnson" and n >= 3 and std > 1e-12:
            self.lambda_ = _yj_lambda(y0)
            y0 = _yj(y0, self.lambda_)
        self.z_mean_ = float(y0.mean())
        zs = float(y0.std())
        self.z_std_ = zs if zs > 1e-12 else 1.0
        z = (y0 - self.z_mean_) / self.z_std_

        w = idx.size
        prior_mu = math.sqrt(2.0) + 0.5 * math.log(d) if self.lengthscale_prior == "dim-scaled" else 0.0
        ls_bounds = [(math.log(1e-2), math.log(1e3))] * d
        if self.categorical_columns is not None:
            cat = np.asarray(self.categorical_columns, dtype=int)
            if cat.size and (cat.min() < 0 or cat.max() >= d):
                raise ValueError(
                    f"categorical_columns must index the {d} columns of X, got {cat.tolist()}")
            for c in cat:
                ls_bounds[c] = (math.log(1e-2), math.log(_CAT_MAX_LS))
        bounds = (ls_bounds + [(math.log(1e-2), math.log(1e2))]
                  + [(math.log(1e-6), 0.0)] + [(math.log(0.1), math.log(10.0))] * (2 * w))
        start = np.concatenate([np.full(d, math.log(0.5 * math.sqrt(d))), [0.0, math.log(1e-2)],
                                np.zeros(2 * w)])
        starts = [np.clip(start, [b[0] for b in bounds], [b[1] for b in bounds])]
        for _ in range(max(self.n_restarts, 1) - 1):
            s = start.copy()
            s[:d] = rng.normal(prior_mu, math.sqrt(3.0), d)
            s[d + 2:] = rng.normal(0.0, 0.75, 2 * w)
            starts.append(np.clip(s, [b[0] for b in bounds], [b[1] for b in bounds]))
        # Hyperparameters from a random subset when n is large: the marginal likelihood costs
        # O(n^3) per step, while conditioning on every point afterwards costs one Cholesky.
        sub = np.arange(n)
        if self.max_fit_samples is not None and n > self.max_fit_samples:
            sub = np.sort(rng.choice(n, self.max_fit_samples, replace=False))
        Us, zs_ = U[sub], z[sub]
        D2 = None if w else ((Us[:, None, :] - Us[None, :, :]) ** 2).reshape(-1, d)
        best = None
        for s in starts:
            res = minimize(self._objective, s, args=(Us, zs_, idx, prior_mu, D2), jac=True,
                           method="L-BFGS-B", bounds=bounds, options={"maxiter": self.max_iter})
            if best is None or res.fun < best.fun:
                best = res
        ls, s2, noise, a, b = self._unpack(best.x, d, w)
        self.lengthscales_, self.signal_var_, self.noise_var_ = ls, s2, noise
        self.warp_a_, self.warp_b_ = a, b
        self.n_features_in_ = d
        self._set_data(self._scale_X(X), z)
        return self

    def _set_data(self, Xw: np.ndarray, z: np.ndarray) -> None:
        from scipy.linalg import cho_solve
        K = self._kernel(Xw, Xw, self.lengthscales_, self.signal_var_)
        K[np.diag_indices_from(K)] += self.noise_var_ + 1e-8
        jitter = 0.0
        for _ in range(6):
            try:
                L = np.linalg.cholesky(K + jitter * np.eye(len(K)))
                break
            except np.linalg.LinAlgError:
                jitter = max(jitter * 10, 1e-8)
        else:  # pragma: no cover - only with pathological duplicated inputs
            raise np.linalg.LinAlgError("kernel matrix is not positive definite even with jitter")
        self.X_train_ = Xw
        self.z_train_ = z
        self.L_ = L
        self.alpha_ = cho_solve((L, True), z)

    def condition(self, X: Any, z: Any) -> "GaussianProcess":
        """A copy that also observed ``X`` with working-space targets ``z`` (same hyperparameters):
        the cheap update behind Kriging-believer batches."""
        check_fitted(self, "alpha_")
        X = check_X(X, self.n_features_in_)
        other = copy.copy(self)
        other._set_data(np.vstack([self.X_train_, self._scale_X(X)]),
                        np.concatenate([self.z_train_, np.asarray(z, dtype=float)]))
        return other

    # -- prediction ----------------------------------------------------------------------------
    def predict_latent(self, X: Any, full_cov: bool = False):
        """Posterior mean and variance of the latent function in the working space (noise
        excluded); with ``full_cov`` the covariance matrix instead of the variance."""
        from scipy.linalg import solve_triangular
        check_fitted(self, "alpha_")
        X = check_X(X, self.n_features_in_)
        Xw = self._scale_X(X)
        Ks = self._kernel(Xw, self.X_train_, self.lengthscales_, self.signal_var_)
        mean = Ks @ self.alpha_
        V = solve_triangular(self.L_, Ks.T, lower=True)
        if full_cov:
            return mean, self._kernel(Xw, Xw, self.lengthscales_, self.signal_var_) - V.T @ V
        var = np.maximum(self.signal_var_ - (V * V).sum(0), 1e-12)
        return mean, var

    def sample_latent(self, X: Any, n_samples: int, random_state: Any = None) -> np.ndarray:
        """Joint posterior draws of the latent function at ``X``: shape (n_samples, len(X))."""
        mean, cov = self.predict_latent(X, full_cov=True)
        rng = as_generator(random_state)
        cov[np.diag_indices_from(cov)] += 1e-8
        for jitter in (0.0, 1e-6, 1e-4, 1e-2):
            try:
                L = np.linalg.cholesky(cov + jitter * np.eye(len(cov)))
                break
            except np.linalg.LinAlgError:
                continue
        else:
            L = np.diag(np.sqrt(np.maximum(np.diag(cov), 0.0)))
        return mean[None, :] + rng.standard_normal((n_samples, len(mean))) @ L.T

    def predict(self, X: Any):
        mean, var = self.predict_latent(X)
        y, dy = self._inverse_y(mean)
        return y, dy * dy * (var + self.noise_var_)
