"""Benchmark the ``bo`` algorithm against Optuna TPE, Optuna's GP sampler and random search.

Protocol in the style of the NeurIPS 2020 black-box optimisation challenge: 16 rounds of 8
parallel suggestions per run, every method on the same problems and seeds. A run's score is
``100 * (R - f) / (R - f*)`` where ``f`` is the best loss the run found, ``R`` the mean over
seeds of random search's best loss at the same budget, and ``f*`` the best loss known for the
problem (the known optimum for synthetic functions; for the scikit-learn problems the best loss
seen by any method on any seed in this run). 100 = best known, 0 = random search on average.

Also prints ``bo``'s proposal latency at 200 and 2,000 completed trials.

    python bench/bench_bo.py              # full run (10 seeds, every problem)
    python bench/bench_bo.py --quick      # smoke run: 2 seeds, 3 problems, 6 rounds
    python bench/bench_bo.py --seeds 5 --problems branin,svm_cancer
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
def latency(n_completed: int, repeats: int = 3) -> dict[str, float]:
    """Median seconds of ``propose(h, 1)`` and per proposal of ``propose(h, 8)`` on Hartmann-6
    with ``n_completed`` random completed trials."""
    problem = PROBLEMS["hartmann6"]
    rng = np.random.default_rng(0)
    trials = []
    for i in range(n_completed):
        c = problem.space.sample(rng)
        trials.append(_record(i, c, problem.fn(c)))
    h = History(tuple(trials), ("loss",), ("minimize",))
    algo = BayesOpt(problem.space, ("loss",), ("minimize",), seed=0)
    one, eight = [], []
    for _ in range(repeats):
        t = time.perf_counter(); algo.propose(h, 1); one.append(time.perf_counter() - t)
        t = time.perf_counter(); algo.propose(h, 8); eight.append((time.perf_counter() - t) / 8)
    return {"single_s": float(np.median(one)), "per_proposal_in_batch_of_8_s": float(np.median(eight))}


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

    best: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {m: 0.0 for m in methods}
    for name in names:
        problem = PROBLEMS[name]
        best[name] = {}
        for m in methods:
            finals = []
            t_method = time.perf_counter()
            n_seeds = min(seeds, args.gp_seeds) if m == "gp" and args.gp_seeds else seeds
            for seed in range(n_seeds):
                t = time.perf_counter()
                values = METHODS[m](problem, seed, rounds, args.batch)
                seconds[m] += time.perf_counter() - t
                finals.append(float(np.min(values)))
            best[name][m] = finals
            print(f"# {name:16s} {m:7s} mean best {np.mean(finals):.6g} "
                  f"({len(finals)} seeds, {time.perf_counter() - t_method:.0f} s)", flush=True)

    scores: dict[str, dict[str, float]] = {}
    optima: dict[str, float] = {}
    for name in names:
        seen = min(min(v) for v in best[name].values())
        opt = PROBLEMS[name].optimum
        f_star = seen if opt is None else min(opt, seen)
        optima[name] = f_star
        R = float(np.mean(best[name]["random"]))
        scores[name] = {}
        for m in methods:
            runs = [100.0 * (R - f) / (R - f_star) if R > f_star else 100.0 for f in best[name][m]]
            scores[name][m] = float(np.mean(runs))
    mean_scores = {m: float(np.mean([scores[n][m] for n in names])) for m in methods}

    gp_note = (f" (Optuna GP sampler: first {min(seeds, args.gp_seeds)} seeds only)"
               if "gp" in methods and args.gp_seeds and args.gp_seeds < seeds else "")
    print(f"\nnormalised score (100 = best known, 0 = mean random search), {seeds} seeds{gp_note}, "
          f"{rounds} rounds x {args.batch}; sklearn problems: best known = best seen in this run")
    print(f"{'problem':18s}" + "".join(f"{m:>10s}" for m in methods) + "   best known")
    for n in names:
        note = "" if PROBLEMS[n].optimum is not None else " (seen)"
        print(f"{n:18s}" + "".join(f"{scores[n][m]:10.1f}" for m in methods) + f"   {optima[n]:.6g}{note}")
    print(f"{'mean':18s}" + "".join(f"{mean_scores[m]:10.1f}" for m in methods))
    print("wall seconds per method: " + ", ".join(f"{m} {s:.0f}" for m, s in seconds.items()))

    lat = {}
    if not args.no_latency:
        for n in (200, 2000):
            lat[str(n)] = latency(n)
            print(f"bo proposal latency at {n} completed trials: "
                  f"single {lat[str(n)]['single_s'] * 1000:.0f} ms, "
                  f"per proposal in a batch of 8 {lat[str(n)]['per_proposal_in_batch_of_8_s'] * 1000:.0f} ms")
    print(json.dumps({"bench": "bo", "bo_options": BO_OPTIONS, "seeds": seeds, "gp_seeds": args.gp_seeds, "rounds": rounds, "batch": args.batch,
                      "scores": scores, "mean_scores": mean_scores, "best_known": optima,
                      "latency": lat}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
