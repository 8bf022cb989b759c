"""Population Based Training against the best fixed learning rate at the same total compute, with
Ray Tune's PopulationBasedTraining on the same task and budget as an anchor.

    nice python bench/bench_pbt.py [--tasks lm,cnn] [--seeds 0,1,2] [--ray-seeds 0] [--quick] [--skip-ray]
                                   [--interval K] [--quantile Q] [--skip pb2,cosine,paired] [--keep DIR]

Per task and seed:

- pbt: our ``algorithm: pbt`` (population P, ``interval`` steps between exploit checks, truncation
  at ``quantile``, explore by x0.8/x1.2 or resampling, ``horizon`` T so nobody exploits at the end)
  over ``lr``, each member training T steps with a constant learning rate between exploits, on the
  simulated backend (the real controller and trainer; exploits restart a member from its parent's
  checkpoint);
- pb2: the same study with ``explore: pb2`` (Population-Based Bandits: the explored learning rate
  maximises GP-UCB over a time-varying GP of the population's recent improvements);
- fixed: our ``random`` algorithm, P trials of T steps each with a fixed learning rate drawn from
  the same prior and the same constant schedule: the same P x T compute;
- fixed (pbt's lrs): P fixed-lr trials with exactly the learning rates PBT's population started from
  (PBT without its exploits: a paired comparison, free of the luck of the draw);
- fixed+cosine: the same draws with the trainer's cosine decay, a hand-made schedule for reference;
- ray-pbt: ``tune.Tuner`` with ``PopulationBasedTraining`` (same P, T, interval, quantile,
  resample probability, factors), started from our PBT's initial learning rates, its function
  trainable running our trainer with checkpoints through ``tune.report(..., checkpoint=...)``.

Figures: each method's final validation loss (best member / best trial at the end of training)
and the compute it spent (optimiser steps or epochs actually trained, re-training after an
exploit included). The learning-rate schedule our PBT found for its best member is printed from
``search.lineage.schedules``. Prints a table and a final JSON line.

Not bit-reproducible: the simulated backend starts all members at once on threads that share
torch's global RNG, so members' initial weights depend on thread timing (the fixed-lr runs, one
trial at a time, are reproducible). PBT's initial draws come from its own stream, so they differ
from the fixed runs' draws over the same prior; "fixed (pbt's lrs)" removes that difference (the
initial weights still differ: on the CNN they move the final loss as much as the learning rate).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for _p in (HERE, REPO):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench_multifidelity import prepare, start_ray, tune_trainable  # noqa: E402


@dataclass(frozen=True)
class Task:
    name: str
    entrypoint: str
    fixed: dict[str, Any]
    budget_key: str
    steps: int  # T: each member's (each fixed trial's) budget
    lr_low: float
    lr_high: float
    population: int  # P
    interval: int
    unit: str
    quantile: float = 0.25


def tasks(quick: bool) -> dict[str, Task]:
    if quick:
        return {
            "lm": Task("lm", "builtin:lm",
                       {"context": 16, "width": 16, "layers": 1, "batch_size": 4, "eval_tokens": 256,
                        "eval_every": 2, "checkpoint_every": 2, "corpus_bytes": 1 << 16, "warmup": 0},
                       "steps", 8, 1e-3, 1e-1, 4, 4, "steps"),
            "cnn": Task("cnn", "builtin:classifier",
                        {"model": "cnn", "data": "digits", "channels": 4, "checkpoint_every": 1},
                        "epochs", 4, 1e-3, 1e-1, 4, 2, "epochs"),
        }
    return {
        # Reports and checkpoints every 20 steps; a member is ready every 40.
        "lm": Task("lm", "builtin:lm",
                   {"context": 64, "width": 64, "layers": 2, "batch_size": 16, "eval_tokens": 4096,
                    "eval_every": 20, "checkpoint_every": 20},
                   "steps", 200, 1e-4, 1e-1, 8, 40, "steps"),
        "cnn": Task("cnn", "builtin:classifier",
                    {"model": "cnn", "data": "digits", "channels": 8, "layers": 2, "optimizer": "sgd",
                     "checkpoint_every": 1},
                    "epochs", 24, 1e-3, 1.0, 8, 4, "epochs"),
    }


@dataclass
class Outcome:
    method: str
    final: float  # best member's / best trial's val_loss at the end of training
    compute: int
    wall_s: float
    detail: dict[str, Any]


def _space(task: Task) -> dict[str, Any]:
    return {"lr": {"type": "float", "low": task.lr_low, "high": task.lr_high, "log": True}}


def _params(task: Task, schedule: str) -> dict[str, Any]:
    return {**task.fixed, task.budget_key: task.steps, "schedule": schedule}


def trained(st, trials) -> int:
    """Resource actually trained: per attempt, its last report's step minus where it started (0, or
    the step of the parent checkpoint an exploit restarted it from)."""
    total = 0
    for t in trials:
        starts = {0: 0}
        for ck in st.get_checkpoints(t.id):
            if ck.attempt > 0:
                starts[ck.attempt] = min(starts.get(ck.attempt, ck.step), ck.step)
        last: dict[int, int] = {}
        for r in st.get_reports(t.id):
            last[r.attempt] = max(last.get(r.attempt, 0), r.step)
        total += sum(max(0, step - starts.get(a, 0)) for a, step in last.items())
    return total


def run_pbt(task: Task, seed: int, workdir: str, explore: str = "perturb") -> Outcome:
    import search
    from search.lineage import schedules
    from storage import open_storage

    method = "pbt" if explore == "perturb" else explore
    name = f"{task.name}-{method}-s{seed}"
    url = f"sqlite:///{os.path.join(workdir, 'ours.db')}"
    spec = {
        "name": name, "objective": {"metric": "val_loss", "direction": "minimize"},
        "trial": {"entrypoint": task.entrypoint, "params": _params(task, "constant")},
        "space": _space(task),
        "algorithm": {"name": "pbt", "seed": seed, "population": task.population, "interval": task.interval,
                      "quantile": task.quantile, "resample_probability": 0.25, "perturbation_factors": [0.8, 1.2],
                      "explore": explore, "horizon": task.steps},
        "budget": {"trials": task.population, "parallel": task.population},
        "backend": {"name": "simulated"}, "artifacts": os.path.join(workdir, "artifacts"),
    }
    t0 = time.perf_counter()
    summary = search.run(spec, storage=url)
    wall = time.perf_counter() - t0
    with open_storage(url) as st:
        study = st.get_study(name)
        trials = st.get_trials(study.id)
        exploits = st.get_exploits(study.id)
        compute = trained(st, trials)
    done = [t for t in trials if t.values is not None]
    if summary.complete != task.population or len(done) != task.population:
        raise RuntimeError(f"{name}: {summary.complete} of {task.population} members completed")
    best = min(done, key=lambda t: t.value)
    sched = schedules(trials, exploits)
    # A member's own first draw: before its first exploit (its lineage starts with its parent's).
    first = {}
    for e in sorted(exploits, key=lambda e: e.id):
        first.setdefault(e.number, e.params_before)
    initial = [first.get(t.number, t.params)["lr"] for t in sorted(trials, key=lambda t: t.number)]
    return Outcome(method, float(best.value), compute, wall, {
        "best_member": best.number, "exploits": len(exploits), "initial_lrs": initial,
        "schedule": [{"from_step": s["from_step"], "lr": s["params"]["lr"]} for s in sched[best.number]],
        "members_final": sorted(float(t.value) for t in done),
    })


def run_fixed(task: Task, seed: int, workdir: str, schedule: str, lrs: list[float] | None = None) -> Outcome:
    """P fixed-lr trials: the random algorithm's draws from the prior, or with ``lrs`` exactly those
    learning rates, in order (trial i gets lrs[i] and the trial seed of PBT's member i)."""
    import search
    from storage import open_storage

    method = ("fixed" if schedule == "constant" else f"fixed+{schedule}") + ("" if lrs is None else " (pbt's lrs)")
    name = f"{task.name}-fixed-{schedule}-{'own' if lrs is None else 'pbt'}-s{seed}"
    url = f"sqlite:///{os.path.join(workdir, 'ours.db')}"
    spec = {
        "name": name, "objective": {"metric": "val_loss", "direction": "minimize"},
        "trial": {"entrypoint": task.entrypoint,
                  "params": {**_params(task, schedule), "checkpoint_every": 0, "checkpoint_final": False}},
        "space": _space(task) if lrs is None else {"lr": {"type": "categorical", "choices": list(lrs)}},
        "algorithm": {"name": "random", "seed": seed} if lrs is None else {"name": "grid", "seed": seed},
        "budget": {"trials": task.population, "parallel": 1},
        "backend": {"name": "simulated"}, "artifacts": os.path.join(workdir, "artifacts"),
    }
    t0 = time.perf_counter()
    search.run(spec, storage=url)
    wall = time.perf_counter() - t0
    with open_storage(url) as st:
        trials = st.get_trials(st.get_study(name).id)
        compute = trained(st, trials)
    done = [t for t in trials if t.values is not None]
    if len(done) != task.population:
        raise RuntimeError(f"{name}: {len(done)} of {task.population} trials completed")
    best = min(done, key=lambda t: t.value)
    return Outcome(method, float(best.value), compute, wall,
                   {"best_lr": best.params["lr"], "lrs": sorted(t.params["lr"] for t in done)})


def run_ray_pbt(task: Task, seed: int, initial_lrs: list[float], workdir: str) -> Outcome:
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    from search.controller import trial_seed

    pbt = PopulationBasedTraining(
        time_attr="step", perturbation_interval=task.interval, quantile_fraction=task.quantile,
        resample_probability=0.25, perturbation_factors=(1.2, 0.8),
        hyperparam_mutations={"lr": tune.loguniform(task.lr_low, task.lr_high)},
    )
    members = [{"lr": lr, "_member": i, "_seed": trial_seed(seed, i)} for i, lr in enumerate(initial_lrs)]
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # The prior is only drawn by PBT's resampling; the population starts from our PBT's draws.
    param_space = {"lr": tune.loguniform(task.lr_low, task.lr_high),
                   "_member": tune.choice(list(range(len(members)))),
                   "_seed": tune.choice([m["_seed"] for m in members]),
                   "_entrypoint": task.entrypoint, "_data_seed": seed,
                   "_fixed": {**_params(task, "constant")}}
    # All members at once (fractional CPUs), so PBT never pauses one to make room for another.
    trainable = tune.with_resources(tune_trainable, {"cpu": 2.0 / len(members)})
    tuner = tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", scheduler=pbt, num_samples=len(members),
                                    search_alg=BasicVariantGenerator(points_to_evaluate=members)),
        run_config=tune.RunConfig(storage_path=os.path.join(workdir, "tune"), name=f"{task.name}-pbt-s{seed}",
                                  verbose=0),
    )
    t0 = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - t0
    finals, compute = [], 0
    for r in results:
        if r.error is not None:
            raise RuntimeError(f"ray tune trial failed: {r.error}")
        df = r.metrics_dataframe
        compute += int(df["trained"].sum())
        finals.append(float(r.metrics["val_loss"]))
    return Outcome("ray-pbt", min(finals), compute, wall, {"members_final": sorted(finals)})


def _schedule_text(schedule: list[dict[str, Any]], total: int, unit: str) -> str:
    parts = []
    # An exploit at the last step copies a finished parent: a segment with nothing left to train.
    schedule = [seg for seg in schedule if seg["from_step"] < total]
    for i, seg in enumerate(schedule):
        end = schedule[i + 1]["from_step"] if i + 1 < len(schedule) else total
        parts.append(f"{unit} {seg['from_step'] + 1}-{end}: lr {seg['lr']:.3g}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="lm,cnn", help="comma-separated: lm, cnn")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated study seeds")
    ap.add_argument("--ray-seeds", default=None, help="seeds that also run Ray Tune's PBT (default: all)")
    ap.add_argument("--quick", action="store_true", help="tiny budgets: checks the pipeline end to end")
    ap.add_argument("--skip-ray", action="store_true", help="leave out Ray Tune's PBT")
    ap.add_argument("--interval", type=int, default=None, help="steps between exploit checks (default: the task's)")
    ap.add_argument("--quantile", type=float, default=None, help="truncation quantile (default: 0.25)")
    ap.add_argument("--skip", default="", help="comma-separated methods to leave out: pb2, cosine (fixed+cosine), "
                    "paired (fixed (pbt's lrs))")
    ap.add_argument("--keep", default=None, metavar="DIR",
                    help="keep the study database and checkpoints in DIR (default: a temporary folder)")
    args = ap.parse_args(argv)
    all_tasks, names = prepare(args, tasks)
    for opt, value in (("interval", args.interval), ("quantile", args.quantile)):
        if value is not None:
            all_tasks = {n: dataclasses.replace(t, **{opt: value}) for n, t in all_tasks.items()}
    seeds = [0] if args.quick and args.seeds == "0,1,2" else [int(s) for s in args.seeds.split(",") if s]
    ray_seeds = set(seeds if args.ray_seeds is None else (int(s) for s in args.ray_seeds.split(",") if s))
    ray_seeds &= set(seeds)  # no Ray cluster for seeds that are not run
    if args.skip_ray:
        ray_seeds = set()
    if ray_seeds:
        start_ray()
    result: dict[str, Any] = {"bench": "pbt", "quick": args.quick, "seeds": seeds, "cpus": os.cpu_count(),
                              "tasks": {}}
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - {"pb2", "cosine", "paired"}
    if unknown:
        ap.error(f"--skip: unknown method(s) {', '.join(sorted(unknown))}; choose from pb2, cosine, paired")
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory(prefix="bench-pbt-")) as wd:
        for name in names:
            task = all_tasks[name]
            rows: dict[int, dict[str, Outcome]] = {}
            for seed in seeds:
                pbt = run_pbt(task, seed, wd)
                runs = {"pbt": pbt}
                if "pb2" not in skip:
                    runs["pb2"] = run_pbt(task, seed, wd, explore="pb2")
                runs["fixed"] = run_fixed(task, seed, wd, "constant")
                if "cosine" not in skip:
                    runs["fixed+cosine"] = run_fixed(task, seed, wd, "cosine")
                if "paired" not in skip:
                    runs["fixed (pbt's lrs)"] = run_fixed(task, seed, wd, "constant", lrs=pbt.detail["initial_lrs"])
                if seed in ray_seeds:
                    runs["ray-pbt"] = run_ray_pbt(task, seed, pbt.detail["initial_lrs"], wd)
                rows[seed] = runs
                print(f"[{name} seed {seed} done]", flush=True)
            print(f"\n== {name}: population {task.population} x {task.steps} {task.unit}, interval "
                  f"{task.interval}, quantile {task.quantile}, lr prior log-uniform [{task.lr_low:g}, {task.lr_high:g}]")
            print(f"{'seed':>4} {'method':<18} {'final val_loss':>14} {'compute':>8} {'wall s':>7}  note")
            out: dict[str, Any] = {"population": task.population, "steps": task.steps, "unit": task.unit,
                                   "interval": task.interval, "quantile": task.quantile, "seeds": {}}
            for seed, runs in rows.items():
                for method, o in runs.items():
                    note = ""
                    if method in ("pbt", "pb2"):
                        note = f"best member {o.detail['best_member']}, {o.detail['exploits']} exploits"
                    elif method.startswith("fixed"):
                        note = f"best lr {o.detail['best_lr']:.3g}"
                    print(f"{seed:>4} {method:<18} {o.final:>14.4f} {o.compute:>8} {o.wall_s:>7.1f}  {note}")
                for m in ("pbt", "pb2"):
                    if m not in runs:
                        continue
                    print(f"     {m} best member's lr schedule: "
                          f"{_schedule_text(runs[m].detail['schedule'], task.steps, task.unit)}")
                out["seeds"][str(seed)] = {m: {"final_val_loss": o.final, "compute": o.compute,
                                               "wall_s": round(o.wall_s, 1), **o.detail} for m, o in runs.items()}
                out["seeds"][str(seed)]["pbt_beats_fixed"] = runs["pbt"].final < runs["fixed"].final
                if "pb2" in runs:
                    out["seeds"][str(seed)]["pb2_beats_fixed"] = runs["pb2"].final < runs["fixed"].final
            methods = list(next(iter(rows.values())))
            out["mean"] = {}
            for m in methods:
                vals = [rows[s][m].final for s in rows if m in rows[s]]
                out["mean"][m] = {"final_val_loss": statistics.mean(vals), "n": len(vals),
                                  "compute": statistics.mean(rows[s][m].compute for s in rows if m in rows[s])}
                print(f"mean {m:<18} {out['mean'][m]['final_val_loss']:>14.4f} {out['mean'][m]['compute']:>8.0f}"
                      f"          over {len(vals)} seeds")
            for m in ("pbt", "pb2"):
                if m not in methods:
                    continue
                wins = sum(1 for s in rows if rows[s][m].final < rows[s]["fixed"].final)
                print(f"{m} lower than the best fixed lr in {wins}/{len(rows)} seeds", end="")
                out[f"{m}_wins"] = f"{wins}/{len(rows)}"
                if "fixed (pbt's lrs)" in methods:
                    paired = sum(1 for s in rows if rows[s][m].final < rows[s]["fixed (pbt's lrs)"].final)
                    print(f", than the best of its own initial lrs trained fixed in {paired}/{len(rows)}", end="")
                    out[f"{m}_wins_paired"] = f"{paired}/{len(rows)}"
                print()
            result["tasks"][name] = out
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
