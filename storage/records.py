"""Frozen records: what the storage read API hands out. Never ORM objects.

Records are immutable all the way down to their mappings: ``params``, ``metrics`` and ``spec`` are
``FrozenDict``s (a dict that refuses every change; ``dict(x)`` gives a mutable copy), so a caller
that is handed a record (an algorithm, the dashboard) cannot change what another caller sees.
States and decision kinds are string enums: they compare equal to, hash like and serialise as the
strings stored in the database.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Mapping

__all__ = [
    "TrialState", "DecisionKind", "StudyRecord", "TrialRecord", "ReportRecord", "CheckpointRecord",
    "ExploitRecord", "DecisionRecord", "FrozenDict", "TERMINAL_STATES",
]


class _StrEnum(str, Enum):
    """A string enum that prints as its value (``f"{TrialState.COMPLETE}"`` is ``COMPLETE``)."""

    __str__ = str.__str__
    __format__ = str.__format__


class TrialState(_StrEnum):
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"
    # Frozen by a freeze-thaw scheduler: not running, its checkpoint kept, to be resumed (a new
    # attempt of the same trial) or, if the study ends first, PRUNED at the step it reached.
    PAUSED = "PAUSED"


TrialState.ALL = (TrialState.WAITING, TrialState.RUNNING, TrialState.PAUSED, TrialState.COMPLETE,  # type: ignore[attr-defined]
                  TrialState.PRUNED, TrialState.FAILED)
TERMINAL_STATES = frozenset({TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED})


class DecisionKind(_StrEnum):
    """What happens next to a running trial, as decided on one of its reports."""

    CONTINUE = "continue"
    STOP = "stop"  # ends PRUNED at the step it reached
    PAUSE = "pause"  # PAUSED, its checkpoint kept, to be thawed later (freeze-thaw)
    EXPLOIT = "exploit"  # PBT: restarts from a parent's checkpoint with new params


class FrozenDict(dict):
    """A dict that cannot be changed after it is made. JSON-serialisable and picklable like a dict;
    nested dicts are frozen too."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if dict in map(type, dict.values(self)):  # the common flat dict costs one C-level pass
            for k, v in dict.items(self):
                if type(v) is dict:
                    dict.__setitem__(self, k, FrozenDict(v))

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("records are frozen: copy with dict(...) to change one")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple:
        return FrozenDict, (dict(self),)

    def __copy__(self) -> "FrozenDict":
        return self

    def __deepcopy__(self, memo: dict) -> "FrozenDict":
        return self

    def __repr__(self) -> str:
        return dict.__repr__(self)


def _freeze(record: Any, *names: str) -> None:
    for name in names:
        v = getattr(record, name)
        if v is not None and not isinstance(v, FrozenDict):
            object.__setattr__(record, name, FrozenDict(v))


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

    def __post_init__(self) -> None:
        _freeze(self, "spec")


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

    def __post_init__(self) -> None:
        _freeze(self, "params", "metrics")
        object.__setattr__(self, "state", TrialState(self.state))

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

    def __post_init__(self) -> None:
        _freeze(self, "metrics")


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

    def __post_init__(self) -> None:
        _freeze(self, "params_before", "params_after")


@dataclass(frozen=True)
class DecisionRecord:
    """A stop, pause or exploit decided for attempt ``attempt`` of trial ``trial_id`` on its report
    at ``step``, kept until that attempt has ended, so a decision outlives a controller that dies
    before carrying it out. An exploit names the ``parent`` (trial number), the ``parent_step`` it
    was ranked on and the explored ``params``."""

    trial_id: int
    attempt: int
    step: int
    kind: DecisionKind
    reason: str = ""
    parent: int | None = None
    parent_step: int | None = None
    params: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DecisionKind(self.kind))
        _freeze(self, "params")
