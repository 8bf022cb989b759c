"""Known configurations and warm starts: a study file's `enqueue:` list, `warm_start:` from earlier
studies of the same storage, and `search import-optuna` copying a real Optuna study."""
from __future__ import annotations

import pytest

import search
from search.cli import main
from search.config import ConfigError, parse_study
from storage import TrialState, open_storage


def _spec(name, trials=6, **extra):
    d = {"name": name, "objective": {"metric": "loss", "direction": "minimize"},
         "trial": {"entrypoint": "search_test_objectives:quadratic"},
         "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}, "y": {"type": "int", "low": -3, "high": 3}},
         "algorithm": {"name": "bo", "seed": 0}, "budget": {"trials": trials, "parallel": 1},
         "backend": {"name": "inprocess"}}
    d.update(extra)
    return d


def test_enqueued_configurations_run_first_and_are_checked(sqlite_url):
    with pytest.raises(ConfigError, match=r"enqueue\[1\]\.x: 2\.0 is outside"):
        parse_study(_spec("e", enqueue=[{"x": 0.3, "y": -1}, {"x": 2.0, "y": 0}]))
    with pytest.raises(ConfigError, match=r"enqueue\[0\]\.y: missing"):
        parse_study(_spec("e", enqueue=[{"x": 0.3}]))
    search.run(_spec("enq", enqueue=[{"x": 0.3, "y": -1}, {"x": 0.9, "y": 3}]), storage=sqlite_url)
    with open_storage(sqlite_url) as st:
        trials = st.get_trials(st.get_study("enq").id)
    assert [dict(t.params) for t in trials[:2]] == [{"x": 0.3, "y": -1}, {"x": 0.9, "y": 3}]
    assert trials[0].value == pytest.approx(0.0) and len(trials) == 6


def _optuna_study(path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}"
    study = optuna.create_study(study_name="theirs", storage=url, sampler=optuna.samplers.RandomSampler(seed=1))

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_int("y", -3, 3)
        for step in range(3):
            trial.report((x - 0.3) ** 2 + (y + 1) ** 2 + 1.0 / (step + 1), step)
        if x > 0.9:
            raise optuna.TrialPruned()
        return (x - 0.3) ** 2 + (y + 1) ** 2

    study.optimize(objective, n_trials=12)
    return url, study


def test_import_optuna_copies_a_real_study_and_bo_warm_starts_from_it(sqlite_url, tmp_path, capsys):
    url, theirs = _optuna_study(tmp_path / "optuna.db")
    assert main(["import-optuna", url, "--study", "theirs", "--as", "ours", "--storage", sqlite_url]) == 0
    assert "imported 12 trial(s)" in capsys.readouterr().out
    with open_storage(sqlite_url) as st:
        rec = st.get_study("ours")
        mine = st.get_trials(rec.id)
        reports = st.get_reports(mine[0].id)
    assert rec.metrics == ("value",) and rec.directions == ("minimize",)
    assert [dict(t.params) for t in mine] == [t.params for t in theirs.trials]
    for ours_t, theirs_t in zip(mine, theirs.trials):
        want = {"COMPLETE": TrialState.COMPLETE, "PRUNED": TrialState.PRUNED}[theirs_t.state.name]
        assert ours_t.state == want
        if want == TrialState.COMPLETE:
            assert ours_t.value == pytest.approx(theirs_t.value)
    assert [r.step for r in reports] == [0, 1, 2]
    assert reports[-1].metrics["value"] == pytest.approx(theirs.trials[0].intermediate_values[2])
    # the imported study is browsed, not resumed
    assert main(["resume", "ours", "--storage", sqlite_url]) == 2
    assert "Python callable" in capsys.readouterr().err
    # bo starts from the imported trials: no initial design, its first proposals use the model
    warm = search.run(_spec("warm", trials=4, warm_start=["ours"]), storage=sqlite_url)
    cold = search.run(_spec("cold", trials=4), storage=sqlite_url)
    with open_storage(sqlite_url) as st:
        w, c = (st.get_trials(st.get_study(n).id) for n in ("warm", "cold"))
    assert warm.complete == cold.complete == 4 and w[0].params != c[0].params
    assert sum(t.value for t in w) < sum(t.value for t in c)
    capsys.readouterr()
    assert main(["import-optuna", url, "--study", "theirs", "--as", "ours", "--storage", sqlite_url]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["import-optuna", url, "--study", "nope", "--as", "other", "--storage", sqlite_url]) == 2
    assert "no Optuna study 'nope'" in capsys.readouterr().err


def test_warm_start_names_a_study_of_the_storage(sqlite_url, capsys):
    with pytest.raises(ConfigError, match="warm_start: no study 'nope'"):
        search.run(_spec("cold", warm_start=["nope"]), storage=sqlite_url)
    with pytest.raises(ConfigError, match="warm_start: algorithm 'random' cannot"):
        parse_study(_spec("cold", warm_start=["x"], algorithm={"name": "random"}))
