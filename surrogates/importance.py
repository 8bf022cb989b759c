"""Parameter importance in the spirit of fANOVA (Hutter et al. 2014): fit a forest to the trials,
then measure how much of the predicted variance each parameter's main effect explains.

The main effect of parameter j is the forest's prediction averaged over the other parameters
(their observed values as the marginal distribution) as a function of j's value alone; its
variance over j's observed values, divided by the sum over all parameters, is j's importance.
Interactions are not apportioned (first-order effects only), so the numbers rank parameters; they
are not an exact variance decomposition.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from surrogates._validation import check_Xy
from surrogates.forest import ForestSurrogate

__all__ = ["importance_from_arrays"]


def importance_from_arrays(X: Any, y: Any, groups: Mapping[str, Sequence[int]], *,
                           n_base: int = 128, n_grid: int = 16, random_state: Any = 0,
                           forest: ForestSurrogate | None = None) -> dict[str, float]:
    """Importance per parameter from encoded ``X`` (rows) and losses ``y``.

    ``groups`` maps each parameter name to its columns in ``X`` (``SpaceEncoder.groups``); a
    one-hot categorical or a conditional parameter moves all its columns together. Returns
    ``{name: importance}`` in the order of ``groups``, non-negative and summing to 1.
    ``forest`` may be an already fitted ``ForestSurrogate`` on the same columns.
    """
    X, y = check_Xy(X, y, min_samples=2)
    for name, cols in groups.items():
        bad = [c for c in cols if not 0 <= c < X.shape[1]]
        if bad or not cols:
            raise ValueError(f"columns {list(cols)} of {name!r} must be non-empty and in "
                             f"[0, {X.shape[1]}), the columns of X")
    rng = np.random.default_rng(random_state)
    model = forest if forest is not None else ForestSurrogate(
        kind="random", n_estimators=64, min_samples_leaf=1, random_state=random_state).fit(X, y)
    base = X if len(X) <= n_base else X[rng.choice(len(X), n_base, replace=False)]
    effects: dict[str, float] = {}
    for name, cols in groups.items():
        cols = list(cols)
        levels = np.unique(X[:, cols], axis=0)  # lexicographic, so numeric levels are sorted
        if len(levels) > n_grid:
            levels = levels[np.linspace(0, len(levels) - 1, n_grid).round().astype(int)]
        if len(levels) < 2:
            effects[name] = 0.0
            continue
        stacked = np.repeat(base[None, :, :], len(levels), axis=0)
        stacked[:, :, cols] = levels[:, None, :]
        means = model.predict(stacked.reshape(-1, X.shape[1]))[0].reshape(len(levels), -1).mean(1)
        effects[name] = float(means.var())
    total = sum(effects.values())
    if total <= 0:
        return {name: 1.0 / len(groups) for name in groups}
    return {name: v / total for name, v in effects.items()}
