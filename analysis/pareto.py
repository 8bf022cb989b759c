"""Non-dominance: the project's one Pareto helper.

``pareto_mask`` flags the non-dominated rows of a table of losses (lower is better in every
column; a point is dominated when another is no worse in every column and better in one, so equal
points do not dominate each other and are all kept). ``pareto_ranks`` peels fronts with it
(non-dominated sorting), ``pareto_front`` applies it to frozen trial records, and ``pareto_view``
is the answer ``search pareto`` and the dashboard's Pareto page both show.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

from storage.records import TrialRecord, TrialState

if TYPE_CHECKING:
    from storage.read_api import ReadAPI

__all__ = ["pareto_mask", "pareto_ranks", "pareto_front", "pareto_view"]

_BLOCK = 512


def pareto_mask(losses: Any) -> list[bool]:
    """Non-dominated flags for the rows of ``losses`` (lower is better in every column)."""
    import numpy as np

    P = np.asarray(losses, dtype=float)
    if P.size == 0:
        return []
    if P.ndim != 2:
        raise ValueError(f"losses must be a table of rows (n, k), got shape {P.shape}")
    n, k = P.shape
    if k == 2:
        # Sorted by the first column (then the second), a point is on the front exactly when its
        # second column beats every point before it, or repeats the last front point.
        order = np.lexsort((P[:, 1], P[:, 0]))
        mask = np.zeros(n, dtype=bool)
        best = math.inf
        last: tuple[float, float] | None = None
        for i in order:
            a, b = P[i]
            if b < best or (last is not None and (a, b) == last):
                mask[i] = True
                best, last = b, (a, b)
        return mask.tolist()
    mask = np.ones(n, dtype=bool)
    for start in range(0, n, _BLOCK):
        block = P[start:start + _BLOCK]
        le = (P[None, :, :] <= block[:, None, :]).all(-1)
        lt = (P[None, :, :] < block[:, None, :]).any(-1)
        mask[start:start + _BLOCK] = ~(le & lt).any(1)
    return mask.tolist()


def pareto_ranks(losses: Sequence[Sequence[float]]) -> list[int]:
    """Non-dominated sorting of loss vectors (lower is better): 0 for the first front, and so on."""
    import numpy as np

    P = np.asarray(losses, dtype=float)
    ranks = [-1] * len(P)
    remaining = np.arange(len(P))
    rank = 0
    while len(remaining):
        front = np.asarray(pareto_mask(P[remaining]), dtype=bool)
        for i in remaining[front]:
            ranks[int(i)] = rank
        remaining = remaining[~front]
        rank += 1
    return ranks


def _losses(trials: Sequence[TrialRecord], directions: Sequence[str]) -> tuple[list[TrialRecord], list[list[float]]]:
    """COMPLETE trials with a finite value for every objective, and their values as losses."""
    kept, losses = [], []
    for t in trials:
        vals = t.values
        if t.state != TrialState.COMPLETE or vals is None or len(vals) != len(directions):
            continue
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vals):
            continue
        kept.append(t)
        losses.append([-float(v) if d == "maximize" else float(v) for v, d in zip(vals, directions)])
    return kept, losses


def pareto_front(trials: Sequence[TrialRecord], directions: Sequence[str]) -> list[TrialRecord]:
    """Completed trials that no other completed trial dominates (every objective counted in its
    own direction), in the order given."""
    kept, losses = _losses(trials, directions)
    return [t for t, on in zip(kept, pareto_mask(losses)) if on]


def pareto_view(api: "ReadAPI", name: str) -> dict[str, Any]:
    """Completed trials' objective vectors and which are non-dominated, by trial number. Needs a
    study with at least two objectives (``ValueError`` otherwise)."""
    study = api.get_study(name)
    dirs = list(study.directions)
    if len(dirs) < 2:
        raise ValueError(f"study {name!r} has one objective ({study.metrics[0]}); a Pareto front needs two or more")
    kept, losses = _losses(api.get_trials(name, [TrialState.COMPLETE]), dirs)
    return {"study": study.name, "metrics": list(study.metrics), "directions": dirs,
            "numbers": [t.number for t in kept], "values": [[float(v) for v in t.values] for t in kept],
            "params": [dict(t.params) for t in kept], "front": pareto_mask(losses)}
