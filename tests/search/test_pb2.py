"""PB2 (Population-Based Bandits): the time-varying GP, the bandit's choices, and a study end to end."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import search
from search.algorithms.base import History
from search.algorithms.pbt import PBT
from search.config import ConfigError, parse_study
from search.lineage import params_at, schedules
from search.space import FloatParam, IntParam, Space
from storage import TrialState, open_storage
from storage.records import TrialRecord
from surrogates.time_varying_gp import TimeVaryingGP


def _pb2(space, **kw):
    return PBT(space, ("loss",), ("minimize",), seed=kw.pop("seed", 0), population=4, explore="pb2", **kw)


def _feed(pbt, f, rounds=4, per_round=8, seed=0):
    """Observations of improvement f(unit hyperparameters) at rounds 1..rounds, with small noise."""
    rng = np.random.default_rng(seed)
    d = len(pbt.space)
    for r in range(1, rounds + 1):
        for _ in range(per_round):
            u = tuple(float(x) for x in rng.uniform(size=d))
            pbt.observations.append((float(r), u, float(f(np.array(u))) + 0.01 * float(rng.normal())))


def test_time_varying_gp_forgets_old_rounds_and_pending_points_shrink_variance():
    # The reward at x moved: high near x=0.2 in rounds 1-5, high near x=0.8 in rounds 6-10.
    rng = np.random.default_rng(0)
    X, y = [], []
    for t in range(1, 11):
        for x in rng.uniform(size=6):
            X.append([t, x])
            y.append(math.exp(-((x - (0.2 if t <= 5 else 0.8)) / 0.15) ** 2))
    gp = TimeVaryingGP().fit(np.array(X), np.array(y))
    assert 1e-4 <= gp.epsilon_ <= 0.5
    now = gp.predict(np.array([[11, 0.2], [11, 0.8]]))[0]
    then = gp.predict(np.array([[3, 0.2], [3, 0.8]]))[0]
    assert now[1] > now[0] + 0.3 and then[0] > then[1] + 0.3  # it tracks the drift
    q = np.array([[11, 0.5]])
    assert gp.predict(q, pending=q)[1][0] < 0.5 * gp.predict(q)[1][0]
    with pytest.raises(ValueError, match="time column"):
        TimeVaryingGP().fit(np.ones((3, 1)), np.ones(3))


def test_bandit_prefers_higher_improvement_and_respects_log_scale():
    space = Space((FloatParam("lr", 1e-5, 1.0, log=True), FloatParam("mom", 0.0, 1.0)))
    pbt = _pb2(space)
    # Improvement peaks at lr = 1e-3 (unit 0.4 on the log scale) and mom = 0.9.
    _feed(pbt, lambda u: math.exp(-((u[0] - 0.4) / 0.15) ** 2 - ((u[1] - 0.9) / 0.3) ** 2), rounds=3, per_round=12)
    picks = [pbt.pb2_explore({"lr": 0.5, "mom": 0.1}, np.random.default_rng(s), number=s, at_round=4.0)
             for s in range(3)]
    for p in picks:
        assert 1e-5 <= p["lr"] <= 1.0 and 0.0 <= p["mom"] <= 1.0
        assert 2e-4 <= p["lr"] <= 5e-3, p  # near the peak in log space (linear scale would miss it)
        assert p["mom"] >= 0.6, p


def test_bandit_stays_within_bounds_snaps_ints_and_is_deterministic():
    space = Space((FloatParam("lr", 1e-3, 1e-1, log=True), IntParam("bs", 8, 64, log=True),
                   FloatParam("wd", 0.0, 0.1, step=0.01)))
    f = lambda u: u[0] + u[1] - u[2]  # noqa: E731  best at a corner: the bounds must hold
    a, b = _pb2(space), _pb2(space)
    _feed(a, f)
    _feed(b, f)
    pa = a.pb2_explore({"lr": 0.01, "bs": 16, "wd": 0.05}, np.random.default_rng(7), number=1, at_round=5.0)
    pb = b.pb2_explore({"lr": 0.01, "bs": 16, "wd": 0.05}, np.random.default_rng(7), number=1, at_round=5.0)
    assert pa == pb
    assert 1e-3 <= pa["lr"] <= 1e-1 and isinstance(pa["bs"], int) and 8 <= pa["bs"] <= 64
    assert pa["wd"] in [round(0.01 * i, 10) for i in range(11)] or any(abs(pa["wd"] - 0.01 * i) < 1e-12 for i in range(11))
    assert pa["lr"] > 0.03 and pa["bs"] > 30 and pa["wd"] <= 0.03


def test_pending_members_are_pushed_apart():
    space = Space((FloatParam("x", 0.0, 1.0),))

    def fed():
        pbt = _pb2(space)
        for r in (1.0, 2.0):  # data at both ends, none in the middle where the variance is high
            for x in (0.0, 0.1, 0.2, 0.8, 0.9, 1.0):
                pbt.observations.append((r, (x,), math.sin(2 * math.pi * x)))
        return pbt

    pbt = fed()
    first = pbt.pb2_explore({"x": 0.5}, np.random.default_rng(0), number=1, at_round=3.0)
    assert pbt.pending[1] == (3.0, pytest.approx((first["x"],)))
    second = pbt.pb2_explore({"x": 0.5}, np.random.default_rng(0), number=2, at_round=3.0)
    unaware = fed().pb2_explore({"x": 0.5}, np.random.default_rng(0), number=2, at_round=3.0)
    assert unaware["x"] == pytest.approx(first["x"])  # same data, same choice...
    assert abs(second["x"] - first["x"]) > 0.02  # ...unless the first one is pending
    assert 0.2 < first["x"] < 0.5  # between the best observed point and the unexplored middle


def test_observations_from_ready_members_and_fallback_while_data_is_short():
    space = Space((FloatParam("lr", 1e-4, 1.0, log=True),))
    pbt = _pb2(space, interval=2, quantile=0.25)
    trials = tuple(TrialRecord(id=i + 1, study_id=1, number=i, state="RUNNING", params={"lr": 10.0 ** -(i + 1)})
                   for i in range(4))
    h = History(trials, ("loss",), ("minimize",))
    for i in range(4):
        pbt.on_report(h, trials[i], 1, {"loss": 5.0})
    for i, loss in enumerate([1.0, 2.0, 3.0]):
        assert pbt.on_report(h, trials[i], 2, {"loss": loss}).action == "continue"
    # Improvement per step over steps 1-2 at round 1, with lr on the unit scale.
    assert [(t, y) for t, _, y in pbt.observations] == [(1.0, 4.0), (1.0, 3.0), (1.0, 2.0)]
    assert pbt.observations[0][1] == pytest.approx((0.75,))
    d = pbt.on_report(h, trials[3], 2, {"loss": 9.0})
    assert d.action == "exploit" and d.extra["parent"] == 0 and 1e-4 <= d.extra["params"]["lr"] <= 1.0
    assert 3 in pbt.pending  # it chose by the model (4 observations >= 3) and is pending
    state = json.loads(json.dumps(pbt.state_dict()))
    again = _pb2(space, interval=2, quantile=0.25)
    again.load_state_dict(state)
    assert again.observations == pbt.observations and again.pending == pbt.pending and again.anchor == pbt.anchor
    # Its next interval is measured from the parent's value at the parent's step.
    assert pbt.anchor[3] == (2, 1.0)
    pbt.on_report(h, trials[3], 4, {"loss": 0.5})
    assert pbt.observations[-1][0] == 2.0 and pbt.observations[-1][2] == pytest.approx(0.25)
    assert 3 not in pbt.pending

    short = _pb2(space, interval=2, quantile=0.25, pb2_min_observations=10, resample_probability=0.0)
    for i in range(4):
        short.on_report(h, trials[i], 1, {"loss": 5.0})
    for i, loss in enumerate([1.0, 2.0, 3.0]):
        short.on_report(h, trials[i], 2, {"loss": loss})
    d = short.on_report(h, trials[3], 2, {"loss": 9.0})
    assert d.extra["params"]["lr"] == pytest.approx(0.1 * 0.8) or d.extra["params"]["lr"] == pytest.approx(0.1 * 1.2)
    assert not short.pending


def _spec(name, tmp_path, log, **algo):
    return {
        "name": name, "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:pbt_toy", "params": {"steps": 20, "log": str(log)}},
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}},
        "algorithm": {"name": "pbt", "seed": 3, "interval": 4, "quantile": 0.25, "explore": "pb2", **algo},
        "budget": {"trials": 6, "parallel": 6},
        "backend": {"name": "simulated"}, "artifacts": str(tmp_path / "artifacts"),
    }


def test_pb2_study_end_to_end_with_exact_lineage(tmp_path, sqlite_url):
    log = tmp_path / "histories.jsonl"
    summary = search.run(_spec("pb2", tmp_path, log), storage=sqlite_url)
    assert summary.complete == 6
    with open_storage(sqlite_url) as st:
        study = st.get_study("pb2")
        trials = st.get_trials(study.id)
        exploits = st.get_exploits(study.id)
        saved = st.get_algorithm_state(study.id)["algorithm"]
    assert all(t.state == TrialState.COMPLETE and t.last_step == 20 for t in trials)
    assert len(exploits) >= 3 and len(saved["observations"]) >= 10
    sched = schedules(trials, exploits)
    histories = {}
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        histories[rec["number"]] = rec["history"]
    for t in trials:
        assert [h[0] for h in histories[t.number]] == list(range(1, 21))
        for step, lr in histories[t.number]:
            assert params_at(sched[t.number], step)["lr"] == pytest.approx(lr, rel=1e-12), (t.number, step)
    for e in exploits:
        assert 1e-3 <= e.params_after["lr"] <= 1.0
    # The toy's best lr is 0.1 up to step 10 and 0.01 after: the best member beats every member
    # of the initial population run with its lr fixed.
    def fixed(lr):
        return 10.0 - 0.5 * sum(math.exp(-(math.log10(lr / (0.1 if s <= 10 else 0.01))) ** 2) for s in range(1, 21))

    best = min(trials, key=lambda t: t.value)
    assert best.value < min(fixed(sched[t.number][0]["params"]["lr"]) for t in trials)


def test_pb2_options_validated():
    base = {"name": "p", "objective": {"metric": "loss"}, "trial": {"entrypoint": "search_test_objectives:pbt_toy"},
            "space": {"lr": {"type": "float", "low": 0.001, "high": 1}}}
    assert parse_study({**base, "algorithm": {"name": "pbt"}}).algorithm_options.get("explore", "perturb") == "perturb"
    with pytest.raises(ConfigError, match=r"^algorithm: .*'explore' must be one of perturb, pb2, got 'bandit'"):
        parse_study({**base, "algorithm": {"name": "pbt", "explore": "bandit"}})
    with pytest.raises(ConfigError, match=r"^algorithm: .*pb2 models numeric parameters only, and 'opt'.*explore: perturb"):
        parse_study({**base, "space": {**base["space"], "opt": {"type": "categorical", "choices": ["adam", "sgd"]}},
                     "algorithm": {"name": "pbt", "explore": "pb2"}})
    with pytest.raises(ConfigError, match="pb2_min_observations"):
        parse_study({**base, "algorithm": {"name": "pbt", "explore": "pb2", "pb2_min_observations": 0}})
    with pytest.raises(ValueError, match="conditional"):
        PBT(Space((IntParam("a", 0, 1), FloatParam("b", 0.0, 1.0, when={"a": (1,)}))),
            ("loss",), ("minimize",), explore="pb2")
    assert parse_study({**base, "algorithm": {"name": "pbt", "explore": "pb2"}}).algorithm_options["explore"] == "pb2"


def test_pb2_observations_are_saved_as_they_arrive(tmp_path, sqlite_url, monkeypatch):
    """Each PB2 observation reaches storage before the next one is taken (not only at exploits and
    completions), so a controller killed between them loses nothing the bandit has learnt."""
    from storage._rdb import Storage

    counts: list[int] = []
    set_state, put_decision = Storage.set_algorithm_state, Storage.put_decision

    def count(states):
        if "algorithm" in (states or {}):  # not writes of the stored decisions alone
            counts.append(len(states["algorithm"].get("observations", [])))

    def spy(self, study_id, states):
        count(states)
        return set_state(self, study_id, states)

    def spy_decision(self, study_id, decision, states=None):  # an exploit saves the state with it
        count(states)
        return put_decision(self, study_id, decision, states=states)

    monkeypatch.setattr(Storage, "set_algorithm_state", spy)
    monkeypatch.setattr(Storage, "put_decision", spy_decision)
    search.run(_spec("pb2-saves", tmp_path, tmp_path / "h.jsonl"), storage=sqlite_url)
    with open_storage(sqlite_url) as st:
        final = st.get_algorithm_state(st.get_study("pb2-saves").id)["algorithm"]
    assert counts and counts[-1] == len(final["observations"]) >= 10
    assert all(b - a <= 1 for a, b in zip(counts, counts[1:])), counts
