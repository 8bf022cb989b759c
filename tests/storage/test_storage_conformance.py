"""One conformance suite over every storage: SQLite and the machine's PostgreSQL."""
from __future__ import annotations

import threading

import pytest

from storage import (SchemaOutdated, StorageError, StudyExists, StudyNotFound, TrialState,
                     open_storage, safe_url)


@pytest.fixture
def st(storage_url):
    s = open_storage(storage_url)
    yield s
    s.close()


def _study(st, name="s1", directions=("minimize",)):
    return st.create_study(name, metrics=[f"m{i}" for i in range(len(directions))], directions=list(directions),
                           spec={"name": name})


def test_schema_is_alembic_managed_with_own_version_table(st):
    from sqlalchemy import inspect

    from storage._rdb import HEAD_REVISION

    assert st.schema_revision() == HEAD_REVISION
    tables = set(inspect(st.engine).get_table_names())
    assert {"studies", "trials", "reports", "checkpoints", "algorithm_state", "exploits", "trial_params",
            "search_alembic_version"} <= tables
    assert "alembic_version" not in tables


def test_study_roundtrip_and_unique_name(st):
    s = _study(st, "alpha", ("maximize", "minimize"))
    got = st.get_study("alpha")
    assert got.id == s.id and got.directions == ("maximize", "minimize") and got.metrics == ("m0", "m1")
    assert got.spec == {"name": "alpha"} and got.state == "RUNNING"
    with pytest.raises(StudyExists, match="already exists"):
        _study(st, "alpha")
    with pytest.raises(StudyNotFound, match="no study named 'beta'"):
        st.get_study("beta")
    assert [x.name for x in st.list_studies()] == ["alpha"]


@pytest.mark.parametrize("name", ["", "x" * 129])
def test_bad_study_names_rejected_the_same_everywhere(st, name):
    with pytest.raises(ValueError, match="1 to 128 characters"):
        _study(st, name)
    assert st.list_studies() == []


def test_trial_numbers_dense_and_unique_under_concurrency(st, storage_url):
    s = _study(st)
    errors = []

    def worker():
        try:
            local = open_storage(storage_url)
            for _ in range(15):
                local.create_trial(s.id, {"x": 1})
            local.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    numbers = [t.number for t in st.get_trials(s.id)]
    assert numbers == list(range(90))


def test_unique_constraint_is_enforced_by_the_database(st):
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from storage._schema import TrialRow

    s = _study(st)
    st.create_trial(s.id, {})
    import datetime

    with pytest.raises(IntegrityError):
        with st.engine.begin() as conn:
            conn.execute(insert(TrialRow).values(study_id=s.id, number=0, state="RUNNING", params={}, metrics={},
                                                 attempt=0, created_at=datetime.datetime(2026, 1, 1)))


def test_finish_trial_only_for_the_live_attempt(st):
    s = _study(st)
    t = st.create_trial(s.id, {"x": 0.5})
    assert t.state == TrialState.RUNNING and t.attempt == 0
    [w] = st.requeue_running(s.id, reason="controller restarted")
    assert w.state == TrialState.WAITING and w.attempt == 1 and w.error == "controller restarted"
    # A late result from attempt 0 is rejected and changes nothing.
    assert st.finish_trial(t.id, 0, state=TrialState.COMPLETE, values=[1.0]) is None
    assert st.get_trial(s.id, 0).state == TrialState.WAITING
    r = st.start_trial(t.id)
    assert r.state == TrialState.RUNNING and r.attempt == 1
    done = st.finish_trial(t.id, 1, state=TrialState.COMPLETE, values=[2.0], metrics={"m0": 2.0, "bad": float("nan")},
                           last_step=7)
    assert done.state == TrialState.COMPLETE and done.values == (2.0,) and done.value == 2.0
    assert done.metrics == {"m0": 2.0, "bad": None} and done.last_step == 7
    assert st.finish_trial(t.id, 1, state=TrialState.FAILED) is None  # finished already
    with pytest.raises(StorageError, match="not WAITING"):
        st.start_trial(t.id)


def test_requeue_gives_up_after_max_retries(st):
    s = _study(st)
    t = st.create_trial(s.id, {})
    [w] = st.requeue_running(s.id, reason="controller restarted")  # not the trial's fault: not counted
    assert (w.attempt, w.failures) == (1, 0)
    st.start_trial(t.id)
    for retry in range(2):
        [w] = st.requeue_running(s.id, reason="lost", max_retries=2)
        assert w.state == TrialState.WAITING and w.failures == retry + 1 and w.attempt == retry + 2
        st.start_trial(t.id)
    [f] = st.requeue_running(s.id, reason="lost", max_retries=2)
    assert f.state == TrialState.FAILED and "gave up after 3 failed attempts" in f.error
    assert st.get_trials(s.id, states=[TrialState.RUNNING]) == []


def test_best_trial_respects_direction(st):
    for direction, expected in (("minimize", 1.0), ("maximize", 3.0)):
        s = _study(st, f"s-{direction}", (direction,))
        for v in (2.0, 1.0, 3.0):
            t = st.create_trial(s.id, {"v": v})
            st.finish_trial(t.id, 0, state=TrialState.COMPLETE, values=[v])
        t = st.create_trial(s.id, {"v": None})
        st.finish_trial(t.id, 0, state=TrialState.FAILED, error="x")
        assert st.best_trial(s.id, direction).value == expected


def test_reports_checkpoints_and_counts(st, tmp_path):
    s = _study(st)
    t = st.create_trial(s.id, {})
    st.add_reports([(t.id, 0, 1, {"loss": 1.0}), (t.id, 0, 2, {"loss": float("inf")})])
    reps = st.get_reports(t.id)
    assert [(r.step, r.metrics) for r in reps] == [(1, {"loss": 1.0}), (2, {"loss": None})]
    assert st.get_trial(s.id, 0).last_step == 2
    p1, p2 = tmp_path / "a.pt", tmp_path / "b.pt"
    p1.write_bytes(b"1")
    st.add_checkpoint(t.id, 0, 1, str(p1), "sha256:1")
    st.add_checkpoint(t.id, 0, 2, str(p2), "sha256:2")  # file never written: not usable
    assert st.latest_checkpoint(t.id).step == 1
    p2.write_bytes(b"2")
    assert st.latest_checkpoint(t.id).step == 2
    assert st.count_trials(s.id) == {s.id: {"RUNNING": 1}}


def test_algorithm_state_roundtrip(st):
    s = _study(st)
    assert st.get_algorithm_state(s.id) == {}
    st.set_algorithm_state(s.id, {"algorithm": {"population": [1, 2], "gen": 3}})
    st.set_algorithm_state(s.id, {"algorithm": {"population": [1, 2, 3], "gen": 4}, "decisions": {"7": {"a": 1}}})
    assert st.get_algorithm_state(s.id) == {"algorithm": {"population": [1, 2, 3], "gen": 4},
                                            "decisions": {"7": {"a": 1}}}


def test_unreachable_and_malformed_urls_fail_with_one_line():
    with pytest.raises(StorageError, match="cannot connect to storage postgresql"):
        open_storage("postgresql://bob:secret@127.0.0.1:1/nope")
    with pytest.raises(StorageError, match="not a valid SQLAlchemy URL"):
        open_storage("not a url")
    with pytest.raises(StorageError, match="does not exist"):
        open_storage("sqlite:////nonexistent-dir/x/search.db")
    assert "secret" not in safe_url("postgresql://bob:secret@host/db")


def test_schema_outdated_detected(sqlite_url):
    from sqlalchemy import text

    st = open_storage(sqlite_url)
    with st.engine.begin() as conn:
        conn.execute(text("UPDATE search_alembic_version SET version_num='0000old'"))
    st.close()
    with pytest.raises(SchemaOutdated, match="search db upgrade"):
        open_storage(sqlite_url)


def test_exploit_restarts_records_the_copy_and_the_lineage_at_once(st):
    s = _study(st)
    parent = st.create_trial(s.id, {"lr": 0.1})
    child = st.create_trial(s.id, {"lr": 0.01})
    r = st.exploit_trial(child.id, 0, params={"lr": 0.12}, step=10, parent_number=parent.number,
                         checkpoint=(8, "/ck/copy.pt", "sha256:c"))
    assert r.attempt == 1 and r.params == {"lr": 0.12} and r.state == TrialState.RUNNING
    [ck] = st.get_checkpoints(child.id)
    assert (ck.attempt, ck.step, ck.path, ck.checksum) == (1, 8, "/ck/copy.pt", "sha256:c")
    [e] = st.get_exploits(s.id)
    assert (e.number, e.parent_number, e.step, e.parent_step) == (1, 0, 10, 8)
    assert e.params_before == {"lr": 0.01} and e.params_after == {"lr": 0.12}
    # a stale attempt writes nothing; the same call again (a retry after a lost answer) answers the
    # trial as it left it, writing nothing more
    assert st.exploit_trial(child.id, 0, params={"lr": 1.0}, step=3, parent_number=0,
                            checkpoint=(2, "/ck/x.pt", "sha256:x")) is None
    again = st.exploit_trial(child.id, 0, params={"lr": 0.12}, step=10, parent_number=parent.number,
                             checkpoint=(8, "/ck/copy.pt", "sha256:c"))
    assert again == st.get_trial(s.id, child.number) and again.attempt == 1
    assert len(st.get_checkpoints(child.id)) == 1 and len(st.get_exploits(s.id)) == 1
    # with wait, the member goes to WAITING as the new attempt, for a later run to dispatch
    w = st.exploit_trial(child.id, 1, params={"lr": 0.2}, step=12, parent_number=0,
                         checkpoint=(12, "/ck/copy2.pt", "sha256:d"), wait=True)
    assert w.state == TrialState.WAITING and w.attempt == 2 and w.params == {"lr": 0.2}
    assert st.start_trial(child.id).attempt == 2
    assert [e.params_before for e in st.get_exploits(s.id)] == [{"lr": 0.01}, {"lr": 0.12}]


def test_latest_checkpoint_is_the_newest_recorded(st, tmp_path):
    s = _study(st)
    t = st.create_trial(s.id, {})
    for step, name in ((10, "own"), (8, "copied-from-parent")):
        p = tmp_path / f"{name}.pt"
        p.write_bytes(b"x")
        st.add_checkpoint(t.id, 0, step, str(p), "sha256:x")
    assert st.latest_checkpoint(t.id).path.endswith("copied-from-parent.pt")


def test_a_huge_error_is_stored_as_its_head_and_tail(st):
    """A 5 MB error message is not stored (nor printed) in full for every trial: head and tail are
    kept, with a note of how much was cut."""
    from storage._rdb import ERROR_MAX

    s = _study(st)
    t = st.create_trial(s.id, {"x": 1})
    error = "RuntimeError: " + "x" * 5_000_000 + " the cause at the end"
    done = st.finish_trial(t.id, t.attempt, state=TrialState.FAILED, error=error)
    assert len(done.error) <= ERROR_MAX and done.error.startswith("RuntimeError: xxx")
    assert done.error.endswith("the cause at the end") and "characters cut" in done.error
    assert st.get_trials(s.id)[0].error == done.error
    short = st.finish_trial(st.create_trial(s.id, {"x": 2}).id, 0, state=TrialState.FAILED, error="boom")
    assert short.error == "boom"


def test_reports_keep_each_trials_last_value_of_the_first_metric(st, storage_url):
    """``add_reports`` keeps ``last_value``: the first metric of the newest report that carried a
    finite one (a report without it, or with NaN, keeps the earlier value; within one batch the
    highest step wins), read by the dashboard's history for every trial not COMPLETE."""
    from storage.read_api import open_read_api

    s = st.create_study("lv", metrics=["loss", "acc"], directions=["minimize", "maximize"], spec={})
    a, b, c = (st.create_trial(s.id, {"x": float(i)}) for i in range(3))
    st.add_reports([(a.id, 0, 1, {"loss": 0.5, "acc": 0.1}), (b.id, 0, 1, {"acc": 0.3})])
    st.add_reports([(a.id, 0, 2, {"acc": 0.2}), (a.id, 0, 3, {"loss": float("nan")}),
                    (b.id, 0, 3, {"loss": 0.9}), (b.id, 0, 2, {"loss": 0.1})])
    st.add_reports([(c.id, 0, 1, {"loss": 2.0, "other": 1.0, "acc": 0.0})])
    with open_read_api(storage_url) as api:
        h = api.history("lv")
    assert dict(zip(h["stopped"]["numbers"], h["stopped"]["values"])) == {0: 0.5, 1: 0.9, 2: 2.0}
    assert [t.last_step for t in st.get_trials(s.id)] == [3, 3, 1]


def test_trial_params_follow_new_trials_and_exploits(st, storage_url):
    """The table's sort by a parameter reads ``trial_params``, which every write of a trial's
    params keeps: a new trial's, and a PBT exploit's new ones replacing the old. Missing values
    sort last in both orders, on both databases (their NULLs order differently)."""
    from storage.read_api import open_read_api

    spec = {"space": {"lr": {"type": "float", "low": 0.0, "high": 1.0},
                      "opt": {"type": "categorical", "choices": ["a", "b"]}}}
    s = st.create_study("tp", metrics=["loss"], directions=["minimize"], spec=spec)
    trials = [st.create_trial(s.id, {"lr": lr, "opt": opt}) for lr, opt in [(0.3, "a"), (0.1, "b"), (0.2, "a")]]
    st.exploit_trial(trials[0].id, 0, params={"lr": 0.05, "opt": "b"}, step=4, parent_number=1,
                     checkpoint=(4, "/ck/1", "sha"))
    st.create_trial(s.id, {"opt": "a"})  # no lr: last in either order, as a missing metric is
    st.finish_trial(trials[1].id, 0, state=TrialState.COMPLETE, values=[1.0], metrics={"acc": 0.5})
    st.finish_trial(trials[2].id, 0, state=TrialState.COMPLETE, values=[2.0], metrics={"acc": 0.7})
    with open_read_api(storage_url) as api:
        assert [r["number"] for r in api.trials_page("tp", sort="params.lr")["rows"]] == [0, 1, 2, 3]
        assert [r["number"] for r in api.trials_page("tp", sort="params.lr", descending=True)["rows"]] == [2, 1, 0, 3]
        assert [r["number"] for r in api.trials_page("tp", sort="params.lr", offset=2, limit=1)["rows"]] == [2]
        assert [r["number"] for r in api.trials_page("tp", sort="params.lr", offset=3)["rows"]] == [3]
        assert [r["number"] for r in api.trials_page("tp", sort="metrics.acc")["rows"]] == [1, 2, 0, 3]
        assert [r["number"] for r in api.trials_page("tp", sort="metrics.acc", descending=True)["rows"]] == [2, 1, 0, 3]
        assert [r["number"] for r in api.trials_page("tp", sort="value", descending=True)["rows"]] == [2, 1, 0, 3]
        assert [r["number"] for r in api.trials_page("tp", filter="params.opt = b")["rows"]] == [0, 1]
        assert [r["number"] for r in api.trials_page("tp", filter="params.lr < 0.15, params.opt != a")["rows"]] == [0, 1]
        page = api.trials_page("tp", sort="params.opt", filter="params.opt ~ a", descending=True)
        assert ([r["number"] for r in page["rows"]], page["total"]) == ([2, 3], 2)
        assert api.trials_page("tp", filter="params.opt ~ a", offset=5)["total"] == 2  # an empty page still counts
