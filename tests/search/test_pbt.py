"""Population Based Training on the simulated backend: exploits as data, exact lineage, resume."""
from __future__ import annotations

import json
import os
import math

import pytest

import search
from search.algorithms.base import History
from search.algorithms.pbt import PBT
from search.config import parse_study
from search.lineage import params_at, schedules
from search.space import CategoricalParam, FloatParam, IntParam, Space
from storage import TrialState, open_storage
from testlib import interrupt_after, restore_decisions, stored_decisions


def _study(name, tmp_path, log, population=6, interval=4):
    return {
        "name": name, "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:pbt_toy", "params": {"steps": 20, "log": str(log)}},
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}},
        "algorithm": {"name": "pbt", "seed": 3, "interval": interval, "quantile": 0.25},
        "budget": {"trials": population, "parallel": population},
        "backend": {"name": "simulated"}, "artifacts": str(tmp_path / "artifacts"),
    }


def _check_lineage(url, name, log):
    with open_storage(url) as st:
        study = st.get_study(name)
        trials = st.get_trials(study.id)
        exploits = st.get_exploits(study.id)
    assert all(t.state == TrialState.COMPLETE and t.last_step == 20 for t in trials)
    sched = schedules(trials, exploits)
    histories = {}
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        histories[rec["number"]] = rec["history"]
    assert set(histories) == {t.number for t in trials}
    for t in trials:
        # What the final weights really saw, step by step, equals the reconstructed schedule.
        assert [h[0] for h in histories[t.number]] == list(range(1, 21))
        for step, lr in histories[t.number]:
            assert params_at(sched[t.number], step)["lr"] == pytest.approx(lr, rel=1e-12), (t.number, step)
        assert t.params == sched[t.number][-1]["params"]  # the trial's params are the current ones
    return trials, exploits


def test_pbt_exploits_and_lineage_reconstructs_every_schedule(tmp_path, sqlite_url, capsys):
    log = tmp_path / "histories.jsonl"
    search.run(_study("pbt", tmp_path, log), storage=sqlite_url)
    trials, exploits = _check_lineage(sqlite_url, "pbt", log)
    assert len(trials) == 6 and len(exploits) >= 3
    for e in exploits:
        assert e.parent_number != e.number and e.parent_step >= 1
        assert 1e-3 <= e.params_after["lr"] <= 1.0
    # The population learned a schedule: the best member ends better than any member of the
    # initial population would have with its learning rate fixed (the toy's optimum moves from
    # 0.1 to 0.01 at step 10, so no single value is right throughout).
    def fixed(lr):
        return 10.0 - 0.5 * sum(math.exp(-(math.log10(lr / (0.1 if s <= 10 else 0.01))) ** 2) for s in range(1, 21))

    best = min(trials, key=lambda t: t.value)
    initial = schedules(trials, exploits)
    assert best.value < min(fixed(initial[t.number][0]["params"]["lr"]) for t in trials)

    from search.cli import main

    assert main(["lineage", "pbt", "--storage", sqlite_url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["exploits"]) == len(exploits)
    assert report["best"]["number"] == best.number and report["best"]["schedule"]


def test_pbt_interrupted_resumes_with_population_and_lineage(tmp_path, sqlite_url):
    log = tmp_path / "histories.jsonl"
    summary = search.run(_study("pbt-resume", tmp_path, log), storage=sqlite_url, on_progress=interrupt_after(60))
    assert summary.interrupted
    with open_storage(sqlite_url) as st:
        s = st.get_study("pbt-resume")
        before = st.get_exploits(s.id)
        waiting = st.get_trials(s.id, states=[TrialState.WAITING])
    assert waiting and before
    search.resume("pbt-resume", storage=sqlite_url)
    trials, exploits = _check_lineage(sqlite_url, "pbt-resume", log)
    assert len(trials) == 6  # the population, no more
    assert [e.id for e in exploits[:len(before)]] == [e.id for e in before]


def test_explore_perturbs_or_resamples_within_bounds():
    space = Space((FloatParam("lr", 1e-4, 1.0, log=True), IntParam("bs", 8, 64),
                   CategoricalParam("opt", ("adam", "sgd"))))
    pbt = PBT(space, ("loss",), ("minimize",), seed=0, population=4, resample_probability=0.0)
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(50):
        out = pbt.explore({"lr": 0.01, "bs": 32, "opt": "adam"}, rng)
        assert out["lr"] == pytest.approx(0.008) or out["lr"] == pytest.approx(0.012)
        assert out["bs"] in (26, 38) and out["opt"] == "adam"
    always = PBT(space, ("loss",), ("minimize",), seed=0, population=4, resample_probability=1.0)
    seen = {always.explore({"lr": 0.01, "bs": 32, "opt": "adam"}, rng)["opt"] for _ in range(30)}
    assert seen == {"adam", "sgd"}


def test_truncation_selection_decisions():
    space = Space((FloatParam("lr", 1e-4, 1.0, log=True),))
    pbt = PBT(space, ("loss",), ("minimize",), seed=0, population=4, interval=2, quantile=0.25)
    from storage.records import TrialRecord

    trials = tuple(TrialRecord(id=i + 1, study_id=1, number=i, state="RUNNING", params={"lr": 0.1 * (i + 1)})
                   for i in range(4))
    h = History(trials, ("loss",), ("minimize",))
    for i, loss in enumerate([1.0, 2.0, 3.0]):
        assert pbt.on_report(h, trials[i], 1, {"loss": loss}).action == "continue"  # not ready: step < 2
    d = pbt.on_report(h, trials[3], 2, {"loss": 9.0})  # the worst, and ready
    assert d.action == "exploit" and d.extra["parent"] == 0  # the top quarter of four is trial 0
    assert 1e-4 <= d.extra["params"]["lr"] <= 1.0
    # Restarted from the parent's step 1, it is ready again one interval later, not before.
    assert pbt.on_report(h, trials[3], 2, {"loss": 9.0}).action == "continue"
    assert pbt.on_report(h, trials[1], 2, {"loss": 2.0}).action == "continue"  # ready, not in the bottom


def test_pbt_options_validated():
    with pytest.raises(Exception, match="interval"):
        parse_study({"name": "p", "objective": {"metric": "loss"}, "trial": {"entrypoint": "search_test_objectives:pbt_toy"},
                     "space": {"lr": {"type": "float", "low": 0.001, "high": 1}},
                     "algorithm": {"name": "pbt", "interval": 0}})
    c = parse_study({"name": "p", "objective": {"metric": "loss"}, "trial": {"entrypoint": "search_test_objectives:pbt_toy"},
                     "space": {"lr": {"type": "float", "low": 0.001, "high": 1}},
                     "algorithm": {"name": "pbt"}, "budget": {"trials": 7}})
    assert c.algorithm_options["population"] == 7


def test_keep_last_retention_never_breaks_exploits(tmp_path, sqlite_url):
    """With checkpoints.keep_last: 2 each trial keeps its two newest files, and every exploit
    still found its parent's checkpoint (the lineage stays exact)."""
    log = tmp_path / "histories.jsonl"
    search.run({**_study("pbt-keep", tmp_path, log), "checkpoints": {"keep_last": 2}}, storage=sqlite_url)
    trials, exploits = _check_lineage(sqlite_url, "pbt-keep", log)
    assert exploits
    with open_storage(sqlite_url) as st:
        for t in trials:
            on_disk = [c for c in st.get_checkpoints(t.id) if os.path.exists(c.path)]
            assert 1 <= len(on_disk) <= 2


def test_no_exploit_at_the_end_of_training():
    from storage.records import TrialRecord

    space = Space((FloatParam("lr", 1e-4, 1.0, log=True),))
    pbt = PBT(space, ("loss",), ("minimize",), seed=0, population=4, interval=2, quantile=0.25, horizon=4)
    trials = tuple(TrialRecord(id=i + 1, study_id=1, number=i, state="RUNNING", params={"lr": 0.1}) for i in range(4))
    h = History(trials, ("loss",), ("minimize",))
    for i, loss in enumerate([1.0, 2.0, 3.0]):
        pbt.on_report(h, trials[i], 1, {"loss": loss})
    assert pbt.on_report(h, trials[3], 4, {"loss": 9.0}).action == "continue"  # at the horizon
    # Without a horizon, the last step of completed members marks the end.
    done = TrialRecord(id=1, study_id=1, number=0, state="COMPLETE", params={"lr": 0.1}, last_step=6)
    h = History((done,) + trials[1:], ("loss",), ("minimize",))
    for step, expected in ((6, "continue"), (4, "exploit")):
        pbt = PBT(space, ("loss",), ("minimize",), seed=0, population=4, interval=2, quantile=0.25)
        for i, loss in ((0, 1.0), (1, 2.0), (2, 3.0)):
            pbt.on_report(h, trials[i], 1, {"loss": loss})
        assert pbt.on_report(h, trials[3], step, {"loss": 9.0}).action == expected, step


def test_no_exploit_from_a_parent_at_the_end_of_training():
    """A member that runs after others finished (parallel < population) does not copy a finished
    member's final checkpoint (it would train nothing and repeat that member's result); a parent
    still training is taken instead, and with none the member goes on as it is."""
    from storage.records import TrialRecord as TR

    space = Space((FloatParam("lr", 1e-4, 1.0, log=True),))
    done = TR(id=1, study_id=1, number=0, state="COMPLETE", params={"lr": 0.1}, last_step=8)
    running = tuple(TR(id=i + 1, study_id=1, number=i, state="RUNNING", params={"lr": 0.01 * i}) for i in (1, 2, 3))
    h = History((done,) + running, ("loss",), ("minimize",))

    def decide(quantile):
        pbt = PBT(space, ("loss",), ("minimize",), seed=0, population=4, interval=2, quantile=quantile)
        pbt.on_report(h, done, 8, {"loss": 0.1})  # the best, at the end
        pbt.on_report(h, running[0], 2, {"loss": 1.0})
        pbt.on_report(h, running[1], 2, {"loss": 2.0})
        return pbt.on_report(h, running[2], 2, {"loss": 9.0})

    assert decide(0.25).action == "continue"  # the top quarter is member 0 alone, at the end
    d = decide(0.5)  # the top half: members 0 and 1, and only 1 can still train
    assert d.action == "exploit" and d.extra["parent"] == 1 and d.extra["parent_step"] == 2


def test_exploit_copies_the_parent_checkpoint_at_the_ranked_step():
    from search._pending import exploit_checkpoint
    from storage.records import CheckpointRecord

    def ck(i, step, attempt=1):
        return CheckpointRecord(id=i, trial_id=7, step=step, path=f"/ck/{i}", checksum="x", attempt=attempt)

    # attempt 1 reached step 8; the parent then exploited (its copy recorded at step 4) and trained
    # to step 9: ranked at step 8, the exploit takes attempt 2's step-8 checkpoint, not the newest
    cks = [ck(1, 4), ck(2, 8), ck(3, 4, 2), ck(4, 5, 2), ck(5, 8, 2), ck(6, 9, 2)]
    every = lambda path: True  # noqa: E731
    assert exploit_checkpoint(cks, 8, every).id == 5
    assert exploit_checkpoint(cks, 4, every).id == 3
    # without the ranked step's file (deleted, or never written) or a step: the newest that exists
    assert exploit_checkpoint(cks, 8, lambda p: p not in ("/ck/5", "/ck/2")).id == 6
    assert exploit_checkpoint(cks, None, every).id == 6
    assert exploit_checkpoint(cks, 8, lambda p: False) is None


def test_pbt_decision_names_the_step_the_parent_was_ranked_on():
    space = Space.of([FloatParam("lr", 1e-3, 1.0, log=True)])
    algo = PBT(space, ("loss",), ("minimize",), seed=0, population=4, interval=2, quantile=0.25)
    from storage.records import TrialRecord as TR
    trials = tuple(TR(id=i, study_id=1, number=i, state="RUNNING", params={"lr": 0.01 * (i + 1)}) for i in range(4))
    h = History(trials, ("loss",), ("minimize",))
    for n, (loss, step) in enumerate([(0.1, 3), (0.5, 2), (0.6, 2)]):
        algo.on_report(h, trials[n], step, {"loss": loss})
    d = algo.on_report(h, trials[3], 2, {"loss": 0.9})
    assert d.action == "exploit" and d.extra["parent"] == 0 and d.extra["parent_step"] == 3


def _outcome(url, name):
    """Every member's end (state, step, value, params) and every exploit (who, from whom, where,
    with what): what a run leaves, without ids and times."""
    with open_storage(url) as st:
        study = st.get_study(name)
        trials = [(t.number, t.state, t.last_step, t.value, t.params) for t in st.get_trials(study.id)]
        exploits = [(e.number, e.parent_number, e.step, e.parent_step, e.params_before, e.params_after)
                    for e in st.get_exploits(study.id)]
    return trials, exploits


def test_a_worker_lost_after_an_exploit_decision_still_exploits(tmp_path):
    """The member's worker dies as the exploit's stop request reaches it: the stored decision is
    carried out (the parent's checkpoint, the explored params, one lineage event), exactly as
    without the death; the member is not retried from its own checkpoint with its old params."""
    out = {}
    for tag, die in (("plain", False), ("dying", True)):
        log = tmp_path / f"{tag}.jsonl"
        d = _study(f"lost-{tag}", tmp_path / tag, log)
        d["trial"]["params"]["die_on_stop"] = die
        url = f"sqlite:///{tmp_path}/{tag}.db"
        search.run(d, storage=url)
        _check_lineage(url, f"lost-{tag}", log)
        out[tag] = _outcome(url, f"lost-{tag}")
    assert len(out["plain"][1]) >= 3
    assert out["dying"] == out["plain"]


@pytest.mark.parametrize("copy_fails", [0, 1, 2])
def test_an_exploit_decided_before_an_interrupt_is_carried_out(copy_fails, tmp_path, sqlite_url, monkeypatch):
    """The run stops (Ctrl-C) right after an exploit was decided, before the member saw the stop:
    the member is restarted from its parent's checkpoint with the explored params and waits for
    the next run (nothing left RUNNING), the exploit is in the lineage once (even if the decision
    outlived it: a crash before it was dropped), and the resumed study reconstructs every schedule
    exactly. If carrying it out fails then (``copy_fails`` 1: the copy of the parent's checkpoint
    raises), the member is requeued as it was, nothing is left RUNNING, and the next run carries
    the stored decision out; if that fails too (2), the member runs on as it was."""
    from search.algorithms import make_algorithm
    from search.backends.simulated import SimulatedBackend
    from search.controller import Controller
    from trials import artifacts

    class StoppedAtFirstExploit(SimulatedBackend):
        def __init__(self):
            super().__init__()
            self.stopping: list[int] = []
            self.decided: dict = {}

        def request_stop(self, trial_id):
            self.stopping.append(trial_id)
            self.decided = stored_decisions(st, rec.id)
            raise KeyboardInterrupt  # the run is stopped here

    if copy_fails:
        copy = artifacts.copy
        calls = []

        def failing_copy(src, dest):
            calls.append(src)
            if len(calls) <= copy_fails:
                raise OSError("disk full")
            return copy(src, dest)

        monkeypatch.setattr(artifacts, "copy", failing_copy)
    log = tmp_path / "histories.jsonl"
    d = _study("pbt-cut", tmp_path, log)
    d["budget"]["parallel"] = 2
    config = parse_study(d)
    st = open_storage(sqlite_url)
    rec = st.create_study(config.name, metrics=config.metrics, directions=config.directions, spec=dict(config.raw))
    algo = make_algorithm(config.algorithm, config.space, config.metrics, config.directions, seed=config.seed,
                          **config.algorithm_options)
    backend = StoppedAtFirstExploit()
    assert Controller(config, st, backend, algo, rec).run().interrupted
    assert st.get_study("pbt-cut").state == "INTERRUPTED"
    trials = {t.id: t for t in st.get_trials(rec.id)}
    member = trials[backend.stopping[0]]
    exploits = st.get_exploits(rec.id)
    assert TrialState.RUNNING not in {t.state for t in trials.values()}
    assert member.state == TrialState.WAITING
    decisions = stored_decisions(st, rec.id)
    decided = backend.decided[str(member.id)]["extra"]
    if copy_fails:
        assert not exploits and member.attempt == 1  # requeued as it was; the decision waits
        assert decisions == backend.decided
    else:
        assert [e.number for e in exploits] == [member.number] and decisions == {}
        assert (exploits[0].parent_number, exploits[0].params_after) == (decided["parent"], decided["params"])
        assert member.params == decided["params"] != exploits[0].params_before
        copied = st.latest_checkpoint(member.id)
        assert copied.step == exploits[0].parent_step and f"from-trial-{exploits[0].parent_number:05d}" in copied.path
        # as if the controller had died after the exploit but before dropping its decision
        restore_decisions(st, rec.id, backend.decided)
    st.close()
    search.resume("pbt-cut", storage=sqlite_url)
    trials, after = _check_lineage(sqlite_url, "pbt-cut", log)
    assert len(trials) == 6
    with open_storage(sqlite_url) as st:
        assert stored_decisions(st, rec.id) == {}
    mine = [e for e in after if e.number == member.number]
    if copy_fails == 2:  # never carried out: the member ran on with its params until it exploited anew
        assert not mine or mine[0].step > backend.decided[str(member.id)]["step"]
        return
    assert (mine[0].parent_number, mine[0].params_after) == (decided["parent"], decided["params"])
    if not copy_fails:
        assert mine[0].id == exploits[0].id  # not carried out a second time
        assert not any(e.step == mine[0].step for e in mine[1:])


@pytest.mark.slow
def test_kill9_between_an_exploit_decision_and_the_stop(tmp_path):
    """`kill -9` of `search run` after an exploit was decided and stored, while the member is still
    stopping: on resume the exploit is carried out as decided (parent, step, params), not dropped
    by requeuing the member to run on with its old params."""
    import subprocess

    from testlib import kill9_at_first_stop

    url = f"sqlite:///{tmp_path / 'search.db'}"
    marker, log = tmp_path / "stopping.json", tmp_path / "histories.jsonl"
    d = _study("kill-exploit", tmp_path, log, population=4)
    d["budget"]["parallel"] = 2  # two members train side by side, so one can copy the other
    d["backend"] = {"name": "inprocess"}
    d["trial"]["params"].update({"linger_on_stop": str(marker), "sleep": 0.02})
    # (the in-process backend answers a report at once: the member can see the request a step
    # past the one that decided it)
    stopping, env = kill9_at_first_stop(d, tmp_path, url, marker)
    with open_storage(url) as st:
        sid = st.get_study("kill-exploit").id
        member = st.get_trial(sid, stopping["number"])
        decision = stored_decisions(st, sid)[str(member.id)]
        assert member.state == TrialState.RUNNING and not st.get_exploits(sid)
    assert decision["action"] == "exploit" and decision["step"] <= stopping["step"]
    out = subprocess.run(["search", "resume", "kill-exploit", "--storage", url, "--quiet", "--json"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    trials, exploits = _check_lineage(url, "kill-exploit", log)
    assert len(trials) == 4
    # Carried out as decided, once: the member's first exploit is the stored one (and its history,
    # checked step by step above, shows the explored lr from the parent's step on).
    first = [e for e in exploits if e.number == member.number][0]
    assert (first.parent_number, first.step) == (decision["extra"]["parent"], stopping["step"])
    assert first.params_before == member.params and first.params_after == decision["extra"]["params"]
    assert first.parent_step == decision["extra"]["parent_step"] < 20


def test_an_exploit_is_stored_with_pbt_state_in_one_write(tmp_path, sqlite_url, monkeypatch):
    """A stored exploit decision and PBT's own state (readiness counted from the parent's step)
    reach storage in the same write: a controller killed between two writes would leave them
    disagreeing."""
    from storage._rdb import Storage

    writes = []
    original = Storage.put_decision

    def spy(self, study_id, decision, states=None):  # one write: the decision and any states
        writes.append({"decisions": {str(decision.trial_id): {"action": decision.kind, "attempt": decision.attempt}},
                       **{k: dict(v) for k, v in (states or {}).items()}})
        return original(self, study_id, decision, states=states)

    monkeypatch.setattr(Storage, "put_decision", spy)
    search.run(_study("pbt-one-write", tmp_path, tmp_path / "h.jsonl"), storage=sqlite_url)
    seen, first_writes = set(), []
    for w in writes:
        new = {(k, d["attempt"]) for k, d in w.get("decisions", {}).items() if d["action"] == "exploit"} - seen
        if new:
            first_writes.append(w)
            seen |= new
    assert len(first_writes) >= 3 and all("algorithm" in w for w in first_writes)


def test_a_population_larger_than_parallel_is_warned_about(tmp_path, sqlite_url, caplog):
    """Population 4 with parallel 2 ran and ended with no exploit, without a word: now it is said
    before the run."""
    import logging

    d = _study("pbt-turns", tmp_path, tmp_path / "h.jsonl", population=4)
    d["budget"]["parallel"] = 2
    with caplog.at_level(logging.WARNING, logger="search"):
        search.run(d, storage=sqlite_url)
    assert any("budget.parallel=2 < population=4" in r.getMessage() for r in caplog.records)
