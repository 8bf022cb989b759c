"""The read API against real studies: SQL-side sort, filter, pagination and thinning agree with
the trials computed in Python, and the database is opened read-only."""
from __future__ import annotations

import itertools
import math
import shutil
import sqlite3

import pytest
from dashboard_names import ASHA, PARETO, PBT, SCALING, STEPPER, XSS

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
    assert set(rows) == {STEPPER, PARETO, SCALING, PBT, ASHA, XSS}
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


# -- every trial in the plots, downsampling, live updates, importance over stopped trials -------------


def _last_loss(st, trial):
    reports = st.get_reports(trial.id)
    return [r for r in reports if r.step == trial.last_step][-1].metrics["loss"]


def test_history_holds_pruned_trials_at_their_last_report(api, dash_url):
    h = api.history(ASHA)
    with open_storage(dash_url, create=False) as st:
        trials = st.get_trials(st.get_study(ASHA).id)
        last = {t.number: (_last_loss(st, t), t.last_step) for t in trials if t.state == "PRUNED"}
    assert h["numbers"] == [t.number for t in trials if t.state == "COMPLETE"] == [0]
    assert h["stopped"]["numbers"] == sorted(last) == list(range(1, 8))
    assert h["stopped"]["states"] == ["PRUNED"] * 7
    assert h["stopped"]["values"] == pytest.approx([last[n][0] for n in sorted(last)])
    assert h["stopped"]["steps"] == [last[n][1] for n in sorted(last)]
    assert h["best_line"] == {"numbers": [0], "values": [h["values"][0]]} and h["best_value"] == h["values"][0]
    assert (h["total"], h["total_stopped"]) == (1, 7)


def test_history_downsamples_to_the_envelope_and_keeps_the_exact_best_line(api, stepper_trials):
    done = sorted((t.number, t.value) for t in stepper_trials if t.state == "COMPLETE")
    h = api.history(STEPPER, max_points=16)
    assert h["total"] == len(done) == 25 and h["shown"] == len(h["numbers"]) <= 16
    values = [v for _, v in done]
    assert min(values) in h["values"] and max(values) in h["values"]
    # each of 8 bins of the number axis keeps its lowest and highest value
    width = (done[-1][0] - done[0][0] + 1) / 8
    for b in range(8):
        in_bin = [(n, v) for n, v in done if int((n - done[0][0]) / width) == b]
        kept = [v for n, v in zip(h["numbers"], h["values"]) if int((n - done[0][0]) / width) == b]
        assert sorted(kept) == sorted({min(v for _, v in in_bin), max(v for _, v in in_bin)}) or len(in_bin) == len(kept) == 1
    line, cur = [], None
    for n, v in done:
        if cur is None or v < cur:
            cur = v
            line.append((n, v))
    assert list(zip(h["best_line"]["numbers"], h["best_line"]["values"])) == line
    full = api.history(STEPPER)
    assert full["numbers"] == [n for n, _ in done] and full["shown"] == 25
    with pytest.raises(ValueError, match="max_points"):
        api.history(STEPPER, max_points=3)


def test_params_include_stopped_trials_with_their_state(api):
    d = api.param_points(ASHA)
    assert d["numbers"] == [0] and d["stopped"]["numbers"] == list(range(1, 8))
    assert d["stopped"]["params"]["width"] == [8 * (i + 1) for i in range(1, 8)]
    assert d["stopped"]["states"] == ["PRUNED"] * 7 and d["stopped"]["total"] == 7


def test_importance_counts_pruned_trials_at_a_common_step(api, dash_url, capsys):
    from analysis.importance import importance_view as study_importance

    at = api.values_at_step(ASHA)
    with open_storage(dash_url, create=False) as st:
        trials = {t.number: t for t in st.get_trials(st.get_study(ASHA).id)}
        reached = sorted((t.last_step for t in trials.values()), reverse=True)
        assert at["step"] == reached[len(reached) // 2 - 1]  # the largest step half of the 8 reached
        for n, v in zip(at["numbers"], at["values"]):
            upto = [r for r in st.get_reports(trials[n].id) if r.step <= at["step"]]
            assert v == pytest.approx(upto[-1].metrics["loss"])
        expected = [n for n, t in sorted(trials.items()) if t.last_step >= at["step"]]
    assert at["numbers"] == expected and len(expected) >= 4  # at least half of the 8
    d = study_importance(api, ASHA)
    assert d["basis"] == "step" and d["n_trials"] == len(expected)
    assert d["states"] == {"COMPLETE": 1, "PRUNED": len(expected) - 1}
    assert set(d["importance"]) == {"x", "width"} and sum(d["importance"].values()) == pytest.approx(1.0)
    # `search importance` gives the same answer as the dashboard
    import json

    from search.cli import main

    capsys.readouterr()
    assert main(["importance", ASHA, "--storage", dash_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(d))
    # a study whose trials all completed keeps the final values
    assert study_importance(api, STEPPER)["basis"] == "final"


def test_study_names_the_scheduler_rungs(api):
    s = api.study(ASHA)
    assert s["scheduler"] == "asha" and s["rungs"] == [1, 3, 9]
    assert api.study(STEPPER)["rungs"] == [] and api.study(STEPPER)["scheduler"] is None


def test_updates_answer_what_changed_after_the_cursor(tmp_path):
    url = f"sqlite:///{tmp_path / 'live.db'}"
    with open_storage(url) as st:
        study = st.create_study("live", metrics=["loss"], directions=["minimize"], spec={"name": "live"})
        a = st.create_trial(study.id, {"x": 0.1}, worker="w" * 56)
        st.add_reports([(a.id, 0, 1, {"loss": 0.9})])
        with ReadAPI(url) as api:
            first = api.updates("live")
            assert first["changed"] == [] and first["points"] == []
            assert [t["number"] for t in first["running"]] == [0]
            assert first["running"][0]["latest"] == {"step": 1, "metrics": {"loss": 0.9}}
            assert first["summary"]["running"] == 1
            b = st.create_trial(study.id, {"x": 0.2})
            st.add_reports([(a.id, 0, 2, {"loss": 0.7}), (b.id, 0, 1, {"loss": 0.8})])
            st.finish_trial(a.id, 0, state="PRUNED", metrics={"loss": 0.7}, last_step=2)
            nxt = api.updates("live", first["cursor"], watch=[0])
            assert {t["number"]: (t["state"], t["value"]) for t in nxt["changed"]} == {0: ("PRUNED", 0.7), 1: ("RUNNING", 0.8)}
            assert {p["number"]: (p["steps"], p["values"]) for p in nxt["points"]} == {0: ([2], [0.7]), 1: ([1], [0.8])}
            assert [t["number"] for t in nxt["running"]] == [1]
            # nothing new: nothing answered but the running trial
            again = api.updates("live", nxt["cursor"], watch=[1])
            assert again["points"] == [] and [t["number"] for t in again["changed"]] == [1]
            with pytest.raises(ValueError, match="cursor"):
                api.updates("live", "12;drop")
            with pytest.raises(ValueError, match="watch"):
                api.updates("live", nxt["cursor"], watch=list(range(2000)))


def test_trial_shows_attempts_ancestry_and_the_best_curve(api, dash_url):
    with open_storage(dash_url, create=False) as st:
        study = st.get_study(PBT)
        exploits = st.get_exploits(study.id)
        best = st.best_trial(study.id, "minimize")
    member = exploits[-1].number
    t = api.trial(PBT, member)
    assert t["ancestry"][0]["parent"] == exploits[-1].parent_number and t["ancestry"][0]["step"] == exploits[-1].step
    for newer, older in zip(t["ancestry"], t["ancestry"][1:]):
        assert older["number"] == newer["parent"]
    assert len(t["attempt_history"]) == t["attempts"]
    assert sum(a["ended"] == "EXPLOIT" for a in t["attempt_history"]) == sum(e.number == member for e in exploits)
    assert sum(a["reports"] for a in t["attempt_history"]) == t["n_reports"]
    assert t["best"]["number"] == best.number and t["best"]["value"] == pytest.approx(best.value)
    parent = api.trial(PBT, exploits[-1].parent_number, with_best=False)
    assert "best" not in parent and member in [c["number"] for c in parent["children"]]


def test_reproduce_file_is_a_valid_study_of_exactly_that_trial(api, dash_url):
    import yaml

    from dashboards._commands import trial_commands
    from search.config import parse_study

    for name, number in ((ASHA, 3), (PBT, 1)):
        t = api.trial(name, number, with_best=False)
        rec = api.get_study(name)
        cmds = trial_commands(rec.spec, name, rec.state, t, api.url_safe)
        cfg = parse_study(yaml.safe_load(cmds["reproduce_yaml"]))
        assert cfg.trials == 1 and not cfg.scheduler and [dict(c) for c in cfg.enqueue] == [t["params"]]
        assert cmds["reproduce"].startswith(f"search run {cmds['reproduce_file']} --storage ")
        assert cmds["resume"] is None  # finished trials of a finished study: nothing to resume
    assert "final ones from step 0" in (cmds["reproduce_note"] or "")


def test_pareto_answer_keeps_the_front_and_thins_the_dominated(api):
    from dashboards.app import _thin_pareto

    d = pareto_view(api, PARETO)
    assert _thin_pareto(d)["shown"] == _thin_pareto(d)["total"] == len(d["numbers"])
    n_front = sum(d["front"])
    thin = _thin_pareto(d, max_points=n_front + 2)
    assert thin["total"] == len(d["numbers"]) and thin["shown"] == n_front + 2 < len(d["numbers"])
    kept = dict(zip(thin["numbers"], zip(thin["values"], thin["front"])))
    for number, values, on in zip(d["numbers"], d["values"], d["front"]):
        if on:
            assert kept[number] == (values, True)
    assert thin["metrics"] == d["metrics"] and thin["numbers"] == sorted(thin["numbers"])


@pytest.mark.postgres
def test_every_trial_views_agree_on_postgres(pg_url, tmp_path):
    """The ASHA study run again on PostgreSQL: history, parameters, the common step, live updates
    and the trial view answer there as on SQLite (JSON extraction, window functions, the cursor)."""
    import search
    from dashboard_names import asha_study

    from analysis.importance import importance_view as study_importance

    search.run(asha_study(ASHA, str(tmp_path / "art")), storage=pg_url, backend="inprocess")
    with ReadAPI(pg_url) as pg:
        with open_storage(pg_url, create=False) as st:
            trials = st.get_trials(st.get_study(ASHA).id)
            last = {t.number: _last_loss(st, t) for t in trials if t.state != "COMPLETE"}
        h = pg.history(ASHA)
        assert h["numbers"] == [t.number for t in trials if t.state == "COMPLETE"]
        assert dict(zip(h["stopped"]["numbers"], h["stopped"]["values"])) == pytest.approx(last)
        assert pg.param_points(ASHA)["stopped"]["numbers"] == sorted(last)
        at = pg.values_at_step(ASHA)
        assert at["numbers"] == [t.number for t in trials if t.last_step >= at["step"]] and len(at["numbers"]) >= 4
        assert study_importance(pg, ASHA)["importance"]
        first = pg.updates(ASHA)
        assert pg.updates(ASHA, first["cursor"], watch=[1])["changed"][0]["number"] == 1
        t = pg.trial(ASHA, 3)
        assert t["best"]["number"] == 0 and len(t["attempt_history"]) == t["attempts"]
        page = pg.trials_page(ASHA, sort="params.x", descending=True, limit=3)
        assert [r["params"]["x"] for r in page["rows"]] == sorted((t.params["x"] for t in trials), reverse=True)[:3]
