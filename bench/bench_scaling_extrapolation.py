"""Scaling-law extrapolation on public data: fit below a size, predict runs 4x or more larger.

Sets (../shared/data/scaling/, see its README):
- chinchilla: Epoch AI's digitised Hoffmann et al. points (5 highest-loss points dropped, as
  Epoch did); fit on N <= 5e8, predict N >= 4x the largest fitted N (2.0e9-1.6e10 parameters).
- gemstones-cool / gemstones-hot: Gemstones checkpoints with and without cooldown; fit on the
  shapes up to 117M parameters, predict the 475M-2B shapes (4.1x-17x).
- porian-<i>: each of Porian et al.'s 15 training configurations on its own; fit on N <= 1.2e8,
  predict N >= 4x the largest fitted size. IsoFLOP points with fewer than one token per
  parameter are left out of fit and test alike: there the largest models barely leave warmup
  (losses of 6-10 nats at 1e17 FLOPs), a regime no L(N, D) law describes.

Methods, every one fitted to the same points (Huber delta 1e-3 on log loss, grid of starts):
- plain: `fit_chinchilla` as `search scaling fit` runs it (5 parameters, row bootstrap; its
  interval is the bootstrap percentile band of the law).
- gadre: the over-training-aware form of Gadre et al. 2024, one exponent for N and D
  (alpha = beta), i.e. L = E + (a M^eta + b M^-eta) C^-eta at tokens-per-parameter M.
- size-boot: the plain form as a `ScalingLawRegressor`: model-size bootstrap and a prediction
  interval (bootstrap laws x residual scatter x backtested extrapolation error), the full-data
  fit as the prediction. resid-PI: the same without the backtested extrapolation error.
- bagged: the mean over the size-bootstrap fits (model averaging).
- shared-E / gadre-shared-E: one law per subset with a shared irreducible loss: Gemstones hot and
  cool_end fitted together; Porian's configurations on one data set (rw, owt2) fitted together.
- porian-count: (Gemstones) N counted as Porian et al. do -- non-embedding parameters plus the
  output head (N - V*width, V = 50,304); kaplan-count is non-embedding only (N - 2*V*width).
- auto: `ScalingLawRegressor()`'s default: the free form, or the tied one when the free fit's E
  collapses below 5% of the smallest loss; size bootstrap and backtested prediction interval.

Reported per set and method: mean and max absolute error in % of the observed loss on the
held-out runs, the difference of the mean from the plain fit's with a paired bootstrap 95%
interval over held-out model sizes, and the share of held-out runs inside the 80% and 95%
intervals. Prints the table, writes docs/images/scaling-extrapolation.png (matplotlib) and one
JSON line.

    OMP_NUM_THREADS=1 nice -n 10 python bench/bench_scaling_extrapolation.py [--bootstrap 50]
        [--methods plain,auto] [--sets chinchilla,gemstones-cool] [--no-plot]

matplotlib draws the plot when installed (it is a test dependency); without it the plot is skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from surrogates.scaling import Runs, ScalingLawRegressor, fit_chinchilla  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("SEARCH_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
SCALING = os.path.join(DATA, "scaling")
PLOT = os.path.join(REPO, "docs", "images", "scaling-extrapolation.png")
VOCAB = 50304  # Gemstones' tokenizer: params_active_precise = 15 w^2 d + ... + 2 V w (untied)
RATIO = 4.0
LEVELS = (0.8, 0.95)


# --------------------------------------------------------------------------- data


def load_sets() -> list[dict[str, Any]]:
    sets = []
    df = pd.read_csv(os.path.join(SCALING, "epoch_chinchilla", "svg_extracted_data.csv"))
    df = df.sort_values("loss", kind="stable").iloc[:-5]  # Epoch AI drop the 5 highest-loss points
    n = df["Model Size"].to_numpy(float)
    sets.append({"name": "chinchilla", "family": "chinchilla", "group": "chinchilla", "N": n,
                 "D": df["Training FLOP"].to_numpy(float) / (6 * n), "loss": df["loss"].to_numpy(float),
                 "cut": 5e8})
    for kind, short in (("cool_end", "cool"), ("hot", "hot")):
        g = pd.read_json(os.path.join(SCALING, "gemstones", f"wandb_df_for_fitting_{kind}.jsonl"), lines=True)
        sets.append({"name": f"gemstones-{short}", "family": "gemstones", "group": kind,
                     "N": g["params_active_precise"].to_numpy(float), "D": g["tokens"].to_numpy(float),
                     "loss": g["final_loss"].to_numpy(float), "width": g["width"].to_numpy(float), "cut": 1.2e8})
    with open(os.path.join(SCALING, "porian", "porian_configs_isoflop_points.json")) as fh:
        configs = json.load(fh)
    for i, c in enumerate(configs):
        rows = [(n, t, lo) for b in c["per_flop_budget"] if isinstance(b["orig_n"], list)
                for n, t, lo in zip(b["orig_n"], b["orig_t"], b["orig_loss"])]
        arr = np.array(rows, float)
        arr = arr[np.all(np.isfinite(arr), axis=1) & (arr[:, 1] >= arr[:, 0])]  # >= 1 token per parameter
        cf = c["config"]
        label = f"{cf['dataset']}/{cf['hparams']}/{cf['warmup']}/{cf['decay']}/{cf['param_count']}"
        sets.append({"name": f"porian-{i:02d}", "family": f"porian-{cf['dataset']}", "group": str(i), "label": label,
                     "N": arr[:, 0], "D": arr[:, 1], "loss": arr[:, 2], "cut": 1.2e8})
    for s in sets:
        fit = s["N"] <= s["cut"]
        test = s["N"] >= RATIO * s["N"][fit].max()
        s["fit"], s["test"] = fit, test
    return sets


# --------------------------------------------------------------------------- methods


def _pi_from_law(boot: np.ndarray, n: np.ndarray, d: np.ndarray) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    e, a, b, al, be = (boot[:, i, None] for i in range(5))
    pred = e + a / n**al + b / d**be
    out = {}
    for lv in LEVELS:
        lo, hi = np.nanpercentile(pred, [50 * (1 - lv), 50 * (1 + lv)], axis=0)
        out[lv] = (lo, hi)
    return out


def run_plain(s: dict[str, Any], n_boot: int, seed: int) -> dict[str, Any]:
    f, t = s["fit"], s["test"]
    runs = Runs(N=s["N"][f], D=s["D"][f], C=6 * s["N"][f] * s["D"][f], loss=s["loss"][f])
    with np.errstate(all="ignore"):
        fit = fit_chinchilla(runs, n_bootstrap=n_boot, seed=seed, n_starts=20)
        mean = fit.predict(s["N"][t], s["D"][t])[0]
        return {"mean": mean, "intervals": _pi_from_law(fit.bootstrap_params, s["N"][t], s["D"][t])}


_JOINT_CACHE: dict[tuple, ScalingLawRegressor] = {}


def run_regressor(s: dict[str, Any], n_boot: int, seed: int, *, form: str, average: bool,
                  n_col: str = "N", joint: list[dict[str, Any]] | None = None,
                  extrapolation: str = "backtest") -> dict[str, Any]:
    """Fit on s (or jointly on every set in `joint`, one group each) and predict s's held-out runs."""
    members = joint or [s]
    key = (tuple(m["name"] for m in members), form, average, n_col, n_boot, seed, extrapolation)
    model = _JOINT_CACHE.get(key) if joint else None
    if model is None:
        X = np.vstack([np.c_[m[n_col][m["fit"]], m["D"][m["fit"]]] for m in members])
        y = np.concatenate([m["loss"][m["fit"]] for m in members])
        groups = np.concatenate([np.full(m["fit"].sum(), m["group"]) for m in members]) if joint else None
        model = ScalingLawRegressor(form=form, average=average, n_bootstrap=n_boot, random_state=seed,
                                    extrapolation=extrapolation)
        with np.errstate(all="ignore"):
            model.fit(X, y, groups=groups)
        if joint:
            _JOINT_CACHE[key] = model
    with np.errstate(all="ignore"):
        Xt = np.c_[s[n_col][s["test"]], s["D"][s["test"]]]
        gt = np.full(len(Xt), s["group"]) if joint else None
        mean, _ = model.predict(Xt, groups=gt)
        intervals = {lv: model.predict_interval(Xt, lv, groups=gt) for lv in LEVELS}
    return {"mean": mean, "intervals": intervals, "model": model, "slope": model.extrapolation_slope_,
            "form": model.form_}


METHODS = ["plain", "gadre", "size-boot", "resid-PI", "bagged", "shared-E", "gadre-shared-E",
           "porian-count", "kaplan-count", "auto"]


def evaluate(sets: list[dict[str, Any]], n_boot: int, seed: int, only: list[str] | None) -> dict[str, dict[str, Any]]:
    family: dict[str, list[dict[str, Any]]] = {}
    for s in sets:
        family.setdefault(s["family"], []).append(s)
    results: dict[str, dict[str, Any]] = {}
    for s in sets:
        joint = family[s["family"]] if len(family[s["family"]]) > 1 else None
        res: dict[str, Any] = {}
        for m in METHODS:
            if only and m not in only:
                continue
            t0 = time.time()
            kw: dict[str, Any] = {"average": False}
            if m == "plain":
                out = run_plain(s, n_boot, seed)
            elif m == "gadre":
                out = run_regressor(s, n_boot, seed, form="tied", **kw)
            elif m == "size-boot":
                out = run_regressor(s, n_boot, seed, form="chinchilla", **kw)
            elif m == "resid-PI":
                out = run_regressor(s, n_boot, seed, form="chinchilla", extrapolation="none", **kw)
            elif m == "bagged":
                out = run_regressor(s, n_boot, seed, form="chinchilla", average=True)
            elif m == "auto":
                out = run_regressor(s, n_boot, seed, form="auto", **kw)
            elif m in ("shared-E", "gadre-shared-E"):
                if joint is None:
                    continue
                out = run_regressor(s, n_boot, seed, form="tied" if m.startswith("gadre") else "chinchilla",
                                    joint=joint, **kw)
            elif m in ("porian-count", "kaplan-count"):
                if "width" not in s:
                    continue
                k = 1 if m == "porian-count" else 2
                s2 = {**s, "N_alt": s["N"] - k * VOCAB * s["width"]}
                out = run_regressor(s2, n_boot, seed, form="chinchilla", n_col="N_alt", **kw)
            res[m] = score(s, out)
            res[m]["seconds"] = time.time() - t0
        results[s["name"]] = res
        print(f"  {s['name']}: " + ", ".join(f"{m} {r['mae']:.2f}%" for m, r in res.items()), flush=True)
    return results


def score(s: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    obs = s["loss"][s["test"]]
    rel = 100 * (out["mean"] - obs) / obs
    cover = {lv: float(np.mean((lo <= obs) & (obs <= hi))) for lv, (lo, hi) in out["intervals"].items()}
    lo95, hi95 = out["intervals"][0.95]
    return {"rel": rel, "mae": float(np.mean(np.abs(rel))), "max": float(np.max(np.abs(rel))),
            "bias": float(np.mean(rel)), "cover": cover, "mean": out["mean"],
            "half95": float(np.mean(50 * (hi95 - lo95) / obs)), "slope": out.get("slope", float("nan")),
            "form": out.get("form", "chinchilla"), "obs": obs, "intervals": out["intervals"]}


def paired_interval(s: dict[str, Any], a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of mean|a| - mean|b| resampling held-out model sizes."""
    sizes = np.round(np.log(s["N"][s["test"]]), 2)
    uniq = np.unique(sizes)
    members = [np.flatnonzero(sizes == u) for u in uniq]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        diffs.append(np.mean(np.abs(a[idx])) - np.mean(np.abs(b[idx])))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- plot


def plot(sets: list[dict[str, Any]], results: dict[str, dict[str, Any]], path: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot written (pip install matplotlib)"
    shown = [m for m in ("plain", "gadre", "auto") if all(m in r for r in results.values())]
    names = list(results)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [2.2, 1]})
    width = 0.8 / max(len(shown), 1)
    for i, m in enumerate(shown):
        ax1.bar(np.arange(len(names)) + (i - (len(shown) - 1) / 2) * width, [results[n][m]["mae"] for n in names],
                width, label=m)
    ax1.axhline(1.5, color="k", ls="--", lw=1, label="goal 1.5%")
    ax1.set_xticks(np.arange(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax1.set_ylabel("MAE on runs >= 4x larger (% of loss)")
    ax1.set_title("Extrapolation error per set")
    ax1.legend(fontsize=8)
    methods = [m for m in METHODS if all(m in r for r in results.values())]
    for j, lv in enumerate(LEVELS):
        ax2.bar(np.arange(len(methods)) + (j - 0.5) * 0.4, [np.mean([r[m]["cover"][lv] for r in results.values()]) for m in methods],
                0.4, label=f"{lv:.0%} interval")
        ax2.axhline(lv, color=f"C{j}", ls="--", lw=1)
    ax2.set_xticks(np.arange(len(methods)), methods, rotation=45, ha="right", fontsize=8)
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("share of held-out runs inside (mean over sets)")
    ax2.set_title("Interval coverage (dashed: stated rate)")
    ax2.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    return f"plot written to {os.path.relpath(path, REPO)}"


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=None, help="comma-separated subset of " + ",".join(METHODS))
    ap.add_argument("--sets", default=None, help="comma-separated set names (default: all)")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    sets = load_sets()
    if args.sets:
        keep = set(args.sets.split(","))
        sets = [s for s in sets if s["name"] in keep]
    for s in sets:
        nf, nt = int(s["fit"].sum()), int(s["test"].sum())
        print(f"{s['name']:16s} {s.get('label', ''):30s} fit {nf:4d} runs N {s['N'][s['fit']].min():.3g}-{s['N'][s['fit']].max():.3g}; "
              f"held out {nt:3d} runs N {s['N'][s['test']].min():.3g}-{s['N'][s['test']].max():.3g} "
              f"({s['N'][s['test']].min() / s['N'][s['fit']].max():.1f}x-{s['N'][s['test']].max() / s['N'][s['fit']].max():.0f}x)")
    results = evaluate(sets, args.bootstrap, args.seed, args.methods.split(",") if args.methods else None)
    by_name = {s["name"]: s for s in sets}
    print()
    print(f"{'set':16s} {'method':15s} {'MAE %':>6s} {'max %':>6s} {'bias %':>7s} {'vs plain [95%]':>22s} {'cov80':>6s} {'cov95':>6s} {'±95 %':>6s}")
    for name, res in results.items():
        base = res.get("plain")
        for m, r in res.items():
            if base is not None and m != "plain":
                lo, hi = paired_interval(by_name[name], r["rel"], base["rel"])
                diff = f"{r['mae'] - base['mae']:+.2f} [{lo:+.2f},{hi:+.2f}]"
            else:
                diff = ""
            print(f"{name:16s} {m:15s} {r['mae']:6.2f} {r['max']:6.2f} {r['bias']:+7.2f} {diff:>22s} "
                  f"{r['cover'][0.8]:6.2f} {r['cover'][0.95]:6.2f} {r['half95']:6.2f}")
    auto = {n: r["auto"]["form"] for n, r in results.items() if "auto" in r}
    if auto:
        print("auto chose: " + ", ".join(f"{n} {f}" for n, f in auto.items()))
    summary = {}
    for m in METHODS:
        vals = [res[m] for res in results.values() if m in res]
        if not vals:
            continue
        summary[m] = {"sets": len(vals), "mean_mae": float(np.mean([v["mae"] for v in vals])),
                      "worst_mae": float(np.max([v["mae"] for v in vals])),
                      "cover80": float(np.mean([v["cover"][0.8] for v in vals])),
                      "cover95": float(np.mean([v["cover"][0.95] for v in vals])),
                      "half95": float(np.mean([v["half95"] for v in vals])),
                      "below_plain": int(sum(v["mae"] < results[n]["plain"]["mae"] - 1e-9
                                             for n in results if m in results[n] and "plain" in results[n]
                                             for v in [results[n][m]]))}
    print()
    for m, v in summary.items():
        print(f"{m:15s} sets {v['sets']:2d}  mean MAE {v['mean_mae']:.2f}%  worst {v['worst_mae']:.2f}%  "
              f"coverage 80% {v['cover80']:.2f}  95% {v['cover95']:.2f}  mean 95% half-width {v['half95']:.1f}%  "
              f"below plain on {v['below_plain']} sets")
    print("" if args.no_plot else plot(sets, results, PLOT))
    print(json.dumps({"bench": "scaling_extrapolation", "seconds": round(time.time() - t0, 1),
                      "loadavg": os.getloadavg(), "summary": summary,
                      "per_set": {n: {m: {"mae": round(r["mae"], 3), "max": round(r["max"], 3),
                                          "cover80": r["cover"][0.8], "cover95": r["cover"][0.95],
                                          "half95": round(r["half95"], 3)}
                                      for m, r in res.items()} for n, res in results.items()}}))


if __name__ == "__main__":
    main()
