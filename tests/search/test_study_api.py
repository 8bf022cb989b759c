"""The Python Study API: create/load, optimize with any callable, ask/tell, enqueue, reading a study,
and search.report() from any code inside a trial."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import search
from search.config import ConfigError
from storage import StudyExists, TrialState, open_storage
from testlib import cli_env


def _spec(name, trials=20, parallel=2, backend="inprocess", **extra):
    d = {"name": name, "objective": {"metric": "loss", "direction": "minimize"},
         "space": {"x": {"type": "float", "low": 0, "high": 1}},
         "budget": {"trials": trials, "parallel": parallel}, "backend": {"name": backend}}
    d.update(extra)
    return d


def _objective(config):
    x = config["x"]
    for step in range(1, 4):
        search.report(step, loss=(x - 0.3) ** 2 + 1 / step)
    return {"loss": (x - 0.3) ** 2}


def _issue_example(url, backend):
    study = search.create_study(_spec("py", backend=backend), storage=url, load_if_exists=True)
    summary = study.optimize(_objective, show_progress=False)
    frame = study.trials_dataframe()
    study.close()
    return study, summary, frame


def _check_issue_example(url, backend):
    study, first, frame = _issue_example(url, backend)
    assert first.complete == 20 and len(frame) == 20
    assert abs(study.best_trial.params["x"] - 0.3) < 0.2
    with open_storage(url) as st:  # reports came through search.report, with no reporter argument
        reports = st.get_reports(st.get_trials(st.get_study("py").id)[0].id)
    assert [r.step for r in reports] == [1, 2, 3]
    study2, second, frame2 = _issue_example(url, backend)  # the same script again continues the study
    assert len(frame2) == 20 and second.complete == 20 and second.requeued_at_start == 0
    assert {"number", "state", "value", "params_x", "metrics_loss", "duration"} <= set(frame2.columns)


def test_the_issue_example_runs_twice_in_process(sqlite_url, capsys):
    _check_issue_example(sqlite_url, "inprocess")


@pytest.mark.ray
@pytest.mark.slow
def test_the_issue_example_runs_twice_on_ray(ray_session, sqlite_url):
    _check_issue_example(sqlite_url, "ray")


def test_live_progress_is_shown(sqlite_url, capsys):
    study = search.create_study(_spec("bar", trials=4), storage=sqlite_url)
    study.optimize(_objective)
    err = capsys.readouterr().err
    assert "bar" in err and "4/4" in err and "best=" in err


def test_a_closure_is_an_objective_and_create_refuses_an_existing_name(sqlite_url):
    offset = 0.5

    def shifted(config):
        return (config["x"] - offset) ** 2

    study = search.create_study(_spec("closure", trials=6), storage=sqlite_url)
    assert study.optimize(shifted, show_progress=False).complete == 6
    with pytest.raises(StudyExists, match="load_if_exists=True"):
        search.create_study(_spec("closure", trials=6), storage=sqlite_url)
    again = search.load_study("closure", storage=sqlite_url)
    with pytest.raises(ConfigError, match=r"objective: .*pass it"):
        again.optimize(show_progress=False)
    assert again.optimize(shifted, n_trials=3, show_progress=False).complete == 9


def test_search_run_takes_a_callable_entrypoint(sqlite_url):
    spec = _spec("run-callable", trials=4)
    spec["trial"] = {"entrypoint": _objective}
    assert search.run(spec, storage=sqlite_url).complete == 4
    with open_storage(sqlite_url) as st:  # what is stored names the callable; it is never pickled
        stored = st.get_study("run-callable").spec["trial"]["entrypoint"]
    assert stored == "python:test_study_api._objective"
    out = subprocess.run(["search", "resume", "run-callable", "--storage", sqlite_url], env=cli_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "optimize(objective)" in out.stderr


def test_timeout_leaves_the_rest_of_the_budget(sqlite_url):
    import time

    def slow(config):
        time.sleep(0.4)
        return config["x"]

    study = search.create_study(_spec("timed", trials=50, parallel=1), storage=sqlite_url)
    summary = study.optimize(slow, timeout=1.0, show_progress=False)
    assert 1 <= summary.complete < 10 and not summary.interrupted
    with open_storage(sqlite_url) as st:
        assert st.get_study("timed").state == "INTERRUPTED"  # resumable
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_report_outside_a_trial_says_where_it_works():
    with pytest.raises(RuntimeError, match="inside an objective run by the service"):
        search.report(1, loss=0.5)


def test_get_trial_inside_an_objective(sqlite_url):
    seen = []

    def objective(config):
        info = search.get_trial()
        seen.append((info.study, info.number, info.params["x"] == config["x"], info.resuming))
        assert not search.should_stop()
        return config["x"]

    search.create_study(_spec("info", trials=3, parallel=1), storage=sqlite_url).optimize(objective, show_progress=False)
    assert sorted(seen) == [("info", 0, True, False), ("info", 1, True, False), ("info", 2, True, False)]


# -- ask and tell ----------------------------------------------------------------------------------

def test_ask_tell_from_four_threads(storage_url):
    study = search.create_study(_spec("threads", algorithm={"name": "tpe", "seed": 1}), storage=storage_url)
    errors = []

    def worker():
        try:
            for _ in range(25):
                t = study.ask()
                t.report(1, loss=t.params["x"])
                study.tell(t, (t.params["x"] - 0.3) ** 2)
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    trials = study.trials
    assert [t.number for t in trials] == list(range(100))  # dense, none duplicated
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.id for t in trials}) == 100


def test_asha_stops_asked_trials_through_report(sqlite_url):
    study = search.create_study(_spec("asha-ask", scheduler={"name": "asha", "min_resource": 1, "reduction_factor": 2, "max_resource": 8}),
                                storage=sqlite_url)
    stopped = 0
    for i in range(8):
        t = study.ask()
        for step in range(1, 9):
            if t.report(step, loss=float(i) + 1.0 / step):  # later trials are worse at every rung
                stopped += 1
                break
        study.tell(t, float(i))
    states = [t.state for t in study.trials]
    assert stopped >= 4 and states.count(TrialState.PRUNED) == stopped
    assert states[0] == TrialState.COMPLETE


def test_enqueue_runs_known_configurations_first_and_checks_them(sqlite_url):
    study = search.create_study(_spec("enq"), storage=sqlite_url)
    study.enqueue({"x": 0.3})
    with pytest.raises(ConfigError, match=r"enqueue\.x: 1\.5 is outside"):
        study.enqueue({"x": 1.5})
    with pytest.raises(ConfigError, match=r"enqueue\.y: not a parameter"):
        study.enqueue({"x": 0.1, "y": 2})
    t = study.ask()
    assert t.number == 0 and t.params == {"x": 0.3}
    done = study.tell(t, {"loss": 0.0})
    assert done.state == TrialState.COMPLETE and done.values == (0.0,)


def test_tell_checks_what_it_is_given(sqlite_url):
    study = search.create_study(_spec("told"), storage=sqlite_url)
    t = study.ask()
    with pytest.raises(TypeError, match="boolean"):
        study.tell(t, True)
    with pytest.raises(ValueError, match="state must be"):
        study.tell(t, 0.1, state="done")
    assert study.tell(t, float("nan")).state == TrialState.FAILED
    with pytest.raises(ValueError, match="not RUNNING"):
        study.tell(t, 0.1)
    assert study.tell(study.ask(), state="pruned").state == TrialState.PRUNED
    failed = study.tell(study.ask(), state="failed")
    assert failed.state == TrialState.FAILED and failed.error == "told failed"


def test_a_process_killed_between_ask_and_tell_leaves_nothing_running(sqlite_url, tmp_path):
    script = tmp_path / "asker.py"
    script.write_text(
        "import os, search\n"
        f"study = search.create_study({_spec('killed')!r}, storage={sqlite_url!r}, load_if_exists=True)\n"
        "t = study.ask()\n"
        "t.report(1, loss=0.5)\n"
        "os._exit(9)\n")
    out = subprocess.run([sys.executable, str(script)], env=cli_env(), timeout=120)
    assert out.returncode == 9
    with open_storage(sqlite_url) as st:
        (t,) = st.get_trials(st.get_study("killed").id)
        assert t.state == TrialState.RUNNING  # until someone opens the study again
    study = search.load_study("killed", storage=sqlite_url)
    (t,) = study.trials
    assert t.state == TrialState.WAITING and "exited before tell" in t.error  # a retry for the next ask
    again = study.ask()
    assert again.number == 0 and again.params == dict(t.params)
    assert study.tell(again, 0.5).state == TrialState.COMPLETE


def test_best_trials_is_the_pareto_front(sqlite_url):
    spec = _spec("mo", objective=[{"metric": "a", "direction": "minimize"}, {"metric": "b", "direction": "minimize"}])
    study = search.create_study(spec, storage=sqlite_url)
    for a, b in [(1, 3), (2, 2), (3, 1), (3, 3)]:
        study.tell(study.ask(), [a, b])
    assert sorted(t.values for t in study.best_trials) == [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]
    with pytest.raises(ValueError, match="best_trials"):
        _ = study.best_trial
    assert {"values_0", "values_1"} <= set(study.trials_dataframe().columns)


def test_pbt_is_refused_for_ask_tell_with_the_way_out(sqlite_url):
    study = search.create_study(_spec("pbt-ask", algorithm={"name": "pbt", "population": 4}), storage=sqlite_url)
    with pytest.raises(ConfigError, match="use study.optimize"):
        study.ask()


def test_an_artifacts_location_that_cannot_be_written_fails_before_the_study_exists(sqlite_url):
    for call in (lambda spec: search.run(spec, storage=sqlite_url),
                 lambda spec: search.create_study(spec, storage=sqlite_url)):
        with pytest.raises(ConfigError, match="artifacts"):
            call(_spec("unwritable", artifacts="/etc/passwd/ckpt", trial={"entrypoint": _objective}))
    with open_storage(sqlite_url) as st:
        assert st.list_studies() == []


def test_trials_dataframe_is_the_same_from_the_read_api_and_from_records(sqlite_url, monkeypatch):
    """The frame is built from the read API's plain rows; where that cannot open (an in-memory
    database) it is built from the records: both give the same frame, trial for trial."""
    import pandas as pd

    import storage.read_api
    from storage import StorageError

    study = search.create_study(_spec("frame", space={"x": {"type": "float", "low": 0, "high": 1},
                                                      "opt": {"type": "categorical", "choices": ["a", "b"]}}),
                                storage=sqlite_url)
    for i, (x, opt) in enumerate([(0.1, "a"), (0.5, "b"), (0.9, "a")]):
        study.enqueue({"x": x, "opt": opt})
        t = study.ask()
        if i == 1:
            t.report(1, loss=0.7)
            study.tell(t, state="pruned")
        else:
            study.tell(t, {"loss": x, "extra": i} if i == 2 else x)
    study.ask()  # one left RUNNING: no value, no finish time
    from_rows = study.trials_dataframe()

    def refuse(*_a, **_k):
        raise StorageError("no read-only view")

    monkeypatch.setattr(storage.read_api, "open_read_api", refuse)
    from_records = study.trials_dataframe()
    pd.testing.assert_frame_equal(from_rows, from_records)
    assert list(from_rows["state"]) == ["COMPLETE", "PRUNED", "COMPLETE", "RUNNING"]
    assert list(from_rows["params_opt"])[:3] == ["a", "b", "a"]
    assert from_rows["metrics_extra"].iloc[2] == 2 and pd.isna(from_rows["metrics_extra"].iloc[0])
