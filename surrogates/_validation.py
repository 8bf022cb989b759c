"""Input checks shared by every surrogate, so all of them reject bad input with the same messages."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_X", "check_Xy", "check_fitted", "as_generator"]


def check_X(X: Any, n_features: int | None = None, name: str = "X") -> np.ndarray:
    """A finite 2-D float array; ``n_features`` is the column count seen in ``fit``."""
    arr = np.asarray(X, dtype=float)
    if arr.ndim != 2:
        raise ValueError(
            f"expected {name} as a 2-D array (n_samples, n_features), got shape {arr.shape}; "
            f"reshape a single sample with {name}.reshape(1, -1)"
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"expected {name} with {n_features} columns as in fit, got {arr.shape[1]}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name} must be finite, got {arr[bad[0], bad[1]]} at row {bad[0]}, column {bad[1]}; "
            "drop or impute non-finite rows before fitting"
        )
    return arr


def check_Xy(X: Any, y: Any, min_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
    Xa = check_X(X)
    ya = np.asarray(y, dtype=float)
    if ya.ndim == 2 and ya.shape[1] == 1:
        ya = ya[:, 0]
    if ya.ndim != 1:
        raise ValueError(f"expected y as a 1-D array of targets, got shape {ya.shape}")
    if ya.shape[0] != Xa.shape[0]:
        raise ValueError(f"X and y must have the same number of rows, got {Xa.shape[0]} and {ya.shape[0]}")
    if Xa.shape[0] < min_samples:
        raise ValueError(f"need at least {min_samples} samples to fit, got {Xa.shape[0]}")
    if not np.all(np.isfinite(ya)):
        i = int(np.argwhere(~np.isfinite(ya))[0, 0])
        raise ValueError(
            f"y must be finite, got {ya[i]} at row {i}; failed trials belong in a feasibility "
            "model, not in the regression targets"
        )
    return Xa, ya


def check_fitted(model: Any, attribute: str) -> None:
    if not hasattr(model, attribute):
        raise RuntimeError(
            f"{type(model).__name__} is not fitted yet; call fit(X, y) before predict"
        )


def as_generator(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)
