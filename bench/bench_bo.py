"""Benchmark the ``bo`` algorithm against Optuna TPE, Optuna's GP sampler and random search.

Protocol of the NeurIPS 2020 black-box optimisation challenge: 16 rounds of 8 parallel suggestions
per run, every method on the same problems and seeds. Scores follow Bayesmark
(uber/bayesmark, ``experiment_baseline.compute_baseline`` and ``experiment_analysis.
compute_aggregates``; docs "How scoring works"), computed on the best loss ``f`` of each run:

- ``opt_p``: the best loss known for problem ``p``: the known optimum of a synthetic function, else
  the best loss any method found on any seed in this run (Bayesmark: the best of any method).
- ``clip_p``: the median of all random-search evaluations of ``p`` (the median loss of a single
  random configuration).
- per run ``N = clip((f - opt_p) / (clip_p - opt_p), -1, 1)``; per problem and method the mean
  of ``N`` over seeds, ``N_pm``; 0 = best known, 1 = no better than one random guess.
- random search's expected normalised loss at the same budget, ``N_p,rand``, from all of its
  evaluations pooled (Bayesmark's unbiased expected-minimum estimator).
- the headline score, 100 = best known and 0 = random search at the same budget, is Bayesmark's
  normalised mean ``100 * (1 - mean_p N_pm / mean_p N_p,rand)``: a ratio of means over problems,
  so a problem on which random search already lands within a hair of the optimum (``N_p,rand``
  near 0) weighs by the little room it leaves, instead of blowing up a per-problem ratio.
- also printed: the challenge leaderboard score ``100 * (1 - mean_p N_pm)`` (on which random
  search does not score 0), and per problem ``100 * (1 - N_pm / N_p,rand)``.

Also prints ``bo``'s proposal latency at 200 and 2,000 completed trials.

    python bench/bench_bo.py              # full run (10 seeds, every problem)
    python bench/bench_bo.py --quick      # smoke run: 2 seeds, 3 problems, 6 rounds
    python bench/bench_bo.py --seeds 5 --problems branin,svm_cancer
    python bench/bench_bo.py --problems branin --save a.json   # raw results of a part ...
    python bench/bench_bo.py --combine a.json,b.json             # ... scored together
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # 2 shared cores: threads only add contention here

import argparse
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.algorithms.base import History  # noqa: E402
from search.algorithms.bo import BayesOpt  # noqa: E402
from search.space import CategoricalParam, FloatParam, IntParam, Space  # noqa: E402
from storage.records import TrialRecord  # noqa: E402


@dataclass
class Problem:
    name: str
    space: Space
    fn: Callable[[dict[str, Any]], float]
    optimum: float | None  # None: best seen in this run


# -- synthetic functions ---------------------------------------------------------------------
def _vec(config: dict[str, Any], d: int) -> np.ndarray:
    return np.array([config[f"x{i}"] for i in range(d)], dtype=float)


def _box(d: int, lo: float, hi: float) -> Space:
    return Space.of([FloatParam(f"x{i}", lo, hi) for i in range(d)])


def branin(c):
    x1, x2 = c["x0"], c["x1"]
    return ((x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)


_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                 [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(c):
    x = _vec(c, 6)
    return float(-(_H_ALPHA * np.exp(-(_H_A * (x - _H_P) ** 2).sum(1))).sum())


def ackley10(c):
    x = _vec(c, 10)
    return float(-20 * math.exp(-0.2 * math.sqrt((x ** 2).mean())) - math.exp(np.cos(2 * math.pi * x).mean())
                 + 20 + math.e)


def rosenbrock10(c):
    x = _vec(c, 10)
    return float((100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum())


def levy10(c):
    x = _vec(c, 10)
    w = 1 + (x - 1) / 4
    return float(math.sin(math.pi * w[0]) ** 2
                 + ((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:-1] + 1) ** 2)).sum()
                 + (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2))


# -- scikit-learn tuning problems (3-fold CV, n_jobs=1) -----------------------------------------
_DATA: dict[str, Any] = {}


def _data(name: str):
    if name not in _DATA:
        from sklearn import datasets
        from sklearn.preprocessing import StandardScaler
        X, y = {"cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
                "diabetes": datasets.load_diabetes, "digits": datasets.load_digits}[name](return_X_y=True)
        if name == "digits":  # keep MLP fits cheap
            X, y = X[:400], y[:400]
        _DATA[name] = (StandardScaler().fit_transform(X), y)
    return _DATA[name]


def _cv(model, data: str, scoring: str) -> float:
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    X, y = _data(data)
    cv = (KFold(3, shuffle=True, random_state=0) if data == "diabetes"
          else StratifiedKFold(3, shuffle=True, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cross_val_score(model, X, y, cv=cv, scoring=scoring, n_jobs=1).mean())


def svm_cancer(c):
    from sklearn.svm import SVC
    return 1 - _cv(SVC(C=c["C"], gamma=c["gamma"], tol=c["tol"]), "cancer", "accuracy")


def rf_wine(c):
    from sklearn.ensemble import RandomForestClassifier
    return 1 - _cv(RandomForestClassifier(
        n_estimators=10, max_depth=c["max_depth"], min_samples_split=c["min_samples_split"],
        min_samples_leaf=c["min_samples_leaf"], max_features=c["max_features"],
        criterion=c["criterion"], random_state=0, n_jobs=1), "wine", "accuracy")


def gb_diabetes(c):
    from sklearn.ensemble import GradientBoostingRegressor
    return -_cv(GradientBoostingRegressor(
        n_estimators=c["n_estimators"], learning_rate=c["learning_rate"], max_depth=c["max_depth"],
        subsample=c["subsample"], min_samples_leaf=c["min_samples_leaf"], random_state=0),
        "diabetes", "r2")


def mlp_digits(c):
    from sklearn.neural_network import MLPClassifier
    return 1 - _cv(MLPClassifier(
        hidden_layer_sizes=(c["width"],), alpha=c["alpha"], learning_rate_init=c["lr"],
        batch_size=c["batch_size"], max_iter=15, random_state=0), "digits", "accuracy")


def enet_diabetes(c):
    from sklearn.linear_model import ElasticNet, Lasso, Ridge
    if c["model"] == "ridge":
        model = Ridge(alpha=c["alpha"])
    elif c["model"] == "lasso":
        model = Lasso(alpha=c["alpha"], max_iter=5000)
    else:
        model = ElasticNet(alpha=c["alpha"], l1_ratio=c["l1_ratio"], max_iter=5000)
    return -_cv(model, "diabetes", "r2")


PROBLEMS = {
    "svm_cancer": Problem("svm_cancer", Space.of([
        FloatParam("C", 1e-2, 1e3, log=True), FloatParam("gamma", 1e-5, 1.0, log=True),
        FloatParam("tol", 1e-5, 1e-1, log=True)]), svm_cancer, None),
    "rf_wine": Problem("rf_wine", Space.of([
        IntParam("max_depth", 1, 15), FloatParam("min_samples_split", 0.01, 0.5),
        IntParam("min_samples_leaf", 1, 10), FloatParam("max_features", 0.05, 1.0),
        CategoricalParam("criterion", ("gini", "entropy"))]), rf_wine, None),
    "gb_diabetes": Problem("gb_diabetes", Space.of([
        IntParam("n_estimators", 10, 100, log=True), FloatParam("learning_rate", 1e-3, 1.0, log=True),
        IntParam("max_depth", 1, 6), FloatParam("subsample", 0.3, 1.0),
        IntParam("min_samples_leaf", 1, 40, log=True)]), gb_diabetes, None),
    "mlp_digits": Problem("mlp_digits", Space.of([
        IntParam("width", 8, 128, log=True), FloatParam("alpha", 1e-6, 1.0, log=True),
        FloatParam("lr", 1e-4, 1e-1, log=True), IntParam("batch_size", 16, 256, log=True)]),
        mlp_digits, None),
    "linear_diabetes": Problem("linear_diabetes", Space.of([
        CategoricalParam("model", ("ridge", "lasso", "elasticnet")),
        FloatParam("alpha", 1e-5, 1e2, log=True),
        FloatParam("l1_ratio", 0.0, 1.0, when={"model": ("elasticnet",)})]), enet_diabetes, None),
    "branin": Problem("branin", Space.of([FloatParam("x0", -5, 10), FloatParam("x1", 0, 15)]),
                      branin, 0.397887),
    "hartmann6": Problem("hartmann6", _box(6, 0.0, 1.0), hartmann6, -3.32237),
    "ackley10": Problem("ackley10", _box(10, -32.768, 32.768), ackley10, 0.0),
    "rosenbrock10": Problem("rosenbrock10", _box(10, -5.0, 10.0), rosenbrock10, 0.0),
    "levy10": Problem("levy10", _box(10, -10.0, 10.0), levy10, 0.0),
}


# -- methods ---------------------------------------------------------------------------------
def _record(i: int, params: dict, value: float | None, state: str = "COMPLETE") -> TrialRecord:
    return TrialRecord(id=i, study_id=1, number=i, state=state, params=dict(params),
                       values=None if value is None else (value,))


BO_OPTIONS: dict[str, Any] = {}


def run_bo(problem: Problem, seed: int, rounds: int, batch: int) -> list[float]:
    algo = BayesOpt(problem.space, ("loss",), ("minimize",), seed=seed, **BO_OPTIONS)
    trials: list[TrialRecord] = []
    for _ in range(rounds):
        props = algo.propose(History(tuple(trials), ("loss",), ("minimize",)), batch)
        for p in props:
            trials.append(_record(len(trials), p.params, problem.fn(dict(p.params))))
    return [t.values[0] for t in trials]


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
            v = problem.fn(config)
            study.tell(t, v)
            values.append(v)
    return values


def run_tpe(problem, seed, rounds, batch):
    import optuna
    return _run_optuna(optuna.samplers.TPESampler(seed=seed, multivariate=True), problem, rounds, batch)


def run_gp(problem, seed, rounds, batch):
    import optuna
    return _run_optuna(optuna.samplers.GPSampler(seed=seed), problem, rounds, batch)


def run_random(problem, seed, rounds, batch):
    rng = np.random.default_rng(10_000 + seed)
    return [problem.fn(problem.space.sample(rng)) for _ in range(rounds * batch)]


METHODS = {"bo": run_bo, "tpe": run_tpe, "gp": run_gp, "random": run_random}


# -- latency ---------------------------------------------------------------------------------
def latency(n_completed: int, repeats: int = 5) -> dict[str, float]:
    """Median seconds of ``propose(h, 1)`` and per proposal of ``propose(h, 8)`` on Hartmann-6
    with ``n_completed`` random completed trials: wall-clock, and CPU time of this process (the
    wall-clock a quiet machine would show, since the benchmark runs single-threaded; on a shared
    machine the wall-clock mostly measures the other processes)."""
    problem = PROBLEMS["hartmann6"]
    rng = np.random.default_rng(0)
    trials = []
    for i in range(n_completed):
        c = problem.space.sample(rng)
        trials.append(_record(i, c, problem.fn(c)))
    h = History(tuple(trials), ("loss",), ("minimize",))
    algo = BayesOpt(problem.space, ("loss",), ("minimize",), seed=0)
    out: dict[str, list[float]] = {k: [] for k in ("single_s", "single_cpu_s", "per_proposal_in_batch_of_8_s",
                                                   "per_proposal_in_batch_of_8_cpu_s")}
    for _ in range(repeats):
        for n, key in ((1, "single"), (8, "per_proposal_in_batch_of_8")):
            t, c = time.perf_counter(), time.process_time()
            algo.propose(h, n)
            out[f"{key}_s"].append((time.perf_counter() - t) / n)
            out[f"{key}_cpu_s"].append((time.process_time() - c) / n)
    return {k: float(np.median(v)) for k, v in out.items()}


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


def score(finals: dict[str, dict[str, list[float]]], random_evals: dict[str, list[float]],
          optima: dict[str, float | None], budget: int) -> dict[str, Any]:
    """Bayesmark scores (see the module docstring) from each run's best loss. A method missing on
    some problems (a run cut short) is scored over the problems it has, random's baseline over
    the same problems; ``problems`` says which."""
    methods = list(dict.fromkeys(m for by_method in finals.values() for m in by_method))
    opt, clip, per_problem, N, N_rand = {}, {}, {}, {}, {}
    for name, by_method in finals.items():
        seen = min(min(v) for v in by_method.values())
        known = optima.get(name)
        o = seen if known is None else min(known, seen)
        c = float(np.median(random_evals[name]))
        if not c > o:
            raise ValueError(f"{name}: median random loss {c} is not above the best known {o}; "
                             "the problem cannot be scored")
        opt[name], clip[name] = o, c
        N[name] = {m: float(np.mean(np.clip((np.array(v) - o) / (c - o), -1.0, 1.0)))
                   for m, v in by_method.items()}
        N_rand[name] = (min(expected_min(random_evals[name], budget), c) - o) / (c - o)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 3 problems, 6 rounds")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per problem (default 10)")
    ap.add_argument("--problems", default=None, help=f"comma-separated subset of {','.join(PROBLEMS)}")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of bo,tpe,gp,random")
    ap.add_argument("--gp-seeds", type=int, default=None,
                    help="seeds for Optuna's GP sampler, the slowest method (default: --seeds)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 16)")
    ap.add_argument("--batch", type=int, default=8, help="parallel proposals per round")
    ap.add_argument("--bo-options", default="{}", help="JSON options for bo, e.g. '{\"acquisition\": \"ei\"}'")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    ap.add_argument("--save", default=None, help="also write the raw per-run results to this JSON file")
    ap.add_argument("--combine", default=None,
                    help="comma-separated --save files: score them together instead of running")
    args = ap.parse_args(argv)

    import optuna
    import torch
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    BO_OPTIONS.update(json.loads(args.bo_options))
    seeds = args.seeds or (2 if args.quick else 10)
    rounds = args.rounds or (6 if args.quick else 16)
    names = (args.problems.split(",") if args.problems
             else ["branin", "linear_diabetes", "svm_cancer"] if args.quick else list(PROBLEMS))
    methods = args.methods.split(",")
    for n in names:
        if n not in PROBLEMS:
            ap.error(f"unknown problem {n!r}; known: {', '.join(PROBLEMS)}")
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; known: {', '.join(METHODS)}")
    if "random" not in methods:
        ap.error("the score needs random search as its baseline: keep 'random' in --methods")

    batch = args.batch
    if args.combine:
        parts = [json.loads(Path(f).read_text()) for f in args.combine.split(",")]
        finals = {k: v for part in parts for k, v in part["finals"].items()}
        random_evals = {k: v for part in parts for k, v in part["random_evals"].items()}
        names = list(finals)
        methods = list(dict.fromkeys(m for n in names for m in finals[n]))
        seconds = {m: sum(part["seconds"].get(m, 0.0) for part in parts) for m in methods}
        seeds = max(part["seeds"] for part in parts)
        rounds, batch = parts[0]["rounds"], parts[0]["batch"]
        if any((part["rounds"], part["batch"]) != (rounds, batch) for part in parts):
            ap.error("--combine: every part must use the same --rounds and --batch")
    else:
        finals, random_evals, seconds = {}, {}, {m: 0.0 for m in methods}
    for name in ([] if args.combine else names):
        problem = PROBLEMS[name]
        finals[name] = {}
        for m in methods:
            runs = []
            t_method = time.perf_counter()
            n_seeds = min(seeds, args.gp_seeds) if m == "gp" and args.gp_seeds else seeds
            for seed in range(n_seeds):
                t = time.perf_counter()
                values = METHODS[m](problem, seed, rounds, batch)
                seconds[m] += time.perf_counter() - t
                runs.append(float(np.min(values)))
                if m == "random":
                    random_evals.setdefault(name, []).extend(float(v) for v in values)
            finals[name][m] = runs
            print(f"# {name:16s} {m:7s} mean best {np.mean(runs):.6g} "
                  f"({len(runs)} seeds, {time.perf_counter() - t_method:.0f} s)", flush=True)
            if args.save:  # after every method, so a long run that is cut short keeps its results
                Path(args.save).write_text(json.dumps({
                    "finals": finals, "random_evals": random_evals, "seconds": seconds, "seeds": seeds,
                    "rounds": rounds, "batch": batch, "bo_options": BO_OPTIONS}))

    methods = [m for m in METHODS if m in methods]  # print in one order, whatever the run order
    res = score(finals, random_evals, {n: PROBLEMS[n].optimum for n in names}, rounds * batch)
    gp_counts = {len(finals[n]["gp"]) for n in names if "gp" in finals[n]}
    gp_note = (f" (Optuna GP sampler: {min(gp_counts)} seeds)"
               if gp_counts and min(gp_counts) < seeds else "")
    print(f"\nBayesmark scores, {seeds} seeds{gp_note}, {rounds} rounds x {batch}; "
          "best known = known optimum, else (seen) the best any method found in this run")
    print("per problem: 100 * (1 - N_pm / N_p,rand)   (100 = best known, 0 = random search)")
    print(f"{'problem':18s}" + "".join(f"{m:>10s}" for m in methods) + "   best known   clip (median random)")
    for n in names:
        note = "" if PROBLEMS[n].optimum is not None else " (seen)"
        print(f"{n:18s}" + "".join(f"{res['per_problem'][n][m]:10.1f}" if m in res["per_problem"][n]
                                   else f"{'-':>10s}" for m in methods)
              + f"   {res['opt'][n]:.6g}{note}   {res['clip'][n]:.6g}")
    print(f"{'score':18s}" + "".join(f"{res['score'][m]:10.1f}" for m in methods)
          + "   <- 100 * (1 - mean_p N_pm / mean_p N_p,rand): 100 = best known, 0 = random")
    print(f"{'leaderboard':18s}" + "".join(f"{res['leaderboard'][m]:10.1f}" for m in methods)
          + "   <- challenge leaderboard 100 * (1 - mean_p N_pm)")
    print(f"{'mean per problem':18s}" + "".join(f"{res['mean_per_problem'][m]:10.1f}" for m in methods)
          + "   <- mean of the rows above: the issue's mean normalised score (a problem where random "
          "search is near the optimum weighs as much as any other)")
    for m in methods:
        if len(res["problems"][m]) < len(names):
            print(f"note: {m} ran on {len(res['problems'][m])} of {len(names)} problems; its scores "
                  "cover those (random's baseline too)")
    print("wall seconds per method: " + ", ".join(f"{m} {s:.0f}" for m, s in seconds.items()))

    lat = {}
    if not args.no_latency:
        for n in (200, 2000):
            lat[str(n)] = latency(n)
            print(f"bo proposal latency at {n} completed trials: single {lat[str(n)]['single_s'] * 1000:.0f} ms "
                  f"wall ({lat[str(n)]['single_cpu_s'] * 1000:.0f} ms CPU), per proposal in a batch of 8 "
                  f"{lat[str(n)]['per_proposal_in_batch_of_8_s'] * 1000:.0f} ms wall "
                  f"({lat[str(n)]['per_proposal_in_batch_of_8_cpu_s'] * 1000:.0f} ms CPU)")
    print(json.dumps({"bench": "bo", "bo_options": BO_OPTIONS, "seeds": seeds,
                      "gp_seeds": min(gp_counts) if gp_counts else None, "rounds": rounds,
                      "batch": batch, **res, "problem_names": names, "latency": lat}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
