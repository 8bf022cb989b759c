"""What happens next to a running trial: one typed value, from algorithm and scheduler alike.

An algorithm's ``on_report`` and a scheduler's ``on_report`` both answer one of these frozen values
(as Syne Tune's ``TrialSuggestion`` folds start, resume and warm start into one value); the
controller carries it out. A decision other than ``Continue`` is kept in storage until the attempt
it was made for has ended (``Pending``), so it outlives a controller that dies before carrying it
out.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, Union

from storage.records import DecisionKind, DecisionRecord, FrozenDict

__all__ = ["Continue", "Stop", "Pause", "Exploit", "Decision", "Pending", "CONTINUE", "DecisionKind"]


@dataclass(frozen=True)
class Continue:
    """Train on. ``state_changed``: the algorithm learnt something on this report that its
    ``state_dict()`` holds (PB2's observations), so the controller saves it now and a kill loses
    nothing."""

    reason: str = ""
    state_changed: bool = False
    action: ClassVar[DecisionKind] = DecisionKind.CONTINUE


@dataclass(frozen=True)
class Stop:
    """End the trial PRUNED at the step it reached."""

    reason: str = ""
    action: ClassVar[DecisionKind] = DecisionKind.STOP


@dataclass(frozen=True)
class Pause:
    """Freeze the trial (PAUSED, its checkpoint kept) to be thawed later from that checkpoint, or
    ended PRUNED if the study ends first (freeze-thaw)."""

    reason: str = ""
    action: ClassVar[DecisionKind] = DecisionKind.PAUSE


@dataclass(frozen=True)
class Exploit:
    """PBT: restart the member from trial ``parent``'s checkpoint at ``parent_step`` (the step it
    was ranked on; its newest checkpoint if that one is gone) with ``params``."""

    parent: int
    params: Mapping[str, Any]
    parent_step: int | None = None
    reason: str = ""
    action: ClassVar[DecisionKind] = DecisionKind.EXPLOIT

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", FrozenDict(self.params))

    @property
    def extra(self) -> Mapping[str, Any]:
        """The exploit's fields as one read-only mapping: parent, params, parent_step."""
        return MappingProxyType({"parent": self.parent, "params": self.params, "parent_step": self.parent_step})


Decision = Union[Continue, Stop, Pause, Exploit]
CONTINUE = Continue()


@dataclass(frozen=True)
class Pending:
    """A stop, pause or exploit decided for attempt ``attempt`` of trial ``trial_id`` on its report
    at ``step``, until that attempt ends."""

    trial_id: int
    attempt: int
    step: int
    decision: Stop | Pause | Exploit

    def to_record(self) -> DecisionRecord:
        d = self.decision
        if isinstance(d, Exploit):
            return DecisionRecord(self.trial_id, self.attempt, self.step, d.action, d.reason,
                                  parent=int(d.parent), parent_step=d.parent_step, params=dict(d.params))
        return DecisionRecord(self.trial_id, self.attempt, self.step, d.action, d.reason)

    @classmethod
    def from_record(cls, r: DecisionRecord) -> "Pending":
        if r.kind == DecisionKind.EXPLOIT:
            decision: Stop | Pause | Exploit = Exploit(parent=int(r.parent), params=dict(r.params or {}),
                                                       parent_step=r.parent_step, reason=r.reason)
        elif r.kind == DecisionKind.PAUSE:
            decision = Pause(r.reason)
        elif r.kind == DecisionKind.STOP:
            decision = Stop(r.reason)
        else:
            raise ValueError(f"a pending decision is a stop, pause or exploit, got {r.kind!r}")
        return cls(r.trial_id, r.attempt, r.step, decision)
