"""Freeze-thaw: paused trials keep their checkpoint, the best-predicted one is thawed first and
resumes where it stopped, everything ends terminal, and a killed study resumes with its paused
trials still paused and thawable."""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import search
from search.schedulers import FreezeThaw
from storage import TrialState, open_storage
from testlib import start_run

STEPS = 27


def _study(name, tmp_path, *, trials=24, parallel=1, log=None, keep_last=None, entrypoint=None, **params):
    d = {
        "name": name, "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": entrypoint or "freeze_thaw_objectives:curve_ckpt",
                  "params": {"steps": STEPS, **({"log": str(log)} if log else {}), **params}},
        "space": {"q": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 11},
        "scheduler": {"name": "freeze-thaw", "min_resource": 1, "reduction_factor": 3, "max_resource": STEPS},
        "budget": {"trials": trials, "parallel": parallel},
        "backend": {"name": "simulated"}, "artifacts": str(tmp_path / "artifacts"),
    }
    if keep_last is not None:
        d["checkpoints"] = {"keep_last": keep_last}
    return d


def _trials(url, name):
    with open_storage(url) as st:
        study = st.get_study(name)
        trials = st.get_trials(study.id)
        reports = {t.number: st.get_reports(t.id) for t in trials}
        return study, trials, reports


def _starts(log):
    return {(s["number"], s["attempt"]): s["start"] for s in map(json.loads, log.read_text().splitlines())}


def _check_continued(trials, reports, starts):
    """Every thawed attempt started from the step its trial was paused at, and the trial's
    reported steps run 1, 2, ... without a restart or a repeat."""
    thawed = [t for t in trials if t.attempt > 0]
    for t in thawed:
        for a in range(1, t.attempt + 1):
            before = max(r.step for r in reports[t.number] if r.attempt < a)
            assert starts[(t.number, a)] == before, (t.number, a)
    for t in trials:
        steps = [r.step for r in reports[t.number]]
        assert steps == list(range(1, len(steps) + 1)), (t.number, steps)
        assert t.last_step == steps[-1]
    return thawed


def test_paused_trials_resume_from_their_checkpoint(tmp_path, sqlite_url):
    log = tmp_path / "starts.jsonl"
    search.run(_study("ft", tmp_path, log=log, keep_last=1), storage=sqlite_url)
    study, trials, reports = _trials(sqlite_url, "ft")
    assert study.state == "COMPLETE"
    assert len(trials) == 24 and [t.number for t in trials] == list(range(24))
    assert all(t.is_finished for t in trials), [t.state for t in trials]
    thawed = _check_continued(trials, reports, _starts(log))
    assert thawed, "no paused trial was ever thawed"
    # Each thawed trial went on past the step of its first pause, on the same row (a new attempt),
    # from a checkpoint that keep_last: 1 retention did not delete while it was paused.
    for t in thawed:
        assert t.last_step > max(r.step for r in reports[t.number] if r.attempt == 0)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.last_step < STEPS and t.values is None for t in pruned)
    # The best configuration is never left paused.
    best = min(trials, key=lambda t: t.params["q"])
    assert best.state == TrialState.COMPLETE and best.last_step == STEPS


def test_without_checkpoints_a_pause_ends_pruned(tmp_path, sqlite_url):
    """A trainer that saves no checkpoint cannot be thawed: its pause is a stop, never a restart
    from step 0."""
    search.run(_study("ft-nock", tmp_path, entrypoint="search_test_objectives:curve"), storage=sqlite_url)
    _, trials, _ = _trials(sqlite_url, "ft-nock")
    assert all(t.is_finished and t.attempt == 0 for t in trials)
    assert any(t.state == TrialState.PRUNED for t in trials)


def _scheduler():
    return FreezeThaw("loss", "minimize", min_resource=3, reduction_factor=3, max_resource=27)


def _feed(s, number, values, start=1):
    out = None
    for step, v in enumerate(values, start):
        out = s.on_report(number, step, {"loss": v})
    return out


def test_ranked_by_predicted_final_not_current_value():
    s = _scheduler()
    # Trial 0: flat, 1.0 at step 3. Trial 1: steep, 1.1 at step 3 but still falling fast. Trial 2:
    # flat and worse. At rung 3 only one of three goes on: the steep one, on its predicted final.
    assert _feed(s, 0, [1.04, 1.02, 1.0]).action == "continue"  # alone at the rung
    assert _feed(s, 2, [1.5, 1.45, 1.4]).action == "pause"
    assert _feed(s, 1, [3.0, 1.6, 1.1]).action == "continue"
    assert s.predicted_final(1, 3) < s.predicted_final(0, 3) < 1.0
    # Under ASHA the steep trial would have been stopped: its value at the rung is not the best.
    from search.schedulers import ASHA

    a = ASHA("loss", "minimize", min_resource=3, reduction_factor=3, max_resource=27)
    _feed(a, 0, [1.04, 1.02, 1.0])
    _feed(a, 2, [1.5, 1.45, 1.4])
    assert _feed(a, 1, [3.0, 1.6, 1.1]).action == "stop"


def test_best_predicted_paused_trial_is_thawed_first():
    s = _scheduler()
    _feed(s, 0, [0.12, 0.11, 0.1])                     # the leader, goes on
    assert _feed(s, 1, [1.04, 1.02, 1.0]).action == "pause"   # flat
    assert _feed(s, 2, [3.0, 1.6, 1.1]).action == "pause"     # steep: a better predicted final
    assert s.thaw({1: 3, 2: 3}) is None                # 3 trials at the rung: only the leader ranks
    for n in range(3, 9):                               # six worse trials arrive: two may go on
        assert _feed(s, n, [5.0, 4.9, 4.8]).action == "pause"
    assert s.thaw({1: 3, 2: 3, 3: 3}) == 2             # the steep one first, though its value is worse
    assert s.thaw({1: 3, 3: 3}) == 1
    assert s.thaw({3: 3, 4: 3}) is None
    # Replaying the same reports (a restart) gives the same choice.
    r = _scheduler()
    for n, vals in [(0, [0.12, 0.11, 0.1]), (1, [1.04, 1.02, 1.0]), (2, [3.0, 1.6, 1.1])] + \
            [(n, [5.0, 4.9, 4.8]) for n in range(3, 9)]:
        for step, v in enumerate(vals, 1):
            r.observe(n, step, {"loss": v})
    assert r.thaw({1: 3, 2: 3, 3: 3}) == 2
    # A paused trial whose stored last step is past the rung it was judged at (a report that came
    # after the pause request, never shown to the scheduler) is judged at its highest recorded rung.
    assert s.thaw({1: 5, 2: 9, 3: 4}) == 2


def test_storage_pause_thaw_end(storage_url):
    """The PAUSED transitions, on SQLite and PostgreSQL alike."""
    with open_storage(storage_url) as st:
        study = st.create_study("s", metrics=["loss"], directions=["minimize"], spec={})
        a = st.create_trial(study.id, {"x": 1})
        b = st.create_trial(study.id, {"x": 2})
        assert st.pause_trial(a.id, attempt=1, last_step=3) is None           # stale attempt
        p = st.pause_trial(a.id, attempt=0, metrics={"loss": 0.5}, last_step=3)
        assert p.state == TrialState.PAUSED and p.last_step == 3 and not p.is_finished
        assert st.requeue_running(study.id, reason="restart")[0].id == b.id  # PAUSED is left alone
        assert st.get_trial(study.id, a.number).state == TrialState.PAUSED
        t = st.thaw_trial(a.id)
        assert t.state == TrialState.RUNNING and t.attempt == 1 and t.last_step == 3
        with pytest.raises(Exception, match="not PAUSED"):
            st.thaw_trial(a.id)
        st.pause_trial(a.id, attempt=1, last_step=9)
        [e] = st.end_paused(study.id)
        assert e.state == TrialState.PRUNED and e.last_step == 9 and e.values is None and e.finished_at
        assert st.count_trials(study.id)[study.id] == {TrialState.PRUNED: 1, TrialState.WAITING: 1}


def test_interrupted_study_keeps_paused_trials_thawable(tmp_path, sqlite_url):
    """Stopping the controller (Ctrl-C) while trials are paused leaves them PAUSED with their
    checkpoints; resume thaws them from there and ends with every trial terminal."""
    log = tmp_path / "starts.jsonl"
    d = _study("ft-int", tmp_path, log=log, parallel=2)

    st = open_storage(sqlite_url)

    def interrupt(progress):
        c = next(iter(st.count_trials(st.get_study("ft-int").id).values()), {})
        if not progress.final and c.get(TrialState.PAUSED, 0) >= 4:
            raise KeyboardInterrupt

    try:
        summary = search.run(d, storage=sqlite_url, on_progress=interrupt)
    finally:
        st.close()
    assert summary.interrupted
    study, before, _ = _trials(sqlite_url, "ft-int")
    assert study.state == "INTERRUPTED"
    paused = {t.number: t.last_step for t in before if t.state == TrialState.PAUSED}
    assert len(paused) >= 4 and not [t for t in before if t.state == TrialState.RUNNING]
    search.resume("ft-int", storage=sqlite_url)
    study, trials, reports = _trials(sqlite_url, "ft-int")
    assert study.state == "COMPLETE"
    assert [t.number for t in trials] == list(range(24)) and all(t.is_finished for t in trials)
    _check_continued(trials, reports, _starts(log))
    # Some trial paused before the interruption was thawed after it and went further.
    assert any(t.last_step > paused[t.number] for t in trials if t.number in paused), paused


@pytest.mark.slow
def test_kill9_with_paused_trials_then_resume(tmp_path):
    """`kill -9` of `search run` while trials are paused: resume keeps them, thaws from their
    checkpoints, loses and duplicates nothing, and leaves nothing RUNNING or PAUSED."""
    url = f"sqlite:///{tmp_path / 'search.db'}"
    log = tmp_path / "starts.jsonl"
    d = _study("ft-kill", tmp_path, log=log, parallel=2, sleep=0.01)
    d["backend"] = {"name": "inprocess"}
    proc, env = start_run(d, tmp_path, url)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with open_storage(url, create=False) as st:
                c = st.count_trials(st.get_study("ft-kill").id)
            c = next(iter(c.values()), {})
        except Exception:  # noqa: BLE001 - not created yet
            c = {}
        if c.get(TrialState.PAUSED, 0) >= 3 and c.get(TrialState.RUNNING, 0) >= 1:
            break
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.02)
    else:
        pytest.fail("no paused trials appeared")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _, before, _ = _trials(url, "ft-kill")
    paused = {t.number: t.last_step for t in before if t.state == TrialState.PAUSED}
    assert len(paused) >= 3
    out = subprocess.run(["search", "resume", "ft-kill", "--storage", url, "--quiet", "--json"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    study, trials, reports = _trials(url, "ft-kill")
    assert study.state == "COMPLETE"
    assert [t.number for t in trials] == list(range(24)) and all(t.is_finished for t in trials)
    # A killed RUNNING attempt restarts from its newest recorded checkpoint, a thaw from the
    # paused step's: either way from the newest checkpoint, never from step 0 when there is one.
    starts = _starts(log)
    with open_storage(url) as st:
        cks = {t.number: st.get_checkpoints(t.id) for t in trials}
    for t in trials:
        steps = sorted({r.step for r in reports[t.number]})
        assert steps == list(range(1, t.last_step + 1))
        for a in range(1, t.attempt + 1):
            expected = max((c.step for c in cks[t.number] if c.attempt < a), default=0)
            assert starts[(t.number, a)] == expected, (t.number, a)
    # A trial paused at the kill is either thawed after the resume (a new attempt that went on
    # from its paused step) or ends PRUNED exactly where it was paused.
    by_number = {t.number: t for t in trials}
    for n, step in paused.items():
        t = by_number[n]
        if t.last_step == step:
            assert t.state == TrialState.PRUNED and t.attempt == before[n].attempt, t
        else:
            assert t.last_step > step and t.attempt > before[n].attempt, t


def _bench(name):
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module(name)


def test_bench_counts_compute_in_report_order():
    ft = _bench("bench_freeze_thaw")
    # Trial 0 runs to 3 and pauses, trial 1 runs to 1, trial 0 is thawed and goes on from 3.
    run = ft.Run("x", [(0, 1, 0.9), (0, 3, 0.7), (1, 1, 0.8), (0, 4, 0.5)], 0.0, [])
    assert [c for c, _, _ in run.costs()] == [1, 2, 1, 1]
    assert run.compute == 5 and run.thaws == 1 and run.best == 0.5
    assert run.compute_to_reach(0.8) == 3 and run.compute_to_reach(0.5) == 5 and run.compute_to_reach(0.1) is None
    assert run.cut(4).reports == run.reports[:3]
    # The study-value reading: only reports at the full resource (here 3) count.
    assert run.best_at(3) == 0.5 and run.best_at(5) is None
    assert run.compute_to_reach(0.75, at_step=3) == 3 and run.compute_to_reach(0.6, at_step=3) == 5
    assert run.compute_to_reach(0.8, at_step=4) == 5
    with pytest.raises(RuntimeError, match="restarted instead of resuming"):
        ft.Run("y", [(0, 2, 0.9), (1, 1, 0.8), (0, 1, 0.9)], 0.0, []).costs()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["freeze-thaw", "asha-promotion"])
def test_bench_quick_thawed_trials_resume_exactly(method, tmp_path):
    """Real training (the built-in CNN on digits, quick sizes): a trial paused and thawed from its
    checkpoint reports exactly the losses it reports when trained without a pause."""
    import torch

    torch.set_num_threads(1)
    ft = _bench("bench_freeze_thaw")
    task = _bench("bench_multifidelity").tasks(True)["cnn"]
    random = ft.run_method(task, 0, str(tmp_path), "random", task.trials, None)
    frozen = ft.run_method(task, 0, str(tmp_path), method, task.trials, None)
    assert frozen.configs == random.configs and frozen.thaws >= 1
    assert frozen.compute < random.compute
    uninterrupted = {(n, s): v for n, s, v in random.reports}
    for n, s, v in frozen.reports:
        assert v == pytest.approx(uninterrupted[(n, s)], rel=1e-6), (n, s)
