"""NAS over the heterogeneous LM space on real training: does search find an architecture with a
lower validation loss than the best homogeneous one, at equal or smaller parameter count?

    python bench/bench_nas_lm.py [--steps 150] [--trials 12] [--algorithm regevo] [--quick]

1. Every homogeneous 2-layer model of the grid (op x width) is trained: the baseline.
2. A study searches the `lm-layers` space (per-layer op and width may differ) with the same
   training budget, on the in-process backend.
3. The answer compares the best searched model whose parameter count is at most the best
   homogeneous model's with that model. Prints a table and a JSON line.

Byte-level LM on the Python standard library's sources, CPU, one seed; same lr, steps, batch size,
context and data split for every model.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

OPS = ["attention", "linear", "conv"]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--widths", default="32,48")
    ap.add_argument("--algorithm", default="regevo")
    ap.add_argument("--quick", action="store_true", help="tiny budget, for a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.trials, args.widths = 20, 4, "16,24"
    widths = [int(w) for w in args.widths.split(",")]
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    import search
    from storage import open_storage

    fixed = {"steps": args.steps, "context": 64, "batch_size": 32, "lr": 2e-3, "eval_every": args.steps,
             "checkpoint_every": 0, "checkpoint_final": False, "seed": 0}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as wd:
        url = f"sqlite:///{wd}/nas-lm.db"
        common = {"objective": {"metric": "val_loss", "direction": "minimize"},
                  "budget": {"parallel": 1}, "backend": {"name": "inprocess"}, "artifacts": wd}
        homo = [[{"op": op, "width": w, **({"heads": 2} if op == "attention" else {}), "ffn": 2 * w}] * 2
                for op in OPS for w in widths]
        # A layer list is not a categorical choice (choices are scalars): one study per model.
        baseline = []
        for i, layers in enumerate(homo):
            name = f"homo-{i}"
            search.run({**common, "name": name, "trial": {"entrypoint": "builtin:lm", "params": {**fixed, "layers": layers}},
                        "space": {}, "algorithm": {"name": "random", "seed": 0}, "budget": {"trials": 1, "parallel": 1}},
                       storage=url)
        nas_study = {**common, "name": "nas", "trial": {"entrypoint": "builtin:lm", "params": fixed},
                     "space": {"layers": {"type": "lm-layers", "layers": [2, 2], "ops": OPS, "widths": widths,
                                          "heads": [2], "ffn_mult": [2]}},
                     "algorithm": {"name": args.algorithm, "seed": 0},
                     "budget": {"trials": args.trials, "parallel": 1}}
        search.run(nas_study, storage=url)
        with open_storage(url) as st:
            for i, layers in enumerate(homo):
                [t] = st.get_trials(st.get_study(f"homo-{i}").id)
                baseline.append((t.value, int(t.metrics["params"]), layers))
            nas = [(t.value, int(t.metrics["params"]), t.params["layers"])
                   for t in st.get_trials(st.get_study("nas").id) if t.value is not None]
    best_h = min(baseline, key=lambda r: r[0])
    eligible = [r for r in nas if r[1] <= best_h[1]]
    best_n = min(eligible, key=lambda r: r[0]) if eligible else None
    heterogeneous = best_n is not None and len({json.dumps(l, sort_keys=True) for l in best_n[2]}) > 1

    def short(layers):
        return " + ".join(f"{l['op']}{l['width']}" for l in layers)

    print(f"byte-level LM, {args.steps} steps, batch 32 x 64 bytes, lr 2e-3, CPU; {args.algorithm}, {args.trials} trials")
    print(f"{'model':<34} {'params':>8} {'val_loss':>9}")
    for v, p, layers in sorted(baseline):
        print(f"homogeneous {short(layers):<22} {p:>8} {v:>9.4f}")
    for v, p, layers in sorted(nas)[:5]:
        print(f"searched    {short(layers):<22} {p:>8} {v:>9.4f}")
    win = best_n is not None and best_n[0] < best_h[0]
    print(f"best homogeneous: {short(best_h[2])} {best_h[0]:.4f} ({best_h[1]} params); best searched at <= its size: "
          + ("none" if best_n is None else f"{short(best_n[2])} {best_n[0]:.4f} ({best_n[1]} params)")
          + f" -> {'lower' if win else 'not lower'}{' (heterogeneous)' if heterogeneous else ''}")
    result = {"bench": "nas_lm", "steps": args.steps, "trials": args.trials, "algorithm": args.algorithm,
              "best_homogeneous": {"layers": best_h[2], "params": best_h[1], "val_loss": best_h[0]},
              "best_searched": None if best_n is None else {"layers": best_n[2], "params": best_n[1], "val_loss": best_n[0]},
              "searched_beats_homogeneous": win, "winner_is_heterogeneous": heterogeneous,
              "elapsed_s": round(time.time() - t0, 1)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
