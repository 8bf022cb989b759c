"""Scaling ladder on the built-in byte-level LM: does a ladder of small models predict a larger one?

1. A `scaling` study trains 2-layer attention models of width 12, 16, 20 on the stdlib corpus on
   131k, 393k and 1.05M tokens, walking the learning rate in each cell until its optimum is pinned,
   fits the loss and lr laws, and (run_target) trains the target model, a 2-layer width-48 model
   (4.5x the largest rung's non-embedding parameters) on 1.05M tokens, at the predicted lr.
2. A `grid` study sweeps the learning rate at the target size, to see whether the predicted lr
   lies in the flat region: the learning rates whose loss is within 1% of the sweep's best.

Prints figures, then one JSON line. `--quick` is a smoke run on smaller models (minutes); `--widths`,
`--target-width` and `--tokens` change the ladder (e.g. 16,24,32 / 72 / 262144,524288,1048576).
Run on shared CPUs with `nice`, e.g.
    nohup nice -n 10 python bench/bench_scaling_ladder.py > /tmp/bench_ladder.log 2>&1 &
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Every rung trains on the same token budgets (128, 384 and 1024 steps at batch 16): at a few
# hundred steps these models are step-limited, and budgets scaled per parameter (5-20 tokens per
# parameter) left the small rungs so short that loss rose with width at a fixed budget.
FULL = {"widths": [12, 16, 20], "target_width": 48, "layers": 2, "budget": ("tokens", [131072, 393216, 1048576]),
        "target_tokens": 1048576, "lrs": [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2, 6.4e-2],
        "sweep_lrs": [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2], "batch_sizes": [16]}
QUICK = {"widths": [8, 12, 16], "target_width": 32, "layers": 1, "budget": ("tokens", [8192, 16384, 32768]),
         "target_tokens": 32768, "lrs": [2e-3, 8e-3, 3.2e-2], "sweep_lrs": [2e-3, 8e-3, 3.2e-2], "batch_sizes": [16]}
FLAT_TOLERANCE = 0.01


def _trial_params() -> dict:
    # One eval at the end, no checkpoints: the ladder only needs the final loss. A fixed seed gives
    # every trial the same initialisation and batches, so lr sweeps compare like with like.
    return {"eval_every": 100000, "checkpoint_every": 0, "checkpoint_final": False, "seed": 0, "data_seed": 0}


def _printer(label: str):
    """A progress callback that prints one line per finished trial (the runs take minutes each)."""
    last = [-1]

    def show(p) -> None:
        if p.done != last[0]:
            last[0] = p.done
            best = "-" if p.best is None else f"{p.best:.4f}"
            print(f"  {label}: {p.done} trials done, best {best}, {p.elapsed_s:.0f} s", flush=True)

    return show


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run on smaller models")
    ap.add_argument("--out", default=None, help="folder for the database and artifacts (default: a temp folder)")
    ap.add_argument("--widths", default=None, help="rung widths, e.g. 16,24,32 (default: 12,16,20)")
    ap.add_argument("--target-width", type=int, default=None, help="target width (default: 48)")
    ap.add_argument("--tokens", default=None, help="token budgets, e.g. 262144,524288,1048576 (the last one is the target's)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    import search
    from search.algorithms.scaling_ladder import heads_for
    from storage import open_storage

    cfg = dict(QUICK if args.quick else FULL)
    if args.widths:
        cfg["widths"] = [int(w) for w in args.widths.split(",")]
    if args.target_width:
        cfg["target_width"] = args.target_width
    if args.tokens:
        cfg["budget"] = ("tokens", [int(t) for t in args.tokens.split(",")])
        cfg["target_tokens"] = cfg["budget"][1][-1]
    work = args.out or tempfile.mkdtemp(prefix="bench-ladder-")
    os.makedirs(work, exist_ok=True)
    url = f"sqlite:///{os.path.join(work, 'ladder.db')}"
    rungs = [{"layers": cfg["layers"], "width": w} for w in cfg["widths"]]
    target = {"layers": cfg["layers"], "width": cfg["target_width"], "tokens": cfg["target_tokens"]}
    study = {
        "name": "ladder", "objective": {"metric": "val_loss", "direction": "minimize"},
        "trial": {"entrypoint": "builtin:lm", "params": _trial_params()},
        "algorithm": {"name": "scaling", "seed": 0, "target": target, "rungs": rungs,
                      cfg["budget"][0]: cfg["budget"][1], "lrs": cfg["lrs"],
                      "batch_sizes": cfg["batch_sizes"], "context": 64, "run_target": True, "bootstrap": 200},
        "budget": {"trials": 500, "parallel": 1}, "backend": {"name": "inprocess"},
        "artifacts": os.path.join(work, "artifacts"),
    }
    t0 = time.time()
    summary = search.run(study, storage=url, on_progress=_printer("ladder"))
    ladder_s = time.time() - t0
    with open_storage(url) as st:
        state = st.get_algorithm_state(st.get_study("ladder").id)["algorithm"]
    pred, run = state["prediction"], state.get("target_run") or {}
    print(f"ladder: {summary.complete} trials ({state['trials_run']} of a {state['trials_planned_grid']}-trial "
          f"full grid, incl. the target run) in {ladder_s:.0f} s")
    for c in state["cells"]:
        print(f"  cell {c['cell']}: width {c['width']:>3}  N={c.get('N', 0):>7.0f}  D={c.get('D', 0):>9.0f}  "
              f"trials {c['trials']}/{c['grid']}  lr*={c.get('lr', float('nan')):.4g}  loss*={c.get('loss', float('nan')):.4f}")
    law = state["fit"].get("loss_law", {}).get("params", {})
    print("  loss law: " + ", ".join(f"{k}={v:.4g}" for k, v in law.items()))
    print("  lr law:   " + ", ".join(f"{k}={v:.4g}" for k, v in state["fit"].get("hparam_law", {}).get("constants", {}).items()))
    largest = max(c["N"] for c in state["cells"] if c.get("N"))
    print(f"target: N={run.get('observed_N', pred['N']):.0f} ({run.get('observed_N', pred['N']) / largest:.1f}x the largest rung), "
          f"D={run.get('observed_D', pred['D']):.0f}; predicted lr={pred['lr']:.4g}, loss={run.get('predicted_loss_at_observed_N_D', pred['loss']):.4f} "
          f"[95% {pred['loss_interval'][0]:.4f}, {pred['loss_interval'][1]:.4f}]; observed {run.get('observed_loss', float('nan')):.4f} "
          f"({100 * run.get('relative_error', float('nan')):+.2f}%)")

    # lr sweep at the target size and budget
    tp = run["params"]
    sweep = {
        "name": "sweep", "objective": {"metric": "val_loss", "direction": "minimize"},
        "trial": {"entrypoint": "builtin:lm", "params": {
            **_trial_params(), "steps": tp["steps"], "batch_size": tp["batch_size"], "context": tp["context"],
            "layers": [{"op": "attention", "width": cfg["target_width"], "heads": heads_for(cfg["target_width"], 16),
                        "ffn": 4 * cfg["target_width"]}] * cfg["layers"]}},
        "space": {"lr": {"type": "categorical", "choices": cfg["sweep_lrs"]}},
        "algorithm": {"name": "grid", "seed": 0}, "budget": {"trials": len(cfg["sweep_lrs"]), "parallel": 1},
        "backend": {"name": "inprocess"}, "artifacts": os.path.join(work, "artifacts"),
    }
    t1 = time.time()
    search.run(sweep, storage=url, on_progress=_printer("sweep"))
    sweep_s = time.time() - t1
    with open_storage(url) as st:
        trials = st.get_trials(st.get_study("sweep").id, states=["COMPLETE"])
    points = sorted((float(t.params["lr"]), float(t.values[0])) for t in trials)
    best = min(loss for _, loss in points)
    flat = [lr for lr, loss in points if loss <= best * (1 + FLAT_TOLERANCE)]
    # Two readings of "in the flat region": the predicted lr lies between the extreme swept lrs
    # whose loss is within 1% of the best (coarse: the region's true edges lie between grid
    # points), or the target run at the predicted lr itself lands within 1% of the sweep's best.
    in_flat = min(flat) <= pred["lr"] <= max(flat)
    observed = run.get("observed_loss", float("nan"))
    flat_by_loss = observed <= best * (1 + FLAT_TOLERANCE)
    print(f"lr sweep at the target ({sweep_s:.0f} s): " + ", ".join(f"{lr:g}: {loss:.4f}" for lr, loss in points))
    print(f"  flat region (loss within {FLAT_TOLERANCE:.0%} of the best {best:.4f}): lr in [{min(flat):g}, {max(flat):g}]; "
          f"predicted lr {pred['lr']:.4g} {'inside' if in_flat else 'OUTSIDE'} that bracket; the target run at it "
          f"scored {observed:.4f}, {100 * (observed - best) / best:+.2f}% from the best ({'within' if flat_by_loss else 'OUTSIDE'} {FLAT_TOLERANCE:.0%})")
    result = {
        "bench": "scaling_ladder", "quick": args.quick, "ladder_trials": summary.complete,
        "full_grid_trials": state["trials_planned_grid"], "ladder_s": round(ladder_s, 1), "sweep_s": round(sweep_s, 1),
        "largest_rung_N": largest, "target_N": run.get("observed_N"), "size_ratio": run.get("observed_N", math.nan) / largest,
        "target_D": run.get("observed_D"), "predicted_loss": run.get("predicted_loss_at_observed_N_D"),
        "predicted_interval": pred["loss_interval"], "observed_loss": observed,
        "relative_error": run.get("relative_error"), "within_2pct": abs(run.get("relative_error", math.inf)) <= 0.02,
        "predicted_lr": pred["lr"], "sweep": points, "sweep_best_loss": best,
        "flat_region": [min(flat), max(flat)], "flat_tolerance": FLAT_TOLERANCE, "lr_in_flat_region": in_flat,
        "loss_at_predicted_lr_within_flat_tolerance": flat_by_loss,
        "observed_vs_sweep_best": (observed - best) / best, "loss_law": law,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
