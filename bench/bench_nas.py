"""NAS on NAS-Bench-201 (CIFAR-10 test accuracy looked up in the table): regret against the number of
evaluated architectures, and evaluations needed to reach a top-0.5% cell, over many seeds.

Strategies are driven through the Algorithm interface directly (History built from TrialRecords
here, synchronous batches of ``--batch`` proposed together, so each batch is proposed with the rest
of itself pending), not through the controller, so a seed takes seconds. TPE is Optuna's
multivariate TPE with constant liar over the 6 categorical edges, driven by ask/tell with the same
batches. A duplicate proposal costs an evaluation like any other.

    nice python bench/bench_nas.py                # 20 seeds, all methods
    nice python bench/bench_nas.py --quick        # smoke run
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# ../shared/data beside the repository, or where SEARCH_SHARED_DATA says.
TABLE = os.path.join(os.environ.get("SEARCH_SHARED_DATA", os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "shared", "data")), "nas", "nas-bench-201-cifar10.csv")
METHODS = {
    "random": ("random", {}),
    "regevo": ("regevo", {}),
    "boshnas": ("boshnas", {}),
    "tpe": (None, {}),
    "regevo+synflow": ("regevo", {"zero_cost": "synflow"}),
    "boshnas+synflow": ("boshnas", {"zero_cost": "synflow"}),
    "boshnas-path": ("boshnas", {"encoding": "path"}),
    # boshnas's former defaults, tuned on this column alone (now chosen on several: bench_nas_spaces.py)
    "boshnas-cifar10-tuned": ("boshnas", {"n_init": 10, "encoding": "path", "mutants": 100, "random_candidates": 100}),
    "boshnas-wl": ("boshnas", {"encoding": "wl"}),
}
CHECKPOINTS = (10, 25, 50, 100, 150, 200)


def load_table() -> dict[str, float]:
    with open(TABLE, newline="") as f:
        return {r["arch"]: float(r["cifar10_test_acc"]) for r in csv.DictReader(f)}


def run_algorithm(method: str, seed: int, acc: dict[str, float], threshold: float, min_evals: int, cap: int,
                  batch: int) -> list[float]:
    """Accuracies in evaluation order; stops at ``cap``, or once a top cell is found after ``min_evals``."""
    from search.algorithms import make_algorithm
    from search.algorithms.base import History
    from search.config import parse_study
    from storage.records import TrialRecord, TrialState

    name, opts = METHODS[method]
    space = parse_study({"name": "b", "objective": {"metric": "acc", "direction": "maximize"},
                         "trial": {"entrypoint": "builtin:tabular"}, "space": {"arch": {"type": "nas-bench-201"}}},
                        check_entrypoint=False).space
    algo = make_algorithm(name, space, ["acc"], ["maximize"], seed=seed, **opts)
    trials: list[TrialRecord] = []
    out: list[float] = []
    while len(out) < cap and not (len(out) >= min_evals and max(out) >= threshold):
        props = algo.propose(History(tuple(trials), ("acc",), ("maximize",)), min(batch, cap - len(out)))
        for p in props:
            a = acc[p.params["arch"]]
            n = len(trials)
            trials.append(TrialRecord(id=n + 1, study_id=1, number=n, state=TrialState.COMPLETE,
                                      params=dict(p.params), values=(a,)))
            out.append(a)
    return out


def run_tpe(seed: int, acc: dict[str, float], threshold: float, min_evals: int, cap: int, batch: int) -> list[float]:
    import optuna

    from search.arch_spaces import NB201_OPS, NasBench201Param

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(
        seed=seed, multivariate=True, constant_liar=True))
    edges = [f"edge{k}" for k in range(6)]
    out: list[float] = []
    while len(out) < cap and not (len(out) >= min_evals and max(out) >= threshold):
        asked = [study.ask() for _ in range(min(batch, cap - len(out)))]
        for t in asked:
            arch = NasBench201Param.to_string([t.suggest_categorical(e, list(NB201_OPS)) for e in edges])
            study.tell(t, acc[arch])
            out.append(acc[arch])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 seeds, small budgets: a smoke run")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--cap", type=int, default=200, help="most evaluations per run (random: 5x this)")
    ap.add_argument("--methods", default="random,regevo,boshnas,tpe",
                    help=f"comma-separated, from {', '.join(METHODS)}")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.quick:
        args.seeds, args.cap = 3, 40
    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")

    acc = load_table()
    values = np.array(sorted(acc.values(), reverse=True))
    best = float(values[0])
    k_top = int(round(0.005 * len(values)))
    threshold = float(values[k_top - 1])
    min_evals = min(100, args.cap)
    print(f"NAS-Bench-201 CIFAR-10: {len(values)} cells, best {best:.2f}%, top-0.5% = the {k_top} best "
          f"(>= {threshold:.2f}%), mean {values.mean():.2f}%; batches of {args.batch}, {args.seeds} seeds")

    results: dict[str, dict] = {}
    for m in methods:
        t0 = time.perf_counter()
        runs = []
        cap = args.cap * 5 if m == "random" else args.cap
        for seed in range(args.seeds):
            if m == "tpe":
                runs.append(run_tpe(seed, acc, threshold, min_evals, cap, args.batch))
            else:
                runs.append(run_algorithm(m, seed, acc, threshold, min_evals, cap, args.batch))
        hits = [next((i + 1 for i, a in enumerate(r) if a >= threshold), math.inf) for r in runs]
        regret = {}
        for n in CHECKPOINTS:
            if n <= min_evals:
                r = np.array([best - max(run[:n]) for run in runs])
                regret[n] = (float(r.mean()), float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else 0.0)
        med = float(np.median(hits))
        print(f"  {m}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        results[m] = {"median_evals_to_top0.5pct": med if med < math.inf else None, "hit_within_cap": sum(h < math.inf for h in hits),
                      "cap": cap, "mean_regret": {str(n): v[0] for n, v in regret.items()},
                      "stderr_regret": {str(n): v[1] for n, v in regret.items()},
                      "seconds": round(time.perf_counter() - t0, 1)}

    ns = [n for n in CHECKPOINTS if n <= min_evals]
    print()
    print(f"{'method':<16}" + "".join(f"{'regret@' + str(n):>16}" for n in ns)
          + f"{'median evals to top-0.5%':>26}{'hit/seeds (cap)':>18}{'s':>7}")
    for m, r in results.items():
        cells = "".join(f"{r['mean_regret'][str(n)]:>9.3f} ±{r['stderr_regret'][str(n)]:<5.3f}" for n in ns)
        med = r["median_evals_to_top0.5pct"]
        print(f"{m:<16}{cells}{(f'{med:g}' if med is not None else '>cap'):>26}"
              f"{str(r['hit_within_cap']) + '/' + str(args.seeds) + ' (' + str(r['cap']) + ')':>18}{r['seconds']:>7}")
    verdict = {}
    if "random" in results and "boshnas" in results:
        b, r = results["boshnas"]["median_evals_to_top0.5pct"], results["random"]["median_evals_to_top0.5pct"]
        verdict["boshnas_le_third_of_random"] = b is not None and (r is None or b <= r / 3)
    if "regevo" in results and "boshnas" in results and "100" in results["boshnas"]["mean_regret"]:
        verdict["boshnas_beats_regevo_at_100"] = (results["boshnas"]["mean_regret"]["100"]
                                                  < results["regevo"]["mean_regret"]["100"])
    print()
    print(json.dumps({"bench": "nas_nb201_cifar10", "seeds": args.seeds, "batch": args.batch, "best": best,
                      "top_threshold": threshold, "results": results, "targets": verdict}))


if __name__ == "__main__":
    main()
