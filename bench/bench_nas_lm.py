"""NAS over the heterogeneous LM space on real training: does search find an architecture with a
lower validation loss than the best homogeneous one, at equal or smaller parameter count?

    python bench/bench_nas_lm.py [--layers 4] [--widths 32,48] [--ffn-mult 2,4] [--kernels 3,7,15,31]
                                 [--steps 1600] [--trials 30] [--algorithm boshnas] [--cap] [--repeats 1]
                                 [--confirm-seeds 1,2,3]
                                 [--jobs 2] [--device auto] [--precision auto] [--quick]
    python bench/bench_nas_lm.py --check "c48f4k3 c48f4k7 c48f4k15 c48f4k31" --against "c48f4k15 x4"

1. Baseline: every homogeneous model of the space (all layers alike: each op x width x FFN size x
   depth of the space) is trained with seed 0 (seeds 0..K-1 with ``--repeats K``).
2. Search: a study searches the `lm-layers` space (each layer picks its op, width, heads, FFN
   size and, for conv layers, kernel size, FlexiBERT-style) for ``--trials`` trials, seed 0, on the
   in-process backend. ``--kernels ''`` leaves kernel sizes out of the space (conv kernel 7).
   ``--cap`` trains the baseline first and searches only architectures with at most the best
   homogeneous model's non-embedding parameters (the space's ``max_params``), so the search spends
   its trials on candidates for the size-for-size question (embeddings follow the first layer's
   width, so a searched model whose first layer is wider than the best homogeneous model's can
   still exceed it in total; step 3 leaves it out).
   ``--repeats K`` trains every baseline model and every search trial on seeds 0..K-1 and ranks
   them by the mean (K trainings at once, one per process when ``--jobs`` allows): the ranking
   sees 1/sqrt(K) of one run's seed noise.
3. Candidates: the best homogeneous model, and the best searched heterogeneous model whose
   parameter count is at most the best homogeneous model's.
4. Confirmation: both are retrained on fresh seeds (``--confirm-seeds``: new weights and batch
   order; same data split). Both candidates were picked as the minimum of noisy seed-0 runs, so only
   the fresh seeds compare them without that bias. The heterogeneous model wins when its mean over
   the fresh seeds is lower by more than twice the standard error of the paired (same-seed)
   differences.

``--check A --against B`` skips the baseline and the search: it trains two given architectures (in
the layer code the table prints; ``x4`` repeats the one layer given) on the fresh seeds and prints
the same paired verdict. It checks a hand-picked hypothesis; it is not a search result.

Byte-level LM on the Python standard library's sources (CPU unless ``--device`` says otherwise);
every model gets the same lr, schedule, steps, batch size, context and data split. Trials run in
``--jobs`` processes (one thread each): the baseline beside the search, the confirmation runs side
by side; results do not depend on it. Prints a table and a JSON line.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

OPS = ["attention", "linear", "conv"]


def _ints(text: str, flag: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",")]
    except ValueError:
        raise SystemExit(f"error: {flag}: expected comma-separated integers, got {text!r}") from None
    if not out or any(v < 0 for v in out):
        raise SystemExit(f"error: {flag}: expected integers >= 0, got {text!r}")
    return out


def short(layers: list[dict]) -> str:
    """``c64f2k7`` = conv, width 64, FFN 2x width, kernel 7; ``a``/``l`` = softmax/linear attention."""
    return " ".join(f"{layer['op'][0]}{layer['width']}f{layer['ffn'] // layer['width']}"
                    + (f"k{layer['kernel']}" if "kernel" in layer else "") for layer in layers)


def parse_short(code: str, heads: int) -> list[dict]:
    """The inverse of ``short``: ``"c48f4k15 a48f2"`` -> layer dicts; ``"c48f4k15 x4"`` repeats
    the layer before ``x4``. Attention layers get ``heads`` heads."""
    import re

    layers: list[dict] = []
    for tok in code.split():
        rep = re.fullmatch(r"x(\d+)", tok)
        if rep and layers:
            layers += [dict(layers[-1]) for _ in range(int(rep.group(1)) - 1)]
            continue
        m = re.fullmatch(r"([alc])(\d+)f(\d+)(?:k(\d+))?", tok)
        if m is None:
            raise SystemExit(f"error: layer code {tok!r}: expected e.g. c48f4k15, a48f2, l32f4 or x4")
        op = {"a": "attention", "l": "linear", "c": "conv"}[m.group(1)]
        width, mult = int(m.group(2)), int(m.group(3))
        layer: dict = {"op": op, "width": width, "ffn": width * mult}
        if op == "attention":
            layer["heads"] = heads
        if m.group(4):
            if op != "conv":
                raise SystemExit(f"error: layer code {tok!r}: only conv layers (c...) take a kernel size")
            layer["kernel"] = int(m.group(4))
        layers.append(layer)
    if not layers:
        raise SystemExit(f"error: empty layer code {code!r}")
    return layers


def train_one(layers: list[dict], seed: int, fixed: dict, workdir: str, name: str) -> tuple[float, int]:
    """Train one architecture with one seed, as a one-trial study of its own (a layer list is not a
    categorical choice, so it cannot be one trial of a shared study); (val_loss, params)."""
    import torch

    torch.set_num_threads(1)
    import search
    from storage import open_storage

    url = f"sqlite:///{workdir}/{name}.db"
    search.run({"name": name, "objective": {"metric": "val_loss", "direction": "minimize"},
                "backend": {"name": "inprocess"}, "artifacts": workdir, "space": {},
                "algorithm": {"name": "random", "seed": 0}, "budget": {"trials": 1, "parallel": 1},
                "trial": {"entrypoint": "builtin:lm", "params": {**fixed, "layers": layers, "seed": seed}}},
               storage=url)
    with open_storage(url) as st:
        [t] = st.get_trials(st.get_study(name).id)
    if t.value is None:
        raise RuntimeError(f"training {short(layers)} (seed {seed}) failed: {t.state} {t.error}")
    return t.value, int(t.metrics["params"])


def mean_of_seeds(config: dict, reporter) -> dict:
    """Search entrypoint for ``--repeats``: train the trial's architecture on each of
    ``repeat_seeds`` (side by side in ``repeat_jobs`` processes) and report the mean val_loss."""
    seeds, jobs, wd = config["repeat_seeds"], config["repeat_jobs"], config["repeat_dir"]
    fixed = {k: v for k, v in config.items() if not k.startswith("repeat_") and k != "layers"}
    tag = f"t{reporter.spec.trial_id}a{reporter.spec.attempt}"
    runs = train_side_by_side([(config["layers"], s, f"rep-{tag}-s{s}") for s in seeds], fixed, wd, jobs)
    out = {"val_loss": statistics.fmean(v for v, _ in runs), "params": float(runs[0][1])}
    out.update({f"val_loss_seed{s}": v for s, (v, _) in zip(seeds, runs)})
    return out


def seed_means(jobs: list[tuple[list[dict], str]], seeds: list[int], fixed: dict, wd: str, n: int) -> list:
    """Each architecture trained on every seed (all side by side in ``n`` processes): (mean val_loss,
    params) per architecture, in order."""
    flat = [(layers, s, f"{name}-s{s}") for layers, name in jobs for s in seeds]
    runs = train_side_by_side(flat, fixed, wd, n)
    k = len(seeds)
    return [(statistics.fmean(v for v, _ in runs[i * k:(i + 1) * k]), runs[i * k][1]) for i in range(len(jobs))]


def pool(n: int) -> ProcessPoolExecutor | None:
    # Processes, not threads: every trial seeds torch's global generator, which threads share.
    return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) if n > 0 else None


def train_all(jobs: list[tuple[list[dict], int, str]], fixed: dict, wd: str, executor) -> list:
    """Results in order: (val_loss, params) when ``executor`` is None, else futures of them."""
    if executor is None:
        return [train_one(layers, seed, fixed, wd, name) for layers, seed, name in jobs]
    return [executor.submit(train_one, layers, seed, fixed, wd, name) for layers, seed, name in jobs]


def train_side_by_side(jobs: list[tuple[list[dict], int, str]], fixed: dict, wd: str, n: int) -> list:
    """``train_all`` in ``n`` processes (here when n is 1), waiting for all: (val_loss, params) in order."""
    executor = pool(n if n > 1 else 0)
    runs = [(r.result() if executor else r) for r in train_all(jobs, fixed, wd, executor)]
    if executor is not None:
        executor.shutdown()
    return runs


def verdict(seeds: list[int], homo: list[float], searched: list[float]) -> dict:
    """Fresh-seed comparison: a win needs the mean paired (same-seed) difference below zero by more
    than twice its standard error; one seed gives no error estimate, so no verdict."""
    diffs = [n - h for n, h in zip(searched, homo)]
    mean_d = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
    return {"seeds": seeds, "homogeneous": homo, "searched": searched, "homogeneous_mean": statistics.fmean(homo),
            "searched_mean": statistics.fmean(searched), "mean_difference": mean_d, "se_difference": se,
            "win": se is not None and mean_d < 0 and -mean_d > 2 * se}


def describe(c: dict) -> str:
    return (f"fresh seeds {c['seeds']}: homogeneous " + " ".join(f"{v:.4f}" for v in c["homogeneous"])
            + f" (mean {c['homogeneous_mean']:.4f}); searched " + " ".join(f"{v:.4f}" for v in c["searched"])
            + f" (mean {c['searched_mean']:.4f}); difference {c['mean_difference']:+.4f} "
            + ("" if c["se_difference"] is None else f"+- {c['se_difference']:.4f} (SE) ")
            + f"-> {'WIN' if c['win'] else 'no significant win'}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="4", help="depth range MIN,MAX (or one depth)")
    ap.add_argument("--widths", default="32,48")
    ap.add_argument("--ffn-mult", default="2,4")
    ap.add_argument("--heads", default="2")
    ap.add_argument("--kernels", default="3,7,15,31", help="conv kernel sizes ('' : none, the trainer's 7)")
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--algorithm", default="boshnas")
    ap.add_argument("--cap", action="store_true",
                    help="train the baseline first and search only architectures with at most the best "
                         "homogeneous model's non-embedding parameters (the space's max_params)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="K: rank baseline models and search trials by their mean over seeds 0..K-1")
    ap.add_argument("--confirm-seeds", default="1,2,3", help="fresh seeds for the final comparison ('' for none)")
    ap.add_argument("--jobs", type=int, default=2,
                    help="processes: the baseline trains beside the search, the confirmation runs side by side")
    ap.add_argument("--corpus", default=None,
                    help="folder of *.py files to train on (default: this Python's standard library); e.g. a "
                         "copy of another machine's, so two machines train on the same bytes")
    ap.add_argument("--device", default="auto", help="trainer device: auto (a GPU when there is one), cpu, cuda")
    ap.add_argument("--precision", default="auto", help="trainer precision: auto, fp32, bf16")
    ap.add_argument("--quick", action="store_true", help="tiny budget, for a smoke run")
    ap.add_argument("--check", default=None, help="hand-picked architecture (layer code) to compare on fresh seeds")
    ap.add_argument("--against", default=None, help="with --check: the architecture it is compared against")
    args = ap.parse_args(argv)
    if (args.check is None) != (args.against is None):
        raise SystemExit("error: --check and --against go together: give both layer codes")
    if args.quick:
        args.layers, args.widths, args.ffn_mult, args.kernels = "2", "16,24", "2", "3,7"
        args.steps, args.context, args.trials, args.confirm_seeds = 20, 32, 4, str(max(1, args.repeats))
    depth = _ints(args.layers, "--layers")
    if len(depth) == 1:
        depth = depth * 2
    confirm_seeds = _ints(args.confirm_seeds, "--confirm-seeds") if args.confirm_seeds else []
    if args.repeats < 1:
        raise SystemExit(f"error: --repeats: expected an integer >= 1, got {args.repeats}")
    used = set(range(args.repeats))
    if args.check is not None and args.repeats > 1:
        raise SystemExit("error: --repeats ranks the search's candidates; --check compares two given architectures "
                         "on --confirm-seeds only, so leave --repeats out")
    if used & set(confirm_seeds):
        raise SystemExit(f"error: --confirm-seeds: seeds {sorted(used)} chose the candidates; give fresh seeds, "
                         f"e.g. {','.join(str(args.repeats + i) for i in range(3))}")
    import torch

    torch.set_num_threads(1)
    import search
    from search.config import parse_study
    from storage import open_storage

    fixed = {"steps": args.steps, "context": args.context, "batch_size": args.batch_size, "lr": args.lr,
             "eval_every": args.steps, "checkpoint_every": 0, "checkpoint_final": False, "seed": 0,
             "device": args.device, "precision": args.precision}
    if args.corpus is not None:
        if not os.path.isdir(args.corpus):
            raise SystemExit(f"error: --corpus: {args.corpus!r} is not a folder")
        fixed.update(corpus=os.path.abspath(args.corpus), corpus_pattern="*.py")
    space = {"layers": {"type": "lm-layers", "layers": depth, "ops": OPS, "widths": _ints(args.widths, "--widths"),
                        "heads": _ints(args.heads, "--heads"), "ffn_mult": _ints(args.ffn_mult, "--ffn-mult")}}
    if args.kernels:
        space["layers"]["kernels"] = _ints(args.kernels, "--kernels")
    if args.jobs < 1:
        raise SystemExit(f"error: --jobs: expected an integer >= 1, got {args.jobs}")
    t0 = time.time()
    if args.check is not None:
        return check_pair(args, fixed, confirm_seeds, t0)

    with tempfile.TemporaryDirectory() as wd:
        url = f"sqlite:///{wd}/nas-lm.db"
        trial = {"entrypoint": "builtin:lm", "params": fixed}
        if args.repeats > 1:
            trial = {"entrypoint": "bench_nas_lm:mean_of_seeds",
                     "params": {**fixed, "repeat_seeds": list(range(args.repeats)), "repeat_dir": wd,
                                "repeat_jobs": min(args.jobs, args.repeats)}}
        nas_study = {"objective": {"metric": "val_loss", "direction": "minimize"},
                     "backend": {"name": "inprocess"}, "artifacts": wd, "name": "nas", "trial": trial,
                     "space": space, "algorithm": {"name": args.algorithm, "seed": 0},
                     "budget": {"trials": args.trials, "parallel": 1}}
        [arch] = list(parse_study(nas_study).space)
        homo = arch.homogeneous()

        t_search = time.time()
        homo_jobs = [(layers, 0, f"homo-{i}") for i, layers in enumerate(homo)]
        cap = None
        if args.repeats > 1 or args.cap:
            # The baseline trains first, side by side: the cap needs its best model, and with
            # repeats it is ranked by seed means like the search trials.
            means = seed_means([(layers, f"homo-{i}") for i, layers in enumerate(homo)], sorted(used), fixed, wd,
                               args.jobs)
            baseline = [(*r, layers) for r, layers in zip(means, homo)]
            if args.cap:
                cap = arch.params_of(min(baseline, key=lambda r: r[0])[2])
                nas_study["space"] = {"layers": {**space["layers"], "max_params": cap}}
            search.run(nas_study, storage=url)
        else:
            # The baseline trains in jobs - 1 worker processes while the search runs here:
            # neither depends on the other.
            side = pool(args.jobs - 1)
            pending = train_all(homo_jobs, fixed, wd, side)
            search.run(nas_study, storage=url)
            baseline = [(*(r.result() if side else r), layers) for r, layers in zip(pending, homo)]
            if side is not None:
                side.shutdown()
        with open_storage(url) as st:
            nas = [(t.value, int(t.metrics["params"]), t.params["layers"])
                   for t in st.get_trials(st.get_study("nas").id) if t.value is not None]
        t_confirm = time.time()
        best_h = min(baseline, key=lambda r: r[0])
        hetero = [r for r in nas if len({json.dumps(x, sort_keys=True) for x in r[2]}) > 1]
        eligible = [r for r in hetero if r[1] <= best_h[1]]
        best_n = min(eligible, key=lambda r: r[0]) if eligible else None
        # Budget-matched (a FlexiBERT-style size-for-size view): each searched heterogeneous model
        # against the best homogeneous model no larger than it; the lowest-loss one that beats its
        # match at seed 0 is re-checked on the fresh seeds too.
        matched = []
        for r in hetero:
            within = [h for h in baseline if h[1] <= r[1]]
            if within and r[0] < min(within, key=lambda h: h[0])[0]:
                matched.append((r, min(within, key=lambda h: h[0])))
        best_m = min(matched, key=lambda m: m[0][0]) if matched else None
        pairs = {}
        if best_n is not None:
            pairs["main"] = (best_h, best_n)
        if best_m is not None and (best_m[1], best_m[0]) != pairs.get("main"):
            pairs["matched"] = (best_m[1], best_m[0])
        confirmed: dict[str, dict] = {}
        if pairs and confirm_seeds:
            jobs = []
            for tag, (h, n) in pairs.items():
                jobs += [(h[2], s, f"confirm-{tag}-homo-{s}") for s in confirm_seeds]
                jobs += [(n[2], s, f"confirm-{tag}-nas-{s}") for s in confirm_seeds]
            runs = [v for v, _ in train_side_by_side(jobs, fixed, wd, args.jobs)]
            k = len(confirm_seeds)
            for i, tag in enumerate(pairs):
                confirmed[tag] = verdict(confirm_seeds, runs[2 * i * k:(2 * i + 1) * k],
                                         runs[(2 * i + 1) * k:(2 * i + 2) * k])
            if best_m is not None and "matched" not in pairs:  # the same pair as the main comparison
                confirmed["matched"] = confirmed["main"]
        confirm, confirm_m = confirmed.get("main"), confirmed.get("matched")
        t_end = time.time()

    print(f"byte-level LM: {args.steps} steps of {args.batch_size} x {args.context} bytes, lr {args.lr}, device {args.device}, precision {args.precision}; "
          f"space: {depth[0]}-{depth[1]} layers, ops {'/'.join(OPS)}, widths {args.widths}, ffn x{args.ffn_mult}, "
          f"heads {args.heads}, kernels {args.kernels or '7 (fixed)'}; {args.algorithm}, {args.trials} trials")
    print("layer code: a/l/c = softmax attention / linear attention / gated conv, then width, f = FFN multiple, "
          "k = conv kernel")
    ranked_by = "seed 0" if args.repeats == 1 else f"mean of seeds 0-{args.repeats - 1}"
    print(f"{'model (' + ranked_by + ')':<44} {'params':>8} {'val_loss':>9}")
    for v, p, layers in sorted(baseline, key=lambda r: r[0]):
        print(f"homogeneous {short(layers):<32} {p:>8} {v:>9.4f}")
    for v, p, layers in sorted(nas, key=lambda r: r[0])[:8]:
        print(f"searched    {short(layers):<32} {p:>8} {v:>9.4f}")
    win0 = best_n is not None and best_n[0] < best_h[0]
    print(f"{ranked_by}: best homogeneous {short(best_h[2])} {best_h[0]:.4f} ({best_h[1]} params); best searched "
          f"heterogeneous at <= its size: "
          + ("none" if best_n is None else f"{short(best_n[2])} {best_n[0]:.4f} ({best_n[1]} params)")
          + f" -> {'lower' if win0 else 'not lower'}")
    if confirm is not None:
        print("  " + describe(confirm))
    print("budget-matched: best searched heterogeneous model that beats the best homogeneous model no larger "
          "than it: " + ("none" if best_m is None else
                         f"{short(best_m[0][2])} {best_m[0][0]:.4f} ({best_m[0][1]} params) vs {short(best_m[1][2])} "
                         f"{best_m[1][0]:.4f} ({best_m[1][1]} params)"))
    if confirm_m is not None:
        print("  " + describe(confirm_m))
    if cap is not None:
        print(f"search capped at {cap} non-embedding parameters (the best homogeneous model's)")
    print(f"time ({args.jobs} processes): baseline ({len(baseline)} models) and search {t_confirm - t_search:.0f} s, "
          f"confirmation {t_end - t_confirm:.0f} s")

    def row(r):
        return None if r is None else {"layers": r[2], "params": r[1], "val_loss": r[0]}

    result = {"bench": "nas_lm", "device": args.device, "precision": args.precision, "steps": args.steps, "context": args.context, "batch_size": args.batch_size,
              "lr": args.lr, "corpus": args.corpus, "space": space["layers"], "max_params": cap,
              "searched_max_non_embedding": max((arch.params_of(r[2]) for r in nas), default=None),
              "trials": args.trials, "algorithm": args.algorithm, "repeats": args.repeats,
              "n_homogeneous": len(baseline), "best_homogeneous": row(best_h), "best_searched": row(best_n),
              "searched_beats_homogeneous": win0, "winner_is_heterogeneous": best_n is not None,
              "confirmation": confirm, "heterogeneous_wins": bool(confirm and confirm["win"]),
              "budget_matched": None if best_m is None else {"searched": row(best_m[0]), "homogeneous": row(best_m[1]),
                                                             "confirmation": confirm_m},
              "budget_matched_wins": bool(confirm_m and confirm_m["win"]),
              "elapsed_s": round(time.time() - t0, 1)}
    print(json.dumps(result))
    return result


def check_pair(args, fixed: dict, seeds: list[int], t0: float) -> dict:
    """``--check A --against B``: both trained on the fresh seeds side by side; the paired verdict."""
    heads = _ints(args.heads, "--heads")[0]
    cand, base = parse_short(args.check, heads), parse_short(args.against, heads)
    if not seeds:
        raise SystemExit("error: --check needs --confirm-seeds (fresh seeds, e.g. 1,2,3,4,5,6)")
    jobs = [(base, s, f"against-{s}") for s in seeds] + [(cand, s, f"check-{s}") for s in seeds]
    with tempfile.TemporaryDirectory() as wd:
        runs = train_side_by_side(jobs, fixed, wd, args.jobs)
    k = len(seeds)
    result = verdict(seeds, [v for v, _ in runs[:k]], [v for v, _ in runs[k:]])
    params = {"check": runs[k][1], "against": runs[0][1]}
    print(f"hand-picked check, {args.steps} steps: {short(cand)} ({params['check']} params) against "
          f"{short(base)} ({params['against']} params)")
    print("  " + describe(result).replace("homogeneous", "against").replace("searched", "checked"))
    out = {"bench": "nas_lm_check", "steps": args.steps, "corpus": args.corpus, "check": cand, "against": base,
           "params": params,
           "confirmation": result, "elapsed_s": round(time.time() - t0, 1)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
