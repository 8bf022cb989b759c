"""The Ray backend on a real local Ray instance (started once per test session)."""
from __future__ import annotations

import pytest

import search
from search.backends.ray_backend import RayBackend
from search.config import parse_study
from search.controller import Controller
from storage import TrialState, open_storage

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _study(name, entrypoint, tmp_path, trials=6, parallel=2, cpus=0.5, params=None, artifacts=None):
    return parse_study({
        "name": name, "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": entrypoint, "params": params or {}},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 0}, "budget": {"trials": trials, "parallel": parallel},
        "resources": {"cpus": cpus}, "artifacts": artifacts or str(tmp_path / "artifacts"),
    })


def _run(config, url, algorithm=None):
    from search.algorithms import make_algorithm

    st = open_storage(url)
    rec = st.create_study(config.name, metrics=config.metrics, directions=config.directions, spec=dict(config.raw))
    backend = RayBackend()
    backend.start(parallel=config.parallel, cpus=config.cpus, gpus=config.gpus)
    algo = algorithm or make_algorithm(config.algorithm, config.space, config.metrics, config.directions, seed=0)
    summary = Controller(config, st, backend, algo, rec).run()
    return st, summary, st.get_trials(rec.id)


def test_trials_run_on_reused_actors_with_fractional_cpus(ray_session, sqlite_url, tmp_path):
    config = _study("ray-reuse", "search_test_objectives:pid", tmp_path, trials=12, parallel=3, cpus=0.5)
    st, summary, trials = _run(config, sqlite_url)
    assert summary.complete == 12 and [t.number for t in trials] == list(range(12))
    pids = {t.metrics["pid"] for t in trials}
    assert 1 <= len(pids) <= 3  # three long-lived actors, not one process per trial
    node = ray_session.get_runtime_context().get_node_id()
    assert {t.node for t in trials} == {node}


def test_stop_decisions_reach_ray_workers(ray_session, sqlite_url, tmp_path):
    from search.algorithms.base import CONTINUE, Algorithm, Proposal
    from search.decisions import Stop

    class StopEarly(Algorithm):
        name = "stop-early"

        def propose(self, history, n):
            return [Proposal({"x": 0.5}) for _ in range(n)]

        def on_report(self, history, trial, step, metrics):
            return Stop() if step >= 2 else CONTINUE

    config = _study("ray-stop", "search_test_objectives:stepper", tmp_path, trials=2, parallel=2,
                    params={"steps": 30, "sleep": 0.05})
    st, summary, trials = _run(config, sqlite_url, StopEarly(config.space, config.metrics, config.directions))
    assert summary.pruned == 2
    assert all(t.state == TrialState.PRUNED and 2 <= t.last_step < 30 for t in trials)


@pytest.mark.parametrize("store", ["folder", "url"])
def test_dead_worker_is_retried_from_its_checkpoint(ray_session, sqlite_url, tmp_path, store):
    """With a folder or an object-store URL (file://, through fsspec, as s3:// would be)."""
    url = f"file://{tmp_path}/store" if store == "url" else None
    config = _study("ray-crash", "search_test_objectives:crash_once", tmp_path, trials=2, parallel=2,
                    artifacts=url, params={"db": sqlite_url})
    st, summary, trials = _run(config, sqlite_url)
    assert summary.complete == 2
    for t in trials:
        assert t.state == TrialState.COMPLETE and t.attempt == 1
        assert t.metrics["resumed_from"] == 1.0  # the checkpoint the dead attempt recorded


def test_too_many_cpus_is_a_clear_error(ray_session):
    from search.backends.base import BackendError

    with pytest.raises(BackendError, match="resources.cpus=64"):
        RayBackend().start(parallel=1, cpus=64, gpus=0)
    with pytest.raises(BackendError, match="resources.gpus=1"):
        RayBackend().start(parallel=1, cpus=1, gpus=1)


def test_python_api_runs_on_ray(ray_session, sqlite_url, tmp_path):
    summary = search.run({
        "name": "api", "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:quadratic"},
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
        "algorithm": {"name": "tpe", "seed": 0}, "budget": {"trials": 5, "parallel": 2},
        "resources": {"cpus": 0.5}, "artifacts": str(tmp_path),
    }, storage=sqlite_url)
    assert summary.complete == 5 and summary.best.value < 1.5
