"""NAS out of sample: evaluations to reach a top-p architecture on several spaces and objectives,
against random sampling's exact median, for boshnas (and regevo, random) with their defaults.

boshnas was tuned on NAS-Bench-201's CIFAR-10 column. Here each of its defaults is judged on four
tables at once, each a fixed, finite space whose objective is looked up (so a search is a table
lookup and many seeds are cheap):

- ``nb201-cifar10``: NAS-Bench-201, CIFAR-10 test accuracy (the shared table; 15,625 cells).
- ``nb201-synflow``: the 4,096 NAS-Bench-201 cells without ``none`` edges (``ops: [skip_connect,
  nor_conv_1x1, nor_conv_3x3, avg_pool_3x3]``: a different space) scored by SynFlow (a data-free
  zero-cost proxy) on the benchmark skeleton at C = 8, one cell per stage
  (``trials.zero_cost.score_nb201``): a different, real objective, not a transform of the accuracy.
- ``cnn-digits``: the ``cnn`` space ``{depth: [1, 3], widths: [8, 16, 32], kernels: [3, 5], skip:
  true}`` (1,884 architectures), each ``builtin:classifier``-style CNN (``trials.models.build_cnn``,
  hidden 32) trained one epoch on 1,400 scikit-learn digits (Adam 3e-3, batch 32, seed 0):
  validation cross-entropy on the other 397, minimised.
- ``lm-bytes``: the ``lm-layers`` space ``{layers: [1, 3], ops: [attention, linear, conv], widths:
  [32, 64], heads: [2], ffn_mult: [2, 4]}`` (1,884 architectures), each ``trials.models.ByteLM``
  trained 80 steps (AdamW 3e-3, batch 16, context 32, seed 0) on bytes of a few fixed Python
  standard-library sources: validation loss on another, minimised.

The tables are built once (about 20 minutes on one busy core) and cached under ``--cache``
(default ``/tmp/search-nas-spaces``; not committed). Target per space: the top ``p`` share of the
table (p = 0.5% everywhere: 78, 78, 9 and 9 architectures; ties at the threshold count as top).
Random sampling without replacement reaches one at the exact hypergeometric median: the smallest
n with 1 - C(N-K, n) / C(N, n) >= 1/2 (about ln 0.5 / ln(1 - p)). Searches run batches of
``--batch`` through the Algorithm interface (as ``bench_nas.py`` does) and stop at the first top
architecture or at ``--cap``. Medians over seeds come with a percentile bootstrap interval.

    nice python bench/bench_nas_spaces.py                      # 24 seeds, boshnas, regevo, random
    nice python bench/bench_nas_spaces.py --quick              # 3 seeds, a smoke run
    nice python bench/bench_nas_spaces.py --methods boshnas --set boshnas:kappa=2   # a variant

Prints a table (per space and method: median evaluations, 95% interval, random's exact median,
the ratio) and one JSON line; ``--plot PATH`` draws the figure (matplotlib).
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

SHARED = os.environ.get("SEARCH_SHARED_DATA", os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "shared", "data"))
NB201_TABLE = os.path.join(SHARED, "nas", "nas-bench-201-cifar10.csv")

# name -> (space spec of the one architecture parameter, direction, top share p)
SPACES = {
    "nb201-cifar10": ({"type": "nas-bench-201"}, "maximize", 0.005),
    "nb201-synflow": ({"type": "nas-bench-201", "ops": ["skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                                        "avg_pool_3x3"]}, "maximize", 0.005),
    "cnn-digits": ({"type": "cnn", "depth": [3, 3], "widths": [8, 16], "kernels": [3, 5], "skip": True},
                   "minimize", 0.005),
    "lm-naswot": ({"type": "lm-layers", "layers": [3, 3], "ops": ["attention", "linear", "conv"], "widths": [32, 64],
                  "heads": [2], "ffn_mult": [2, 4]}, "maximize", 0.005),
}
METHODS = {  # label -> (algorithm, options)
    "boshnas": ("boshnas", {}),
    # boshnas's former defaults, tuned on the NAS-Bench-201 CIFAR-10 column alone
    "boshnas-former": ("boshnas", {"n_init": 10, "encoding": "path", "mutants": 100, "random_candidates": 100}),
    "regevo": ("regevo", {}),
    "random": ("random", {}),
}
LM_FILE = "argparse.py"  # the standard-library source whose bytes feed lm-naswot


def key_of(value) -> str:
    return json.dumps(value, sort_keys=True)


def space_of(name: str):
    from search.config import parse_study

    spec, direction, _ = SPACES[name]
    return parse_study({"name": "b", "objective": {"metric": "y", "direction": direction},
                        "trial": {"entrypoint": "builtin:tabular"}, "space": {"arch": spec}},
                       check_entrypoint=False).space


# --- building the tables ------------------------------------------------------------------------


def _nb201_cifar10(archs):
    with open(NB201_TABLE, newline="") as f:
        acc = {r["arch"]: float(r["cifar10_test_acc"]) for r in csv.DictReader(f)}
    return [acc[a] for a in archs]


def _nb201_synflow(archs):
    from trials.zero_cost import score_nb201

    return [score_nb201(a, "synflow", seed=0) for a in archs]


def _cnn_digits(archs):
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from trials.models import build_cnn

    d = load_digits()
    perm = np.random.default_rng(0).permutation(len(d.target))
    X = torch.tensor(d.images[perm], dtype=torch.float32) / 16.0
    y = torch.tensor(d.target[perm], dtype=torch.long)
    out = []
    for layers in archs:
        torch.manual_seed(0)
        model = build_cnn((8, 8), 10, layers, 32)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        order = torch.randperm(1400, generator=torch.Generator().manual_seed(0))
        for i in range(0, 1400, 64):
            idx = order[i:i + 64]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out.append(float(F.cross_entropy(model(X[1400:]), y[1400:])))
    return out


def _lm_naswot(archs, batch: int = 32, context: int = 32):
    """NASWOT (Mellor et al. 2021) for a language model: log-determinant of the kernel of the binary
    codes (pre-activation > 0) of every FFN GELU over the batch, at initialisation (seed 0), on
    ``batch`` byte windows of a Python standard-library source."""
    import sysconfig

    import torch
    import torch.nn as nn

    from trials.models import ByteLM, normalize_layers

    with open(os.path.join(sysconfig.get_paths()["stdlib"], LM_FILE), "rb") as f:
        data = torch.tensor(list(f.read()), dtype=torch.long)
    starts = np.random.default_rng(0).integers(0, len(data) - context, size=batch)
    x = torch.stack([data[s:s + context] for s in starts])
    out = []
    for layers in archs:
        torch.manual_seed(0)
        model = ByteLM(normalize_layers(layers, {}), context)
        K = torch.zeros((batch, batch), dtype=torch.float64)

        def hook(module, inputs, output):
            nonlocal K
            codes = (inputs[0].reshape(batch, -1) > 0).double()
            K = K + codes @ codes.T + (1 - codes) @ (1 - codes).T

        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.GELU)]
        with torch.no_grad():
            model(x)
        for h in handles:
            h.remove()
        out.append(float(torch.linalg.slogdet(K)[1]))
    return out


BUILDERS = {"nb201-cifar10": _nb201_cifar10, "nb201-synflow": _nb201_synflow, "cnn-digits": _cnn_digits,
            "lm-naswot": _lm_naswot}


def load_table(name: str, cache: str, build: bool = True) -> dict[str, float]:
    """{architecture key: objective} over every architecture of the space, built once and cached."""
    path = os.path.join(cache, f"{name}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    if not build:
        raise SystemExit(f"no cached table {path}; run without --no-build first")
    import torch

    torch.set_num_threads(1)
    param = next(iter(space_of(name)))
    archs = param.grid(0)
    t0 = time.perf_counter()
    values = []
    chunk = len(archs) if name == "nb201-cifar10" else 200
    for i in range(0, len(archs), chunk):
        values += BUILDERS[name](archs[i:i + chunk])
        print(f"  {name}: {len(values)}/{len(archs)} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    table = {key_of(a): float(v) for a, v in zip(archs, values)}
    os.makedirs(cache, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(table, f)
    os.replace(path + ".tmp", path)
    return table


# --- statistics ------------------------------------------------------------------------------------


def random_median(N: int, K: int) -> int:
    """Exact median of the number of draws without replacement from N items, K of them good, until
    the first good one: the smallest n with P(hit within n) = 1 - C(N-K, n) / C(N, n) >= 1/2."""
    miss = 1.0
    for n in range(1, N - K + 2):
        miss *= (N - K - n + 1) / (N - n + 1)  # P(first n all miss)
        if 1.0 - miss >= 0.5:
            return n
    return N - K + 1


def bootstrap_median(x, reps: int = 4000, seed: int = 0) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng(seed)
    meds = np.median(x[rng.integers(0, len(x), size=(reps, len(x)))], axis=1)
    return float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))


# --- searches --------------------------------------------------------------------------------------


def run_search(algo_name: str, options: dict, space_name: str, table: dict[str, float], top: float, seed: int,
               batch: int, cap: int) -> int | float:
    """Evaluations until the first architecture at or beyond ``top`` (inf if not within ``cap``)."""
    from search.algorithms import make_algorithm
    from search.algorithms.base import History
    from storage.records import TrialRecord, TrialState

    direction = SPACES[space_name][1]
    sign = 1.0 if direction == "maximize" else -1.0
    algo = make_algorithm(algo_name, space_of(space_name), ["y"], [direction], seed=seed, **options)
    trials: list[TrialRecord] = []
    while len(trials) < cap:
        props = algo.propose(History(tuple(trials), ("y",), (direction,)), min(batch, cap - len(trials)))
        for p in props:
            v = table[key_of(p.params["arch"])]
            n = len(trials)
            trials.append(TrialRecord(id=n + 1, study_id=1, number=n, state=TrialState.COMPLETE,
                                      params=dict(p.params), values=(v,)))
            if sign * v >= sign * top:
                return n + 1
    return math.inf


def parse_sets(items: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for item in items:
        method, _, kv = item.partition(":")
        k, _, v = kv.partition("=")
        try:
            val = json.loads(v)
        except json.JSONDecodeError:
            val = v
        out.setdefault(method, {})[k] = val
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 seeds: a smoke run")
    ap.add_argument("--seeds", type=int, default=24)
    ap.add_argument("--seed0", type=int, default=0, help="first seed")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--cap", type=int, default=150, help="most evaluations per search (random: the whole table)")
    ap.add_argument("--spaces", default=",".join(SPACES))
    ap.add_argument("--methods", default="boshnas,regevo,random", help=f"comma-separated, from {', '.join(METHODS)}")
    ap.add_argument("--set", action="append", default=[], metavar="METHOD:KEY=VALUE",
                    help="an option for one method (repeatable), e.g. boshnas:kappa=2")
    ap.add_argument("--cache", default=os.environ.get("NAS_SPACES_CACHE", "/tmp/search-nas-spaces"))
    ap.add_argument("--build-only", action="store_true", help="build the cached tables and stop")
    ap.add_argument("--plot", default=None, help="write the figure here (needs matplotlib)")
    args = ap.parse_args()
    if args.quick:
        args.seeds = 3
    import torch

    torch.set_num_threads(1)
    spaces = args.spaces.split(",")
    tables = {s: load_table(s, args.cache) for s in spaces}
    if args.build_only:
        return
    sets = parse_sets(args.set)
    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    results: dict[str, dict] = {}
    print(f"batches of {args.batch}, {args.seeds} seeds (from {args.seed0}), cap {args.cap}; "
          f"options: {json.dumps(sets) if sets else 'defaults'}; load {os.getloadavg()[0]:.1f}")
    for s in spaces:
        table = tables[s]
        direction, p = SPACES[s][1], SPACES[s][2]
        vals = np.array(sorted(table.values(), reverse=(direction == "maximize")))
        k = max(1, int(round(p * len(vals))))
        top = float(vals[k - 1])
        K = int(np.sum(vals >= top) if direction == "maximize" else np.sum(vals <= top))
        rmed = random_median(len(vals), K)
        results[s] = {"N": len(vals), "p": p, "K": K, "threshold": top, "random_exact_median": rmed,
                      "random_formula": math.log(0.5) / math.log(1 - K / len(vals)), "methods": {}}
        for m in methods:
            t0 = time.perf_counter()
            algo, opts = METHODS[m]
            opts = {**opts, **sets.get(m, {})}
            cap = len(vals) if m == "random" else args.cap
            hits = [run_search(algo, opts, s, table, top, seed, args.batch, cap)
                    for seed in range(args.seed0, args.seed0 + args.seeds)]
            med = float(np.median(hits))
            lo, hi = bootstrap_median(hits)
            results[s]["methods"][m] = {"median": med, "ci95": [lo, hi], "ratio": rmed / med if med else None,
                                        "hit": int(sum(h < math.inf for h in hits)),
                                        "evals": [h if h < math.inf else None for h in hits],
                                        "seconds": round(time.perf_counter() - t0, 1)}
            print(f"  {s} {m}: median {med:g} [{lo:g}, {hi:g}], {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)

    print()
    print(f"{'space':<15}{'N':>7}{'top K':>7}{'random exact':>14}{'method':>10}{'median':>9}{'95% CI':>16}"
          f"{'ratio':>8}{'hit':>8}")
    for s, r in results.items():
        for m, mr in r["methods"].items():
            ci = f"[{mr['ci95'][0]:g}, {mr['ci95'][1]:g}]"
            ratio = f"{mr['ratio']:.1f}x" if mr["ratio"] and mr["median"] < math.inf else "-"
            print(f"{s:<15}{r['N']:>7}{r['K']:>7}{r['random_exact_median']:>14}{m:>10}{mr['median']:>9g}{ci:>16}"
                  f"{ratio:>8}{str(mr['hit']) + '/' + str(args.seeds):>8}")
    goal = {s: r["methods"]["boshnas"]["median"] * 5 <= r["random_exact_median"]
            for s, r in results.items() if "boshnas" in r["methods"]}
    print()
    print(json.dumps({"bench": "nas_out_of_sample", "seeds": args.seeds, "seed0": args.seed0, "batch": args.batch,
                      "cap": args.cap, "options": sets, "results": results,
                      "goal_boshnas_5x_fewer_than_random": goal, "loadavg": os.getloadavg()[0]}))
    if args.plot:
        plot(results, args.plot)


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spaces = list(results)
    methods = list(next(iter(results.values()))["methods"])
    fig, ax = plt.subplots(figsize=(8.5, 5))
    width = 0.8 / (len(methods) + 1)
    for j, m in enumerate(methods):
        meds = [results[s]["methods"][m]["median"] for s in spaces]
        lo = [meds[i] - results[s]["methods"][m]["ci95"][0] for i, s in enumerate(spaces)]
        hi = [results[s]["methods"][m]["ci95"][1] - meds[i] for i, s in enumerate(spaces)]
        xs = np.arange(len(spaces)) + j * width
        ax.bar(xs, meds, width, yerr=[lo, hi], capsize=3, label=f"{m} (median, 95% CI)")
    xs = np.arange(len(spaces)) + len(methods) * width
    ax.bar(xs, [results[s]["random_exact_median"] for s in spaces], width, color="lightgrey",
           label="random, exact median")
    for i, s in enumerate(spaces):
        ax.hlines(results[s]["random_exact_median"] / 5, i - width / 2, i + (len(methods) + 0.5) * width,
                  colors="k", linestyles="dashed", label="goal: random / 5" if i == 0 else None)
    ax.set_xticks(np.arange(len(spaces)) + len(methods) * width / 2)
    ax.set_xticklabels([f"{s}\n(top {results[s]['K']} of {results[s]['N']})" for s in spaces])
    ax.set_ylabel("evaluations to a top-0.5% architecture")
    ax.set_yscale("log")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
