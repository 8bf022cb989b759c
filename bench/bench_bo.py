"""Benchmark ``bo`` against the best installable black-box optimisers, side by side.

Protocol of the NeurIPS 2020 black-box optimisation challenge: 16 rounds of 8 parallel suggestions
(128 evaluations) per run, every method on the same problems and seeds, each through its own API:

- ``bo``: ours (``search.algorithms.bo.BayesOpt``), a batch of 8 per ``propose``;
- ``gp``: Optuna's ``GPSampler``; ``tpe``: Optuna's multivariate ``TPESampler`` (8 ``ask`` calls,
  then 8 ``tell`` calls, per round);
- ``smac``: SMAC3's ``HyperparameterOptimizationFacade`` (8 ``ask``, then 8 ``tell``; a failure is
  told as CRASHED with the worst loss seen so far as its cost: an infinite cost breaks its model);
- ``hebo``: HEBO's ``suggest(n_suggestions=8)`` / ``observe``, in a separate Python (``--hebo-python``,
  default /tmp/hebo-venv/bin/python) driven through a pipe speaking JSON, because HEBO pins older
  libraries; a failed evaluation is told to HEBO as the worst loss seen so far (it takes no failures);
- ``ax``: Ax's ``Client`` (its default generation strategy: Sobol, then BoTorch with qLogNEI),
  ``get_next_trials(8)`` per round;
- ``random``: uniform random search (also the scores' baseline).

A peer that is not installed is skipped with a note. Peer installs (not in pyproject.toml):

    pip install "torch==2.13.0" optuna smac ax-platform       # torch must stay 2.13.0
    python -m venv --system-site-packages /tmp/hebo-venv && /tmp/hebo-venv/bin/pip install --no-deps hebo disjoint-set

(``pip install hebo`` in a plain venv tries to build pymoo 0.6.0 and matplotlib 3.5 from source on
Python 3.11; HEBO 0.3.6 itself runs on the installed numpy/pandas/pymoo.)

Problems (``bench_objectives.PROBLEMS``, 25): synthetic functions of 2-20 inputs, mixed and
categorical synthetic functions, two with failures in part of the space, twelve scikit-learn
tuning problems. A failed evaluation (an exception or NaN) counts as no result; a run's best loss
is the best of its successful evaluations.

Scores follow Bayesmark (uber/bayesmark, ``experiment_baseline`` and ``experiment_analysis``; docs
"How scoring works"), on the best loss ``f`` of each run:

- ``opt_p``: the known optimum, else the best loss any method found on any seed in the cache;
- ``clip_p``: the median of all random-search evaluations of ``p`` (failures rank worst);
- per run ``N = clip((f - opt_p) / (clip_p - opt_p), -1, 1)``; ``N_pm`` its mean over seeds;
- ``N_p,rand``: random search's expected normalised best at the same budget, from all its
  evaluations pooled (Bayesmark's unbiased expected-minimum estimator);
- per problem ``100 * (1 - N_pm / N_p,rand)`` (100 = best known, 0 = random search at the budget);
  their mean over problems is the issue's "mean normalised score"; Bayesmark's aggregate
  ``score`` is ``100 * (1 - mean_p N_pm / mean_p N_p,rand)`` (a ratio of means).

Intervals: 95% bootstrap over seeds (seeds resampled per problem, 2,000 draws); differences
``bo - peer`` are paired (the same resampled seeds for both, on the problems and seeds both ran).

Runs go in parts into a JSONL cache (one line per problem, method and seed; a run already in the
cache is not repeated), and ``--report`` builds the tables from the cache:

    python bench/bench_bo.py --optimizers bo,random --seeds 0-2 --problems branin,hartmann6
    python bench/bench_bo.py --optimizers smac,hebo,ax --seeds 0                # another part
    python bench/bench_bo.py --report --plot docs/images/bo-peers.png           # the tables
    python bench/bench_bo.py --latency-only                  # ours vs GPSampler at 200 / 2,000 trials
    python bench/bench_bo.py --quick                         # smoke run: bo+random, 3 problems
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # 2 shared cores: threads only add contention here

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_objectives import PROBLEMS, Problem  # noqa: E402
from search.algorithms.base import History  # noqa: E402
from search.algorithms.bo import BayesOpt  # noqa: E402
from search.space import CategoricalParam, IntParam, Space  # noqa: E402
from storage.records import TrialRecord  # noqa: E402

DEFAULT_CACHE = Path(__file__).resolve().parent / "results" / "bo_runs.jsonl"
HEBO_PYTHON = "/tmp/hebo-venv/bin/python"


class Unavailable(RuntimeError):
    """A peer that is not installed here."""


def evaluate(problem: Problem, config: dict[str, Any]) -> float:
    """The loss, or NaN when the objective raised or returned NaN/inf (a failed trial)."""
    active = {k: v for k, v in config.items() if Space.is_active(problem.space[k], config)}
    try:
        v = float(problem.fn(active))
    except Exception:  # noqa: BLE001 - a failed trial, whatever it raised
        return math.nan
    return v if math.isfinite(v) else math.nan


# -- methods: each returns the 128 losses in evaluation order (NaN = failed) ---------------------
def _record(i: int, params: dict, value: float) -> TrialRecord:
    if math.isnan(value):
        return TrialRecord(id=i, study_id=1, number=i, state="FAILED", params=dict(params), values=None)
    return TrialRecord(id=i, study_id=1, number=i, state="COMPLETE", params=dict(params), values=(value,))


BO_OPTIONS: dict[str, Any] = {}


def run_bo(problem: Problem, seed: int, rounds: int, batch: int) -> list[float]:
    algo = BayesOpt(problem.space, ("loss",), ("minimize",), seed=seed, **BO_OPTIONS)
    trials: list[TrialRecord] = []
    values = []
    for _ in range(rounds):
        props = algo.propose(History(tuple(trials), ("loss",), ("minimize",)), batch)
        for p in props:
            v = evaluate(problem, dict(p.params))
            trials.append(_record(len(trials), p.params, v))
            values.append(v)
    return values


def _suggest(trial, space: Space) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for p in space:
        if not space.is_active(p, config):
            continue
        if isinstance(p, CategoricalParam):
            config[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif isinstance(p, IntParam):
            config[p.name] = trial.suggest_int(p.name, p.low, p.high, log=p.log)
        else:
            config[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
    return config


def _run_optuna(sampler, problem: Problem, rounds: int, batch: int) -> list[float]:
    import optuna
    study = optuna.create_study(sampler=sampler)
    values = []
    for _ in range(rounds):
        asked = []
        for _ in range(batch):
            t = study.ask()
            asked.append((t, _suggest(t, problem.space)))
        for t, config in asked:
            v = evaluate(problem, config)
            if math.isnan(v):
                study.tell(t, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(t, v)
            values.append(v)
    return values


def _optuna():
    try:
        import optuna
    except ImportError as e:  # pragma: no cover - optuna is a test dependency
        raise Unavailable("optuna is not installed") from e
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def run_tpe(problem, seed, rounds, batch):
    optuna = _optuna()
    return _run_optuna(optuna.samplers.TPESampler(seed=seed, multivariate=True), problem, rounds, batch)


def run_gp(problem, seed, rounds, batch):
    optuna = _optuna()
    return _run_optuna(optuna.samplers.GPSampler(seed=seed), problem, rounds, batch)


def run_random(problem, seed, rounds, batch):
    rng = np.random.default_rng(10_000 + seed)
    return [evaluate(problem, problem.space.sample(rng)) for _ in range(rounds * batch)]


def _configspace(space: Space, seed: int):
    from ConfigSpace import Categorical, ConfigurationSpace, Float, InCondition, Integer
    cs = ConfigurationSpace(seed=seed)
    hps = {}
    for p in space:
        if isinstance(p, CategoricalParam):
            hps[p.name] = Categorical(p.name, list(p.choices))
        elif isinstance(p, IntParam):
            hps[p.name] = Integer(p.name, (p.low, p.high), log=p.log)
        else:
            hps[p.name] = Float(p.name, (p.low, p.high), log=p.log)
    cs.add(list(hps.values()))
    for p in space:
        for parent, allowed in (p.when or {}).items():
            cs.add(InCondition(hps[p.name], hps[parent], list(allowed)))
    return cs


def run_smac(problem, seed, rounds, batch):
    try:
        from smac import HyperparameterOptimizationFacade as HPO
        from smac import Scenario
        from smac.runhistory.dataclasses import TrialValue
        from smac.runhistory.enumerations import StatusType
    except ImportError as e:
        raise Unavailable("smac is not installed (pip install \"torch==2.13.0\" smac)") from e
    values = []
    with tempfile.TemporaryDirectory() as out:
        scenario = Scenario(_configspace(problem.space, seed), deterministic=True,
                            n_trials=rounds * batch, seed=seed, output_directory=Path(out))
        smac = HPO(scenario, lambda config, seed=0: 0.0, overwrite=True, logging_level=40,
                   intensifier=HPO.get_intensifier(scenario, max_config_calls=1))
        for _ in range(rounds):
            infos = [smac.ask() for _ in range(batch)]
            for info in infos:
                v = evaluate(problem, dict(info.config))
                if math.isnan(v):  # its log-scaled encoder turns an infinite crash cost into NaN
                    finite = [u for u in values if not math.isnan(u)]
                    smac.tell(info, TrialValue(cost=max(finite) if finite else 1e10,
                                               status=StatusType.CRASHED))
                else:
                    smac.tell(info, TrialValue(cost=v))
                values.append(v)
    return values


def _ax_params(space: Space):
    from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig
    out = []
    for p in space:
        if isinstance(p, CategoricalParam):
            out.append(ChoiceParameterConfig(name=p.name, values=list(p.choices), parameter_type="str",
                                             is_ordered=False))
        else:
            out.append(RangeParameterConfig(name=p.name, bounds=(p.low, p.high),
                                            parameter_type="int" if isinstance(p, IntParam) else "float",
                                            scaling="log" if p.log else "linear"))
    return out


def run_ax(problem, seed, rounds, batch):
    """Flat space (a conditional parameter is always suggested and ignored when inactive)."""
    try:
        import logging

        from ax.api.client import Client
        logging.getLogger("ax").setLevel(logging.ERROR)
    except ImportError as e:
        raise Unavailable("ax-platform is not installed (pip install \"torch==2.13.0\" ax-platform)") from e
    import torch
    torch.manual_seed(seed)
    client = Client(random_seed=seed)
    client.configure_experiment(parameters=_ax_params(problem.space), name=f"{problem.name}-{seed}")
    client.configure_optimization(objective="-loss")
    values: list[float] = []
    budget = rounds * batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while len(values) < budget:
            want = min(batch, budget - len(values))
            trials = dict(client.get_next_trials(max_trials=want))
            while len(trials) < want:  # a generation step may hand out fewer; ask again once
                more = client.get_next_trials(max_trials=want - len(trials))
                if not more:
                    break
                trials.update(more)
            for idx, params in trials.items():
                v = evaluate(problem, dict(params))
                if math.isnan(v):
                    client.mark_trial_failed(idx)
                else:
                    client.complete_trial(idx, raw_data={"loss": v})
                values.append(v)
    return values[:budget]


_HEBO_WORKER = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd, torch
torch.set_num_threads(1)
from hebo.design_space.design_space import DesignSpace
from hebo.optimizers.hebo import HEBO
opt = None
for line in sys.stdin:
    msg = json.loads(line)
    if msg["cmd"] == "init":
        np.random.seed(msg["seed"]); torch.manual_seed(msg["seed"])
        opt = HEBO(DesignSpace().parse(msg["space"]), scramble_seed=msg["seed"])
        out = {"ok": True}
    elif msg["cmd"] == "suggest":
        rec = opt.suggest(n_suggestions=msg["n"])
        out = {"configs": json.loads(rec.to_json(orient="records"))}
    elif msg["cmd"] == "observe":
        opt.observe(pd.DataFrame(msg["configs"]), np.asarray(msg["y"], dtype=float).reshape(-1, 1))
        out = {"ok": True}
    else:
        break
    sys.stdout.write(json.dumps(out) + "\n"); sys.stdout.flush()
"""


def _hebo_space(space: Space) -> list[dict]:
    out = []
    for p in space:
        if isinstance(p, CategoricalParam):
            out.append({"name": p.name, "type": "cat", "categories": list(p.choices)})
        elif isinstance(p, IntParam):
            out.append({"name": p.name, "type": "pow_int" if p.log else "int", "lb": p.low, "ub": p.high})
        else:
            out.append({"name": p.name, "type": "pow" if p.log else "num", "lb": p.low, "ub": p.high})
    return out


def run_hebo(problem, seed, rounds, batch):
    """HEBO in its own Python (see the module docstring); flat space as for Ax."""
    if not Path(HEBO_PYTHON).exists():
        raise Unavailable(f"no HEBO environment at {HEBO_PYTHON} (see the module docstring)")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([HEBO_PYTHON, "-c", _HEBO_WORKER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)

    def call(msg):
        proc.stdin.write(json.dumps(msg) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the HEBO worker died (run it by hand to see why)")
        return json.loads(line)

    values: list[float] = []
    try:
        call({"cmd": "init", "space": _hebo_space(problem.space), "seed": seed})
        for _ in range(rounds):
            configs = call({"cmd": "suggest", "n": batch})["configs"]
            ys = []
            for c in configs:
                for p in problem.space:  # JSON gives ints as floats sometimes
                    if isinstance(p, IntParam):
                        c[p.name] = int(round(c[p.name]))
                v = evaluate(problem, c)
                values.append(v)
                ys.append(v)
            finite = [v for v in values if not math.isnan(v)]
            worst = max(finite) if finite else None
            keep = [i for i, v in enumerate(ys) if not math.isnan(v) or worst is not None]
            if keep:
                call({"cmd": "observe", "configs": [configs[i] for i in keep],
                      "y": [worst if math.isnan(ys[i]) else ys[i] for i in keep]})
    finally:
        try:
            proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            proc.stdin.close()
        except OSError:
            pass
        proc.wait(timeout=30)
    return values


METHODS: dict[str, Callable[[Problem, int, int, int], list[float]]] = {
    "bo": run_bo, "gp": run_gp, "tpe": run_tpe, "smac": run_smac, "hebo": run_hebo, "ax": run_ax,
    "random": run_random}
LABELS = {"bo": "bo (ours)", "gp": "Optuna GP", "tpe": "Optuna TPE", "smac": "SMAC3 HPO", "hebo": "HEBO",
          "ax": "Ax qLogNEI", "random": "random"}


# -- cache -----------------------------------------------------------------------------------
def load_cache(path: Path, rounds: int, batch: int, tag: str = "") -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if r["rounds"] == rounds and r["batch"] == batch and r.get("tag", "") == tag:
            rows.append(r)
    return rows


# -- scoring ---------------------------------------------------------------------------------
def expected_min(values: list[float], m: int) -> float:
    """Unbiased estimate of E[min of m draws] from a pool of n >= m i.i.d. draws (Bayesmark's
    ``expected_max.expected_min``): the i-th smallest value is the minimum of a random m-subset
    with probability C(n - i, m - 1) / C(n, m)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if not 1 <= m <= n:
        raise ValueError(f"need 1 <= m <= n pooled draws, got m={m}, n={n}")
    i = np.arange(1, n + 1)
    logc = lambda a, b: math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)  # noqa: E731
    w = np.array([math.exp(logc(n - k, m - 1) - logc(n, m)) if n - k >= m - 1 else 0.0 for k in i])
    return float(w @ x / w.sum())


def _finite_pool(values: list[float]) -> list[float]:
    """Random's evaluations with failures ranked worst (as the worst successful loss)."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    worst = float(v[ok].max()) if ok.any() else 0.0
    return list(np.where(ok, v, worst))


def best_of(values: list[float]) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.min()) if len(v) else math.inf


def score(finals: dict[str, dict[str, list[float]]], random_evals: dict[str, list[float]],
          optima: dict[str, float | None], budget: int) -> dict[str, Any]:
    """Bayesmark scores (see the module docstring) from each run's best loss (inf: no success).
    A method missing on some problems is scored over the problems it has, random's baseline over
    the same problems; ``problems`` says which."""
    methods = list(dict.fromkeys(m for by_method in finals.values() for m in by_method))
    opt, clip, per_problem, N, N_rand = {}, {}, {}, {}, {}
    for name, by_method in finals.items():
        pool = _finite_pool(random_evals[name])
        seen = min(min(v) for v in by_method.values())
        known = optima.get(name)
        o = seen if known is None else min(known, seen)
        c = float(np.median(pool))
        if not c > o:
            raise ValueError(f"{name}: median random loss {c} is not above the best known {o}; "
                             "the problem cannot be scored")
        opt[name], clip[name] = o, c
        N[name] = {m: float(np.mean(np.clip((np.array(v) - o) / (c - o), -1.0, 1.0)))
                   for m, v in by_method.items()}
        N_rand[name] = (min(expected_min(pool, budget), c) - o) / (c - o)
        per_problem[name] = {m: 100.0 * (1.0 - N[name][m] / N_rand[name]) if N_rand[name] > 0 else
                             math.nan for m in by_method}
    problems = {m: [n for n in finals if m in finals[n]] for m in methods}
    mean_N = {m: float(np.mean([N[n][m] for n in problems[m]])) for m in methods}
    mean_rand = {m: float(np.mean([N_rand[n] for n in problems[m]])) for m in methods}
    return {
        "score": {m: 100.0 * (1.0 - mean_N[m] / mean_rand[m]) for m in methods},
        "leaderboard": {m: 100.0 * (1.0 - mean_N[m]) for m in methods},
        "mean_per_problem": {m: float(np.nanmean([per_problem[n][m] for n in problems[m]]))
                             for m in methods},
        "per_problem": per_problem, "normalised_loss": N, "normalised_loss_random_expected": N_rand,
        "opt": opt, "clip": clip, "problems": problems,
    }


def _aggregates(N: dict[str, float], N_rand: dict[str, float]) -> tuple[float, float]:
    """(Bayesmark score, mean per-problem score) over the problems in ``N``."""
    ps = list(N)
    s = 100.0 * (1.0 - np.mean([N[p] for p in ps]) / np.mean([N_rand[p] for p in ps]))
    per = [100.0 * (1.0 - N[p] / N_rand[p]) for p in ps if N_rand[p] > 0]
    return float(s), float(np.mean(per)) if per else math.nan


def bootstrap(runs: dict[str, dict[str, dict[int, float]]], res: dict[str, Any], problems: list[str],
              methods: list[str], draws: int = 2000, seed: int = 0) -> dict[str, Any]:
    """95% intervals over seeds: per method on ``problems`` (seeds resampled per problem), and the
    paired difference bo - peer on the problems and seeds both have."""
    rng = np.random.default_rng(seed)
    o, c, Nr = res["opt"], res["clip"], res["normalised_loss_random_expected"]

    def n_of(p, vals):
        return np.clip((np.asarray(vals) - o[p]) / (c[p] - o[p]), -1.0, 1.0)

    out: dict[str, Any] = {"method": {}, "diff": {}}
    for m in methods:
        ps = [p for p in problems if m in runs[p]]
        if not ps:
            continue
        arrs = {p: n_of(p, list(runs[p][m].values())) for p in ps}
        S, M = [], []
        for _ in range(draws):
            Nb = {p: float(a[rng.integers(len(a), size=len(a))].mean()) for p, a in arrs.items()}
            s, mp = _aggregates(Nb, Nr)
            S.append(s)
            M.append(mp)
        out["method"][m] = {"score": [float(np.percentile(S, 2.5)), float(np.percentile(S, 97.5))],
                            "mean_per_problem": [float(np.percentile(M, 2.5)), float(np.percentile(M, 97.5))]}
    if "bo" not in methods:
        return out
    for m in methods:
        if m == "bo":
            continue
        ps = [p for p in problems if m in runs[p] and "bo" in runs[p]
              and set(runs[p][m]) & set(runs[p]["bo"])]
        if not ps:
            continue
        common = {p: sorted(set(runs[p][m]) & set(runs[p]["bo"])) for p in ps}
        a_bo = {p: n_of(p, [runs[p]["bo"][s] for s in common[p]]) for p in ps}
        a_m = {p: n_of(p, [runs[p][m][s] for s in common[p]]) for p in ps}
        point = [_aggregates({p: float(a_bo[p].mean()) for p in ps}, Nr)[k]
                 - _aggregates({p: float(a_m[p].mean()) for p in ps}, Nr)[k] for k in (0, 1)]
        S, M = [], []
        for _ in range(draws):
            idx = {p: rng.integers(len(common[p]), size=len(common[p])) for p in ps}
            sb, mb = _aggregates({p: float(a_bo[p][idx[p]].mean()) for p in ps}, Nr)
            sm, mm = _aggregates({p: float(a_m[p][idx[p]].mean()) for p in ps}, Nr)
            S.append(sb - sm)
            M.append(mb - mm)
        out["diff"][m] = {"problems": ps, "pairs": sum(len(v) for v in common.values()),
                          "score": [point[0], float(np.percentile(S, 2.5)), float(np.percentile(S, 97.5))],
                          "mean_per_problem": [point[1], float(np.percentile(M, 2.5)),
                                               float(np.percentile(M, 97.5))]}
    return out


# -- latency ---------------------------------------------------------------------------------
def latency(n_completed: int, repeats: int = 3, methods: tuple[str, ...] = ("bo", "gp")) -> dict[str, Any]:
    """Seconds per suggestion on Hartmann-6 with ``n_completed`` random completed trials: ours
    (``propose(h, 1)`` and per proposal of ``propose(h, 8)``) and Optuna's GPSampler (one ``ask``
    plus its suggestions on a study holding the same trials). Median of ``repeats``, wall-clock
    and CPU time of this process (one thread; on a shared machine the wall-clock mostly measures
    the other processes)."""
    problem = PROBLEMS["hartmann6"]
    rng = np.random.default_rng(0)
    configs, vals = [], []
    for _ in range(n_completed):
        c = problem.space.sample(rng)
        configs.append(c)
        vals.append(problem.fn(c))
    out: dict[str, Any] = {}

    def timed(fn, n=1):
        w, c = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            w.append((time.perf_counter() - t0) / n)
            c.append((time.process_time() - c0) / n)
        return float(np.median(w)), float(np.median(c))

    if "bo" in methods:
        h = History(tuple(_record(i, c, v) for i, (c, v) in enumerate(zip(configs, vals))),
                    ("loss",), ("minimize",))
        algo = BayesOpt(problem.space, ("loss",), ("minimize",), seed=0, **BO_OPTIONS)
        out["bo_single_s"], out["bo_single_cpu_s"] = timed(lambda: algo.propose(h, 1))
        out["bo_batch8_s"], out["bo_batch8_cpu_s"] = timed(lambda: algo.propose(h, 8), 8)
    if "gp" in methods:
        optuna = _optuna()
        from optuna.distributions import FloatDistribution
        dists = {p.name: FloatDistribution(p.low, p.high) for p in problem.space}
        study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=0))
        study.add_trials([optuna.trial.create_trial(params=c, distributions=dists, value=v)
                          for c, v in zip(configs, vals)])

        def ask_one():
            t = study.ask()
            _suggest(t, problem.space)
            study.tell(t, state=optuna.trial.TrialState.FAIL)  # keep the history at n_completed

        out["gp_single_s"], out["gp_single_cpu_s"] = timed(ask_one)
    out["loadavg"] = list(os.getloadavg())
    return out


# -- report ----------------------------------------------------------------------------------
def _collect(rows: list[dict], names: list[str], methods: list[str]):
    runs: dict[str, dict[str, dict[int, float]]] = {n: {} for n in names}
    random_evals: dict[str, list[float]] = {n: [] for n in names}
    seconds: dict[str, float] = {}
    for r in rows:
        if r["problem"] not in runs or r["method"] not in methods:
            continue
        runs[r["problem"]].setdefault(r["method"], {})[r["seed"]] = best_of(r["values"])
        seconds[r["method"]] = seconds.get(r["method"], 0.0) + r.get("cpu_seconds", r["seconds"])
        if r["method"] == "random":
            random_evals[r["problem"]].extend(r["values"])
    return runs, random_evals, seconds


def report(rows: list[dict], names: list[str], methods: list[str], rounds: int, batch: int,
           plot: str | None = None, lat: dict | None = None) -> dict[str, Any]:
    runs, random_evals, seconds = _collect(rows, names, methods)
    names = [n for n in names if runs[n].get("random") and any(m != "random" for m in runs[n])]
    if not names:
        raise SystemExit("nothing to report: the cache has no random-search runs for these problems")
    methods = [m for m in methods if any(m in runs[n] for n in names)]
    finals = {n: {m: [runs[n][m][s] for s in sorted(runs[n][m])] for m in methods if m in runs[n]}
              for n in names}
    res = score(finals, random_evals, {n: PROBLEMS[n].optimum for n in names}, rounds * batch)
    full = [n for n in names if all(m in runs[n] for m in methods)]
    res_full = score({n: finals[n] for n in full}, random_evals,
                     {n: PROBLEMS[n].optimum for n in full}, rounds * batch) if full else None
    boot = bootstrap(runs, res, names, methods)
    seeds_of = {m: {n: len(runs[n].get(m, {})) for n in names} for m in methods}

    w = 11
    print(f"\nBayesmark scores, {rounds} rounds x {batch}; best known = known optimum, else (seen) the "
          "best any method found in the cache")
    print("per problem: 100 * (1 - N_pm / N_p,rand)   (100 = best known, 0 = random search); "
          "[n] = seeds run")
    print(f"{'problem':20s}" + "".join(f"{m:>{w}s}" for m in methods) + "   best known   winner")
    wins: dict[str, list[str]] = {m: [] for m in methods}
    for n in names:
        pp = res["per_problem"][n]
        cells = []
        for m in methods:
            cells.append(f"{pp[m]:7.1f}[{seeds_of[m][n]}]".rjust(w) if m in pp else f"{'-':>{w}s}")
        best = max((pp[m] for m in pp if m != "random" and math.isfinite(pp[m])), default=math.nan)
        winners = [m for m in pp if m != "random" and math.isfinite(pp[m]) and pp[m] >= best - 1.0]
        for m in winners:
            wins[m].append(n)
        note = "" if PROBLEMS[n].optimum is not None else " (seen)"
        print(f"{n:20s}" + "".join(cells) + f"   {res['opt'][n]:.5g}{note}   {','.join(winners)}")

    def row(label, vals, fmt="{:10.1f}"):
        print(f"{label:20s}" + "".join((fmt.format(vals[m]) if m in vals else f"{'-':>10s}").rjust(w)
                                       for m in methods))

    print("-- all problems each method ran (random's baseline on the same problems):")
    row("Bayesmark score", res["score"])
    row("  95% interval", {m: "[{:.0f},{:.0f}]".format(*boot["method"][m]["score"]) for m in boot["method"]},
        "{}")
    row("mean normalised", res["mean_per_problem"])
    row("  95% interval", {m: "[{:.0f},{:.0f}]".format(*boot["method"][m]["mean_per_problem"])
                           for m in boot["method"]}, "{}")
    row("problems run", {m: len(res["problems"][m]) for m in methods}, "{:10d}")
    row("seeds run", {m: sum(seeds_of[m].values()) for m in methods}, "{:10d}")
    row("wins (within 1)", {m: len(wins[m]) for m in methods}, "{:10d}")
    if res_full is not None and len(full) < len(names):
        print(f"-- the {len(full)} problems every method ran ({','.join(full)}):")
        row("Bayesmark score", res_full["score"])
        row("mean normalised", res_full["mean_per_problem"])
    if boot["diff"]:
        print("-- bo minus peer, paired on the problems and seeds both ran (95% bootstrap interval):")
        for m, d in boot["diff"].items():
            s, mp = d["score"], d["mean_per_problem"]
            print(f"   bo - {m:7s}: Bayesmark {s[0]:+6.1f} [{s[1]:+.1f}, {s[2]:+.1f}]   mean normalised "
                  f"{mp[0]:+6.1f} [{mp[1]:+.1f}, {mp[2]:+.1f}]   ({len(d['problems'])} problems, "
                  f"{d['pairs']} paired runs)")
    print("problems where a peer beats bo by more than 5 points:")
    for m in methods:
        if m in ("bo", "random"):
            continue
        better = [f"{n} ({res['per_problem'][n][m]:.0f} vs {res['per_problem'][n]['bo']:.0f})" for n in names
                  if m in res["per_problem"][n] and "bo" in res["per_problem"][n]
                  and res["per_problem"][n][m] > res["per_problem"][n]["bo"] + 5]
        print(f"   {m:7s}: {', '.join(better) if better else '-'}")
    print("CPU seconds per run of 128 evaluations (mean; objective and HEBO's worker included): "
          + ", ".join(f"{m} {seconds[m] / max(sum(seeds_of[m].values()), 1):.1f}" for m in methods if m in seconds))
    if lat:
        for n, v in lat.items():
            print(f"latency at {n} completed trials (Hartmann-6, one thread; load {v['loadavg'][0]:.1f}): "
                  + (f"bo {v['bo_single_s'] * 1e3:.0f} ms wall / {v['bo_single_cpu_s'] * 1e3:.0f} ms CPU for one, "
                     f"{v['bo_batch8_s'] * 1e3:.0f} / {v['bo_batch8_cpu_s'] * 1e3:.0f} ms each in a batch of 8"
                     if "bo_single_s" in v else "")
                  + (f"; Optuna GP {v['gp_single_s'] * 1e3:.0f} ms wall / {v['gp_single_cpu_s'] * 1e3:.0f} ms CPU "
                     "for one" if "gp_single_s" in v else ""))
    if plot:
        _plot(res, boot, names, methods, plot)
    return {"bench": "bo", "rounds": rounds, "batch": batch, "problem_names": names, "methods": methods,
            "seeds": seeds_of, "score": res["score"], "mean_per_problem": res["mean_per_problem"],
            "intervals": boot["method"], "bo_minus_peer": boot["diff"], "per_problem": res["per_problem"],
            "opt": res["opt"], "clip": res["clip"], "problems": res["problems"],
            "common_problems": full,
            "common_score": res_full["score"] if res_full else None,
            "common_mean_per_problem": res_full["mean_per_problem"] if res_full else None,
            "wins": wins, "latency": lat or {}}


def _plot(res, boot, names, methods, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(15, 7), gridspec_kw={"width_ratios": [1, 3]})
    ms = [m for m in methods if m in boot["method"]]
    peers = [m for m in ms if m in boot["diff"]]
    for i, key in enumerate(("score", "mean_per_problem")):
        d = [boot["diff"][m][key] for m in peers]
        a1.errorbar(np.arange(len(peers)) + (i - 0.5) * 0.25, [x[0] for x in d],
                    yerr=[[x[0] - x[1] for x in d], [x[2] - x[0] for x in d]], fmt="o", capsize=3,
                    label="Bayesmark score" if i == 0 else "mean normalised score")
    a1.set_xticks(range(len(peers)), [f"{LABELS[m]}\n({len(boot['diff'][m]['problems'])} problems)"
                                      for m in peers], rotation=45, ha="right", fontsize=8)
    a1.axhline(0, color="grey", lw=0.5)
    a1.set_ylabel("bo minus peer (points; > 0: bo ahead)")
    a1.legend(fontsize=8)
    a1.set_title("bo - peer, paired runs, 95% bootstrap over seeds", fontsize=9)
    width = 0.8 / len(ms)
    for j, m in enumerate(ms):
        y = [max(res["per_problem"][n].get(m, math.nan), -100) for n in names]
        a2.bar(np.arange(len(names)) + j * width, y, width, label=LABELS[m])
    a2.set_xticks(np.arange(len(names)) + 0.4, names, rotation=60, ha="right", fontsize=8)
    a2.set_ylim(-100, 105)
    a2.set_ylabel("per-problem score (clipped at -100)")
    a2.legend(fontsize=8, ncol=4)
    a2.set_title("per problem")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"plot written to {path}")


# -- main ------------------------------------------------------------------------------------
def _cpu() -> float:
    """CPU seconds of this process and of its finished children (HEBO's worker)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _seeds(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def main(argv: list[str] | None = None) -> int:
    global HEBO_PYTHON
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: bo and random, 3 problems, 2 seeds, 6 rounds")
    ap.add_argument("--seeds", default=None, help="seeds, e.g. 0-9 or 0,3 (default 0-9)")
    ap.add_argument("--problems", default=None, help=f"comma-separated subset of {','.join(PROBLEMS)}, "
                    "or a kind: synthetic, mixed, failures, sklearn")
    ap.add_argument("--optimizers", "--methods", dest="optimizers", default=",".join(METHODS),
                    help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 16)")
    ap.add_argument("--batch", type=int, default=8, help="parallel proposals per round")
    ap.add_argument("--bo-options", default="{}", help="JSON options for bo, e.g. '{\"acquisition\": \"ei\"}'")
    ap.add_argument("--tag", default="", help="a label kept with each run (e.g. a bo variant); the report "
                    "reads only runs with the same tag")
    ap.add_argument("--cache", default=None, help="JSONL file the runs are appended to (default: "
                    "bench/results/bo_runs.jsonl; with --quick a temporary file, so a smoke run always runs and "
                    "never writes into the results)")
    ap.add_argument("--report", action="store_true", help="only build the tables from the cache")
    ap.add_argument("--order", choices=("seed", "problem"), default="seed",
                    help="run loop order: every problem at seed 0 first (default), or problem by problem")
    ap.add_argument("--latency", action="store_true", help="also measure latency at 200 and 2,000 trials")
    ap.add_argument("--latency-only", action="store_true", help="only the latency measurement")
    ap.add_argument("--latency-sizes", default="200,2000")
    ap.add_argument("--plot", default=None, help="write the figure here (with --report)")
    ap.add_argument("--hebo-python", default=None, help=f"the Python that has HEBO (default {HEBO_PYTHON})")
    args = ap.parse_args(argv)

    if args.hebo_python:
        HEBO_PYTHON = args.hebo_python
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    BO_OPTIONS.clear()
    BO_OPTIONS.update(json.loads(args.bo_options))
    rounds = args.rounds or (6 if args.quick else 16)
    batch = args.batch
    if args.problems in ("synthetic", "mixed", "failures", "sklearn"):
        names = [n for n, p in PROBLEMS.items() if p.kind == args.problems]
    elif args.problems:
        names = args.problems.split(",")
    else:
        names = ["branin", "linear_diabetes", "branin_nan"] if args.quick else list(PROBLEMS)
    methods = args.optimizers.split(",") if not args.quick or args.optimizers != ",".join(METHODS) \
        else ["bo", "random"]
    seeds = _seeds(args.seeds) if args.seeds else ([0, 1] if args.quick else list(range(10)))
    for n in names:
        if n not in PROBLEMS:
            ap.error(f"unknown problem {n!r}; known: {', '.join(PROBLEMS)}")
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown optimizer {m!r}; known: {', '.join(METHODS)}")
    if args.cache:
        cache = Path(args.cache)
    elif args.quick:
        import tempfile

        cache = Path(tempfile.mkdtemp(prefix="bench-bo-quick-")) / "runs.jsonl"
    else:
        cache = DEFAULT_CACHE

    lat: dict[str, Any] = {}
    if args.latency or args.latency_only:
        for n in [int(s) for s in args.latency_sizes.split(",")]:
            lat[str(n)] = latency(n, repeats=3 if n <= 500 else 1, methods=tuple(m for m in ("bo", "gp") if m in methods) or ("bo",))
            print(f"# latency {n}: {json.dumps(lat[str(n)])}", flush=True)
        if args.latency_only:
            print(json.dumps({"bench": "bo-latency", "latency": lat}))
            return 0

    if not args.report:
        done = {(r["problem"], r["method"], r["seed"]) for r in load_cache(cache, rounds, batch, args.tag)}
        skipped: set[str] = set()
        order = ([(n, s) for s in seeds for n in names] if args.order == "seed"
                 else [(n, s) for n in names for s in seeds])
        cache.parent.mkdir(parents=True, exist_ok=True)
        for name, seed in order:
            for m in methods:
                if (name, m, seed) in done or m in skipped:
                    continue
                t0, c0 = time.perf_counter(), _cpu()
                try:
                    values = METHODS[m](PROBLEMS[name], seed, rounds, batch)
                except Unavailable as e:
                    print(f"# skipping {m}: {e}", flush=True)
                    skipped.add(m)
                    continue
                row = {"problem": name, "method": m, "seed": seed, "rounds": rounds, "batch": batch,
                       "tag": args.tag, "bo_options": BO_OPTIONS if m == "bo" else None,
                       "values": [None if math.isnan(v) else v for v in values],
                       "seconds": time.perf_counter() - t0, "cpu_seconds": _cpu() - c0,
                       "loadavg": os.getloadavg()[0], "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                with cache.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"# {name:18s} seed {seed} {m:7s} best {best_of(values):.6g} "
                      f"({row['seconds']:.1f} s, load {row['loadavg']:.1f})", flush=True)
        methods = [m for m in methods if m not in skipped]

    rows = load_cache(cache, rounds, batch, args.tag)
    for r in rows:
        r["values"] = [math.nan if v is None else v for v in r["values"]]
    if not args.report:
        rows = [r for r in rows if r["seed"] in seeds]
    methods = [m for m in METHODS if m in methods]
    out = report(rows, names, methods, rounds, batch, args.plot, lat)
    print(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
