"""The read API against real studies: SQL-side sort, filter, pagination and thinning agree with
the trials computed in Python, and the database is opened read-only."""
from __future__ import annotations

import itertools
import math
import shutil
import sqlite3

import pytest
from dashboard_names import PARETO, PBT, SCALING, STEPPER, XSS

from analysis.importance import importance_view
from analysis.pareto import pareto_view
from analysis.scaling import scaling_view
from storage import StorageError, StudyNotFound, open_storage
from storage.read_api import READ_API_VERSION, ReadAPI, parse_filter


@pytest.fixture(scope="module")
def api(dash_url):
    with ReadAPI(dash_url) as a:
        yield a


@pytest.fixture(scope="module")
def stepper_trials(dash_url):
    with open_storage(dash_url, create=False) as st:
        return st.get_trials(st.get_study(STEPPER).id)


def test_studies_counts_and_best_match_storage(api, dash_url):
    rows = {s["name"]: s for s in api.studies()}
    assert set(rows) == {STEPPER, PARETO, SCALING, PBT, XSS}
    with open_storage(dash_url, create=False) as st:
        for name in (STEPPER, PARETO, SCALING):
            row = rows[name]
            study = st.get_study(name)
            trials = st.get_trials(study.id)
            best = st.best_trial(study.id, study.directions[0])
            assert row["total"] == len(trials)
            assert row["done"] == sum(t.state in ("COMPLETE", "PRUNED") for t in trials)
            assert row["best"] == pytest.approx(best.value)
            assert row["algorithm"] == "random" and row["state"] == "COMPLETE"
            assert row["duration_s"] > 0


def test_study_lists_space_metrics_and_views(api):
    s = api.study(STEPPER)
    assert [p["name"] for p in s["space"]] == ["x", "kind", "width"]
    assert s["report_metrics"] == ["loss"] and s["read_api_version"] == READ_API_VERSION
    assert not s["has_pareto"] and not s["has_scaling"] and not s["has_lineage"]
    assert api.study(PBT)["has_lineage"]
    assert api.study(PARETO)["has_pareto"]
    assert api.study(SCALING)["has_scaling"]
    with pytest.raises(StudyNotFound):
        api.study("no-such-study")


def _key(t, sort):
    if sort == "value":
        return t.value
    if sort.startswith("params."):
        return t.params.get(sort[7:])
    return getattr(t, sort)


@pytest.mark.parametrize("sort,descending", [("number", False), ("value", False), ("value", True),
                                             ("params.x", True), ("params.kind", False), ("params.width", False)])
def test_trial_pages_follow_sql_sort_and_paginate(api, stepper_trials, sort, descending):
    expected = sorted(stepper_trials, key=lambda t: t.number)
    expected = sorted(expected, key=lambda t: _key(t, sort), reverse=descending)
    # ties keep trial-number order in both directions
    expected = [t for _, grp in itertools.groupby(expected, key=lambda t: _key(t, sort))
                for t in sorted(grp, key=lambda t: t.number)]
    got = []
    for offset in range(0, len(stepper_trials), 7):
        page = api.trials_page(STEPPER, offset=offset, limit=7, sort=sort, descending=descending)
        assert page["total"] == len(stepper_trials)
        got.extend(r["number"] for r in page["rows"])
    assert got == [t.number for t in expected]


def test_trial_filter_matches_python(api, stepper_trials):
    page = api.trials_page(STEPPER, limit=500, filter="params.x < 0.5 and params.kind = a, value >= 0.2")
    expected = [t.number for t in stepper_trials if t.params["x"] < 0.5 and t.params["kind"] == "a" and t.value >= 0.2]
    assert [r["number"] for r in page["rows"]] == expected and page["total"] == len(expected)
    page = api.trials_page(STEPPER, limit=500, states=["COMPLETE"], filter="number >= 20")
    assert [r["number"] for r in page["rows"]] == [t.number for t in stepper_trials if t.number >= 20]
    assert api.trials_page(STEPPER, filter="params.kind ~ b")["total"] == sum(t.params["kind"] == "b" for t in stepper_trials)


@pytest.mark.parametrize("text,message", [
    ("lr", "is not FIELD OP VALUE"), ("bogus = 1", "unknown filter field"),
    ("value < abc", "needs a number"), ("state < x", "compares text"), ("number ~ 1", "is numeric"),
])
def test_bad_filters_are_rejected_with_the_fix(text, message):
    with pytest.raises(ValueError, match=message):
        parse_filter(text)


def test_bad_page_arguments_are_rejected(api):
    with pytest.raises(ValueError, match="limit"):
        api.trials_page(STEPPER, limit=0)
    with pytest.raises(ValueError, match="cannot sort by"):
        api.trials_page(STEPPER, sort="params.nope")
    with pytest.raises(ValueError, match="state must be one of"):
        api.trials_page(STEPPER, states=["DONE"])


def test_history_best_so_far(api, stepper_trials):
    h = api.history(STEPPER)
    assert h["numbers"] == [t.number for t in stepper_trials if t.state == "COMPLETE"]
    assert h["best"] == list(itertools.accumulate(h["values"], min))


def test_learning_curves_are_thinned_in_sql_keeping_the_last_step(api, dash_url):
    full = api.learning_curves(STEPPER, "loss", limit=500, points=1000)
    assert full["total"] == 25 and len(full["curves"]) == 25
    assert all(c["steps"] == [1, 2, 3, 4, 5, 6] for c in full["curves"])
    thin = api.learning_curves(STEPPER, "loss", limit=3, points=3)
    assert len(thin["curves"]) == 3
    for c in thin["curves"]:
        assert c["steps"][-1] == 6 and len(c["steps"]) <= 4 and c["steps"][0] == 1
    # the first page holds the best trials first
    best = api.trials_page(STEPPER, limit=3, sort="value")["rows"]
    assert [c["number"] for c in thin["curves"]] == [r["number"] for r in best]


def test_trial_detail_has_reports_checkpoints_and_attempts(api):
    t = api.trial(STEPPER, 4)
    assert t["state"] == "COMPLETE" and t["attempts"] == 1 and t["n_reports"] == 6
    assert [r["step"] for r in t["reports"]] == [1, 2, 3, 4, 5, 6]
    assert [c["step"] for c in t["checkpoints"]] == [1, 2, 3, 4, 5, 6]
    assert t["values"][0] == pytest.approx(t["reports"][-1]["metrics"]["loss"])
    with pytest.raises(KeyError):
        api.trial(STEPPER, 999)


def test_pareto_front_matches_brute_force(api):
    d = pareto_view(api, PARETO)
    pts = d["values"]

    def dominated(i):
        return any(all(a <= b for a, b in zip(pts[j], pts[i])) and any(a < b for a, b in zip(pts[j], pts[i]))
                   for j in range(len(pts)) if j != i)

    assert d["front"] == [not dominated(i) for i in range(len(pts))]
    assert 0 < sum(d["front"]) < len(pts)
    with pytest.raises(ValueError, match="needs two or more"):
        pareto_view(api, STEPPER)


def test_importance_names_its_method(api):
    imp = importance_view(api, STEPPER)
    assert set(imp["importance"]) == {"x", "kind", "width"}
    assert imp["method"] and imp["n_trials"] == 25
    assert math.isclose(sum(imp["importance"].values()), 1.0, rel_tol=1e-6) or "Spearman" in imp["method"]
    # x drives the stepper's loss, (x - 0.5)^2 + 1/steps; the other two are noise
    assert max(imp["importance"], key=imp["importance"].get) == "x"


def test_scaling_fit_recovers_the_toy_law_or_says_why_not(api):
    s = scaling_view(api, SCALING, n_bootstrap=20)
    assert s["available"], s["reason"]
    assert s["warning"] is None
    n, d = s["points"]["N"], s["points"]["D"]
    assert len(n) == 14
    p = s["fit"]["params"]
    for N, D, L in zip(n, d, s["points"]["loss"]):
        assert p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"] == pytest.approx(L, rel=0.02)
    assert s["curves"][0]["N"][-1] == pytest.approx(10 * max(n))
    missing = scaling_view(api, STEPPER)
    assert not missing["available"] and "params" in missing["reason"]


def test_database_is_opened_read_only(api):
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    with pytest.raises(OperationalError, match="readonly|read-only|query_only"):
        with api.engine.begin() as conn:
            conn.execute(text("DELETE FROM reports"))
    assert api.learning_curves(STEPPER, limit=1)["total"] == 25


@pytest.mark.postgres
def test_postgres_connection_is_read_only(pg_url):
    from sqlalchemy import text
    from sqlalchemy.exc import InternalError

    open_storage(pg_url).close()
    with ReadAPI(pg_url) as a:
        assert a.studies() == []
        with a.engine.connect() as conn:
            assert conn.scalar(text("SHOW transaction_read_only")) == "on"
        with pytest.raises(InternalError, match="read-only transaction"):
            with a.engine.begin() as conn:
                conn.execute(text("DELETE FROM studies"))


def test_missing_file_and_old_schema_are_refused_without_writing(tmp_path, dash_url):
    missing = tmp_path / "none.db"
    with pytest.raises(StorageError, match="no database file"):
        ReadAPI(f"sqlite:///{missing}")
    assert not missing.exists()
    old = tmp_path / "old.db"
    shutil.copy(dash_url[len("sqlite:///"):], old)
    with sqlite3.connect(old) as conn:
        conn.execute("UPDATE search_alembic_version SET version_num = '0001'")
    with pytest.raises(StorageError, match="search db upgrade"):
        ReadAPI(f"sqlite:///{old}")


def test_unreachable_storage_error_hides_the_password():
    with pytest.raises(StorageError) as info:
        ReadAPI("postgresql+psycopg://someone:Sup3rSecretPw@127.0.0.1:1/nodb")
    assert "Sup3rSecretPw" not in str(info.value) and "***" in str(info.value)


def test_lineage_lists_every_exploit_and_member(api, dash_url):
    with open_storage(dash_url, create=False) as st:
        study = st.get_study(PBT)
        exploits, trials = st.get_exploits(study.id), st.get_trials(study.id)
    d = api.lineage(PBT)
    assert exploits, "the PBT toy study should exploit at least once"
    assert [(e["number"], e["parent"], e["step"], e["parent_step"]) for e in d["exploits"]] == [
        (e.number, e.parent_number, e.step, e.parent_step) for e in exploits]
    assert [e["params_after"] for e in d["exploits"]] == [e.params_after for e in exploits]
    assert [m["number"] for m in d["members"]] == [t.number for t in trials]
    assert all(m["last_step"] == 20 for m in d["members"])
    assert api.lineage(STEPPER)["exploits"] == []
