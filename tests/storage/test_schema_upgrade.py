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
    assert "schema revision 0002" in capsys.readouterr().out
    assert main(["resume", "old", "--storage", url, "--quiet"]) == 0
    with open_storage(url) as st:
        trials = st.get_trials(st.get_study("old").id)
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.params["x"] for t in trials[:3]] == [0.1, 0.5, 0.9]  # kept as they were
    assert trials[3].params == {"x": 0.3} and trials[3].attempt == 1 and trials[3].failures == 0
