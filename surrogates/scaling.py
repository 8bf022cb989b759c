"""Scaling-law fits: Chinchilla and Kaplan loss laws, Step Law hyperparameter laws.

Every fit records what the (Mis)Fitting survey (Li et al. 2024) asks to be reported with a law:
the functional form, the fitting loss, the optimiser, the initialisation and which points were
kept or dropped. Intervals come from a seeded bootstrap over runs (rows resampled with
replacement); they are confidence intervals of the fitted law, not prediction intervals for a
single new run, which would also carry run-to-run noise.

Units: N is the parameter count, D the number of training tokens, C the training compute in
FLOPs (6·N·D when not given), loss in nats per token, batch size in tokens per optimiser step
(as in Step Law).

Contract, deliberately not the other surrogates' ``fit(X, y) -> self`` / ``predict(X) -> (mean,
variance)``: a law is a handful of named constants whose intervals are the result, so

- the input is a ``Runs`` table (``load_runs`` validates a CSV or DataFrame into one), not X, y;
- ``fit_chinchilla``, ``fit_size_law``, ``fit_kaplan`` and ``fit_step_law`` are functions that
  return a frozen fit (``ChinchillaFit``, ``SizeLawFit``, ``KaplanFit``, ``StepLawFit``): fitted
  once, never refitted in place, its constants in ``params`` (or ``constants``) with ``intervals``;
- the loss laws' ``predict`` returns ``(mean, low, high)``, the bootstrap 95% interval of the
  fitted law (NaN bounds without bootstrap), not a variance; ``StepLawFit.predict`` returns the
  predicted ``lr`` and ``batch_size`` and ``lr_interval`` their interval;
- ``to_dict`` gives everything a report needs (form, formula, fitting loss, optimiser, points kept).

The exception is ``ScalingLawRegressor``, the law as a predictor of larger models: it keeps the
surrogates' contract (``fit(X, y, groups=None) -> self`` with X = (N, D), ``predict(X) -> (mean,
variance)``, fitted attributes ending in ``_``) and adds ``predict_interval``, a prediction
interval for one new run (see docs/benchmarks/scaling-extrapolation.md for how it extrapolates).
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize, minimize_scalar

from surrogates._validation import as_generator, check_fitted

__all__ = [
    "ChinchillaFit",
    "KaplanFit",
    "Runs",
    "LAW_FORMS",
    "STEP_LAW_PUBLISHED",
    "ScalingDataError",
    "ScalingLawRegressor",
    "SizeLawFit",
    "StepLawFit",
    "fit_chinchilla",
    "fit_kaplan",
    "fit_size_law",
    "fit_step_law",
    "leave_largest_out",
    "load_runs",
]

CHINCHILLA_MIN_POINTS = 5
KAPLAN_MIN_POINTS = 3
KAPLAN_VARIABLES = ("N", "D", "C")

# Epoch AI's initialisation grid for the log-parametrised Chinchilla fit (4,500 starts).
_GRID_ALPHA_BETA = (0.0, 0.5, 1.0, 1.5, 2.0)
_GRID_E = (-1.0, -0.5, 0.0, 0.5, 1.0)
_GRID_A_B = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)


class ScalingDataError(ValueError):
    """A table of runs cannot be used for the requested fit; the message says why and what to do."""


@dataclass(frozen=True)
class Runs:
    """Validated runs as float arrays of equal length; lr and batch_size are None when absent."""

    N: np.ndarray
    D: np.ndarray
    C: np.ndarray
    loss: np.ndarray
    lr: np.ndarray | None = None
    batch_size: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.N.shape[0])

    def subset(self, mask_or_index: np.ndarray) -> Runs:
        pick = np.asarray(mask_or_index)
        return Runs(
            N=self.N[pick],
            D=self.D[pick],
            C=self.C[pick],
            loss=self.loss[pick],
            lr=None if self.lr is None else self.lr[pick],
            batch_size=None if self.batch_size is None else self.batch_size[pick],
        )


# --------------------------------------------------------------------------- loading


def _numeric_column(df: pd.DataFrame, col: str) -> np.ndarray:
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    unparsable = df[col].notna().to_numpy() & np.isnan(values)
    if unparsable.any():
        rows = np.flatnonzero(unparsable)
        raise ScalingDataError(
            f"column '{col}' must be numeric, got {rows.size} non-numeric value(s) "
            f"(first at row {rows[0]}: {df[col].iloc[rows[0]]!r})"
        )
    return values


def _require_positive(values: np.ndarray, col: str) -> None:
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ScalingDataError(
            f"column '{col}' must be positive and finite in every row, got {rows.size} bad "
            f"row(s) (first at row {rows[0]}: {values[rows[0]]!r}); fix or drop those rows"
        )


def _missing(df: pd.DataFrame, what: str, col: str, flag: str) -> ScalingDataError:
    found = ", ".join(repr(str(c)) for c in df.columns) or "none"
    return ScalingDataError(
        f"no column '{col}' for {what} (columns found: {found}); name the right one with {flag}"
    )


def load_runs(
    source: str | pd.DataFrame,
    *,
    params_col: str = "params",
    tokens_col: str = "tokens",
    loss_col: str = "loss",
    flops_col: str = "flops",
    lr_col: str = "lr",
    bs_col: str = "batch_size",
) -> Runs:
    """Read runs from a CSV path or a DataFrame and validate them.

    Tokens may be absent when FLOPs are given (D = C / (6N)); FLOPs default to 6·N·D. The lr and
    batch-size columns are optional here; `fit_step_law` requires and validates them. Raises
    `ScalingDataError` with one line naming the column, the bad rows and the fix.
    """
    if isinstance(source, pd.DataFrame):
        df = source
    else:
        try:
            df = pd.read_csv(source)
        except FileNotFoundError:
            raise ScalingDataError(f"runs file {source!r} does not exist") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ScalingDataError(f"cannot read {source!r} as CSV: {exc}".splitlines()[0]) from None
    if len(df) == 0:
        raise ScalingDataError("the runs table has no rows")

    if params_col not in df.columns:
        raise _missing(df, "model size N", params_col, "params_col= / --params-col")
    if loss_col not in df.columns:
        raise _missing(df, "the loss", loss_col, "loss_col= / --loss-col")
    has_tokens = tokens_col in df.columns
    has_flops = flops_col in df.columns
    if not has_tokens and not has_flops:
        found = ", ".join(repr(str(c)) for c in df.columns)
        raise ScalingDataError(
            f"need a tokens column '{tokens_col}' or a FLOPs column '{flops_col}' "
            f"(columns found: {found}); name one with --tokens-col or --flops-col"
        )

    n = _numeric_column(df, params_col)
    _require_positive(n, params_col)
    if has_flops:
        c = _numeric_column(df, flops_col)
        _require_positive(c, flops_col)
    if has_tokens:
        d = _numeric_column(df, tokens_col)
        _require_positive(d, tokens_col)
    else:
        d = c / (6.0 * n)
    if not has_flops:
        c = 6.0 * n * d

    loss = _numeric_column(df, loss_col)
    nan_rows = np.flatnonzero(np.isnan(loss))
    if nan_rows.size:
        shown = ", ".join(str(r) for r in nan_rows[:5]) + (", ..." if nan_rows.size > 5 else "")
        raise ScalingDataError(
            f"column '{loss_col}' has NaN in {nan_rows.size} of {len(loss)} rows (rows {shown}); "
            "drop or fill those runs"
        )
    _require_positive(loss, loss_col)

    # Only the Step Law fit uses these, and it validates them: a loss-law fit should not fail
    # because some runs lack a learning rate.
    lr = pd.to_numeric(df[lr_col], errors="coerce").to_numpy(dtype=float) if lr_col in df.columns else None
    bs = pd.to_numeric(df[bs_col], errors="coerce").to_numpy(dtype=float) if bs_col in df.columns else None
    return Runs(N=n, D=d, C=c, loss=loss, lr=lr, batch_size=bs)


def _drop_highest_loss(runs: Runs, k: int) -> Runs:
    """Runs without the k highest-loss points (Epoch AI drop 5 such outliers before refitting)."""
    if k < 0:
        raise ValueError(f"drop_highest_loss must be >= 0, got {k}")
    if k >= len(runs):
        raise ScalingDataError(f"cannot drop the {k} highest-loss points from {len(runs)} runs")
    if k == 0:
        return runs
    keep = np.sort(np.argsort(runs.loss, kind="stable")[: len(runs) - k])
    return runs.subset(keep)


def _percentile_interval(samples: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.nanpercentile(samples, [2.5, 97.5], axis=axis)
    return low, high


def _as_output(value: np.ndarray, scalar: bool) -> Any:
    return float(np.asarray(value).reshape(-1)[0]) if scalar else value


# --------------------------------------------------------------------------- Chinchilla


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _chinchilla_objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Sum of Huber(LSE(a - α log N, b - β log D, e) - log L) and its exact gradient."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    lse = top + np.log(total)
    weights /= total
    r = lse - log_loss
    dr = np.clip(r, -delta, delta)
    grad = np.array(
        [
            np.dot(dr, weights[0]),
            np.dot(dr, weights[1]),
            np.dot(dr, weights[2]),
            -np.dot(dr * weights[0], log_n),
            -np.dot(dr * weights[1], log_d),
        ]
    )
    return float(_huber(r, delta).sum()), grad


def _single_threaded_blas() -> contextlib.AbstractContextManager[Any]:
    """L-BFGS-B calls BLAS on 5-vectors; multithreaded OpenBLAS makes each step ~20x slower.

    threadpoolctl ships with scikit-learn, a dependency of the project; without it the limit is
    skipped (slower, same result).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _lbfgs(theta0: np.ndarray, args: tuple, *, tight: bool = False) -> Any:
    # The summed Huber objective is ~1e-3 at the optimum, so scipy's default tolerances stop
    # while the exponents still move in the fourth decimal, and a bootstrap refit started at the
    # full-data optimum would not move at all. Grid starts only need to find the right basin.
    options = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000} if tight else {}
    return minimize(_chinchilla_objective, theta0, args=args, jac=True, method="L-BFGS-B", options=options)


def _theta_to_params(theta: np.ndarray) -> np.ndarray:
    """(a, b, e, α, β) -> (E, A, B, α, β)."""
    a, b, e, alpha, beta = np.moveaxis(np.asarray(theta), -1, 0)
    return np.stack([np.exp(e), np.exp(a), np.exp(b), alpha, beta], axis=-1)


_CHINCHILLA_NAMES = ("E", "A", "B", "alpha", "beta")


def _chinchilla_loss(p: np.ndarray, n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Loss for parameter rows p[..., (E, A, B, α, β)] broadcast against n and d."""
    e, a, b, alpha, beta = (p[..., i, None] for i in range(5))
    return e + a / n**alpha + b / d**beta


def _compute_optimal_nd(p: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e, a, b, alpha, beta = (p[..., i, None] for i in range(5))
    g = (alpha * a / (beta * b)) ** (1.0 / (alpha + beta))
    n_opt = g * (c / 6.0) ** (beta / (alpha + beta))
    return n_opt, c / (6.0 * n_opt)


def _inference_aware(
    p: np.ndarray, target_loss: float, inference_tokens: float
) -> tuple[float, float]:
    """(N, D) minimising 6·N·D + 2·N·T subject to L(N, D) = target_loss; NaN when unreachable."""
    e, a, b, alpha, beta = p
    headroom = target_loss - e
    if not headroom > 0:
        return float("nan"), float("nan")
    # Below n_min the model term alone exceeds the headroom, so no D reaches the target.
    log_n_min = np.log(a / headroom) / alpha

    def log_cost(u: np.ndarray) -> np.ndarray:
        rest = headroom - a * np.exp(-alpha * u)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_d = (np.log(b) - np.log(rest)) / beta
            cost = np.logaddexp(np.log(6.0) + u + log_d, np.log(2.0 * inference_tokens) + u)
        return np.where(rest > 0, cost, np.inf)

    grid = log_n_min + np.geomspace(1e-9, 40.0, 4000)
    i = int(np.argmin(log_cost(grid)))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = minimize_scalar(
        lambda u: float(log_cost(np.array([u]))[0]), bounds=(lo, hi), method="bounded",
        options={"xatol": 1e-10},
    )
    n_opt = float(np.exp(res.x))
    d_opt = float((b / (headroom - a * n_opt**-alpha)) ** (1.0 / beta))
    return n_opt, d_opt


@dataclass(frozen=True)
class ChinchillaFit:
    """L(N, D) = E + A/N^alpha + B/D^beta fitted as Hoffmann et al. (Approach 3) and Epoch AI.

    `bootstrap_params` holds one (E, A, B, alpha, beta) row per bootstrap refit; every interval
    is its 2.5-97.5 percentile range (NaN when the fit was made with n_bootstrap=0).
    """

    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    bootstrap_params: np.ndarray
    objective: float
    converged: bool
    n_points: int
    n_dropped: dict[str, int]
    huber_delta: float
    n_starts: int
    grid_size: int
    seed: int

    @property
    def _p(self) -> np.ndarray:
        return np.array([self.params[k] for k in _CHINCHILLA_NAMES])

    def predict(self, N: Any, D: Any) -> tuple[Any, Any, Any]:
        """Predicted loss with its bootstrap 95% interval: (mean, low, high)."""
        n, d = np.broadcast_arrays(np.asarray(N, float), np.asarray(D, float))
        scalar = n.ndim == 0
        n, d = np.atleast_1d(n), np.atleast_1d(d)
        _check_positive_inputs(N=n, D=d)
        mean = _chinchilla_loss(self._p, n, d)
        low, high = self._band(lambda p: _chinchilla_loss(p, n, d), n.shape)
        return tuple(_as_output(v, scalar) for v in (mean, low, high))  # type: ignore[return-value]

    def _band(self, fn: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        if self.bootstrap_params.shape[0] == 0:
            return np.full(shape, np.nan), np.full(shape, np.nan)
        return _percentile_interval(fn(self.bootstrap_params))

    def compute_optimal(self, C: Any) -> dict[str, Any]:
        """Closed-form compute-optimal allocation at training compute C (FLOPs, C = 6·N·D).

        N* = G·(C/6)^(β/(α+β)) with G = (αA/(βB))^(1/(α+β)), D* = C/(6N*). Returns N, D, loss
        and tokens_per_param, and `intervals` for each from the bootstrap refits.
        """
        c = np.asarray(C, float)
        scalar = c.ndim == 0
        c = np.atleast_1d(c)
        _check_positive_inputs(C=c)

        def quantities(p: np.ndarray) -> dict[str, np.ndarray]:
            n_opt, d_opt = _compute_optimal_nd(p, c)
            return {
                "N": n_opt,
                "D": d_opt,
                "loss": _chinchilla_loss(p, n_opt, d_opt),
                "tokens_per_param": d_opt / n_opt,
            }

        point = {k: v[0] for k, v in quantities(self._p[None, :]).items()}
        out: dict[str, Any] = {"compute": _as_output(c, scalar)}
        out.update({k: _as_output(v, scalar) for k, v in point.items()})
        intervals: dict[str, Any] = {}
        boot = quantities(self.bootstrap_params) if self.bootstrap_params.shape[0] else None
        for k in point:
            if boot is None:
                low, high = np.full(c.shape, np.nan), np.full(c.shape, np.nan)
            else:
                low, high = _percentile_interval(boot[k])
            intervals[k] = (_as_output(low, scalar), _as_output(high, scalar))
        out["intervals"] = intervals
        return out

    def inference_aware_optimal(
        self,
        *,
        inference_tokens: float,
        train_compute: float | None = None,
        target_loss: float | None = None,
    ) -> dict[str, Any]:
        """Allocation minimising lifetime FLOPs, in the sense of Sardana et al. ("Beyond
        Chinchilla-Optimal").

        Solves  min over (N, D) of  6·N·D + 2·N·T  subject to  L(N, D) = ℓ,  where T is
        `inference_tokens` (tokens served over the model's life, 2·N FLOPs each) and ℓ is either
        `target_loss` or the loss of the Chinchilla-optimal model at `train_compute`. Give exactly
        one of the two. On the constraint D(N) = (B / (ℓ − E − A/N^α))^(1/β), so the problem is
        one-dimensional in log N (dense grid, then bounded Brent). With T = 0 it returns the
        Chinchilla-optimal allocation. Intervals repeat the solve for every bootstrap refit (with
        its own ℓ when `train_compute` is given); refits that cannot reach ℓ are left out.
        """
        if (train_compute is None) == (target_loss is None):
            raise ValueError("give exactly one of train_compute or target_loss")
        if not (np.isfinite(inference_tokens) and inference_tokens >= 0):
            raise ValueError(f"inference_tokens must be >= 0, got {inference_tokens}")
        if train_compute is not None:
            _check_positive_inputs(train_compute=np.atleast_1d(float(train_compute)))

        def solve(p: np.ndarray) -> dict[str, float]:
            if train_compute is not None:
                n_c, d_c = _compute_optimal_nd(p[None, :], np.array([float(train_compute)]))
                loss = float(_chinchilla_loss(p[None, :], n_c[0], d_c[0])[0, 0])
            else:
                loss = float(target_loss)  # type: ignore[arg-type]
            n_opt, d_opt = _inference_aware(p, loss, float(inference_tokens))
            n_ref, d_ref = _inference_aware(p, loss, 0.0)
            return {
                "N": n_opt,
                "D": d_opt,
                "loss": loss,
                "tokens_per_param": d_opt / n_opt,
                "train_flops": 6.0 * n_opt * d_opt,
                "inference_flops": 2.0 * n_opt * inference_tokens,
                "total_flops": 6.0 * n_opt * d_opt + 2.0 * n_opt * inference_tokens,
                "chinchilla_N": n_ref,
                "chinchilla_D": d_ref,
                "chinchilla_total_flops": 6.0 * n_ref * d_ref + 2.0 * n_ref * inference_tokens,
            }

        point = solve(self._p)
        if not np.isfinite(point["N"]):
            raise ValueError(
                f"target loss {point['loss']:.4g} must exceed the fitted irreducible loss "
                f"E={self.params['E']:.4g}; no model reaches it"
            )
        out: dict[str, Any] = {"inference_tokens": float(inference_tokens), **point}
        keys = ("N", "D", "loss", "tokens_per_param", "total_flops")
        if self.bootstrap_params.shape[0]:
            rows = [solve(p) for p in self.bootstrap_params]
            samples = np.array([[r[k] for k in keys] for r in rows])
            low, high = _percentile_interval(samples)
            out["intervals"] = {k: (float(lo), float(hi)) for k, lo, hi in zip(keys, low, high)}
        else:
            out["intervals"] = {k: (float("nan"), float("nan")) for k in keys}
        out["solves"] = (
            "min 6*N*D + 2*N*inference_tokens s.t. L(N, D) = loss, where loss = "
            + ("target_loss" if target_loss is not None else "L at the Chinchilla-optimal (N, D) for train_compute")
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": "chinchilla",
            "formula": "L(N, D) = E + A / N**alpha + B / D**beta",
            "params": dict(self.params),
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "interval_method": f"bootstrap percentile 95% over {self.bootstrap_params.shape[0]} row resamples, seed {self.seed}",
            "fitting_loss": f"sum of Huber(delta={self.huber_delta:g}) of log-sum-exp(a - alpha*log N, b - beta*log D, e) - log L",
            "optimizer": (
                f"scipy L-BFGS-B from the best of {self.n_starts} starts, pre-screened by objective on "
                f"Epoch AI's {self.grid_size}-point grid; bootstrap refits start at the full-data optimum"
            ),
            "objective": self.objective,
            "converged": self.converged,
            "n_points": self.n_points,
            "n_dropped": dict(self.n_dropped),
        }


def _check_positive_inputs(**arrays: np.ndarray) -> None:
    for name, values in arrays.items():
        if not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError(f"{name} must be positive and finite, got {values.tolist()}")


def _epoch_grid() -> np.ndarray:
    return np.array(
        list(itertools.product(_GRID_A_B, _GRID_A_B, _GRID_E, _GRID_ALPHA_BETA, _GRID_ALPHA_BETA))
    )


def _grid_objectives(grid: np.ndarray, args: tuple) -> np.ndarray:
    log_n, log_d, log_loss, delta = args
    a, b, e, alpha, beta = (grid[:, i, None] for i in range(5))
    lse = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
    return _huber(lse - log_loss, delta).sum(axis=1)


def fit_chinchilla(
    runs: Runs,
    *,
    huber_delta: float = 1e-3,
    n_bootstrap: int = 200,
    seed: int = 0,
    n_starts: int | None = 100,
    drop_highest_loss: int = 0,
) -> ChinchillaFit:
    """Fit L(N, D) = E + A/N^α + B/D^β as Hoffmann et al. and Epoch AI's replication do.

    The parameters are (a, b, e, α, β) with A = e^a, B = e^b, E = e^e; the objective is the sum
    of Huber(δ) of LSE(a − α log N, b − β log D, e) − log L, minimised with L-BFGS-B. Starts come
    from Epoch AI's grid (α, β ∈ {0, .5, …, 2}, e ∈ {−1, …, 1}, a, b ∈ {0, 5, …, 25}); with
    `n_starts` set, only that many grid points with the lowest objective are optimised (on the
    Epoch data the best 20 already find the same optimum as all 4,500), `None` runs all. The best
    optimum wins. Each bootstrap refit resamples rows and starts from the full-data optimum.
    """
    if huber_delta <= 0:
        raise ValueError(f"huber_delta must be > 0, got {huber_delta}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if n_starts is not None and n_starts < 1:
        raise ValueError(f"n_starts must be >= 1 or None, got {n_starts}")
    kept = _drop_highest_loss(runs, drop_highest_loss)
    if len(kept) < CHINCHILLA_MIN_POINTS:
        raise ScalingDataError(
            f"the Chinchilla form has 5 parameters and needs at least {CHINCHILLA_MIN_POINTS} "
            f"runs, got {len(kept)}" + (f" after dropping {drop_highest_loss}" if drop_highest_loss else "")
        )
    args = (np.log(kept.N), np.log(kept.D), np.log(kept.loss), huber_delta)

    with _single_threaded_blas():
        best, n_tried, grid_size, boot = _fit_chinchilla_theta(kept, args, n_starts, n_bootstrap, seed)
    point = _theta_to_params(best.x)
    params = {k: float(v) for k, v in zip(_CHINCHILLA_NAMES, point)}
    if n_bootstrap:
        low, high = _percentile_interval(boot)
        intervals = {k: (float(lo), float(hi)) for k, lo, hi in zip(_CHINCHILLA_NAMES, low, high)}
    else:
        intervals = {k: (float("nan"), float("nan")) for k in _CHINCHILLA_NAMES}
    return ChinchillaFit(
        params=params,
        intervals=intervals,
        bootstrap_params=boot,
        objective=float(best.fun),
        converged=bool(best.success),
        n_points=len(kept),
        n_dropped={"highest_loss": drop_highest_loss},
        huber_delta=huber_delta,
        n_starts=n_tried,
        grid_size=grid_size,
        seed=seed,
    )


def _fit_chinchilla_theta(
    kept: Runs, args: tuple, n_starts: int | None, n_bootstrap: int, seed: int
) -> tuple[Any, int, int, np.ndarray]:
    """Best-of-grid L-BFGS-B optimum (scipy result) and the bootstrap (E, A, B, α, β) rows."""
    grid = _epoch_grid()
    if n_starts is not None:
        grid_values = _grid_objectives(grid, args)
        starts = grid[np.argsort(grid_values, kind="stable")[:n_starts]]
    else:
        starts = grid
    best = None
    for theta0 in starts:
        res = _lbfgs(theta0, args)
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    assert best is not None  # grid points always give a finite objective
    best = _lbfgs(best.x, args, tight=True)

    rng = np.random.default_rng(seed)
    boot = np.empty((n_bootstrap, 5))
    n = len(kept)
    for i in range(n_bootstrap):
        idx = rng.integers(0, n, size=n)
        res = _lbfgs(best.x, (args[0][idx], args[1][idx], args[2][idx], args[3]), tight=True)
        boot[i] = _theta_to_params(res.x)
    return best, len(starts), len(grid), boot


# --------------------------------------------------------------------------- size law at one budget


_SIZE_NAMES = ("E", "A", "alpha")
_GRID_SIZE_ALPHA = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def _size_objective(theta: np.ndarray, log_n: np.ndarray, log_loss: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Sum of Huber(LSE(a - α log N, e) - log L) and its exact gradient."""
    a, e, alpha = theta
    t1 = a - alpha * log_n
    lse = np.logaddexp(t1, e)
    w1 = np.exp(t1 - lse)
    r = lse - log_loss
    dr = np.clip(r, -delta, delta)
    grad = np.array([np.dot(dr, w1), np.dot(dr, 1.0 - w1), -np.dot(dr * w1, log_n)])
    return float(_huber(r, delta).sum()), grad


@dataclass(frozen=True)
class SizeLawFit:
    """L(N) = E + A/N^alpha at one token budget D: the Chinchilla form with the data term folded
    into E, for ladders whose every rung trains on the target's tokens.

    Fitted like `fit_chinchilla` (Huber on log residuals, L-BFGS-B from a grid); `bootstrap_params`
    holds one (E, A, alpha) row per bootstrap refit.
    """

    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    bootstrap_params: np.ndarray
    D: float
    objective: float
    converged: bool
    n_points: int
    huber_delta: float
    alpha_bounds: tuple[float, float]
    seed: int

    def predict(self, N: Any) -> tuple[Any, Any, Any]:
        """Predicted loss at D with its bootstrap 95% interval: (mean, low, high)."""
        n = np.asarray(N, float)
        scalar = n.ndim == 0
        n = np.atleast_1d(n)
        _check_positive_inputs(N=n)
        p = np.array([self.params[k] for k in _SIZE_NAMES])
        mean = p[0] + p[1] / n ** p[2]
        if self.bootstrap_params.shape[0]:
            b = self.bootstrap_params
            low, high = _percentile_interval(b[:, 0:1] + b[:, 1:2] / n[None, :] ** b[:, 2:3])
        else:
            low, high = np.full(n.shape, np.nan), np.full(n.shape, np.nan)
        return tuple(_as_output(v, scalar) for v in (mean, low, high))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": "size-law",
            "formula": "L(N) = E + A / N**alpha at D tokens (E includes the data term B / D**beta)",
            "params": dict(self.params),
            "D": self.D,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "interval_method": f"bootstrap percentile 95% over {self.bootstrap_params.shape[0]} row resamples, seed {self.seed}",
            "fitting_loss": f"sum of Huber(delta={self.huber_delta:g}) of log-sum-exp(a - alpha*log N, e) - log L",
            "optimizer": f"scipy L-BFGS-B from the best of a (a, e, alpha) grid, alpha bounded to {list(self.alpha_bounds)}",
            "objective": self.objective,
            "converged": self.converged,
            "n_points": self.n_points,
        }


def fit_size_law(
    runs: Runs,
    *,
    huber_delta: float = 1e-3,
    n_bootstrap: int = 200,
    seed: int = 0,
    alpha_bounds: tuple[float, float] = (0.0, 2.0),
) -> SizeLawFit:
    """Fit L(N) = E + A/N^α to runs that all trained on the same number of tokens D.

    At one D the Chinchilla data term B/D^β is a constant and folds into E, so this is the
    Chinchilla fit (parameters a = log A, e = log E, α; Huber(δ) on log-loss residuals; L-BFGS-B
    from the best points of a grid over α ∈ {0.1, …, 2}, e spanning the observed losses, a
    solving the smallest model exactly) with one variable fewer. α is kept in `alpha_bounds`:
    past 2 the term is a step, not a power law. Bootstrap refits resample rows and start at the
    full-data optimum; a resample with fewer than 3 distinct N is redrawn.
    """
    if huber_delta <= 0:
        raise ValueError(f"huber_delta must be > 0, got {huber_delta}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    lo_a, hi_a = alpha_bounds
    if not 0 <= lo_a < hi_a:
        raise ValueError(f"alpha_bounds must satisfy 0 <= low < high, got {alpha_bounds}")
    _check_positive_inputs(N=runs.N, D=runs.D, loss=runs.loss)
    if np.unique(runs.D).size != 1:
        raise ScalingDataError(
            f"the size law L(N) = E + A/N^alpha is for runs on one token budget, got {np.unique(runs.D).size} "
            f"distinct D ({', '.join(f'{d:.4g}' for d in np.unique(runs.D)[:5])}); fit_chinchilla fits several"
        )
    if np.unique(runs.N).size < 4:
        raise ScalingDataError(
            f"the size law has 3 parameters and needs at least 4 distinct model sizes, got {np.unique(runs.N).size}"
        )
    log_n, log_loss = np.log(runs.N), np.log(runs.loss)
    bounds = [(None, None), (None, None), (lo_a, hi_a)]

    def solve(theta0: np.ndarray, ln: np.ndarray, ll: np.ndarray, tight: bool) -> Any:
        options = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000} if tight else {}
        return minimize(_size_objective, theta0, args=(ln, ll, huber_delta), jac=True, method="L-BFGS-B",
                        bounds=bounds, options=options)

    # Starts: E at fractions of the smallest observed loss, α on a grid, A so that the law passes
    # through the smallest model's loss (the grid then only has to find the right basin).
    i_small = int(np.argmin(runs.N))
    starts = []
    for frac in (0.05, 0.25, 0.5, 0.7, 0.85, 0.95):
        e = float(np.log(frac * runs.loss.min()))
        for alpha in _GRID_SIZE_ALPHA:
            if not lo_a <= alpha <= hi_a:
                continue
            rest = runs.loss[i_small] - np.exp(e)
            starts.append((float(np.log(rest) + alpha * log_n[i_small]), e, alpha))
    with _single_threaded_blas():
        best = None
        for theta0 in starts:
            res = solve(np.array(theta0), log_n, log_loss, tight=False)
            if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                best = res
        assert best is not None
        best = solve(best.x, log_n, log_loss, tight=True)
        rng = np.random.default_rng(seed)
        boot = np.empty((n_bootstrap, 3))
        n = len(runs)
        for i in range(n_bootstrap):
            idx = rng.integers(0, n, size=n)
            while np.unique(log_n[idx]).size < 3:
                idx = rng.integers(0, n, size=n)
            res = solve(best.x, log_n[idx], log_loss[idx], tight=True)
            boot[i] = (np.exp(res.x[1]), np.exp(res.x[0]), res.x[2])
    a, e, alpha = best.x
    params = {"E": float(np.exp(e)), "A": float(np.exp(a)), "alpha": float(alpha)}
    if n_bootstrap:
        low, high = _percentile_interval(boot)
        intervals = {k: (float(lo), float(hi)) for k, lo, hi in zip(_SIZE_NAMES, low, high)}
    else:
        intervals = {k: (float("nan"), float("nan")) for k in _SIZE_NAMES}
    return SizeLawFit(params=params, intervals=intervals, bootstrap_params=boot, D=float(runs.D[0]),
                      objective=float(best.fun), converged=bool(best.success), n_points=len(runs),
                      huber_delta=huber_delta, alpha_bounds=(float(lo_a), float(hi_a)), seed=seed)


# --------------------------------------------------------------------------- Kaplan


def _variable(runs: Runs, variable: str) -> np.ndarray:
    if variable not in KAPLAN_VARIABLES:
        raise ValueError(f"variable must be one of {KAPLAN_VARIABLES}, got {variable!r}")
    return {"N": runs.N, "D": runs.D, "C": runs.C}[variable]


def _lower_envelope(x: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Mask of points with lower loss than every point at smaller or equal x."""
    order = np.lexsort((loss, x))
    keep = np.zeros(x.shape, bool)
    best = np.inf
    for i in order:
        if loss[i] < best:
            keep[i] = True
            best = loss[i]
    return keep


@dataclass(frozen=True)
class KaplanFit:
    """L(X) = (Xc / X)^alpha_X for X in N, D or C (Kaplan et al. 2020), fitted in log space."""

    variable: str
    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    bootstrap_params: np.ndarray  # rows of (log Xc, alpha_X)
    log_xc: float
    alpha: float
    frontier: bool
    n_points: int
    n_dropped: dict[str, int]
    rmse_log: float
    seed: int

    def predict(self, X: Any) -> tuple[Any, Any, Any]:
        x = np.asarray(X, float)
        scalar = x.ndim == 0
        x = np.atleast_1d(x)
        _check_positive_inputs(**{self.variable: x})
        mean = np.exp(self.alpha * (self.log_xc - np.log(x)))
        if self.bootstrap_params.shape[0]:
            b = self.bootstrap_params
            low, high = _percentile_interval(np.exp(b[:, 1:2] * (b[:, 0:1] - np.log(x))))
        else:
            low, high = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
        return tuple(_as_output(v, scalar) for v in (mean, low, high))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        v = self.variable
        return {
            "form": f"kaplan-{v.lower()}",
            "formula": f"L({v}) = ({v}c / {v})**alpha_{v}",
            "params": dict(self.params),
            "intervals": {k: list(val) for k, val in self.intervals.items()},
            "interval_method": f"bootstrap percentile 95% over {self.bootstrap_params.shape[0]} row resamples, seed {self.seed}",
            "fitting_loss": "least squares on log L = alpha*log(Xc) - alpha*log X",
            "optimizer": "closed-form linear least squares",
            "points": (
                f"lower envelope in {v} (each kept point beats every point with smaller or equal {v})"
                if self.frontier else "all points"
            ),
            "rmse_log_loss": self.rmse_log,
            "n_points": self.n_points,
            "n_dropped": dict(self.n_dropped),
        }


def _loglinear(log_x: np.ndarray, log_loss: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(log_x, log_loss, 1)
    alpha = -slope
    return intercept / alpha, alpha


def fit_kaplan(
    runs: Runs,
    variable: str = "N",
    *,
    frontier: bool = True,
    n_bootstrap: int = 200,
    seed: int = 0,
    drop_highest_loss: int = 0,
) -> KaplanFit:
    """Fit Kaplan's single-variable law L(X) = (Xc/X)^alpha_X by least squares on log L.

    Kaplan's laws hold where the other factors do not bottleneck: L(N) for models trained to
    convergence, L(D) for large models, L(C) on the compute-efficient frontier. With
    `frontier=True` (default) only the lower envelope in X is fitted, which approximates those
    conditions on a general table; `frontier=False` fits every point.
    """
    x_all = _variable(runs, variable)
    kept = _drop_highest_loss(runs, drop_highest_loss)
    x = _variable(kept, variable)
    n_off = 0
    if frontier:
        mask = _lower_envelope(x, kept.loss)
        n_off = int((~mask).sum())
        kept = kept.subset(mask)
        x = x[mask]
    if len(kept) < KAPLAN_MIN_POINTS or np.unique(x).size < 2:
        raise ScalingDataError(
            f"the Kaplan L({variable}) form has 2 parameters and needs at least {KAPLAN_MIN_POINTS} "
            f"runs with at least 2 distinct {variable} values, got {len(kept)} runs"
            + (" on the lower envelope (pass frontier=False / --all-points to fit every run)" if frontier else "")
            + f" of {len(x_all)}"
        )
    log_x, log_loss = np.log(x), np.log(kept.loss)
    log_xc, alpha = _loglinear(log_x, log_loss)
    rmse = float(np.sqrt(np.mean((alpha * (log_xc - log_x) - log_loss) ** 2)))

    rng = np.random.default_rng(seed)
    boot = []
    n = len(kept)
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n, size=n)
        if np.unique(log_x[idx]).size < 2:
            continue  # a resample with one distinct X cannot determine a slope
        boot.append(_loglinear(log_x[idx], log_loss[idx]))
    boot_arr = np.array(boot).reshape(-1, 2)
    names = (f"{variable}c", f"alpha_{variable}")
    params = {names[0]: float(np.exp(log_xc)), names[1]: float(alpha)}
    if boot_arr.shape[0]:
        low, high = _percentile_interval(np.column_stack([np.exp(boot_arr[:, 0]), boot_arr[:, 1]]))
        intervals = {k: (float(lo), float(hi)) for k, lo, hi in zip(names, low, high)}
    else:
        intervals = {k: (float("nan"), float("nan")) for k in names}
    return KaplanFit(
        variable=variable,
        params=params,
        intervals=intervals,
        bootstrap_params=boot_arr,
        log_xc=float(log_xc),
        alpha=float(alpha),
        frontier=frontier,
        n_points=n,
        n_dropped={"highest_loss": drop_highest_loss, "off_frontier": n_off},
        rmse_log=rmse,
        seed=seed,
    )


# --------------------------------------------------------------------------- leave-largest-out


def leave_largest_out(
    runs: Runs,
    *,
    k: int | None = None,
    max_compute: float | None = None,
    form: str = "chinchilla",
    **fit_kwargs: Any,
) -> dict[str, Any]:
    """Refit without the largest-compute runs and report the errors of predicting them.

    Hold out either the `k` largest-compute runs or every run above `max_compute` FLOPs (give
    exactly one). `fit_kwargs` go to the fit; `drop_highest_loss` is applied to the whole table
    before the split. `form` is "chinchilla" or "kaplan-n" / "kaplan-d" / "kaplan-c"; for Kaplan forms
    with the default frontier, the held-out runs are the largest-compute points of the full
    table's lower envelope (a Kaplan law says nothing about points off it). Errors are relative:
    (predicted − observed) / observed.
    """
    if (k is None) == (max_compute is None):
        raise ValueError("give exactly one of k or max_compute")
    runs = _drop_highest_loss(runs, fit_kwargs.pop("drop_highest_loss", 0))
    if form.startswith("kaplan-"):
        variable = form.removeprefix("kaplan-").upper()
        if fit_kwargs.pop("frontier", True):
            runs = runs.subset(_lower_envelope(_variable(runs, variable), runs.loss))
        fit_kwargs["frontier"] = False
    elif form != "chinchilla":
        raise ValueError(f"form must be chinchilla, kaplan-n, kaplan-d or kaplan-c, got {form!r}")
    if k is not None:
        if not 1 <= k < len(runs):
            raise ValueError(f"k must be in [1, {len(runs) - 1}] for {len(runs)} runs, got {k}")
        held = np.zeros(len(runs), bool)
        held[np.argsort(runs.C, kind="stable")[len(runs) - k :]] = True
    else:
        held = runs.C > float(max_compute)  # type: ignore[arg-type]
        if not held.any():
            raise ValueError(f"no run has compute above max_compute={max_compute:g}")
    train, test = runs.subset(~held), runs.subset(held)
    if form == "chinchilla":
        fit: ChinchillaFit | KaplanFit = fit_chinchilla(train, **fit_kwargs)
        predicted = fit.predict(test.N, test.D)[0]
    else:
        fit = fit_kaplan(train, variable, **fit_kwargs)
        predicted = fit.predict(_variable(test, variable))[0]
    rel = (predicted - test.loss) / test.loss
    return {
        "form": form,
        "n_train": len(train),
        "n_held_out": len(test),
        "train_max_compute": float(train.C.max()),
        "held_out_compute": [float(test.C.min()), float(test.C.max())],
        "params": fit.params,
        "mean_abs_rel_error": float(np.mean(np.abs(rel))),
        "max_abs_rel_error": float(np.max(np.abs(rel))),
        "held_out": [
            {"N": float(n), "D": float(d), "C": float(c), "loss": float(lo), "predicted": float(p), "rel_error": float(r)}
            for n, d, c, lo, p, r in zip(test.N, test.D, test.C, test.loss, predicted, rel)
        ],
    }


# --------------------------------------------------------------------------- Step Law


# Li et al. 2025, "Predictable Scale" (batch size in tokens).
STEP_LAW_PUBLISHED = {"lr_coef": 1.79, "lr_N_exp": -0.713, "lr_D_exp": 0.307, "bs_coef": 0.58, "bs_D_exp": 0.571}


@dataclass(frozen=True)
class StepLawCell:
    """The optimum of one (N, D) learning-rate × batch-size sweep."""

    N: float
    D: float
    lr: float
    batch_size: float
    loss: float
    method: str  # "quadratic" or "grid"
    reason: str
    n_points: int
    critical_batch_size: float
    critical_batch_size_censored: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class StepLawFit:
    """Step Law (Li et al. 2025): lr* = c·N^a·D^b and batch size* = d·D^e (tokens per step)."""

    constants: dict[str, float]
    cells: tuple[StepLawCell, ...] = ()
    critical_tolerance: float = 0.01
    rmse_log_lr: float = float("nan")
    rmse_log_bs: float = float("nan")
    # Set when every cell trained on the same tokens: the D exponents are then 0 by construction,
    # and the law predicts only at this D.
    D_fixed: float | None = None
    # Covariance of the least-squares lr coefficients (log lr_coef, lr_N_exp[, lr_D_exp]) and its
    # residual degrees of freedom, for `lr_interval`; None for a law given by constants.
    lr_cov: tuple[tuple[float, ...], ...] | None = None
    lr_dof: int = 0

    @classmethod
    def from_constants(cls, lr_coef: float, lr_N_exp: float, lr_D_exp: float, bs_coef: float, bs_D_exp: float) -> StepLawFit:
        """A law from given constants, e.g. the published ones in `STEP_LAW_PUBLISHED`."""
        return cls(constants={"lr_coef": lr_coef, "lr_N_exp": lr_N_exp, "lr_D_exp": lr_D_exp, "bs_coef": bs_coef, "bs_D_exp": bs_D_exp})

    def predict(self, N: Any, D: Any) -> dict[str, Any]:
        n, d = np.asarray(N, float), np.asarray(D, float)
        _check_positive_inputs(N=np.atleast_1d(n), D=np.atleast_1d(d))
        if self.D_fixed is not None and np.any(np.abs(d / self.D_fixed - 1.0) > 0.01):
            raise ValueError(f"this law was fitted at one token budget D={self.D_fixed:.6g} and cannot predict at "
                             f"D={np.atleast_1d(d)[0]:.6g}; fit cells at several D to extrapolate in D")
        k = self.constants
        lr = k["lr_coef"] * n ** k["lr_N_exp"] * d ** k["lr_D_exp"]
        bs = k["bs_coef"] * d ** k["bs_D_exp"]
        scalar = lr.ndim == 0
        return {"lr": _as_output(lr, scalar), "batch_size": _as_output(np.broadcast_to(bs, lr.shape), scalar)}

    def lr_interval(self, N: Any, D: Any, level: float = 0.95) -> tuple[Any, Any]:
        """(low, high) of the fitted lr law at N, D: a t-interval on log lr from the coefficients'
        least-squares covariance (the scatter of the per-cell optima about the line). It is a
        confidence interval of the law, not of one cell's optimum; NaN when the law came from
        constants or the fit has no residual degrees of freedom (as many cells as coefficients)."""
        from scipy.stats import t as student_t

        n, d = np.asarray(N, float), np.asarray(D, float)
        lr = np.asarray(self.predict(n, d)["lr"], float)
        if self.lr_cov is None or self.lr_dof < 1:
            nan = np.full(lr.shape, np.nan)
            return _as_output(nan, lr.ndim == 0), _as_output(nan, lr.ndim == 0)
        cov = np.asarray(self.lr_cov)
        rows = [np.ones_like(lr), np.broadcast_to(np.log(n), lr.shape)]
        if cov.shape[0] == 3:
            rows.append(np.broadcast_to(np.log(d), lr.shape))
        z = np.stack(rows, axis=-1)
        se = np.sqrt(np.einsum("...i,ij,...j->...", z, cov, z))
        half = student_t.ppf(0.5 + level / 2.0, self.lr_dof) * se
        return _as_output(lr * np.exp(-half), lr.ndim == 0), _as_output(lr * np.exp(half), lr.ndim == 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": "step-law",
            "formula": "lr = lr_coef * N**lr_N_exp * D**lr_D_exp; batch_size = bs_coef * D**bs_D_exp",
            "constants": dict(self.constants),
            "fitting_loss": "least squares on log lr* and log batch_size* over the per-(N, D) optima",
            "cell_optimum": "least-squares quadratic in (log lr, log batch_size) per cell; best swept point when not convex or optimum outside the sweep",
            "rmse_log_lr": self.rmse_log_lr,
            "rmse_log_batch_size": self.rmse_log_bs,
            "D_fixed": self.D_fixed,
            "lr_interval": "t-interval on log lr from the least-squares covariance of the lr coefficients "
                           f"({self.lr_dof} residual degrees of freedom)",
            "critical_batch_size": (
                f"largest swept batch size whose lr-tuned loss is within {self.critical_tolerance:.1%} of the "
                "cell's best loss at the same tokens; censored=true means the largest swept size still was"
            ),
            "cells": [c.to_dict() for c in self.cells],
        }


def _cell_optimum(x: np.ndarray, y: np.ndarray, loss: np.ndarray) -> tuple[float, float, float, str, str]:
    """(log lr*, log bs*, loss*, method, reason) for one sweep."""
    best = int(np.argmin(loss))
    grid_answer = (float(x[best]), float(y[best]), float(loss[best]))
    pairs = np.unique(np.column_stack([x, y]), axis=0)
    if pairs.shape[0] < 6 or np.unique(x).size < 3 or np.unique(y).size < 3:
        return *grid_answer, "grid", "fewer than 6 distinct points or 3 values per axis for a quadratic"
    xc, yc = x - x.mean(), y - y.mean()
    design = np.column_stack([np.ones_like(xc), xc, yc, xc * xc, xc * yc, yc * yc])
    coef, *_ = np.linalg.lstsq(design, loss, rcond=None)
    _, gx, gy, cxx, cxy, cyy = coef
    hess = np.array([[2 * cxx, cxy], [cxy, 2 * cyy]])
    if np.any(np.linalg.eigvalsh(hess) <= 0):
        return *grid_answer, "grid", "quadratic fit is not convex"
    dx, dy = np.linalg.solve(hess, -np.array([gx, gy]))
    ox, oy = dx + x.mean(), dy + y.mean()
    if not (x.min() <= ox <= x.max() and y.min() <= oy <= y.max()):
        return *grid_answer, "grid", "quadratic optimum lies outside the swept range"
    loss_opt = float(coef @ np.array([1.0, dx, dy, dx * dx, dx * dy, dy * dy]))
    return float(ox), float(oy), loss_opt, "quadratic", ""


def _critical_batch_size(bs: np.ndarray, loss: np.ndarray, tolerance: float) -> tuple[float, bool]:
    sizes = np.unique(bs)
    tuned = np.array([loss[bs == s].min() for s in sizes])
    within = sizes[tuned <= tuned.min() * (1.0 + tolerance)]
    largest = float(within.max())
    return largest, largest == float(sizes.max())


def _lstsq_covariance(design: np.ndarray, residuals: np.ndarray) -> tuple[tuple[tuple[float, ...], ...], int]:
    """Ordinary least squares' coefficient covariance s²·(XᵀX)⁻¹ and its residual degrees of freedom."""
    dof = design.shape[0] - design.shape[1]
    s2 = float(residuals @ residuals) / dof if dof > 0 else np.nan
    cov = s2 * np.linalg.pinv(design.T @ design)
    return tuple(tuple(float(v) for v in row) for row in cov), max(dof, 0)


def fit_step_law(runs: Runs, *, critical_tolerance: float = 0.01) -> StepLawFit:
    """Fit Step Law's hyperparameter laws from per-(N, D) sweeps over lr × batch size.

    Each (N, D) cell's optimum comes from a least-squares quadratic in (log lr, log batch size)
    (Step Law finds the landscape convex around its optimum); when the quadratic is not convex,
    cannot be fitted, or puts the optimum outside the sweep, the best swept point is used and
    the cell says so. Then log lr* = log c + a log N + b log D and log bs* = log d + e log D are
    fitted by least squares; when every cell has the same D, b and e are 0 by construction and
    the law (``D_fixed``) predicts only at that D. Each cell also carries a critical-batch-size estimate (see
    `StepLawFit.to_dict`); it is not fitted as a law because censored cells only bound it.
    `StepLawFit.lr_interval` gives the lr law's interval at a new N, D from the scatter of the cells'
    optima about it.
    """
    if runs.lr is None or runs.batch_size is None:
        missing = [name for name, v in (("lr", runs.lr), ("batch_size", runs.batch_size)) if v is None]
        raise ScalingDataError(
            f"fit_step_law needs learning-rate and batch-size columns, missing: {', '.join(missing)}; "
            "name them with --lr-col / --bs-col"
        )
    for name, values in (("lr", runs.lr), ("batch_size", runs.batch_size)):
        bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
        if bad.size:
            raise ScalingDataError(
                f"the Step Law fit needs a positive, finite {name} in every run, got {bad.size} bad "
                f"row(s) (first at row {bad[0]}: {values[bad[0]]!r}); fix or drop those runs"
            )
    keys = np.column_stack([runs.N, runs.D])
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    cells = []
    for j, (n, d) in enumerate(uniq):
        sel = inverse == j
        lr, bs, loss = runs.lr[sel], runs.batch_size[sel], runs.loss[sel]
        ox, oy, lo, method, reason = _cell_optimum(np.log(lr), np.log(bs), loss)
        cbs, censored = _critical_batch_size(bs, loss, critical_tolerance)
        cells.append(StepLawCell(float(n), float(d), float(np.exp(ox)), float(np.exp(oy)), lo, method, reason, int(sel.sum()), cbs, censored))

    log_n = np.log([c.N for c in cells])
    log_d = np.log([c.D for c in cells])
    log_lr = np.log([c.lr for c in cells])
    log_bs = np.log([c.batch_size for c in cells])
    if np.unique(log_d).size == 1 and np.unique(log_n).size >= 2:
        # One token budget (a ladder trained at the target's D): lr* = c*N^a, batch size* = d.
        design_lr = np.column_stack([np.ones_like(log_n), log_n])
        (lc, a), *_ = np.linalg.lstsq(design_lr, log_lr, rcond=None)
        bc = float(np.mean(log_bs))
        cov, dof = _lstsq_covariance(design_lr, log_lr - design_lr @ np.array([lc, a]))
        return StepLawFit(
            constants={"lr_coef": float(np.exp(lc)), "lr_N_exp": float(a), "lr_D_exp": 0.0,
                       "bs_coef": float(np.exp(bc)), "bs_D_exp": 0.0},
            cells=tuple(cells),
            critical_tolerance=critical_tolerance,
            rmse_log_lr=float(np.sqrt(np.mean((design_lr @ np.array([lc, a]) - log_lr) ** 2))),
            rmse_log_bs=float(np.sqrt(np.mean((log_bs - bc) ** 2))),
            D_fixed=float(cells[0].D),
            lr_cov=cov,
            lr_dof=dof,
        )
    design_lr = np.column_stack([np.ones_like(log_n), log_n, log_d])
    if len(cells) < 3 or np.linalg.matrix_rank(design_lr) < 3:
        raise ScalingDataError(
            f"the lr law c*N^a*D^b needs at least 3 (N, D) cells in which N and D vary independently, "
            f"got {len(cells)} cell(s) with {np.unique(log_n).size} distinct N and {np.unique(log_d).size} distinct D"
        )
    (lc, a, b), *_ = np.linalg.lstsq(design_lr, log_lr, rcond=None)
    design_bs = np.column_stack([np.ones_like(log_d), log_d])
    (bc, e), *_ = np.linalg.lstsq(design_bs, log_bs, rcond=None)
    cov, dof = _lstsq_covariance(design_lr, log_lr - design_lr @ np.array([lc, a, b]))
    return StepLawFit(
        constants={"lr_coef": float(np.exp(lc)), "lr_N_exp": float(a), "lr_D_exp": float(b), "bs_coef": float(np.exp(bc)), "bs_D_exp": float(e)},
        cells=tuple(cells),
        critical_tolerance=critical_tolerance,
        rmse_log_lr=float(np.sqrt(np.mean((design_lr @ np.array([lc, a, b]) - log_lr) ** 2))),
        rmse_log_bs=float(np.sqrt(np.mean((design_bs @ np.array([bc, e]) - log_bs) ** 2))),
        lr_cov=cov,
        lr_dof=dof,
    )


# --------------------------------------------------------------------------- extrapolating regressor


_LAW_NAMES = ("a", "b", "e", "alpha", "beta")
LAW_FORMS = ("auto", "chinchilla", "tied")
# form="auto" ties the exponents when the free fit's E falls below this share of the smallest loss.
AUTO_MIN_E_SHARE = 0.05
_SHAREABLE = ("E", "A", "B", "alpha", "beta")
_TO_THETA = {"A": "a", "B": "b", "E": "e", "alpha": "alpha", "beta": "beta"}


def _law_layout(n_groups: int, tied: bool, shared: tuple[str, ...]) -> tuple[dict[str, np.ndarray], int]:
    """Index of each group's (a, b, e, alpha, beta) in the parameter vector theta.

    A shared name has one entry for every group; with ``tied`` the data exponent beta is alpha
    (Gadre et al.'s reparametrisation assumes equal exponents).
    """
    shared_theta = {_TO_THETA[k] for k in shared}
    idx: dict[str, np.ndarray] = {}
    size = 0
    for name in _LAW_NAMES:
        if name == "beta" and tied:
            idx[name] = idx["alpha"]
            continue
        if name in shared_theta:
            idx[name] = np.full(n_groups, size)
            size += 1
        else:
            idx[name] = np.arange(size, size + n_groups)
            size += n_groups
    return idx, size


def _law_objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray,
                   pidx: dict[str, np.ndarray], delta: float) -> tuple[float, np.ndarray]:
    """Sum of Huber(LSE(a_g - α_g log N, b_g - β_g log D, e_g) - log L) over points (pidx maps
    each point to its group's entries of theta) and its exact gradient."""
    a, b, e = theta[pidx["a"]], theta[pidx["b"]], theta[pidx["e"]]
    alpha, beta = theta[pidx["alpha"]], theta[pidx["beta"]]
    terms = np.stack([a - alpha * log_n, b - beta * log_d, e])
    top = terms.max(axis=0)
    w = np.exp(terms - top)
    total = w.sum(axis=0)
    r = top + np.log(total) - log_loss
    w /= total
    dr = np.clip(r, -delta, delta)
    size = theta.size
    grad = (np.bincount(pidx["a"], dr * w[0], size) + np.bincount(pidx["b"], dr * w[1], size)
            + np.bincount(pidx["e"], dr * w[2], size) - np.bincount(pidx["alpha"], dr * w[0] * log_n, size)
            - np.bincount(pidx["beta"], dr * w[1] * log_d, size))
    return float(_huber(r, delta).sum()), grad


def _law_minimize(theta0: np.ndarray, args: tuple, tight: bool) -> Any:
    options = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000} if tight else {}
    return minimize(_law_objective, theta0, args=args, jac=True, method="L-BFGS-B", options=options)


def _size_clusters(log_n: np.ndarray, gap: float = 0.02) -> np.ndarray:
    """Cluster id per point: sizes within ``gap`` in log N of the next smaller one share a cluster
    (digitised points scatter around each true model size)."""
    order = np.argsort(log_n, kind="stable")
    ids = np.empty(log_n.size, int)
    cid = 0
    for j, i in enumerate(order):
        if j and log_n[i] - log_n[order[j - 1]] > gap:
            cid += 1
        ids[i] = cid
    return ids


class ScalingLawRegressor:
    """L(N, D) = E + A/N^alpha + B/D^beta for extrapolating to larger models, scikit-learn style.

    ``fit(X, y, groups=None) -> self`` with X's columns (N, D) and y the loss; ``predict(X) ->
    (mean, variance)``; ``predict_interval(X, level)`` gives a prediction interval. Compared with
    `fit_chinchilla` (one point fit, a row bootstrap of the law):

    - ``form="auto"`` (default) fits the free form and switches to ``"tied"`` when the free fit's
      E falls below ``AUTO_MIN_E_SHARE`` of the smallest loss (the runs do not pin the floor);
      ``form_`` says which was used.
    - ``form="tied"`` fits one exponent for N and D (alpha = beta), the reparametrisation of
      Gadre et al. 2024 that makes the law a power law in compute at a fixed tokens-per-parameter
      ratio M = D/N: L = E + (A' M^(a/2) + B' M^(-a/2)) C^(-a/2). One parameter fewer pins the
      exponent with the whole (N, D) range, which is what carries an extrapolation in N.
    - ``groups`` (one label per run, e.g. with and without cooldown, or training configurations
      on one data set) fits one law per group with the names in ``shared`` (default the
      irreducible loss E) fitted once for all groups.
    - the bootstrap resamples *model sizes* (every run of a size together, sizes within 2% in
      log N counted as one), not rows: runs of one model share its shape and its luck, so a
      row bootstrap overstates how much data pins the size term.
    - with ``average=True`` the prediction is the mean over the bootstrap fits (bagging), not the
      full-data fit; the interval is the bootstrap spread widened by the fit's residual scatter
      (log-space, as a prediction interval for one new run must be).
    - the interval also widens with the distance extrapolated: with ``extrapolation="backtest"``
      the law is refitted on the smaller half and two thirds of the model sizes, and the growth of
      its log error per e-fold of N past the largest fitted size (``extrapolation_slope_``) adds
      ``slope * ln(N / largest fitted N)`` in quadrature to the residual scatter.

    Fitted attributes: ``params_`` (group label -> {E, A, B, alpha, beta} of the full-data fit),
    ``bootstrap_params_`` (array n_bootstrap x n_groups x 5), ``residual_sd_`` (robust SD of the
    full fit's log residuals), ``form_``, ``extrapolation_slope_``, ``backtest_errors_`` (rows of
    log-ratio past the inner fit's largest N and log error), ``groups_``, ``objective_``,
    ``converged_``, ``n_points_``.
    """

    def __init__(self, *, form: str = "auto", shared: tuple[str, ...] = ("E",), n_bootstrap: int = 100,
                 average: bool = False, extrapolation: str = "backtest", huber_delta: float = 1e-3,
                 n_starts: int = 20, random_state: Any = 0) -> None:
        self.form = form
        self.shared = shared
        self.n_bootstrap = n_bootstrap
        self.average = average
        self.extrapolation = extrapolation
        self.huber_delta = huber_delta
        self.n_starts = n_starts
        self.random_state = random_state

    # ------------------------------------------------------------------ fit

    def _check(self) -> None:
        if self.form not in LAW_FORMS:
            raise ValueError(f"form must be one of {LAW_FORMS}, got {self.form!r}")
        bad = [k for k in self.shared if k not in _SHAREABLE]
        if bad:
            raise ValueError(f"shared must name parameters among {_SHAREABLE}, got {bad}")
        if self.extrapolation not in ("backtest", "none"):
            raise ValueError(f"extrapolation must be 'backtest' or 'none', got {self.extrapolation!r}")
        if self.n_bootstrap < 0 or self.huber_delta <= 0 or self.n_starts < 1:
            raise ValueError("need n_bootstrap >= 0, huber_delta > 0 and n_starts >= 1")

    @staticmethod
    def _xy(X: Any, y: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        from surrogates._validation import check_X, check_Xy

        if y is None:
            Xa, ya = check_X(X), None
        else:
            Xa, ya = check_Xy(X, y, min_samples=CHINCHILLA_MIN_POINTS)
        if Xa.shape[1] != 2:
            raise ValueError(f"expected X with 2 columns (N parameters, D tokens), got {Xa.shape[1]}")
        _check_positive_inputs(N=Xa[:, 0], D=Xa[:, 1])
        if ya is not None:
            _check_positive_inputs(loss=ya)
        return np.log(Xa[:, 0]), np.log(Xa[:, 1]), ya

    def _group_index(self, groups: Any, n: int, fitting: bool) -> np.ndarray:
        if groups is None:
            if fitting:
                self.groups_ = (0,)
            elif len(self.groups_) != 1:
                raise ValueError(f"this law was fitted to groups {list(self.groups_)}; pass groups= to predict")
            return np.zeros(n, int)
        g = np.asarray(groups, dtype=object).reshape(-1)
        if g.size != n:
            raise ValueError(f"groups must have one label per row, got {g.size} for {n} rows")
        if fitting:
            self.groups_ = tuple(sorted(set(g.tolist()), key=str))
        lookup = {k: i for i, k in enumerate(self.groups_)}
        unknown = sorted({str(v) for v in g.tolist() if v not in lookup})
        if unknown:
            raise ValueError(f"unknown group label(s) {unknown}; fitted groups: {list(self.groups_)}")
        return np.array([lookup[v] for v in g.tolist()], int)

    def _solve_one(self, tied: bool, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray) -> np.ndarray:
        """Best theta (a, b, e, alpha[, beta]) for one group from the screened Epoch AI grid."""
        grid = _epoch_grid()
        if tied:
            grid = grid[grid[:, 3] == grid[:, 4]]
        values = _grid_objectives(grid, (log_n, log_d, log_loss, self.huber_delta))
        starts = grid[np.argsort(values, kind="stable")[: self.n_starts]]
        pidx, _ = _law_layout(1, tied, ())
        zeros = np.zeros(log_n.size, int)
        args = (log_n, log_d, log_loss, {k: v[zeros] for k, v in pidx.items()}, self.huber_delta)
        best = None
        for s in starts:
            res = _law_minimize(s[:4] if tied else s, args, tight=False)
            if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                best = res
        assert best is not None
        return best.x

    def _point_fit(self, tied: bool, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray,
                   gidx: np.ndarray) -> tuple[Any, dict[str, np.ndarray]]:
        """The full-data optimum (scipy result) and the parameter layout for one form."""
        n_groups = len(self.groups_)
        shared = tuple(self.shared) if n_groups > 1 else ()
        layout, size = _law_layout(n_groups, tied, shared)
        args = (log_n, log_d, log_loss, {k: v[gidx] for k, v in layout.items()}, self.huber_delta)
        # Each group alone first; shared entries start at the groups' median, then at each
        # group's own value (the joint optimum is usually near one of them).
        per_group = np.array([self._solve_one(tied, log_n[gidx == j], log_d[gidx == j], log_loss[gidx == j])
                              for j in range(n_groups)])
        names = ("a", "b", "e", "alpha") if tied else _LAW_NAMES
        candidates = []
        for pick in [None, *range(n_groups if shared else 0)]:
            theta0 = np.empty(size)
            for col, name in enumerate(names):
                vals = per_group[:, col]
                theta0[layout[name]] = vals
                if layout[name][0] == layout[name][-1] and n_groups > 1:
                    theta0[layout[name][0]] = np.median(vals) if pick is None else vals[pick]
            candidates.append(theta0)
        best = None
        for theta0 in candidates:
            res = _law_minimize(theta0, args, tight=n_groups == 1)
            if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                best = res
        assert best is not None
        return _law_minimize(best.x, args, tight=True), layout

    def fit(self, X: Any, y: Any, groups: Any = None) -> ScalingLawRegressor:
        self._check()
        log_n, log_d, loss = self._xy(X, y)
        assert loss is not None
        log_loss = np.log(loss)
        gidx = self._group_index(groups, log_n.size, fitting=True)
        n_groups = len(self.groups_)
        for j in range(n_groups):
            if np.unique(np.round(log_n[gidx == j], 6)).size < 3:
                raise ScalingDataError(f"group {self.groups_[j]!r} needs at least 3 distinct model sizes")

        with _single_threaded_blas():
            best, layout = self._point_fit(self.form == "tied", log_n, log_d, log_loss, gidx)
            self.form_ = "tied" if self.form == "tied" else "chinchilla"
            if self.form == "auto":
                # E collapsing to ~0 means the runs do not pin the irreducible loss: the model term
                # has turned into a floorless power law with a tiny exponent (on a ladder spanning
                # a narrow range of N), which extrapolates far too optimistically. One exponent for
                # N and D lets the token range pin it.
                e_min = min(float(np.min(log_loss[gidx == j])) for j in range(n_groups)) + np.log(AUTO_MIN_E_SHARE)
                if float(best.x[layout["e"]].min()) < e_min:
                    best, layout = self._point_fit(True, log_n, log_d, log_loss, gidx)
                    self.form_ = "tied"
            self._layout = layout
            size = best.x.size
            pidx = {k: v[gidx] for k, v in layout.items()}
            self.theta_ = best.x
            self.objective_ = float(best.fun)
            self.converged_ = bool(best.success)

            rng = as_generator(self.random_state)
            clusters = _size_clusters(log_n)
            members = [np.flatnonzero(clusters == c) for c in range(clusters.max() + 1)]
            boot = []
            attempts = 0
            while len(boot) < self.n_bootstrap and attempts < 5 * self.n_bootstrap + 10:
                attempts += 1
                pick = rng.integers(0, len(members), size=len(members))
                idx = np.concatenate([members[c] for c in pick])
                if any(np.unique(clusters[idx][gidx[idx] == j]).size < 3 for j in range(n_groups)):
                    continue  # a resample with fewer than 3 sizes in a group cannot fit its law
                sub = {k: v[idx] for k, v in pidx.items()}
                res = _law_minimize(best.x, (log_n[idx], log_d[idx], log_loss[idx], sub, self.huber_delta), tight=True)
                if np.all(np.isfinite(res.x)):
                    boot.append(res.x)
        self.bootstrap_theta_ = np.array(boot).reshape(-1, size)
        resid = _law_log_predict(self.theta_[None, :], log_n, log_d, pidx)[0] - log_loss
        self.residual_sd_ = float(1.4826 * np.median(np.abs(resid - np.median(resid))))
        self.n_points_ = int(log_n.size)
        self.max_log_n_ = float(log_n.max())
        self.backtest_errors_ = self._backtest(log_n, log_d, log_loss, gidx) if self.extrapolation == "backtest" else np.empty((0, 2))
        self.extrapolation_slope_ = _extrapolation_slope(self.backtest_errors_, self.residual_sd_)
        self.params_ = {g: self._params_of(self.theta_, j) for j, g in enumerate(self.groups_)}
        self.bootstrap_params_ = np.array(
            [[list(self._params_of(t, j).values()) for j in range(n_groups)] for t in self.bootstrap_theta_]
        ).reshape(-1, n_groups, 5)
        return self

    def _backtest(self, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray, gidx: np.ndarray) -> np.ndarray:
        """(log-ratio past the inner fit's largest N, log error) for every run predicted when the
        same law is refitted on the smaller half, and on the smaller two thirds, of the model sizes."""
        clusters = _size_clusters(log_n)
        k = int(clusters.max()) + 1
        rows = []
        for frac in _BACKTEST_SPLITS:
            inner = clusters < int(np.ceil(k * frac))
            if inner.all() or any(np.unique(clusters[inner & (gidx == j)]).size < 3 for j in range(len(self.groups_))):
                continue
            sub = ScalingLawRegressor(form=self.form, shared=self.shared, n_bootstrap=0, average=False,
                                      extrapolation="none", huber_delta=self.huber_delta, n_starts=self.n_starts)
            labels = np.array(self.groups_, dtype=object)[gidx]
            try:
                sub.fit(np.exp(np.c_[log_n[inner], log_d[inner]]), np.exp(log_loss[inner]), groups=labels[inner])
            except ScalingDataError:
                continue
            outer = ~inner
            pred = np.log(sub.predict(np.exp(np.c_[log_n[outer], log_d[outer]]), groups=labels[outer])[0])
            rows.append(np.c_[log_n[outer] - log_n[inner].max(), pred - log_loss[outer]])
        return np.vstack(rows) if rows else np.empty((0, 2))

    def _params_of(self, theta: np.ndarray, j: int) -> dict[str, float]:
        v = {k: float(theta[self._layout[k][j]]) for k in _LAW_NAMES}
        return {"E": float(np.exp(v["e"])), "A": float(np.exp(v["a"])), "B": float(np.exp(v["b"])),
                "alpha": v["alpha"], "beta": v["beta"]}

    # ------------------------------------------------------------------ predict

    def _samples(self, X: Any, groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log prediction of the full fit, log predictions of every bootstrap fit, SD of one new
        run's log loss about its law: residual scatter and the backtested extrapolation error)."""
        check_fitted(self, "theta_")
        log_n, log_d, _ = self._xy(X)
        gidx = self._group_index(groups, log_n.size, fitting=False)
        pidx = {k: v[gidx] for k, v in self._layout.items()}
        point = _law_log_predict(self.theta_[None, :], log_n, log_d, pidx)[0]
        boot = _law_log_predict(self.bootstrap_theta_, log_n, log_d, pidx) if len(self.bootstrap_theta_) else point[None, :]
        reach = np.maximum(log_n - self.max_log_n_, 0.0)
        sd = np.sqrt(self.residual_sd_**2 + (self.extrapolation_slope_ * reach) ** 2)
        return point, boot, sd

    def predict(self, X: Any, groups: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted loss and its variance: the bootstrap fits' variance plus the residual scatter
        (mean · residual_sd_)². The mean is the bootstrap average with ``average=True``."""
        point, boot, sd = self._samples(X, groups)
        loss_boot = np.exp(boot)
        mean = loss_boot.mean(axis=0) if self.average else np.exp(point)
        var = loss_boot.var(axis=0) + (mean * sd) ** 2
        return mean, var

    def predict_interval(self, X: Any, level: float = 0.95, groups: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Central ``level`` prediction interval for one new run: quantiles of bootstrap
        predictions each multiplied by log-normal residual noise of SD ``residual_sd_``."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        point, boot, sd = self._samples(X, groups)
        if not self.average:
            boot = boot - boot.mean(axis=0) + point
        from scipy.stats import norm

        # Quantiles of (bootstrap law + normal noise) by averaging the normal CDF over the
        # bootstrap fits and inverting on a grid: exact for the mixture, no sampling noise.
        sd = np.maximum(sd, 1e-9)
        lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
        span = np.linspace(boot.min(axis=0) - 6 * sd, boot.max(axis=0) + 6 * sd, 2001)
        cdf = norm.cdf((span[:, None, :] - boot[None, :, :]) / sd).mean(axis=1)
        out = []
        for q in (lo_q, hi_q):
            k = np.clip((cdf < q).sum(axis=0), 1, span.shape[0] - 1)
            cols = np.arange(span.shape[1])
            c0, c1 = cdf[k - 1, cols], cdf[k, cols]
            t = np.where(c1 > c0, (q - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.5)
            out.append(np.exp(span[k - 1, cols] + t * (span[k, cols] - span[k - 1, cols])))
        return out[0], out[1]

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "theta_")
        return {
            "form": "chinchilla-tied" if self.form_ == "tied" else "chinchilla",
            "form_requested": self.form,
            "formula": "L(N, D) = E + A / N**alpha + B / D**beta" + (" with beta = alpha" if self.form_ == "tied" else ""),
            "groups": [str(g) for g in self.groups_],
            "shared": list(self.shared) if len(self.groups_) > 1 else [],
            "params": {str(g): p for g, p in self.params_.items()},
            "residual_sd_log": self.residual_sd_,
            "fitting_loss": f"sum of Huber(delta={self.huber_delta:g}) of log-sum-exp(a - alpha*log N, b - beta*log D, e) - log L",
            "optimizer": f"scipy L-BFGS-B from the best {self.n_starts} of Epoch AI's grid per group, then jointly",
            "interval_method": (f"{len(self.bootstrap_theta_)} bootstrap refits resampling model sizes; prediction "
                                "interval = bootstrap laws x log-normal residual scatter"),
            "prediction": "mean over bootstrap fits" if self.average else "full-data fit",
            "objective": self.objective_,
            "converged": self.converged_,
            "n_points": self.n_points_,
        }


_BACKTEST_SPLITS = (0.5, 2.0 / 3.0)


def _extrapolation_slope(errors: np.ndarray, residual_sd: float) -> float:
    """s in  error² ≈ residual_sd² + (s · reach)²  by least squares over backtest rows (reach, error)
    with reach > 0: how fast the log error grows per e-fold of N past the largest fitted model."""
    if errors.shape[0] == 0:
        return 0.0
    reach, err = errors[:, 0], errors[:, 1]
    keep = reach > 0
    if not keep.any():
        return 0.0
    r2 = reach[keep] ** 2
    return float(np.sqrt(max(0.0, float(np.sum(r2 * (err[keep] ** 2 - residual_sd**2))) / float(np.sum(r2 * r2)))))


def _law_log_predict(thetas: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, pidx: dict[str, np.ndarray]) -> np.ndarray:
    """log L for each row of thetas (k x size) at each point: k x n."""
    t = {k: thetas[:, v] for k, v in pidx.items()}
    return np.logaddexp(np.logaddexp(t["a"] - t["alpha"] * log_n, t["b"] - t["beta"] * log_d), t["e"])
