"""Databases made by earlier schemas (revisions 0001 to 0003, kept as fixtures) upgrade with
`search db upgrade`: an interrupted study resumes, and what each revision adds is filled in."""
from __future__ import annotations

import os
import shutil

import pytest

from search.cli import main
from storage import TrialState, open_storage
from storage._rdb import HEAD_REVISION

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "schema-0001.sqlite")


def test_old_database_upgrades_and_resumes(tmp_path, capsys, monkeypatch):
    db = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, db)
    url = f"sqlite:///{db}"
    monkeypatch.chdir(tmp_path)
    assert main(["studies", "--storage", url]) == 2
    assert "search db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade", "--storage", url]) == 0
    assert f"schema revision {HEAD_REVISION}" in capsys.readouterr().out
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


def test_head_revision_constant_is_the_newest_migration():
    """Opening a database compares its revision with ``HEAD_REVISION`` (no Alembic at runtime),
    so the constant must name the newest migration script."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from storage._rdb import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    assert ScriptDirectory.from_config(cfg).get_heads() == [HEAD_REVISION]


FIXTURE_0003 = os.path.join(os.path.dirname(FIXTURE), "schema-0003.sqlite")


def test_0003_database_gets_last_values_and_trial_params(tmp_path, capsys):
    """Revision 0004 on a database made at 0003 (an ASHA-like study: complete, pruned, running,
    waiting and failed trials; one whose newest report lacks the metric, one whose only value was
    NaN, one without the categorical parameter): each trial's last value of the first metric and
    its parameters are filled in, so the dashboard's history and its table sorted or filtered by a
    parameter answer as they did, and later reports keep the value current."""
    from storage.read_api import open_read_api

    db = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE_0003, db)
    url = f"sqlite:///{db}"
    assert main(["studies", "--storage", url]) == 2
    assert "search db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade", "--storage", url]) == 0
    assert f"schema revision {HEAD_REVISION}" in capsys.readouterr().out
    with open_read_api(url) as api:
        h = api.history("old-asha")
        # trial 4's newest report has no loss: its earlier one stands; trial 5 only reported NaN
        assert (h["numbers"], h["values"]) == ([0], [0.25])
        assert h["stopped"]["numbers"] == [1, 2, 4]
        assert h["stopped"]["values"] == pytest.approx([1.7, 0.8, 0.7])
        by_lr = api.trials_page("old-asha", sort="params.lr")["rows"]
        assert [r["number"] for r in by_lr] == [2, 0, 3, 4, 5, 1]
        by_lr = api.trials_page("old-asha", sort="params.lr", descending=True, offset=1, limit=3)["rows"]
        assert [r["number"] for r in by_lr] == [5, 4, 3]
        assert {r["number"] for r in api.trials_page("old-asha", filter="params.opt = sgd")["rows"]} == {1, 3, 4}
        assert {r["number"] for r in api.trials_page("old-asha", filter="params.opt != sgd")["rows"]} == {0, 2, 5}
        assert {r["number"] for r in api.trials_page("old-asha", filter="params.lr >= 0.2")["rows"]} == {1, 4, 5}
    with open_storage(url) as st:
        sid = st.get_study("old-asha").id
        running = st.get_trial(sid, 2)
        st.add_reports([(running.id, running.attempt, 3, {"loss": 0.6})])
    with open_read_api(url) as api:
        h = api.history("old-asha")
        assert dict(zip(h["stopped"]["numbers"], h["stopped"]["values"]))[2] == pytest.approx(0.6)


def test_0004_upgrade_on_every_storage(storage_url):
    """The same upgrade on SQLite and PostgreSQL: a database brought to 0003 by Alembic, its rows
    written as 0003 wrote them, then opened with ``upgrade=True``."""
    from datetime import datetime

    import sqlalchemy as sa
    from alembic import command

    from storage._rdb import SchemaOutdated, Storage, _alembic_config
    from storage.read_api import open_read_api

    engine = Storage._make_engine(storage_url)
    now = datetime(2026, 12, 1)
    studies = sa.table("studies", *(sa.column(c) for c in ("id", "name", "state", "created_at")),
                       sa.column("directions", sa.JSON), sa.column("metrics", sa.JSON), sa.column("spec", sa.JSON))
    trials = sa.table("trials", *(sa.column(c) for c in ("id", "study_id", "number", "state", "attempt", "last_step",
                                                         "created_at")),
                      sa.column("params", sa.JSON), sa.column("metrics", sa.JSON))
    reports = sa.table("reports", *(sa.column(c) for c in ("trial_id", "attempt", "step")),
                       sa.column("metrics", sa.JSON))
    spec = {"space": {"lr": {"type": "float", "low": 0.0, "high": 1.0}, "opt": {"type": "categorical",
                                                                                  "choices": ["a", "b"]}}}
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0003")
        conn.execute(studies.insert(), [{"id": 1, "name": "s", "state": "RUNNING", "created_at": now,
                                         "directions": ["maximize"], "metrics": ["acc"], "spec": spec}])
        conn.execute(trials.insert(), [
            {"id": 10 + n, "study_id": 1, "number": n, "state": "PRUNED", "attempt": 0, "last_step": 2,
             "created_at": now, "params": {"lr": lr, "opt": opt}, "metrics": {}}
            for n, lr, opt in [(0, 0.3, "a"), (1, 0.1, "b"), (2, 0.3, "b")]])
        conn.execute(reports.insert(), [{"trial_id": 10 + n, "attempt": 0, "step": s, "metrics": {"acc": 0.1 * n + s}}
                                        for n in range(3) for s in (1, 2)])
    engine.dispose()
    with pytest.raises(SchemaOutdated, match="search db upgrade"):
        Storage(storage_url).close()
    with Storage(storage_url, upgrade=True) as st:
        assert st.schema_revision() == HEAD_REVISION
    with open_read_api(storage_url) as api:
        h = api.history("s")
        assert h["stopped"]["numbers"] == [0, 1, 2]
        assert h["stopped"]["values"] == pytest.approx([2.0, 2.1, 2.2])
        # ties on lr come in trial number order, in both directions
        assert [r["number"] for r in api.trials_page("s", sort="params.lr")["rows"]] == [1, 0, 2]
        assert [r["number"] for r in api.trials_page("s", sort="params.lr", descending=True)["rows"]] == [0, 2, 1]
        assert [r["number"] for r in api.trials_page("s", filter="params.lr > 0.2 and params.opt = b")["rows"]] == [2]
