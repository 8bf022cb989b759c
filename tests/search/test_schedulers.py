"""One contract for every scheduler, and PBT (whose exploits are decisions on reports too), on the
simulated backend with scripted learning curves."""
from __future__ import annotations

import pytest

import search
from search.config import ConfigError, parse_study
from search.schedulers import ASHA, SCHEDULERS, MedianStopping, make_scheduler
from storage import TrialState, open_storage
from testlib import stored_decisions

STEPS = 27
OPTIONS = {
    "asha": {"min_resource": 1, "reduction_factor": 3, "max_resource": STEPS},
    "hyperband": {"min_resource": 1, "reduction_factor": 3, "max_resource": STEPS},
    "median": {"grace_period": 2, "min_samples": 3},
    "freeze-thaw": {"min_resource": 1, "reduction_factor": 3, "max_resource": STEPS},
}
# The promotion forms of ASHA and Hyperband are variants of those schedulers in the contract.
VARIANTS = {**{name: (name, opts) for name, opts in OPTIONS.items()},
            "asha-promotion": ("asha", {**OPTIONS["asha"], "type": "promotion"}),
            "hyperband-promotion": ("hyperband", {**OPTIONS["hyperband"], "type": "promotion"})}
# Schedulers that pause resume trials from their checkpoints: the same curve, checkpointed every step.
PAUSING = {"freeze-thaw", "asha-promotion", "hyperband-promotion"}


def _study(name, variant, tmp_path, trials=24, parallel=4):
    if variant == "pbt":
        return {
            "name": name, "objective": {"metric": "loss", "direction": "minimize"},
            "trial": {"entrypoint": "freeze_thaw_objectives:curve_ckpt", "params": {"steps": STEPS}},
            "space": {"q": {"type": "float", "low": 0.0, "high": 1.0}},
            "algorithm": {"name": "pbt", "seed": 11, "interval": 3, "quantile": 0.25},
            "budget": {"trials": trials, "parallel": parallel},
            "backend": {"name": "simulated"}, "artifacts": str(tmp_path),
        }
    scheduler, options = VARIANTS[variant]
    return {
        "name": name, "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "freeze_thaw_objectives:curve_ckpt" if variant in PAUSING
                  else "search_test_objectives:curve", "params": {"steps": STEPS}},
        "space": {"q": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 11},
        "scheduler": {"name": scheduler, **options},
        "budget": {"trials": trials, "parallel": parallel},
        "backend": {"name": "simulated"}, "artifacts": str(tmp_path),
    }


def _run(name, scheduler, tmp_path, url):
    search.run(_study(name, scheduler, tmp_path), storage=url)
    with open_storage(url) as st:
        return st.get_trials(st.get_study(name).id)


def test_contract_covers_every_scheduler():
    assert {name for name, _ in VARIANTS.values()} == set(SCHEDULERS)


@pytest.mark.parametrize("scheduler", sorted(VARIANTS) + ["pbt"])
def test_scheduler_contract(scheduler, tmp_path, sqlite_url):
    trials = _run(f"sched-{scheduler}", scheduler, tmp_path, sqlite_url)
    assert len(trials) == 24 and all(t.is_finished for t in trials)
    if scheduler == "pbt":
        _pbt_contract(trials, sqlite_url, f"sched-{scheduler}")
        again = _run(f"sched-{scheduler}-2", scheduler, tmp_path, f"sqlite:///{tmp_path / 'again.db'}")
        assert [(t.params, t.state, t.value) for t in again] == [(t.params, t.state, t.value) for t in trials]
        return
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
    assert used < (0.75 if scheduler.startswith("hyperband") else 0.6) * 24 * STEPS
    if scheduler.startswith("asha"):
        assert {t.last_step for t in pruned} <= {1, 3, 9}
    # Deterministic on the simulated backend: a second run decides exactly the same.
    again = _run(f"sched-{scheduler}-2", scheduler, tmp_path, f"sqlite:///{tmp_path / 'again.db'}")
    assert [(t.params, t.state, t.last_step) for t in again] == [(t.params, t.state, t.last_step) for t in trials]


def _pbt_contract(trials, url, name):
    """PBT's side of the contract: every member trains to the end (nothing is stopped), exploits
    copy better members into worse ones, and the population ends no worse than its best starting
    configuration would alone (loss = q + 1/step: explore moves q, the weights carry the step)."""
    from search.lineage import schedules

    assert all(t.state == TrialState.COMPLETE and t.last_step == STEPS for t in trials)
    with open_storage(url) as st:
        exploits = st.get_exploits(st.get_study(name).id)
    assert exploits and all(e.parent_number != e.number and e.parent_step < STEPS for e in exploits)
    sched = schedules(trials, exploits)
    start = min(sched[t.number][0]["params"]["q"] for t in trials)
    assert min(t.value for t in trials) <= start + 1.0 / STEPS
    for t in trials:  # each member's value is that of the configuration in force at the end
        assert t.value == pytest.approx(sched[t.number][-1]["params"]["q"] + 1.0 / STEPS)


def test_asha_rule_by_hand():
    s = ASHA("loss", "minimize", min_resource=1, reduction_factor=2, max_resource=8)
    assert s.on_report(0, 1, {"loss": 1.0}).action == "continue"  # alone at rung 1
    assert s.on_report(1, 1, {"loss": 2.0}).action == "stop"      # worse half of {1, 2}
    assert s.on_report(2, 1, {"loss": 0.5}).action == "continue"
    assert s.on_report(0, 2, {"loss": 0.9}).action == "continue"  # alone at rung 2
    assert s.on_report(2, 3, {"loss": 0.4}).action == "continue"  # step 3 is still rung 2
    assert s.on_report(2, 8, {"loss": 0.1}).action == "continue"  # full resource: finish


def test_asha_promotion_rule_by_hand():
    """The paper's Algorithm 2: nobody is promotable at a rung until eta trials are there; then
    the best floor(n/eta) are, the highest rung first; with the budget spent, the best at a rung
    of fewer than eta trials is promotable too."""
    s = ASHA("loss", "minimize", min_resource=1, reduction_factor=3, max_resource=9, type="promotion")
    assert s.on_report(0, 1, {"loss": 2.0}).action == "pause"     # alone at rung 1: not promotable yet
    assert s.thaw({0: 1}) is None                                  # start a new configuration instead
    assert s.on_report(1, 1, {"loss": 1.0}).action == "pause"
    assert s.on_report(2, 1, {"loss": 3.0}).action == "pause"     # 3 at rung 1: trial 1 is the top third
    assert s.thaw({0: 1, 1: 1, 2: 1}) == 1
    assert s.on_report(1, 3, {"loss": 0.5}).action == "pause"     # alone at rung 3
    assert s.on_report(3, 1, {"loss": 0.1}).action == "continue"  # the best of 4 at rung 1: goes on at once
    assert s.on_report(3, 3, {"loss": 0.4}).action == "pause"
    assert s.thaw({0: 1, 1: 3, 2: 1, 3: 3}) is None               # 4 at rung 1 keep 1 (done), 2 at rung 3 keep 0
    assert s.thaw({0: 1, 1: 3, 2: 1, 3: 3}, can_start=False) == 3  # budget spent: the best at rung 3
    assert s.on_report(3, 9, {"loss": 0.2}).action == "continue"  # full resource: finish
    for n, loss in ((4, 0.3), (5, 0.6)):
        assert s.on_report(n, 1, {"loss": loss}).action == "pause"
    assert s.thaw({0: 1, 1: 3, 2: 1, 4: 1, 5: 1}) == 4           # 6 at rung 1 keep 2: trial 4 (0.3) is second
    stop = ASHA("loss", "minimize", min_resource=1, reduction_factor=3, max_resource=9)
    assert stop.on_report(0, 1, {"loss": 2.0}).action == "continue"  # the stopping form: first goes on
    assert stop.thaw({0: 1}) is None


def test_hyperband_promotion_thaws_within_brackets():
    s = make_scheduler({"name": "hyperband", "min_resource": 1, "reduction_factor": 3, "max_resource": 9,
                        "type": "promotion"}, ("loss",), ("minimize",))
    assert len(s.brackets) == 3  # rungs from 1, 3 and 9
    for n, loss in enumerate([3.0, 2.0, 1.0, 0.5, 5.0, 0.1]):  # brackets 0, 1, 2, 0, 1, 2
        s.on_report(n, 1, {"loss": loss})
    # Bracket 0 holds trials 0 and 3 at rung 1: fewer than eta, none promotable while configurations
    # can start; bracket 1's first rung is 3, so its trials have not reached a rung at step 1.
    assert s.thaw({0: 1, 3: 1}) is None
    assert s.thaw({0: 1, 3: 1}, can_start=False) == 3
    assert s.on_report(2, 9, {"loss": 0.3}).action == "continue"   # bracket 2 starts at 9 = max: runs to the end


def test_promotion_study_end_to_end(tmp_path, sqlite_url):
    """One trial at a time (as the benchmark runs), ASHA's promotion form: every trial ends at a
    rung or at full resource, no trial is left PAUSED, thawed trials resume from their checkpoints
    (the curve objective would report step 1 again otherwise), and the best configuration finishes."""
    d = _study("promo", "asha-promotion", tmp_path, trials=12, parallel=1)
    d["trial"]["params"]["log"] = str(tmp_path / "attempts.jsonl")
    search.run(d, storage=sqlite_url)
    import json

    attempts = [json.loads(line) for line in open(tmp_path / "attempts.jsonl", encoding="utf-8")]
    with open_storage(sqlite_url) as st:
        sid = st.get_study("promo").id
        trials = st.get_trials(sid)
        steps = {t.number: [r.step for r in st.get_reports(t.id)] for t in trials}
    assert len(trials) == 12 and all(t.is_finished for t in trials)
    assert {t.last_step for t in trials} <= {1, 3, 9, STEPS}
    assert all(s == list(range(1, len(s) + 1)) for s in steps.values())  # resumed, never restarted
    resumed = [a for a in attempts if a["start"] > 0]
    assert resumed and all(a["start"] in (1, 3, 9) for a in resumed)
    best = min(trials, key=lambda t: t.params["q"])
    assert best.state == TrialState.COMPLETE and best.last_step == STEPS
    # Nobody goes past the first rung before three trials have reached it.
    first_past = min(i for i, a in enumerate(attempts) if a["start"] > 0)
    assert first_past >= 3


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
    ({"name": "asha", "type": "promote"}, "'type' must be stopping or promotion, got 'promote'"),
    ({"name": "median", "type": "promotion"}, "takes no option 'type'"),
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


@pytest.mark.parametrize("scheduler", [{"name": "asha", "type": "promotion", "max_resource": 9},
                                       {"name": "freeze-thaw", "max_resource": 9}])
def test_pausing_scheduler_needs_a_checkpoint_at_every_report_of_builtin_trainers(scheduler, tmp_path):
    d = _study("bad", "asha", tmp_path)
    d["space"] = {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    d["scheduler"] = scheduler
    d["trial"] = {"entrypoint": "builtin:classifier", "params": {"checkpoint_every": 0}}
    with pytest.raises(ConfigError, match=r"^trial.params.checkpoint_every: is 0, but the scheduler pauses"):
        parse_study(d)
    # builtin:lm's defaults report every 50 steps and checkpoint every 100: half the reports have none
    d["trial"] = {"entrypoint": "builtin:lm", "params": {}}
    with pytest.raises(ConfigError, match=r"is 100, .*set checkpoint_every to 50"):
        parse_study(d)
    d["trial"]["params"] = {"checkpoint_every": 25}
    parse_study(d)
    d["trial"]["params"] = {"checkpoint_every": 0}
    d["scheduler"] = {"name": "asha"}  # the stopping form needs none
    parse_study(d)


def test_promotion_needs_max_resource():
    with pytest.raises(ValueError, match="type: promotion needs max_resource"):
        make_scheduler({"name": "asha", "type": "promotion"}, ("loss",), ("minimize",))


def test_promotion_ranks_ties_by_trial_number_and_judges_the_highest_rung_recorded():
    s = ASHA("loss", "minimize", min_resource=1, reduction_factor=3, max_resource=27, type="promotion")
    for n in range(3):
        assert s.on_report(n, 1, {"loss": 1.0}).action == "pause"
    # three tied at rung 1, keep 1: the earliest only
    assert [s.rungs.promotable(n, 0, strict=True) for n in range(3)] == [True, False, False]
    # Trial 0 was paused at step 1 but its trainer went on to step 3 before it stopped, a report
    # the scheduler never saw: it is judged at rung 1, where it has a record, not left stranded.
    assert s.thaw({0: 3, 1: 1, 2: 1}) == 0


def test_hyperband_promotion_compares_brackets_by_resource():
    """Rung indices restart in each bracket; the promotion order is by the rung's resource."""
    s = make_scheduler({"name": "hyperband", "min_resource": 1, "reduction_factor": 3, "max_resource": 27,
                        "type": "promotion"}, ("loss",), ("minimize",))
    assert len(s.brackets) == 4                    # brackets from 1, 3, 9, 27 epochs; trial n in bracket n % 4
    s.on_report(0, 1, {"loss": 1.0})
    s.on_report(0, 3, {"loss": 0.9})               # bracket 0 at its rung 1 (3 epochs)
    s.on_report(2, 9, {"loss": 2.0})               # bracket 2 at its rung 0 (9 epochs)
    assert s.thaw({0: 3, 2: 9}, can_start=False) == 2


def test_promotion_carries_trials_on_when_the_algorithm_has_nothing_left(tmp_path, sqlite_url):
    """A grid of three configurations under a bigger budget: the algorithm runs dry with every
    trial paused, and the best is still carried to full resource."""
    d = _study("dry", "asha-promotion", tmp_path, trials=10, parallel=1)
    d["space"] = {"q": {"type": "categorical", "choices": [0.1, 0.5, 0.9]}}
    d["algorithm"] = {"name": "grid"}
    search.run(d, storage=sqlite_url)
    with open_storage(sqlite_url) as st:
        trials = st.get_trials(st.get_study("dry").id)
    assert len(trials) == 3 and all(t.is_finished for t in trials)
    best = min(trials, key=lambda t: t.params["q"])
    assert best.state == TrialState.COMPLETE and best.last_step == STEPS
    # Thawed at rung 1, and at rung 3 (where the grid is found dry); at rung 9 it would be the one
    # thawed into the slot its pause frees, so it goes straight on (no checkpoint round trip).
    assert best.attempt == 2


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


@pytest.mark.parametrize("case", ["grid-dry", "budget", "budget-parallel"])
def test_going_straight_on_changes_no_outcome(case, tmp_path, monkeypatch):
    """A trial that goes straight on instead of pausing (it would be thawed at once) leaves every
    trial with the state, last step and value it gets when it pauses and is thawed; only attempts
    differ (fewer checkpoint round trips)."""
    from search.controller import Controller

    def run(tag):
        d = _study(f"straight-{tag}", "asha-promotion", tmp_path / tag, trials=12 if case == "budget-parallel" else 6,
                   parallel=3 if case == "budget-parallel" else 1)
        if case == "grid-dry":
            d["space"] = {"q": {"type": "categorical", "choices": [0.6, 0.1, 0.5, 0.2, 0.4, 0.3]}}
            d["algorithm"] = {"name": "grid"}
            d["budget"]["trials"] = 20
        url = f"sqlite:///{tmp_path}/{tag}.db"
        search.run(d, storage=url)
        with open_storage(url) as st:
            return [(t.number, t.params["q"], t.state, t.last_step, t.value, t.attempt)
                    for t in st.get_trials(st.get_study(f"straight-{tag}").id)]

    now = run("now")
    monkeypatch.setattr(Controller, "_thawed_at_once", lambda self, rec, step: False)
    before = run("before")
    assert [t[:5] for t in now] == [t[:5] for t in before]
    assert sum(t[5] for t in now) < sum(t[5] for t in before)


def _outcome(url, name, attempts=True):
    with open_storage(url) as st:
        return [(t.number, t.state, t.last_step, t.value) + ((t.attempt,) if attempts else ())
                for t in st.get_trials(st.get_study(name).id)]


@pytest.mark.parametrize("variant", ["asha", "asha-promotion", "median"])
def test_a_worker_lost_after_a_stop_or_pause_decision_is_not_retried_past_it(variant, tmp_path):
    """The worker dies as the stop (or pause) reaches it: the trial ends as the decision said, at
    the step that decided it, exactly as without the death; it is not retried from its checkpoint
    to run on past that rung."""
    out = {}
    for tag, die in (("plain", False), ("dying", True)):
        d = _study(f"lost-{tag}", variant, tmp_path / tag, trials=9, parallel=2)
        d["trial"] = {"entrypoint": "freeze_thaw_objectives:curve_ckpt", "params": {"steps": STEPS, "die_on_stop": die}}
        url = f"sqlite:///{tmp_path}/{tag}.db"
        search.run(d, storage=url)
        out[tag] = _outcome(url, f"lost-{tag}")
    assert any(t[1] == TrialState.PRUNED for t in out["plain"])
    assert out["dying"] == out["plain"]


@pytest.mark.parametrize("variant", ["asha", "asha-promotion"])
def test_a_decision_the_controller_died_before_carrying_out_is_carried_out_on_resume(variant, tmp_path):
    """The controller goes away right after deciding a stop (or pause), before the worker sees it:
    on resume the interrupted trial ends as decided, and the study ends as an uninterrupted one."""
    from search.algorithms import make_algorithm
    from search.backends.simulated import SimulatedBackend
    from search.controller import Controller

    class DiesOnSecondStop(SimulatedBackend):
        stops = 0

        def request_stop(self, trial_id):
            DiesOnSecondStop.stops += 1
            if DiesOnSecondStop.stops == 2:
                raise KeyboardInterrupt  # the controller process is stopped here
            super().request_stop(trial_id)

    def study(name):
        d = _study(name, variant, tmp_path / name, trials=9, parallel=1)
        d["trial"]["entrypoint"] = "freeze_thaw_objectives:curve_ckpt"  # checkpoints every step
        d["trial"]["params"]["log"] = str(tmp_path / f"{name}-attempts.jsonl")  # a line per attempt run
        return d

    search.run(study("plain"), storage=f"sqlite:///{tmp_path}/plain.db")
    config = parse_study(study("cut"))
    url = f"sqlite:///{tmp_path}/cut.db"
    st = open_storage(url)
    rec = st.create_study(config.name, metrics=config.metrics, directions=config.directions, spec=dict(config.raw))
    algo = make_algorithm(config.algorithm, config.space, config.metrics, config.directions, seed=config.seed,
                          **config.algorithm_options)
    summary = Controller(config, st, DiesOnSecondStop(), algo, rec).run()
    assert st.get_study("cut").state == "INTERRUPTED" and summary.complete < 9
    # The decided trial ended as decided when the run stopped; nothing is left RUNNING.
    states = [t.state for t in st.get_trials(rec.id)]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    st.close()
    search.resume("cut", storage=url)
    assert _outcome(url, "cut", attempts=False) == _outcome(f"sqlite:///{tmp_path}/plain.db", "plain", attempts=False)
    # The interrupted trial is not run again: no more attempts ran than without the interruption.
    runs = {name: open(tmp_path / f"{name}-attempts.jsonl", encoding="utf-8").read().splitlines()
            for name in ("plain", "cut")}
    assert len(runs["cut"]) == len(runs["plain"])


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["asha", "asha-promotion"])
def test_kill9_between_a_decision_and_the_stop(variant, tmp_path):
    """`kill -9` of `search run` after a stop (or pause) was decided and stored, while the trial is
    still stopping: on resume the trial ends (or pauses) as decided at that step and attempt; it
    is not requeued to run on past the rung."""
    import json
    import subprocess

    from testlib import kill9_at_first_stop

    url = f"sqlite:///{tmp_path / 'search.db'}"
    marker, log = tmp_path / "stopping.json", tmp_path / "attempts.jsonl"
    d = _study("kill-decided", variant, tmp_path, trials=9, parallel=1)
    d["backend"] = {"name": "inprocess"}
    d["trial"] = {"entrypoint": "freeze_thaw_objectives:curve_ckpt",
                  "params": {"steps": STEPS, "linger_on_stop": str(marker), "log": str(log)}}
    decided, env = kill9_at_first_stop(d, tmp_path, url, marker)
    with open_storage(url) as st:
        sid = st.get_study("kill-decided").id
        before = st.get_trial(sid, decided["number"])
        decision = stored_decisions(st, sid)[str(before.id)]
        assert before.state == TrialState.RUNNING and decision["step"] <= before.last_step
    out = subprocess.run(["search", "resume", "kill-decided", "--storage", url, "--quiet", "--json"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["requeued_at_start"] == 0  # carried out, not re-run
    with open_storage(url) as st:
        trials = st.get_trials(sid)
        assert stored_decisions(st, sid) == {}
    assert [t.number for t in trials] == list(range(9)) and all(t.is_finished for t in trials)
    t = trials[decided["number"]]
    starts = [json.loads(line) for line in log.read_text().splitlines()]
    mine = [a for a in starts if a["number"] == t.number]
    if variant == "asha":
        # Stopped where its reports had reached, as attempt 0, and never run again.
        assert t.state == TrialState.PRUNED and t.last_step == before.last_step and t.attempt == 0
        assert len(mine) == 1
    else:
        # Paused there; any later attempt is a thaw from that step, never a rerun from before it.
        assert all(a["start"] >= before.last_step for a in mine[1:])
        assert t.last_step >= before.last_step


def _scheduler_state(s):
    """What a scheduler has recorded: rungs (ASHA, freeze-thaw) and curves (median, freeze-thaw)."""
    return {"rungs": getattr(getattr(s, "rungs", None), "recorded", None), "curves": getattr(s, "curves", None)}


@pytest.mark.parametrize("variant,algorithm_stops", [("asha", False), ("median", False), ("freeze-thaw", False),
                                                     ("median", True)])
def test_live_scheduler_records_what_a_resume_replays(variant, algorithm_stops, tmp_path):
    """On a backend where a stop lands a few reports late (as on Ray and in-process), the reports a
    trial made before it saw its stop request, and (``algorithm_stops``) the reports on which the
    algorithm rather than the scheduler decided, are recorded by the live scheduler too, so it
    holds exactly what a resume rebuilds from the stored reports."""
    from search.algorithms import CONTINUE, make_algorithm
    from search.decisions import Stop
    from search.backends.simulated import SimulatedBackend
    from search.controller import Controller

    class LateStops(SimulatedBackend):
        """A stop is seen only after two more reports."""

        def __init__(self):
            super().__init__()
            self.late: dict[int, int] = {}
            self.last: dict[int, int] = {}  # trial id -> step of its last report delivered
            self.decided: dict[int, int] = {}  # trial id -> step its stop was requested at

        def request_stop(self, trial_id):
            self.late[trial_id] = 2
            self.decided[trial_id] = self.last[trial_id]

        def poll(self, timeout):
            events = super().poll(timeout)
            for ev in events:
                if ev.kind == "report":
                    self.last[ev.trial_id] = ev.step
                    if ev.trial_id in self.late:
                        self.late[ev.trial_id] -= 1
                        if self.late[ev.trial_id] == 0:
                            del self.late[ev.trial_id]
                            super().request_stop(ev.trial_id)
            return events

    config = parse_study(_study("late", variant, tmp_path, trials=12, parallel=3))
    url = f"sqlite:///{tmp_path}/late.db"
    st = open_storage(url)
    rec = st.create_study(config.name, metrics=config.metrics, directions=config.directions, spec=dict(config.raw))
    algo = make_algorithm(config.algorithm, config.space, config.metrics, config.directions, seed=config.seed,
                          **config.algorithm_options)
    if algorithm_stops:
        algo.on_report = lambda history, trial, step, metrics: (
            Stop("the algorithm's") if trial.number % 3 == 2 and step >= 4 else CONTINUE)
    backend = LateStops()
    controller = Controller(config, st, backend, algo, rec)
    controller.run()
    trials = st.get_trials(rec.id)
    last = {t.id: max(r.step for r in st.get_reports(t.id)) for t in trials}
    assert any(last[tid] > step for tid, step in backend.decided.items()), "no report came after a stop request"
    if algorithm_stops:
        assert {t.number for t in trials if t.id in backend.decided} >= {2, 5, 8, 11}
    # What a resume rebuilds: a second controller over the finished study replays its reports.
    algo = make_algorithm(config.algorithm, config.space, config.metrics, config.directions, seed=config.seed,
                          **config.algorithm_options)
    resumed = Controller(config, st, LateStops(), algo, st.get_study(config.name))
    resumed.run()
    st.close()
    assert _scheduler_state(controller.scheduler) == _scheduler_state(resumed.scheduler)
