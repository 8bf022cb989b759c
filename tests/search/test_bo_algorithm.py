"""The ``bo`` algorithm: valid proposals on mixed/conditional spaces, reproducibility, rebuild from
history, batches with pending trials, failures, several objectives and warm start."""
from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.pareto import pareto_front
from search.algorithms.base import History
from search.algorithms.bo import BayesOpt, log_ei
from search.space import CategoricalParam, FloatParam, IntParam, Space
from storage.records import TrialRecord

MIXED = Space.of([
    CategoricalParam("opt", ("sgd", "adam")),
    FloatParam("lr", 1e-4, 1e-1, log=True),
    IntParam("layers", 1, 5),
    FloatParam("momentum", 0.0, 0.99, when={"opt": ("sgd",)}),
    IntParam("width", 16, 128, log=True, step=16),
])
BOX = Space.of([FloatParam("x", 0.0, 1.0), FloatParam("y", 0.0, 1.0)])
M, MIN = ("loss",), ("minimize",)


def mixed_loss(c):
    v = (math.log10(c["lr"]) + 2.5) ** 2 + 0.1 * abs(c["layers"] - 3) + (c["width"] - 64) ** 2 / 4000
    if c["opt"] == "sgd":
        v += (c["momentum"] - 0.9) ** 2
    else:
        v += 0.05
    return v


def box_loss(c):  # minimum 0 at (0.7, 0.2), local minima along x every pi/12
    return (c["x"] - 0.7) ** 2 + (c["y"] - 0.2) ** 2 + 0.05 * math.sin(12 * (c["x"] - 0.7)) ** 2


def rec(i, params, value=None, state="COMPLETE"):
    values = None if value is None else (value if isinstance(value, tuple) else (value,))
    return TrialRecord(id=i, study_id=1, number=i, state=state, params=dict(params), values=values)


def run(algo, fn, rounds, batch):
    trials = []
    for _ in range(rounds):
        h = History(tuple(trials), algo.metrics, algo.directions)
        for p in algo.propose(h, batch):
            trials.append(rec(len(trials), p.params, fn(dict(p.params))))
    return trials


def _valid(space, config):
    for p in space:
        active = Space.is_active(p, config)
        assert (p.name in config) == active, (p.name, config)
        if active:
            assert p.contains(config[p.name]), (p.name, config[p.name])
            if isinstance(p, IntParam):
                assert (config[p.name] - p.low) % p.step == 0


@pytest.mark.parametrize("options", [{}, {"acquisition": "ei"}, {"acquisition": "ucb"},
                                     {"acquisition": "ts"}, {"surrogate": "forest"},
                                     {"input_warping": False}, {"refine_rounds": 3}])
def test_valid_configs_on_mixed_conditional_space(options):
    algo = BayesOpt(MIXED, M, MIN, seed=0, **options)
    trials = run(algo, mixed_loss, rounds=5, batch=4)
    assert len(trials) == 20
    for t in trials:
        _valid(MIXED, t.params)
    keys = {tuple(sorted((k, repr(v)) for k, v in t.params.items())) for t in trials}
    assert len(keys) == len(trials)  # no repeated proposals


def test_name_and_option_errors():
    assert BayesOpt.name == "bo"
    with pytest.raises(ValueError, match="takes no option 'popsize'"):
        BayesOpt(BOX, M, MIN, popsize=3)
    with pytest.raises(ValueError, match="acquisition must be one of"):
        BayesOpt(BOX, M, MIN, acquisition="pi")
    with pytest.raises(ValueError, match="n_initial must be an integer >= 1, got 0"):
        BayesOpt(BOX, M, MIN, n_initial=0)
    with pytest.raises(ValueError, match="refine_rounds must be an integer >= 1, got 0"):
        BayesOpt(BOX, M, MIN, refine_rounds=0)
    with pytest.raises(ValueError, match="directions"):
        BayesOpt(BOX, M, ("down",))


def test_seeded_reproducible_and_rebuilt_from_history():
    a = BayesOpt(MIXED, M, MIN, seed=7)
    trials = run(a, mixed_loss, rounds=4, batch=4)
    h = History(tuple(trials), M, MIN)
    b = BayesOpt(MIXED, M, MIN, seed=7)  # fresh instance, e.g. after a restart
    assert [p.params for p in a.propose(h, 3)] == [p.params for p in b.propose(h, 3)]
    again = run(BayesOpt(MIXED, M, MIN, seed=7), mixed_loss, rounds=4, batch=4)
    assert [t.params for t in again] == [t.params for t in trials]
    other = run(BayesOpt(MIXED, M, MIN, seed=8), mixed_loss, rounds=1, batch=4)
    assert [t.params for t in other] != [t.params for t in trials[:4]]


@pytest.mark.slow
def test_finds_good_region_faster_than_random():
    bo_best, rnd_best = [], []
    for seed in range(10):
        trials = run(BayesOpt(BOX, M, MIN, seed=seed), box_loss, rounds=6, batch=4)
        bo_best.append(min(t.value for t in trials))
        rng = np.random.default_rng(seed)
        rnd_best.append(min(box_loss(BOX.sample(rng)) for _ in range(24)))
    # Random search at 24 points ends near 0.016 (median of 10 seeds). Medians over 10 seeds: in
    # some seeds bo stays in the local minimum at x = 0.44 (loss 0.06) — with the default "unit"
    # lengthscale prior 3 of 20 seeds did, with "dim-scaled" none — so a mean over a few seeds
    # measures luck; the median is far closer to 0 than random's.
    assert np.median(bo_best) < 0.3 * np.median(rnd_best)
    assert np.mean(np.array(bo_best) < np.array(rnd_best)) >= 0.6


def test_lengthscale_prior_option():
    with pytest.raises(ValueError, match="lengthscale_prior must be"):
        BayesOpt(BOX, M, MIN, seed=0, lengthscale_prior="wide")
    from surrogates.gp import GaussianProcess
    rng = np.random.default_rng(0)
    X = rng.random((40, 6))
    y = np.sin(9 * X[:, 0]) + np.cos(7 * X[:, 1]) + X[:, 2]
    medians = {}
    for prior in ("unit", "dim-scaled"):
        gp = GaussianProcess(lengthscale_prior=prior, normalize_inputs=False, random_state=0).fit(X, y)
        medians[prior] = float(np.median(gp.lengthscales_))
    # the dimension-scaled prior (median 4.1 * sqrt(6) = 10) pulls the unused inputs' lengthscales
    # far higher than the unit prior (median 1)
    assert medians["dim-scaled"] > 2 * medians["unit"]
    with pytest.raises(ValueError, match="lengthscale_prior must be one of"):
        GaussianProcess(lengthscale_prior="wide").fit(X, y)


def test_batch_and_pending_trials_spread_proposals():
    algo = BayesOpt(BOX, M, MIN, seed=0, n_initial=6)
    trials = run(algo, box_loss, rounds=3, batch=4)
    h = History(tuple(trials), M, MIN)
    batch = [p.params for p in algo.propose(h, 4)]
    assert len({(c["x"], c["y"]) for c in batch}) == 4
    # with the first pick running, a new single proposal must not repeat it
    first = algo.propose(h, 1)[0].params
    running = History(tuple(trials) + (rec(len(trials), first, state="RUNNING"),), M, MIN)
    nxt = algo.propose(running, 1)[0].params
    assert nxt != first
    assert math.dist((nxt["x"], nxt["y"]), (first["x"], first["y"])) > 1e-3


@pytest.mark.slow
def test_failed_trials_steer_proposals_away():
    def fn(c):
        return None if c["x"] > 0.5 else (c["x"] - 0.45) ** 2 + (c["y"] - 0.5) ** 2

    fail_share = []
    for seed in range(2):
        algo = BayesOpt(BOX, M, MIN, seed=seed)
        trials = []
        for _ in range(8):
            h = History(tuple(trials), M, MIN)
            for p in algo.propose(h, 4):
                v = fn(p.params)
                trials.append(rec(len(trials), p.params, v, "FAILED" if v is None else "COMPLETE"))
        late = trials[16:]
        fail_share.append(np.mean([t.state == "FAILED" for t in late]))
    assert np.mean(fail_share) < 0.3  # random proposals would fail half the time


def test_all_failed_history_still_proposes():
    algo = BayesOpt(MIXED, M, MIN, seed=0, n_initial=2)
    rng = np.random.default_rng(0)
    trials = tuple(rec(i, MIXED.sample(rng), state="FAILED") for i in range(5))
    props = algo.propose(History(trials, M, MIN), 3)
    assert len(props) == 3
    for p in props:
        _valid(MIXED, p.params)


@pytest.mark.slow
def test_multi_objective_covers_the_front():
    def fn(c):  # conflicting: f1 wants x small, f2 wants x large; y should be 0.5 for both
        return (c["x"] ** 2 + (c["y"] - 0.5) ** 2, (1 - c["x"]) ** 2 + (c["y"] - 0.5) ** 2)

    algo = BayesOpt(BOX, ("f1", "f2"), ("minimize", "minimize"), seed=0)
    trials = run(algo, fn, rounds=6, batch=4)
    h = History(tuple(trials), ("f1", "f2"), ("minimize", "minimize"))
    front = pareto_front(h.trials, h.directions)
    xs = sorted(t.params["x"] for t in front)
    assert len(front) >= 5
    assert xs[0] < 0.35 and xs[-1] > 0.65  # both ends of the trade-off explored
    late = [t.params["y"] for t in trials[12:]]
    assert np.mean(np.abs(np.array(late) - 0.5)) < 0.2  # the shared optimum in y is learnt


def test_warm_start_uses_earlier_records():
    rng = np.random.default_rng(1)
    earlier = []
    for i in range(30):
        c = BOX.sample(rng)
        earlier.append(rec(i, c, box_loss(c)))
    dist = []
    for seed in range(3):
        algo = BayesOpt(BOX, M, MIN, seed=seed)
        algo.warm_start(earlier)
        batch = [p.params for p in algo.propose(History((), M, MIN), 4)]
        dist.append(min(math.dist((p["x"], p["y"]), (0.7, 0.2)) for p in batch))
        cold = [p.params for p in BayesOpt(BOX, M, MIN, seed=seed).propose(History((), M, MIN), 4)]
        assert cold != batch
    # the best warm record is 0.09 from the optimum; the model-based batch gets closer
    assert np.mean(dist) < 0.08
    with pytest.raises(ValueError, match="not in this space"):
        BayesOpt(BOX, M, MIN).warm_start([rec(0, {"x": 0.1, "y": 0.2, "z": 1.0}, 1.0)])
    with pytest.raises(ValueError, match="expected 1 objective"):
        BayesOpt(BOX, M, MIN).warm_start([rec(0, {"x": 0.1, "y": 0.2}, (1.0, 2.0))])


def test_log_ei_is_accurate_and_finite_in_the_tail():
    from scipy.stats import norm
    mean = np.array([0.0, 0.5, 1.0, 3.0])
    std = np.ones(4)
    naive = np.log((0 - mean) * norm.cdf(-mean) + norm.pdf(-mean))
    np.testing.assert_allclose(log_ei(mean, std, 0.0), naive, rtol=1e-9)
    far = log_ei(np.array([10.0, 40.0, 1e3, 1e8]), np.ones(4), 0.0)
    assert np.all(np.isfinite(far)) and np.all(np.diff(far) < 0)
    assert far[1] == pytest.approx(-0.5 * 40 ** 2 - 0.5 * math.log(2 * math.pi) - 2 * math.log(40), rel=1e-3)


def test_resumed_study_proposes_from_the_full_history(sqlite_url, tmp_path, monkeypatch):
    """A study killed after ten trials and resumed: the first proposal after the restart sees all
    ten stored trials (model-based, not a fresh initial design), and equals what a fresh ``bo``
    with the same seed proposes from those records."""
    import search
    from search.config import parse_study
    from storage import TrialState, open_storage

    config = parse_study({
        "name": "bo-resume", "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:quadratic"},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0},
                  "kind": {"type": "categorical", "choices": ["a", "b"]}},
        "algorithm": {"name": "bo", "seed": 3, "n_initial": 4},
        "budget": {"trials": 12, "parallel": 1},
        "backend": {"name": "inprocess"}, "artifacts": str(tmp_path / "artifacts"),
    })
    st = open_storage(sqlite_url)
    study = st.create_study(config.name, metrics=config.metrics, directions=config.directions,
                            spec=dict(config.raw))
    rng = np.random.default_rng(0)
    for _ in range(10):  # what the killed controller left behind
        c = {"x": float(rng.random()), "kind": str(rng.choice(["a", "b"]))}
        t = st.create_trial(study.id, c)
        v = (c["x"] - 0.3) ** 2 + (1.0 if c["kind"] == "b" else 0.0)
        st.finish_trial(t.id, 0, state=TrialState.COMPLETE, values=[v], metrics={"loss": v})
    stored = st.get_trials(study.id)
    st.close()

    seen: list[int] = []
    original = BayesOpt.propose

    def spy(self, history, n):
        seen.append(len(history.trials))
        return original(self, history, n)

    monkeypatch.setattr(BayesOpt, "propose", spy)
    summary = search.resume("bo-resume", storage=sqlite_url)
    assert summary.complete == 12
    assert seen and seen[0] == 10
    monkeypatch.setattr(BayesOpt, "propose", original)
    with open_storage(sqlite_url) as st2:
        after = st2.get_trials(st2.get_study("bo-resume").id)
    expected = BayesOpt(config.space, M, MIN, seed=3, n_initial=4).propose(
        History(tuple(stored), M, MIN), 1)[0].params
    assert after[10].params == expected
    fresh = BayesOpt(config.space, M, MIN, seed=3, n_initial=4).propose(History((), M, MIN), 1)[0].params
    assert after[10].params != fresh
