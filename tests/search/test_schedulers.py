"""One contract for every scheduler, on the simulated backend with scripted learning curves."""
from __future__ import annotations

import pytest

import search
from search.config import ConfigError, parse_study
from search.schedulers import ASHA, SCHEDULERS, MedianStopping, make_scheduler
from storage import TrialState, open_storage

STEPS = 27
OPTIONS = {
    "asha": {"min_resource": 1, "reduction_factor": 3, "max_resource": STEPS},
    "hyperband": {"min_resource": 1, "reduction_factor": 3, "max_resource": STEPS},
    "median": {"grace_period": 2, "min_samples": 3},
    "freeze-thaw": {"min_resource": 1, "reduction_factor": 3, "max_resource": STEPS},
}
# Freeze-thaw resumes paused trials from their checkpoints: the same curve, checkpointed every step.
ENTRYPOINTS = {"freeze-thaw": "freeze_thaw_objectives:curve_ckpt"}


def _study(name, scheduler, tmp_path, trials=24, parallel=4):
    return {
        "name": name, "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": ENTRYPOINTS.get(scheduler, "search_test_objectives:curve"),
                  "params": {"steps": STEPS}},
        "space": {"q": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 11},
        "scheduler": {"name": scheduler, **OPTIONS[scheduler]},
        "budget": {"trials": trials, "parallel": parallel},
        "backend": {"name": "simulated"}, "artifacts": str(tmp_path),
    }


def _run(name, scheduler, tmp_path, url):
    search.run(_study(name, scheduler, tmp_path), storage=url)
    with open_storage(url) as st:
        return st.get_trials(st.get_study(name).id)


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_scheduler_contract(scheduler, tmp_path, sqlite_url):
    trials = _run(f"sched-{scheduler}", scheduler, tmp_path, sqlite_url)
    assert len(trials) == 24 and all(t.is_finished for t in trials)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned and complete
    # The best configuration is never stopped: its curve is below every other at every step.
    best = min(trials, key=lambda t: t.params["q"])
    assert best.state == TrialState.COMPLETE and best.last_step == STEPS
    # Pruned trials end at the step where they stopped, and compute was saved.
    assert all(t.last_step < STEPS for t in pruned)
    used = sum(t.last_step for t in trials)
    # Hyperband's last bracket never stops early (its hedge), so it saves less than ASHA.
    assert used < (0.75 if scheduler == "hyperband" else 0.6) * 24 * STEPS
    if scheduler == "asha":
        assert {t.last_step for t in pruned} <= {1, 3, 9}
    # Deterministic on the simulated backend: a second run decides exactly the same.
    again = _run(f"sched-{scheduler}-2", scheduler, tmp_path, f"sqlite:///{tmp_path / 'again.db'}")
    assert [(t.params, t.state, t.last_step) for t in again] == [(t.params, t.state, t.last_step) for t in trials]


def test_asha_rule_by_hand():
    s = ASHA("loss", "minimize", min_resource=1, reduction_factor=2, max_resource=8)
    assert s.on_report(0, 1, {"loss": 1.0}).action == "continue"  # alone at rung 1
    assert s.on_report(1, 1, {"loss": 2.0}).action == "stop"      # worse half of {1, 2}
    assert s.on_report(2, 1, {"loss": 0.5}).action == "continue"
    assert s.on_report(0, 2, {"loss": 0.9}).action == "continue"  # alone at rung 2
    assert s.on_report(2, 3, {"loss": 0.4}).action == "continue"  # step 3 is still rung 2
    assert s.on_report(2, 8, {"loss": 0.1}).action == "continue"  # full resource: finish


def test_maximize_and_other_metric():
    s = make_scheduler({"name": "asha", "reduction_factor": 2, "metric": "acc", "mode": "maximize"},
                       ("loss",), ("minimize",))
    assert s.on_report(0, 1, {"acc": 0.9}).action == "continue"
    assert s.on_report(1, 1, {"acc": 0.5}).action == "stop"
    assert s.on_report(2, 1, {"loss": 0.1}).action == "continue"  # no 'acc': no decision


def test_median_rule_and_replay_match():
    live = MedianStopping("loss", "minimize", grace_period=1, min_samples=2)
    replay = MedianStopping("loss", "minimize", grace_period=1, min_samples=2)
    for n, losses in enumerate([[3, 2, 1], [2, 1.5, 1.2]]):
        for step, loss in enumerate(losses, 1):
            assert live.on_report(n, step, {"loss": loss}).action == "continue"
            replay.observe(n, step, {"loss": loss})
    for s in (live, replay):
        assert s.on_report(2, 1, {"loss": 5.0}).action == "stop"      # worse than median(3, 2)
        assert s.on_report(3, 1, {"loss": 1.0}).action == "continue"


@pytest.mark.parametrize("spec, match", [
    ({"name": "ashaa"}, "unknown scheduler 'ashaa'"),
    ({"name": "asha", "eta": 3}, "takes no option 'eta'"),
    ({"name": "asha", "reduction_factor": 1}, "reduction_factor' must be an integer >= 2"),
    ({"name": "hyperband"}, "needs max_resource"),
    ({"name": "median", "min_samples": 0}, "min_samples' must be an integer >= 1"),
    ({"name": "freeze-thaw"}, "'freeze-thaw' needs max_resource"),
    ({"name": "freeze-thaw", "max_resource": 9, "grace_period": 2}, "takes no option 'grace_period'"),
    ({"name": "freeze-thaw", "max_resource": 3, "min_resource": 3}, "max_resource' must be an integer >= 4"),
    ({"name": "freeze_thaw", "max_resource": 9}, "choose one of none, asha, freeze-thaw"),
])
def test_bad_scheduler_specs(spec, match, tmp_path):
    d = _study("bad", "asha", tmp_path)
    d["scheduler"] = spec
    with pytest.raises(ConfigError, match=match) as info:
        parse_study(d)
    assert str(info.value).startswith("scheduler:")


def test_asha_replays_reports_on_resume(tmp_path, sqlite_url):
    """A resumed study's scheduler decides from the reports stored before the restart."""
    d = _study("resume-asha", "asha", tmp_path, trials=6, parallel=1)
    search.run({**d, "budget": {"trials": 3, "parallel": 1}}, storage=sqlite_url)
    # Raise the budget through the stored spec, as a user resuming a longer study would.
    from sqlalchemy import update

    from storage._schema import StudyRow

    st = open_storage(sqlite_url)
    spec = dict(st.get_study("resume-asha").spec)
    spec["budget"] = {"trials": 6, "parallel": 1}
    with st.engine.begin() as conn:
        conn.execute(update(StudyRow).where(StudyRow.name == "resume-asha").values(spec=spec))
    st.close()
    search.resume("resume-asha", storage=sqlite_url)
    with open_storage(sqlite_url) as st:
        trials = st.get_trials(st.get_study("resume-asha").id)
    assert len(trials) == 6
    # Without replay the first trial after the restart would be alone at every rung and never
    # stopped; with replay, a trial worse than the first three at rung 1 stops there.
    later_worse = [t for t in trials[3:] if t.params["q"] > max(x.params["q"] for x in trials[:3])]
    assert later_worse and all(t.state == TrialState.PRUNED for t in later_worse)
