"""Tree-ensemble surrogate (random forest or extra-trees) with uncertainty from the spread of the
trees, as in SMAC. Cheap to fit at thousands of points and indifferent to one-hot columns, which is
why BO falls back to it when a GP would be too slow, and why parameter importance uses it."""
from __future__ import annotations

from typing import Any

import numpy as np

from surrogates._validation import check_fitted, check_X, check_Xy

__all__ = ["ForestSurrogate"]


class ForestSurrogate:
    """``fit(X, y) -> self``; ``predict(X) -> (mean, variance)`` where the mean averages the trees
    and the variance is the variance of the per-tree predictions (epistemic only).

    Parameters
    ----------
    kind: "extra" (extremely randomised trees, smoother uncertainty) or "random" (bootstrap forest).
    n_estimators, min_samples_leaf, max_features: as in scikit-learn.
    random_state: seed; equal seeds and data give equal predictions.
    """

    def __init__(self, *, kind: str = "extra", n_estimators: int = 64, min_samples_leaf: int = 2,
                 max_features: float | str | None = 1.0, random_state: Any = None) -> None:
        self.kind = kind
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> "ForestSurrogate":
        from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

        if self.kind not in ("extra", "random"):
            raise ValueError(f"kind must be 'extra' or 'random', got {self.kind!r}")
        X, y = check_Xy(X, y, min_samples=2)
        cls = ExtraTreesRegressor if self.kind == "extra" else RandomForestRegressor
        seed = self.random_state
        if isinstance(seed, np.random.Generator):
            seed = int(seed.integers(2**31 - 1))
        self.model_ = cls(n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf,
                          max_features=self.max_features, random_state=seed, n_jobs=1).fit(X, y)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_trees(self, X: Any) -> np.ndarray:
        """Per-tree predictions, shape (n_estimators, n_samples)."""
        check_fitted(self, "model_")
        X = check_X(X, self.n_features_in_)
        return np.stack([t.predict(X) for t in self.model_.estimators_])

    def predict(self, X: Any):
        P = self.predict_trees(X)
        return P.mean(0), np.maximum(P.var(0), 1e-12)
