"""Freeze-thaw and ASHA's promotion form against ASHA and random search at equal compute, on the
built-in CNN on digits.

    nice python bench/bench_freeze_thaw.py [--seeds 0] [--trials N] [--draws K]
                                           [--methods asha,freeze-thaw] [--protocol budget|configs|both]
                                           [--quick]

The question (as in bench_multifidelity.py, whose task table and study set-up this imports): how
much compute does each method spend before it first reaches the best validation loss X that
random search reaches with its full budget (N trials trained to max_resource)?

Equal compute (``--protocol budget``, the default). Random search's total compute B = N x
max_resource is every method's budget. The schedulers (same rungs: min_resource,
reduction_factor, max_resource) draw from the same seeded stream of configurations as random
search (its N first, then up to K x N in all) and are stopped once they have trained B. Trials run
one at a time on the simulated backend (each report answered before training goes on), so a
method's run cut at B is exactly the run a budget B gives.

Same configurations (``--protocol configs``): both schedulers over random search's N
configurations only, run to the end; they reach X only if they carry the trial that reaches it
far enough.

``--methods`` picks the schedulers beside random search: ``asha`` (stopping form),
``asha-promotion`` (ASHA's promotion form, ``type: promotion``: pause at a rung, promote later),
``hyperband`` and ``hyperband-promotion`` (brackets by trial number, each an ASHA of that form),
``freeze-thaw``.

The pausing methods (freeze-thaw and the promotion forms) train with a checkpoint every epoch
(keep_last: 1) so that a thawed trial resumes where it was paused; the trainer resumes exactly
(tests/search/test_freeze_thaw.py checks that a thawed trial reports the very losses of an
uninterrupted one), so checkpointing changes no curve.
Compute is resource actually trained (epochs), counted report by report in the order the reports
happened: a thawed trial's first report after the thaw costs the epochs since its pause. "To reach
X" is the compute spent until a report first has val_loss <= X (relative tolerance 1e-6).

Two readings of "the best validation loss random search reaches", both printed:
- any report (the default, column "to reach X"): X is the lowest val_loss of any of random
  search's reports, every epoch of every trial, and a method reaches it with any report;
- study value (column "to finish X_f"): X_f is random search's best trial value, what `search
  best` prints (a trial's value is its val_loss at max_resource), and a method reaches it when a
  trial of its own ends at max_resource with val_loss <= X_f: the compute until the method's study
  holds a trial as good as random search's best.
Prints a table, ratios of sums over the seeds where a method reached the target, and a final JSON
line.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Any

from bench_multifidelity import TOLERANCE, prepare, study, tasks


# Scheduler settings of each method, over bench_multifidelity's ASHA rungs.
METHODS: dict[str, dict[str, Any]] = {"asha": {}, "asha-promotion": {"type": "promotion"},
                                      "hyperband": {"name": "hyperband"},
                                      "hyperband-promotion": {"name": "hyperband", "type": "promotion"},
                                      "freeze-thaw": {"name": "freeze-thaw"}}
PAUSING = {"asha-promotion", "hyperband-promotion", "freeze-thaw"}


@dataclass
class Run:
    """One method's run: its reports in the order they happened, as (trial, step, val_loss)."""

    method: str
    reports: list[tuple[int, int, float]]
    wall_s: float
    configs: list[dict[str, Any]]

    @property
    def thaws(self) -> int:
        """Times a trial reported again after other trials had (one trial runs at a time)."""
        seen, last, n = set(), None, 0
        for number, _, _ in self.reports:
            if number != last and number in seen:
                n += 1
            seen.add(number)
            last = number
        return n

    def costs(self) -> list[tuple[int, int, float]]:
        """Each report with the compute it cost: the epochs since the trial's previous report."""
        prev: dict[int, int] = {}
        out = []
        for number, step, loss in self.reports:
            cost = step - prev.get(number, 0)
            if cost <= 0:
                raise RuntimeError(f"{self.method}: trial {number} reported step {step} after "
                                   f"{prev[number]}: it restarted instead of resuming")
            prev[number] = step
            out.append((cost, number, loss))
        return out

    @property
    def compute(self) -> int:
        return sum(c for c, _, _ in self.costs())

    @property
    def best(self) -> float:
        return min(loss for _, _, loss in self.reports)

    def cut(self, budget: int) -> "Run":
        """The reports that fit in ``budget`` (the run ends at the first one past it)."""
        kept, spent = [], 0
        for (cost, _, _), rep in zip(self.costs(), self.reports):
            if spent + cost > budget:
                break
            spent += cost
            kept.append(rep)
        return replace(self, reports=kept)

    def best_at(self, step: int) -> float | None:
        """The best val_loss reported at ``step`` or later: the best trial value once trials end there."""
        return min((loss for _, s, loss in self.reports if s >= step), default=None)

    def compute_to_reach(self, target: float, at_step: int = 0) -> int | None:
        """Compute spent until a report at ``at_step`` or later first has val_loss <= target."""
        spent = 0
        for (cost, _, loss), (_, step, _) in zip(self.costs(), self.reports):
            spent += cost
            if step >= at_step and loss <= target + TOLERANCE * abs(target):
                return spent
        return None


def run_method(task, seed: int, workdir: str, method: str, trials: int, budget: int | None) -> Run:
    """Run ``method`` (random or one of METHODS) with ``trials`` draws; stop once it has
    trained ``budget`` epochs (None: run to the end)."""
    import search

    name = f"{task.name}-{method}-n{trials}-s{seed}"
    db = os.path.join(workdir, f"{name}.db")
    spec = study(task, seed, name, os.path.join(workdir, "artifacts"), method != "random", trials)
    if method != "random":
        spec["scheduler"] = {**spec["scheduler"], **METHODS[method]}
    if method in PAUSING:
        spec["trial"]["params"] = {**spec["trial"]["params"], "checkpoint_every": 1}
        spec["checkpoints"] = {"keep_last": 1}
    con = sqlite3.connect(db, check_same_thread=False) if budget is not None else None

    def stop_at_budget(progress) -> None:
        # Epochs trained so far: a paused or stopped trial's last step (thaws resume from it).
        if progress.final or con is None:
            return
        spent = con.execute("SELECT COALESCE(SUM(last_step), 0) FROM trials").fetchone()[0]
        if spent >= budget:
            raise KeyboardInterrupt

    t0 = time.perf_counter()
    search.run(spec, storage=f"sqlite:///{db}", on_progress=stop_at_budget if budget is not None else None)
    wall = time.perf_counter() - t0
    if con is not None:
        con.close()
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT t.number, r.step, r.metrics FROM reports r JOIN trials t ON t.id = r.trial_id "
                           "ORDER BY r.id").fetchall()
        configs = [json.loads(p) for (p,) in con.execute("SELECT params FROM trials ORDER BY number")]
    finally:
        con.close()
    metrics = [(n, s, json.loads(m)) for n, s, m in rows]
    reports = [(n, s, float(m["val_loss"])) for n, s, m in metrics if m.get("val_loss") is not None]
    return Run(method, reports, wall, configs)


def _fmt(v: float | int | None, nd: int = 0) -> str:
    if v is None:
        return "never"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0", help="comma-separated study seeds")
    ap.add_argument("--trials", type=int, default=None, help="N, random search's trials (default: the task's)")
    ap.add_argument("--draws", type=int, default=12, metavar="K", help="the schedulers draw up to K x N configurations")
    ap.add_argument("--methods", default="asha,freeze-thaw",
                    help=f"schedulers run beside random search, comma-separated: {', '.join(METHODS)}")
    ap.add_argument("--min-resource", type=int, default=None, help="first rung instead of the task's (1 epoch)")
    ap.add_argument("--protocol", choices=["budget", "configs", "both"], default="budget",
                    help="equal compute (K x N draws cut at B), random's N configurations, or both")
    ap.add_argument("--quick", action="store_true", help="tiny budgets: checks the pipeline end to end")
    args = ap.parse_args(argv)
    args.tasks = "cnn"
    all_tasks, _ = prepare(args, tasks)
    task = all_tasks["cnn"]
    n = args.trials or task.trials
    if n < 1 or args.draws < 1:
        raise SystemExit(f"--trials and --draws must be >= 1, got {n} and {args.draws}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise SystemExit(f"--methods: expected some of {', '.join(METHODS)}, got {args.methods!r}")
    result: dict[str, Any] = {"bench": "freeze_thaw", "task": "cnn", "quick": args.quick, "trials": n,
                              "max_resource": task.max_resource, "min_resource": task.min_resource,
                              "reduction_factor": task.eta, "seeds": {}, "cpus": os.cpu_count()}
    print(f"== cnn on digits: random N={n} trials x {task.max_resource} epochs = budget B; rungs from "
          f"{task.min_resource} x{task.eta}; compute in epochs")
    print(f"{'seed':>4} {'method':<24} {'best val_loss':>13} {'compute':>7} {'configs':>7} {'thaws':>5} "
          f"{'to reach X':>10} {'random/method':>13} {'to finish X_f':>13} {'random/method':>13} {'wall s':>7}")
    # method -> reading -> per seed (random's compute, the method's; None where it never reached)
    per_method: dict[str, dict[str, list[tuple[int, int | None]]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ft-") as wd:
        for seed in seeds:
            runs = {"random": run_method(task, seed, wd, "random", n, None)}
            budget = runs["random"].compute
            for method in methods:
                if args.protocol == "configs":
                    runs[f"{method} (N configs)"] = run_method(task, seed, wd, method, n, None)
                    continue
                full = run_method(task, seed, wd, method, n * args.draws, budget)
                if full.configs[:n] != runs["random"].configs[:n]:
                    raise RuntimeError(f"seed {seed}: {method} drew other configurations than random search")
                if full.compute < budget:
                    print(f"warning: seed {seed}: {method} spent {full.compute} < B={budget} over "
                          f"{n * args.draws} draws; raise --draws", flush=True)
                runs[f"{method}@B"] = replace(full.cut(budget), method=f"{method}@B")
                if args.protocol == "both":
                    runs[f"{method} (N configs)"] = run_method(task, seed, wd, method, n, None)
            r_max = task.max_resource
            target, target_f = runs["random"].best, runs["random"].best_at(r_max)
            base = runs["random"].compute_to_reach(target)
            base_f = runs["random"].compute_to_reach(target_f, r_max)
            seed_out: dict[str, Any] = {"budget": budget, "target_val_loss": target,
                                        "target_final_val_loss": target_f}
            for method, run in runs.items():
                ctr, ctf = run.compute_to_reach(target), run.compute_to_reach(target_f, r_max)
                ratio = None if ctr is None or base is None else base / ctr
                ratio_f = None if ctf is None or base_f is None else base_f / ctf
                readings = per_method.setdefault(method, {"any report": [], "study value": []})
                readings["any report"].append((base, ctr))
                readings["study value"].append((base_f, ctf))
                configs = len({num for num, _, _ in run.reports})
                seed_out[method] = {"best_val_loss": run.best, "compute": run.compute, "configs": configs,
                                    "thaws": run.thaws, "compute_to_reach": ctr, "random_over_method": ratio,
                                    "best_final_val_loss": run.best_at(r_max), "compute_to_finish": ctf,
                                    "random_over_method_final": ratio_f, "wall_s": round(run.wall_s, 1)}
                print(f"{seed:>4} {method:<24} {run.best:>13.4f} {run.compute:>7} {configs:>7} {run.thaws:>5} "
                      f"{_fmt(ctr):>10} {_fmt(ratio, 2):>13} {_fmt(ctf):>13} {_fmt(ratio_f, 2):>13} "
                      f"{run.wall_s:>7.1f}", flush=True)
            result["seeds"][str(seed)] = seed_out
    result["summary"] = {}
    for method, readings in per_method.items():
        out = result["summary"][method] = {}
        for reading, pairs in readings.items():
            reached = [(b, c) for b, c in pairs if b is not None and c is not None]
            out[reading] = {"reached": f"{len(reached)}/{len(pairs)}",
                            "ratio_of_sums": sum(b for b, _ in reached) / sum(c for _, c in reached) if reached else None,
                            "median_ratio": statistics.median(b / c for b, c in reached) if reached else None}
            print(f"{method:<24} {reading:<12} random/method: ratio of sums {_fmt(out[reading]['ratio_of_sums'], 2)}, "
                  f"median {_fmt(out[reading]['median_ratio'], 2)} (reached in {out[reading]['reached']} seeds)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
