"""PBT lineage: every member's hyperparameter schedule, rebuilt from the exploits table.

A schedule is a list of segments ``{"from_step": s, "params": {...}}``: the weights at the end were
trained with ``params`` for steps ``s + 1`` up to the next segment's ``from_step``. An exploit
copies the parent's weights at ``parent_step``, so a member's schedule is its parent's schedule
(as it stood then) up to that step, followed by the explored parameters.
"""
from __future__ import annotations

from typing import Any, Sequence

from storage.records import ExploitRecord, TrialRecord

__all__ = ["schedules", "lineage_report", "params_at"]


def schedules(trials: Sequence[TrialRecord], exploits: Sequence[ExploitRecord]) -> dict[int, list[dict[str, Any]]]:
    by_member: dict[int, list[ExploitRecord]] = {}
    for e in sorted(exploits, key=lambda e: e.id):
        by_member.setdefault(e.number, []).append(e)
    initial = {t.number: (by_member[t.number][0].params_before if t.number in by_member else t.params)
               for t in trials}

    def schedule(number: int, before_id: int | None) -> list[dict[str, Any]]:
        evs = [e for e in by_member.get(number, []) if before_id is None or e.id < before_id]
        if not evs:
            return [{"from_step": 0, "params": dict(initial[number])}]
        last = evs[-1]
        base = [seg for seg in schedule(last.parent_number, last.id) if seg["from_step"] < last.parent_step]
        return base + [{"from_step": last.parent_step, "params": dict(last.params_after)}]

    return {t.number: schedule(t.number, None) for t in trials}


def params_at(schedule: list[dict[str, Any]], step: int) -> dict[str, Any]:
    """The parameters in force while training step ``step`` (1-based)."""
    current = schedule[0]["params"]
    for seg in schedule:
        if seg["from_step"] < step:
            current = seg["params"]
    return current


def lineage_report(trials: Sequence[TrialRecord], exploits: Sequence[ExploitRecord],
                   best: TrialRecord | None) -> dict[str, Any]:
    sched = schedules(trials, exploits)
    return {
        "exploits": [{"child": e.number, "parent": e.parent_number, "step": e.step, "parent_step": e.parent_step,
                      "params_before": e.params_before, "params_after": e.params_after,
                      "at": None if e.created_at is None else e.created_at.isoformat() + "Z"} for e in exploits],
        "members": {str(n): s for n, s in sched.items()},
        "best": None if best is None else {"number": best.number, "value": best.value, "schedule": sched[best.number]},
    }
