"""MLflow tracking: one run per trial with its params, every reported step and its final state,
read back with MLflow's own client from a real local tracking store (SQLite backend)."""
from __future__ import annotations

import pytest

import search
from search.config import ConfigError, parse_study

mlflow = pytest.importorskip("mlflow")


def _spec(name, **extra):
    d = {"name": name, "objective": {"metric": "loss", "direction": "minimize"},
         "trial": {"entrypoint": "search_test_objectives:stepper", "params": {"steps": 3}},
         "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
         "algorithm": {"name": "random", "seed": 2}, "budget": {"trials": 4, "parallel": 2},
         "backend": {"name": "inprocess"}}
    d.update(extra)
    return d


def _runs(uri, experiment):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], order_by=["tags.`search.number` ASC"])


@pytest.mark.slow
def test_a_study_file_with_tracking_logs_one_run_per_trial(sqlite_url, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = search.run(_spec("tracked", tracking={"mlflow": uri}), storage=sqlite_url)
    assert summary.complete == 4
    client, runs = _runs(uri, "tracked")
    assert sorted(r.data.tags["search.number"] for r in runs) == ["0", "1", "2", "3"]
    study = search.load_study("tracked", storage=sqlite_url)
    for r in runs:
        trial = study.trials[int(r.data.tags["search.number"])]
        assert r.info.status == "FINISHED" and r.data.tags["search.state"] == "COMPLETE"
        assert float(r.data.params["x"]) == pytest.approx(trial.params["x"])
        history = client.get_metric_history(r.info.run_id, "loss")
        assert sorted(m.step for m in history) == [1, 2, 3]  # every reported step, the curve
        assert r.data.metrics["loss"] == pytest.approx(trial.value)


@pytest.mark.slow
def test_the_python_api_callback_logs_runs(sqlite_url, tmp_path):
    from search.integrations.mlflow import MLflowCallback

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def objective(config):
        for step in range(1, 3):
            search.report(step, loss=config["x"] / step)
        if config["x"] > 0.7:
            raise RuntimeError("diverged")
        return config["x"]

    study = search.create_study({"name": "cb", "objective": {"metric": "loss", "direction": "minimize"},
                                 "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
                                 "algorithm": {"name": "random", "seed": 5},
                                 "budget": {"trials": 6, "parallel": 1}}, storage=sqlite_url)
    study.optimize(objective, backend="inprocess", show_progress=False,
                   callbacks=[MLflowCallback(uri, experiment="cb-exp")])
    client, runs = _runs(uri, "cb-exp")
    assert len(runs) == 6
    failed = [t for t in study.trials if t.state == "FAILED"]
    assert failed, "seed 5 must draw an x > 0.7"
    by_number = {int(r.data.tags["search.number"]): r for r in runs}
    for t in failed:
        r = by_number[t.number]
        assert r.info.status == "FAILED" and "diverged" in r.data.tags["search.error"]


def test_tracking_is_checked():
    with pytest.raises(ConfigError, match=r"tracking\.mlflow: expected an MLflow tracking URI"):
        parse_study(_spec("t", tracking={"mlflow": 5}))
    with pytest.raises(ConfigError, match=r"tracking\.wandb: unknown key"):
        parse_study(_spec("t", tracking={"wandb": "x"}))
