"""ask/tell overhead per trial: search-service's Study.ask/report/tell vs Optuna's ask/report/tell,
both on a SQLite file, side by side in one process run.

    python bench/bench_ask_tell.py [--trials 200] [--reports 3] [--repeats 3]

Each trial is asked, reports ``--reports`` intermediate values, and is told its value; random
sampling on both sides, so the sampler's own cost does not enter the figure. The cost per trial is
the median over repeats of the slope between a short study (n/4 trials) and a long one (n trials),
which leaves out fixed start-up (imports, schema creation). Prints one line per system, the ratio,
and a final JSON line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time


def ours(n: int, reports: int, workdir: str, tag: str) -> float:
    import search

    url = f"sqlite:///{os.path.join(workdir, f'ours-{tag}.db')}"
    study = search.create_study({"name": "bench", "objective": {"metric": "loss", "direction": "minimize"},
                                 "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
                                 "algorithm": {"name": "random", "seed": 0}}, storage=url)
    t0 = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        x = trial.params["x"]
        for step in range(1, reports + 1):
            trial.report(step, loss=x + 1.0 / step)
        study.tell(trial, x)
    elapsed = time.perf_counter() - t0
    study.close()
    return elapsed


def optuna_(n: int, reports: int, workdir: str, tag: str) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{os.path.join(workdir, f'optuna-{tag}.db')}"
    study = optuna.create_study(storage=url, sampler=optuna.samplers.RandomSampler(seed=0),
                                pruner=optuna.pruners.NopPruner())
    t0 = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, reports + 1):
            trial.report(x + 1.0 / step, step)
            trial.should_prune()
        study.tell(trial, x)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--reports", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    n_long, n_short = args.trials, max(1, args.trials // 4)
    per: dict[str, list[float]] = {"search-service": [], "optuna": []}
    with tempfile.TemporaryDirectory() as workdir:
        for r in range(args.repeats):
            for name, fn in (("search-service", ours), ("optuna", optuna_)):
                short = fn(n_short, args.reports, workdir, f"s{r}")
                long = fn(n_long, args.reports, workdir, f"l{r}")
                per[name].append((long - short) / (n_long - n_short) * 1000)
    med = {k: statistics.median(v) for k, v in per.items()}
    for k, v in per.items():
        print(f"{k:16s} {med[k]:7.2f} ms per trial (ask + {args.reports} reports + tell; range "
              f"{min(v):.2f}-{max(v):.2f} over {args.repeats} repeats)")
    ratio = med["search-service"] / med["optuna"]
    print(f"search-service / optuna: {ratio:.2f}x")
    print(json.dumps({"bench": "ask_tell", "trials": args.trials, "reports": args.reports, "repeats": args.repeats,
                      "ms_per_trial": med, "ratio_ours_over_optuna": ratio, "python": platform.python_version(),
                      "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
