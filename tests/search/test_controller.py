"""The controller on the in-process backend: every algorithm, failures, pruning, resume."""
from __future__ import annotations

import json

import pytest

import search
from search.algorithms import ALGORITHMS, CONTINUE, make_algorithm
from search.decisions import Stop
from search.algorithms.base import Algorithm, Proposal
from search.config import parse_study
from search.controller import Controller
from search.backends.inprocess import InProcessBackend
from storage import TrialState, open_storage


def quad_study(name="c", algorithm="random", trials=8, parallel=2, **extra):
    d = {
        "name": name,
        "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:quadratic"},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0},
                  "y": {"type": "int", "low": -3, "high": 3},
                  "kind": {"type": "categorical", "choices": ["a", "b"]}},
        "algorithm": {"name": algorithm, "seed": 7},
        "budget": {"trials": trials, "parallel": parallel},
        "backend": {"name": "inprocess"},
    }
    d.update(extra)
    return d


# `scaling` plans its own model ladder and needs a target; tests/search/test_scaling_ladder.py covers it.
@pytest.mark.parametrize("algorithm", sorted(set(ALGORITHMS) - {"scaling"}))
def test_every_algorithm_runs_the_budget_within_bounds(algorithm, sqlite_url, tmp_path):
    extra = {}
    if algorithm == "nsga2":
        extra = {"objective": [{"metric": "loss", "direction": "minimize"}, {"metric": "size", "direction": "minimize"}],
                 "trial": {"entrypoint": "search_test_objectives:metrics_dict"}}
    summary = search.run(quad_study(f"all-{algorithm}", algorithm, trials=10, artifacts=str(tmp_path), **extra),
                         storage=sqlite_url)
    with open_storage(sqlite_url) as st:
        study = st.get_study(f"all-{algorithm}")
        trials = st.get_trials(study.id)
    assert [t.number for t in trials] == list(range(len(trials)))
    if algorithm == "grid":
        assert len(trials) == 10  # the 5 x 7 x 2 grid is larger than the budget
    else:
        assert len(trials) == 10
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert 0.0 <= t.params["x"] <= 1.0 and -3 <= t.params["y"] <= 3 and t.params["kind"] in ("a", "b")
        assert isinstance(t.params["y"], int)
    assert summary.complete == 10 and summary.best is not None


def test_model_based_algorithms_beat_their_start(sqlite_url, tmp_path):
    """TPE with 40 trials gets close to the optimum of a 3-parameter quadratic (min 0)."""
    search.run(quad_study("tpe40", "tpe", trials=40, parallel=2, artifacts=str(tmp_path)), storage=sqlite_url)
    with open_storage(sqlite_url) as st:
        s = st.get_study("tpe40")
        assert st.best_trial(s.id, "minimize").value < 0.05


def test_random_search_is_reproducible_from_its_seed(tmp_path):
    params = []
    for i in range(2):
        url = f"sqlite:///{tmp_path / f'r{i}.db'}"
        search.run(quad_study("rep", "random", trials=6, parallel=3, artifacts=str(tmp_path)), storage=url)
        with open_storage(url) as st:
            params.append([t.params for t in st.get_trials(st.get_study("rep").id)])
    assert params[0] == params[1]


def test_grid_ends_when_exhausted(sqlite_url, tmp_path):
    d = quad_study("grid", "grid", trials=100, space={"kind": {"type": "categorical", "choices": ["a", "b"]},
                                                       "y": {"type": "int", "low": 0, "high": 2}},
                   trial={"entrypoint": "search_test_objectives:quadratic", "params": {"x": 0.3}})
    summary = search.run(d, storage=sqlite_url)
    assert summary.complete == 6
    with open_storage(sqlite_url) as st:
        got = {(t.params["kind"], t.params["y"]) for t in st.get_trials(st.get_study("grid").id)}
    assert got == {(k, y) for k in "ab" for y in range(3)}


class StopAtStep2(Algorithm):
    """Stops every odd-numbered trial at step 2: decisions are data, the controller acts."""

    name = "stop2"

    def propose(self, history, n):
        return [Proposal({"x": 0.1 * (len(history.trials) + i)}) for i in range(n)]

    def on_report(self, history, trial, step, metrics):
        return Stop("odd") if trial.number % 2 == 1 and step >= 2 else CONTINUE


def _controller(config, url, algorithm=None):
    st = open_storage(url)
    rec = st.create_study(config.name, metrics=config.metrics, directions=config.directions, spec=dict(config.raw))
    backend = InProcessBackend()
    backend.start(parallel=config.parallel, cpus=1, gpus=0)
    algo = algorithm or make_algorithm(config.algorithm, config.space, config.metrics, config.directions, seed=config.seed)
    return st, Controller(config, st, backend, algo, rec)


def stepper_study(name, tmp_path, trials=6, parallel=2, steps=6, sleep=0.0, log=None):
    params = {"steps": steps, "sleep": sleep}
    if log:
        params["log"] = str(log)
    return parse_study({
        "name": name, "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:stepper", "params": params},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 1}, "budget": {"trials": trials, "parallel": parallel},
        "backend": {"name": "inprocess"}, "artifacts": str(tmp_path / "artifacts"),
    })


def test_stop_decisions_prune_trials_with_their_step(sqlite_url, tmp_path):
    config = stepper_study("prune", tmp_path, trials=6, steps=6, sleep=0.05)
    st, ctl = _controller(config, sqlite_url, StopAtStep2(config.space, config.metrics, config.directions))
    summary = ctl.run()
    trials = st.get_trials(st.get_study("prune").id)
    assert summary.pruned == 3 and summary.complete == 3
    for t in trials:
        if t.number % 2:
            # Decisions are asynchronous: the stop lands at the next report after step 2.
            assert t.state == TrialState.PRUNED and 2 <= t.last_step < 6, t
        else:
            assert t.state == TrialState.COMPLETE and t.last_step == 6
        reports = st.get_reports(t.id)
        assert [r.step for r in reports] == list(range(1, t.last_step + 1))
        assert len(st.get_checkpoints(t.id)) == t.last_step


def test_resume_after_crash_reruns_interrupted_from_checkpoint(sqlite_url, tmp_path):
    """A controller that died leaves RUNNING trials; resume reaps them, re-runs them from their last
    checkpoint as attempt 1, keeps the completed ones, and ends at exactly the budget."""
    log = tmp_path / "starts.jsonl"
    config = stepper_study("crash", tmp_path, trials=5, steps=4, log=log)
    st = open_storage(sqlite_url)
    rec = st.create_study(config.name, metrics=config.metrics, directions=config.directions, spec=dict(config.raw))
    # Simulate the dead controller: trial 0 finished, trial 1 was mid-way with a checkpoint at step 2.
    t0 = st.create_trial(rec.id, {"x": 0.5})
    st.finish_trial(t0.id, 0, state=TrialState.COMPLETE, values=[0.25], metrics={"loss": 0.25})
    t1 = st.create_trial(rec.id, {"x": 0.9})
    ck = tmp_path / "ck.pt"
    import torch

    torch.save({"step": 2}, ck)
    from trials.api import file_checksum

    st.add_checkpoint(t1.id, 0, 2, str(ck), file_checksum(str(ck)))
    st.close()

    summary = search.resume("crash", storage=sqlite_url)
    assert summary.requeued_at_start == 1 and summary.complete == 5
    with open_storage(sqlite_url) as st:
        trials = st.get_trials(st.get_study("crash").id)
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert trials[0].values == (0.25,)  # kept, not re-run
    assert trials[1].attempt == 1 and trials[1].params == {"x": 0.9}
    starts = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"number": 1, "attempt": 1, "start": 2} in starts
    assert not any(s["number"] == 0 for s in starts)


def test_corrupt_checkpoint_fails_the_attempt_clearly(sqlite_url, tmp_path):
    config = stepper_study("corrupt", tmp_path, trials=1, steps=3)
    st = open_storage(sqlite_url)
    rec = st.create_study(config.name, metrics=config.metrics, directions=config.directions, spec=dict(config.raw))
    t = st.create_trial(rec.id, {"x": 0.2})
    ck = tmp_path / "ck.pt"
    ck.write_bytes(b"not what was recorded")
    st.add_checkpoint(t.id, 0, 1, str(ck), "sha256:0000")
    st.close()
    search.resume("corrupt", storage=sqlite_url)
    with open_storage(sqlite_url) as st:
        [t] = st.get_trials(st.get_study("corrupt").id)
    assert t.state == TrialState.FAILED and "corrupt" in t.error and "checksum" in t.error


class Stateful(Algorithm):
    """Keeps a counter that survives a restart only through the typed state table."""

    name = "stateful"

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.completed = 0

    def propose(self, history, n):
        return [Proposal({"x": 0.5}) for _ in range(n)]

    def on_complete(self, history, trial):
        self.completed += 1

    def state_dict(self):
        return {"completed": self.completed}

    def load_state_dict(self, state):
        self.completed = state["completed"]


def test_algorithm_state_survives_restart(sqlite_url, tmp_path):
    config = stepper_study("state", tmp_path, trials=3, steps=1)
    st, ctl = _controller(config, sqlite_url, Stateful(config.space, config.metrics, config.directions))
    ctl.run()
    assert st.get_algorithm_state(st.get_study("state").id) == {"algorithm": {"completed": 3}}
    again = Stateful(config.space, config.metrics, config.directions)
    backend = InProcessBackend()
    backend.start(parallel=1, cpus=1, gpus=0)
    Controller(config, st, backend, again, st.get_study("state")).run()
    assert again.completed == 3  # loaded, and no new trial ran: the budget was spent


def test_a_late_stop_request_does_not_stop_the_next_attempt(tmp_path):
    """A stop asked for an attempt that has already ended (the trial finished or died as the
    request went out) must not stop the trial's next attempt (a retry, a thaw, a PBT restart) at
    its first report."""
    import dataclasses

    from trials.api import TrialSpec

    backend = InProcessBackend()
    backend.start(parallel=1, cpus=1, gpus=0)

    def run(spec):
        backend.submit(spec)
        events = []
        while not events or events[-1].kind not in ("done", "lost"):
            events += backend.poll(5.0)
        return events[-1]

    spec = TrialSpec("late-stop", 1, 0, 0, "search_test_objectives:stepper", {"x": 0.5, "steps": 3}, 0, ("loss",),
                     str(tmp_path / "attempt-0"))
    assert run(spec).step == 3
    backend.request_stop(spec.trial_id)  # too late for attempt 0
    done = run(dataclasses.replace(spec, attempt=1, checkpoint_dir=str(tmp_path / "attempt-1")))
    backend.shutdown()
    assert done.kind == "done" and done.step == 3 and not done.stopped


def test_an_algorithm_cannot_change_the_controllers_records(sqlite_url, tmp_path):
    """History reaches algorithms as frozen records: an algorithm that tries to edit one fails at
    once instead of changing what the controller (and every later proposal) sees."""

    class Meddler(Algorithm):
        name = "meddler"
        tried = 0

        def propose(self, history, n):
            for t in history.trials:
                Meddler.tried += 1
                with pytest.raises(TypeError):
                    t.params["x"] = 99.0
            k = len(history.trials)
            return [Proposal({"x": 0.1 * (k + i), "y": 0, "kind": "a"}) for i in range(n)]

    config = parse_study(quad_study(name="meddled", trials=4, parallel=1))
    st, controller = _controller(config, sqlite_url, Meddler(config.space, config.metrics, config.directions))
    summary = controller.run()
    assert summary.complete == 4 and Meddler.tried > 0
    assert [t.params["x"] for t in st.get_trials(st.get_study("meddled").id)] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    st.close()


def test_reports_are_written_in_batches_and_every_one_is_stored(sqlite_url, tmp_path):
    """The controller holds reports back and writes them in batches (one commit per report bounds
    it on PostgreSQL): fewer writes than reports, yet every report is stored, in step order, and
    the ones a stop decision rests on are stored before the trial ends PRUNED."""
    from search.algorithms import make_algorithm as make
    from search.backends.simulated import SimulatedBackend

    config = parse_study({
        "name": "batched", "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:curve", "params": {"steps": 27}},
        "space": {"q": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 3}, "budget": {"trials": 12, "parallel": 6},
        "scheduler": {"name": "asha", "grace_period": 3, "reduction_factor": 3, "max_resource": 27},
        "backend": {"name": "simulated"}, "artifacts": str(tmp_path / "artifacts"),
    })
    st = open_storage(sqlite_url)
    rec = st.create_study(config.name, metrics=config.metrics, directions=config.directions, spec=dict(config.raw))
    backend = SimulatedBackend()
    backend.start(parallel=config.parallel, cpus=1, gpus=0)
    ctl = Controller(config, st, backend, make("random", config.space, config.metrics, config.directions, seed=3), rec)
    writes = []
    add_reports = st.add_reports
    st.add_reports = lambda reports: (writes.append(len(reports)), add_reports(reports))[1]
    summary = ctl.run()
    trials = st.get_trials(rec.id)
    assert summary.pruned > 0 and summary.complete + summary.pruned == 12
    stored = 0
    for t in trials:
        steps = [r.step for r in st.get_reports(t.id)]
        assert steps == list(range(1, t.last_step + 1)), (t.number, steps)
        stored += len(steps)
    assert sum(writes) == stored
    assert len(writes) < stored / 2, writes
