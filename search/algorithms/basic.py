"""Model-free baselines: random search and grid search."""
from __future__ import annotations

import json
from typing import Any

from search.algorithms.base import Algorithm, History, Proposal

__all__ = ["RandomSearch", "GridSearch"]


class RandomSearch(Algorithm):
    """Independent draws from the prior. Draw k uses the stream (seed, k), so a study gives the same
    configurations whatever the order of completion and across resumes."""

    name = "random"

    def propose(self, history: History, n: int) -> list[Proposal]:
        import numpy as np

        start = len(history.trials)
        return [Proposal(self.space.sample(np.random.default_rng([self.seed or 0, start + i]))) for i in range(n)]


class GridSearch(Algorithm):
    """Every combination of the grid, in a fixed order (shuffled by the seed with ``shuffle: true``).
    Floats take ``points`` values (log-spaced for log parameters) unless they have a step."""

    name = "grid"

    def __init__(self, space, metrics, directions, seed=None, points: int = 5, shuffle: bool = False) -> None:
        super().__init__(space, metrics, directions, seed)
        if not isinstance(points, int) or points < 1:
            raise ValueError(f"grid option 'points' must be an integer >= 1, got {points!r}")
        self._grid = space.grid(points)
        if shuffle:
            import numpy as np

            order = np.random.default_rng(seed or 0).permutation(len(self._grid))
            self._grid = [self._grid[i] for i in order]

    @staticmethod
    def _key(config: dict[str, Any]) -> str:
        return json.dumps(config, sort_keys=True, default=repr)

    def propose(self, history: History, n: int) -> list[Proposal]:
        seen = {self._key(dict(t.params)) for t in history.trials}
        out: list[Proposal] = []
        for config in self._grid:
            if len(out) == n:
                break
            if self._key(config) not in seen:
                out.append(Proposal(config))
        return out
