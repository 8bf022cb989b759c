"""Decisions are typed, frozen values; records handed to algorithms are frozen all the way down."""
from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import pytest

from search.decisions import CONTINUE, Continue, Exploit, Pause, Pending, Stop
from storage.records import DecisionKind, TrialRecord, TrialState


def test_each_decision_kind_is_its_own_frozen_type():
    assert [d.action for d in (CONTINUE, Stop(), Pause(), Exploit(parent=1, params={"lr": 0.1}))] == [
        DecisionKind.CONTINUE, DecisionKind.STOP, DecisionKind.PAUSE, DecisionKind.EXPLOIT]
    assert Stop().action == "stop"  # string enums compare equal to what storage holds
    e = Exploit(parent=3, params={"lr": 0.1}, parent_step=8, reason="bottom 25%")
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.parent = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        e.params["lr"] = 1.0  # type: ignore[index]
    assert dict(e.extra) == {"parent": 3, "params": {"lr": 0.1}, "parent_step": 8}
    assert Continue(state_changed=True) != CONTINUE


@pytest.mark.parametrize("decision", [Stop("worse than the median"), Pause("not yet promotable"),
                                      Exploit(parent=0, params={"lr": 0.02, "wd": 1e-4}, parent_step=4, reason="r")])
def test_a_pending_decision_survives_its_storage_record(decision):
    p = Pending(trial_id=7, attempt=2, step=12, decision=decision)
    assert Pending.from_record(p.to_record()) == p


def test_records_are_frozen_all_the_way_down():
    t = TrialRecord(id=1, study_id=1, number=0, state="COMPLETE", params={"lr": 0.1, "arch": {"depth": 2}},
                    metrics={"loss": 0.5})
    assert t.state is TrialState.COMPLETE and t.state == "COMPLETE" and f"{t.state}" == "COMPLETE"
    for change in (lambda: t.params.__setitem__("lr", 1.0), lambda: t.params["arch"].update(depth=3),
                   lambda: t.metrics.pop("loss"), lambda: t.params.clear()):
        with pytest.raises(TypeError, match="frozen"):
            change()
    assert t.params == {"lr": 0.1, "arch": {"depth": 2}}
    mine = dict(t.params)  # a copy is the caller's to change
    mine["lr"] = 1.0
    assert t.params["lr"] == 0.1
    assert json.loads(json.dumps(t.params)) == {"lr": 0.1, "arch": {"depth": 2}}
    assert pickle.loads(pickle.dumps(t)) == t and copy.deepcopy(t) == t
