"""Zero-cost proxies against NAS-Bench-201: Spearman rho (and Kendall tau) between each proxy, computed
on real untrained networks built by ``trials.nas201``, and the table's CIFAR-10 test accuracy.

The networks are the benchmark's skeleton shrunk to stay CPU-cheap (``--C`` channels in the first
stage, ``--cells`` cells per stage; the benchmark trains C=16 with 5 cells). The input batch is
``--batch`` scikit-learn digits upscaled to 32x32 with 3 identical channels (not CIFAR-10: no data is
downloaded); SynFlow is data-free. ``vote`` ranks by the mean of the synflow, naswot and gradsign
ranks (a rank-average stand-in for Abdelfattah et al.'s majority vote of synflow, jacob_cov and
snip). ``params`` (parameter count) is the usual baseline.

    nice python bench/bench_zero_cost.py              # 200 architectures
    nice python bench/bench_zero_cost.py --quick      # 20 architectures
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# ../shared/data beside the repository, or where SEARCH_SHARED_DATA says.
TABLE = os.path.join(os.environ.get("SEARCH_SHARED_DATA", os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "shared", "data")), "nas", "nas-bench-201-cifar10.csv")
# Abdelfattah et al. 2021 ("Zero-Cost Proxies for Lightweight NAS"), NAS-Bench-201 CIFAR-10, Spearman
# rho over all cells: the vote figure is quoted in ../shared/METHODS.md.
PUBLISHED = {"vote": 0.82}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 architectures: a smoke run")
    ap.add_argument("--n", type=int, default=200, help="architectures sampled uniformly from the table")
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--cells", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.quick:
        args.n = 20

    import torch
    from scipy.stats import kendalltau, spearmanr

    from trials.nas201 import build_nb201
    from trials.zero_cost import PROXIES, digits_batch

    torch.set_num_threads(1)
    with open(TABLE, newline="") as f:
        rows = [(r["arch"], float(r["cifar10_test_acc"])) for r in csv.DictReader(f)]
    idx = np.random.default_rng(args.seed).choice(len(rows), size=args.n, replace=False)
    archs = [rows[i][0] for i in idx]
    acc = np.array([rows[i][1] for i in idx])
    x, y = digits_batch(args.batch, args.seed)

    scores: dict[str, list[float]] = {p: [] for p in PROXIES}
    scores["params"] = []
    seconds = {p: 0.0 for p in PROXIES}
    for arch in archs:
        model = build_nb201(arch, C=args.C, cells_per_stage=args.cells, seed=args.seed)
        scores["params"].append(float(sum(p.numel() for p in model.parameters())))
        for name, fn in PROXIES.items():
            t0 = time.perf_counter()
            scores[name].append(fn(model, x, y))
            seconds[name] += time.perf_counter() - t0

    def ranks(v):
        from scipy.stats import rankdata

        return rankdata(np.nan_to_num(np.array(v), neginf=-1e300))

    scores["vote"] = list(np.mean([ranks(scores[p]) for p in ("synflow", "naswot", "gradsign")], axis=0))
    results = {}
    print(f"{args.n} NAS-Bench-201 cells (seed {args.seed}); networks C={args.C}, {args.cells} cell(s)/stage; "
          f"batch: {args.batch} digits upscaled to 32x32x3 (synflow: data-free)")
    print(f"{'proxy':<11}{'spearman':>10}{'kendall':>10}{'ms/arch':>10}{'published rho':>15}")
    for name, v in scores.items():
        r = ranks(v)
        rho = float(spearmanr(r, acc).statistic)
        tau = float(kendalltau(r, acc).statistic)
        ms = 1000 * seconds[name] / args.n if name in seconds else None
        results[name] = {"spearman": round(rho, 4), "kendall": round(tau, 4),
                         "ms_per_arch": None if ms is None else round(ms, 1), "published_spearman": PUBLISHED.get(name)}
        pub = PUBLISHED.get(name)
        print(f"{name:<11}{rho:>10.3f}{tau:>10.3f}{(f'{ms:.0f}' if ms is not None else '-'):>10}"
              f"{(f'{pub:.2f}' if pub is not None else '-'):>15}")
    print()
    print(json.dumps({"bench": "zero_cost_nb201_cifar10", "n": args.n, "C": args.C, "cells": args.cells,
                      "batch": args.batch, "seed": args.seed, "results": results}))


if __name__ == "__main__":
    main()
