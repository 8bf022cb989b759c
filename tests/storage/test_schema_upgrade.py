"""A database made by the previous released schema (revision 0001, kept as a fixture) upgrades
with `search db upgrade`, and its interrupted study resumes."""
from __future__ import annotations

import os
import shutil

from search.cli import main
from storage import TrialState, open_storage

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "schema-0001.sqlite")


def test_old_database_upgrades_and_resumes(tmp_path, capsys, monkeypatch):
    db = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, db)
    url = f"sqlite:///{db}"
    monkeypatch.chdir(tmp_path)
    assert main(["studies", "--storage", url]) == 2
    assert "search db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade", "--storage", url]) == 0
    assert "schema revision 0003" in capsys.readouterr().out
    assert main(["resume", "old", "--storage", url, "--quiet"]) == 0
    with open_storage(url) as st:
        trials = st.get_trials(st.get_study("old").id)
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.params["x"] for t in trials[:3]] == [0.1, 0.5, 0.9]  # kept as they were
    assert trials[3].params == {"x": 0.3} and trials[3].attempt == 1 and trials[3].failures == 0


FIXTURE_0002 = os.path.join(os.path.dirname(FIXTURE), "schema-0002.sqlite")


def test_pending_decisions_move_from_algorithm_state_to_their_table(tmp_path):
    """Revision 0003: the stop and the PBT exploit an interrupted run left pending (a JSON document
    under the ``decisions`` key of algorithm_state, as revision 0002 stored them) become rows of
    pending_decisions, so `search resume` still carries them out; PBT's own state stays."""
    from storage.records import DecisionKind

    db = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE_0002, db)
    url = f"sqlite:///{db}"
    assert main(["db", "upgrade", "--storage", url]) == 0
    with open_storage(url) as st:
        sid = st.get_study("old-pbt").id
        trials = {t.number: t for t in st.get_trials(sid)}
        decisions = st.get_decisions(sid)
        assert st.get_algorithm_state(sid) == {"algorithm": {"ready": {"1": 3}}}
    assert set(decisions) == {trials[1].id, trials[2].id}
    exploit, stop = decisions[trials[1].id], decisions[trials[2].id]
    assert (exploit.kind, exploit.attempt, exploit.step) == (DecisionKind.EXPLOIT, 0, 3)
    assert (exploit.parent, exploit.parent_step, dict(exploit.params)) == (0, 3, {"lr": 0.012})
    assert (stop.kind, stop.step, stop.parent, stop.params) == (DecisionKind.STOP, 3, None, None)
