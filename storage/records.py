"""Frozen records: what the storage read API hands out. Never ORM objects.

Records are immutable snapshots; the dict fields are fresh copies that callers must not mutate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "TrialState", "StudyRecord", "TrialRecord", "ReportRecord", "CheckpointRecord",
    "ExploitRecord", "TERMINAL_STATES",
]


class TrialState:
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"
    # Frozen by a freeze-thaw scheduler: not running, its checkpoint kept, to be resumed (a new
    # attempt of the same trial) or, if the study ends first, PRUNED at the step it reached.
    PAUSED = "PAUSED"
    ALL = (WAITING, RUNNING, PAUSED, COMPLETE, PRUNED, FAILED)


TERMINAL_STATES = frozenset({TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED})


@dataclass(frozen=True)
class StudyRecord:
    id: int
    name: str
    directions: tuple[str, ...]
    metrics: tuple[str, ...]
    spec: dict[str, Any]
    state: str
    created_at: datetime
    finished_at: datetime | None = None


@dataclass(frozen=True)
class TrialRecord:
    id: int
    study_id: int
    number: int
    state: str
    params: dict[str, Any]
    values: tuple[float, ...] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    attempt: int = 0
    failures: int = 0
    worker: str | None = None
    node: str | None = None
    last_step: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None

    @property
    def value(self) -> float | None:
        """The first objective's value (the only one for single-objective studies)."""
        return None if self.values is None else self.values[0]

    @property
    def is_finished(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class ReportRecord:
    trial_id: int
    step: int
    metrics: dict[str, float]
    attempt: int = 0
    id: int = 0  # increases in the order reports were recorded


@dataclass(frozen=True)
class CheckpointRecord:
    id: int
    trial_id: int
    step: int
    path: str
    checksum: str
    attempt: int = 0
    created_at: datetime | None = None


@dataclass(frozen=True)
class ExploitRecord:
    """PBT: member ``number`` continued from ``parent_number``'s checkpoint at ``parent_step`` with
    ``params_after`` instead of ``params_before``; it was at ``step`` when it exploited."""

    id: int
    number: int
    parent_number: int
    step: int
    parent_step: int
    params_before: dict[str, Any]
    params_after: dict[str, Any]
    created_at: datetime | None = None
