"""The algorithm contract: propose from frozen history, decide on each report. Decisions are data.

An algorithm never holds a storage or controller handle. The controller calls it from one thread.
Whatever state it keeps must be rebuildable from ``History`` (the controller hands the full history
to every call, so a resumed study proposes from everything it has seen); state that cannot be
rebuilt that way goes through ``state_dict``/``load_state_dict`` into the typed state table.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping

from search.decisions import CONTINUE, Decision
from search.space import Space
from storage.records import TERMINAL_STATES, TrialRecord, TrialState

__all__ = ["Algorithm", "Proposal", "Decision", "History", "CONTINUE"]


@dataclass(frozen=True)
class History:
    """A frozen snapshot of a study: every trial so far, in number order, and the objectives."""

    trials: tuple[TrialRecord, ...]
    metrics: tuple[str, ...]
    directions: tuple[str, ...]

    def completed(self) -> tuple[TrialRecord, ...]:
        return tuple(t for t in self.trials if t.state == TrialState.COMPLETE)

    def finished(self) -> tuple[TrialRecord, ...]:
        return tuple(t for t in self.trials if t.state in TERMINAL_STATES)

    def pending(self) -> tuple[TrialRecord, ...]:
        return tuple(t for t in self.trials if t.state not in TERMINAL_STATES)

    def stopped_at(self, trial: TrialRecord) -> tuple[int, float] | None:
        """(step, objective value) where a scheduler stopped ``trial``, for single-objective
        studies; None for any other trial or when that value is missing or not finite."""
        if trial.state != TrialState.PRUNED or len(self.metrics) != 1 or trial.last_step is None:
            return None
        v = trial.metrics.get(self.metrics[0])
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        return int(trial.last_step), float(v)

    def signed_value(self, trial: TrialRecord, i: int = 0) -> float | None:
        """Objective ``i`` as a loss: lower is better whatever the direction."""
        if trial.values is None:
            return None
        v = trial.values[i]
        return -v if self.directions[i] == "maximize" else v


@dataclass(frozen=True)
class Proposal:
    """A configuration to run (merged over the study's fixed ``trial.params``)."""

    params: Mapping[str, Any]


class Algorithm(ABC):
    """Subclasses set ``name`` and implement ``propose``; the hooks default to no-ops.

    ``__init__`` receives the space, the objectives, the seed and the study file's algorithm
    options (everything under ``algorithm:`` but ``name`` and ``seed``).
    """

    name: str = ""

    def __init__(self, space: Space, metrics: tuple[str, ...], directions: tuple[str, ...],
                 seed: int | None = None, **options: Any) -> None:
        self.space = space
        self.metrics = metrics
        self.directions = directions
        self.seed = seed
        if options:
            raise ValueError(
                f"algorithm {self.name!r} takes no option {sorted(options)[0]!r}"
            )

    @abstractmethod
    def propose(self, history: History, n: int) -> list[Proposal]:
        """Up to ``n`` new configurations. Fewer (even none) means "nothing more to try now";
        an empty list while nothing is pending ends the study early (grid exhausted)."""

    def on_report(self, history: History, trial: TrialRecord, step: int,
                  metrics: Mapping[str, float]) -> Decision:
        """What happens next to ``trial`` after this report (``search.decisions``). An algorithm
        whose ``state_dict()`` changed without a decision answers ``Continue(state_changed=True)``;
        an ``Exploit`` is saved with the algorithm's state in one write."""
        return CONTINUE

    def on_complete(self, history: History, trial: TrialRecord) -> None:
        """Called once per trial that reached a terminal state, ``history`` already includes it."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass
