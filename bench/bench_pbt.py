"""Population Based Training against the best fixed learning rate at the same total compute, and
against Ray Tune's PopulationBasedTraining and PB2 on the same task, seeds, population, interval
and budget.

    nice python bench/bench_pbt.py [--tasks lm,cnn] [--seeds 0,1,2] [--ray-seeds 0] [--quick] [--skip-ray]
                                   [--interval K] [--quantile Q] [--skip pb2,cosine,paired,ray-pb2]
                                   [--keep DIR] [--cache FILE] [--report] [--plot PNG]
                                   [--variants "pbt q=0.125,pb2 q=0.125"]

Every run (task, seed, method) is appended to the JSONL cache (``--cache``, default
``bench/results/pbt_runs.jsonl``) as soon as it ends, and a run already there with the same task
settings is not repeated: a crash or a stop loses at most the run in progress. ``--report``
trains nothing and prints the tables (and ``--plot``) from the cache for ``--tasks``, over every
cached seed (or ``--seeds`` if given).

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
  trainable running our trainer with checkpoints through ``tune.report(..., checkpoint=...)``;
- ray-pb2: Ray Tune's ``PB2`` (its GP-UCB explore over a time-varying kernel, scikit-learn) with
  the same P, T, interval and quantile and the same initial learning rates. Ray's PB2 scales its
  bounds linearly, so it searches ``log10(lr)`` in [log10 low, log10 high] (the log scale the
  prior and our PB2 use); a thin wrapper turns that back into ``lr`` for the trainer.

Figures: each method's final validation loss (best member / best trial at the end of training)
and the compute it spent (optimiser steps or epochs actually trained, re-training after an
exploit included). The learning-rate schedule our PBT found for its best member is printed from
``search.lineage.schedules``. Prints a table per seed, then per method the mean final loss with a
bootstrap 95% interval over seeds, the paired differences ours - Ray (mean, bootstrap interval,
wins per seed) and a final JSON line.

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


def run_pbt(task: Task, seed: int, workdir: str, explore: str = "perturb", quantile: float | None = None) -> Outcome:
    """Our PBT (or PB2); ``quantile`` overrides the task's truncation quantile (a variant, named
    e.g. ``pbt q=0.125``)."""
    import search
    from search.lineage import schedules
    from storage import open_storage

    method = "pbt" if explore == "perturb" else explore
    if quantile is not None:
        method += f" q={quantile:g}"
    quantile = task.quantile if quantile is None else quantile
    name = f"{task.name}-{method.replace(' q=', '-q')}-s{seed}"
    url = f"sqlite:///{os.path.join(workdir, 'ours.db')}"
    spec = {
        "name": name, "objective": {"metric": "val_loss", "direction": "minimize"},
        "trial": {"entrypoint": task.entrypoint, "params": _params(task, "constant")},
        "space": _space(task),
        "algorithm": {"name": "pbt", "seed": seed, "population": task.population, "interval": task.interval,
                      "quantile": quantile, "resample_probability": 0.25, "perturbation_factors": [0.8, 1.2],
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


def tune_trainable_log_lr(config: dict[str, Any]) -> None:
    """``tune_trainable`` with the learning rate given as ``log10_lr`` (what Ray's PB2 searches)."""
    cfg = dict(config)
    cfg["lr"] = 10.0 ** float(cfg.pop("log10_lr"))
    tune_trainable(cfg)


def compute_counter():
    """A Tune callback that sums every report's ``trained`` (the resource trained since the
    member's previous report or restored checkpoint) and keeps each member's last step: compute
    counted in the driver as results arrive, whatever the trials' result files keep."""
    from ray import tune

    class ComputeCounter(tune.Callback):
        def __init__(self) -> None:
            self.trained, self.reports, self.last_step, self.failed = 0, 0, {}, set()

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            self.trained += int(result.get("trained", 0))
            self.reports += 1
            self.last_step[trial.trial_id] = int(result.get("step", 0))

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.failed.add(trial.trial_id)

    return ComputeCounter()


def run_ray(task: Task, seed: int, initial_lrs: list[float], workdir: str, scheduler: str = "pbt") -> Outcome:
    """Ray Tune's PBT (``scheduler="pbt"``) or PB2 (``"pb2"``) over the population of our PBT's
    initial learning rates, all members at once."""
    import math

    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from search.controller import trial_seed

    seeds = [trial_seed(seed, i) for i in range(len(initial_lrs))]
    common = {"_member": tune.choice(list(range(len(initial_lrs)))), "_seed": tune.choice(seeds),
              "_entrypoint": task.entrypoint, "_data_seed": seed, "_fixed": {**_params(task, "constant")}}
    if scheduler == "pbt":
        sched = PopulationBasedTraining(
            time_attr="step", perturbation_interval=task.interval, quantile_fraction=task.quantile,
            resample_probability=0.25, perturbation_factors=(1.2, 0.8),
            hyperparam_mutations={"lr": tune.loguniform(task.lr_low, task.lr_high)},
        )
        members = [{"lr": lr, "_member": i, "_seed": seeds[i]} for i, lr in enumerate(initial_lrs)]
        # The prior is only drawn by PBT's resampling; the population starts from our PBT's draws.
        param_space = {"lr": tune.loguniform(task.lr_low, task.lr_high), **common}
        fn = tune_trainable
    elif scheduler == "pb2":
        from ray.tune.schedulers.pb2 import PB2

        lo, hi = math.log10(task.lr_low), math.log10(task.lr_high)
        sched = PB2(time_attr="step", perturbation_interval=task.interval, quantile_fraction=task.quantile,
                    hyperparam_bounds={"log10_lr": [lo, hi]})
        members = [{"log10_lr": math.log10(lr), "_member": i, "_seed": seeds[i]} for i, lr in enumerate(initial_lrs)]
        param_space = {"log10_lr": tune.uniform(lo, hi), **common}
        fn = tune_trainable_log_lr
    else:
        raise ValueError(f"unknown Ray Tune scheduler {scheduler!r}")
    # All members at once (fractional CPUs), so PBT never pauses one to make room for another.
    trainable = tune.with_resources(fn, {"cpu": 2.0 / len(members)})
    counter = compute_counter()
    tuner = tune.Tuner(
        trainable, param_space=param_space,
        # reuse_actors: what Ray recommends for PBT (an exploit restarts the function in the same
        # worker instead of a new process); it changes wall time, not what is trained.
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", scheduler=sched, num_samples=len(members),
                                    search_alg=BasicVariantGenerator(points_to_evaluate=members),
                                    reuse_actors=True),
        run_config=tune.RunConfig(storage_path=os.path.join(workdir, "tune"),
                                  name=f"{task.name}-{scheduler}-s{seed}-{os.getpid()}-{time.time_ns()}", verbose=0,
                                  callbacks=[counter]),
    )
    t0 = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - t0
    # A member whose training fails (the trainer stops on a nan loss, e.g. at an explored lr
    # near the top of the prior) is lost to the population, as it is for a Tune user: it counts
    # the compute it spent and has no final loss. Every other member must reach the end.
    finals, failed = [], []
    for r in results:
        if r.error is not None:
            failed.append(str(r.error).strip().splitlines()[-1][:300])
            continue
        finals.append(float(r.metrics["val_loss"]))
    short = {t: s for t, s in counter.last_step.items() if s < task.steps and t not in counter.failed}
    if short or len(counter.last_step) != len(members) or not finals:
        raise RuntimeError(f"ray-{scheduler}: members ended before step {task.steps}: {short}; failed: {failed}")
    return Outcome(f"ray-{scheduler}", min(finals), counter.trained, wall,
                   {"members_final": sorted(finals), "reports": counter.reports, "failed_members": failed})


def run_ray_pbt(task: Task, seed: int, initial_lrs: list[float], workdir: str) -> Outcome:
    return run_ray(task, seed, initial_lrs, workdir, "pbt")


def _schedule_text(schedule: list[dict[str, Any]], total: int, unit: str) -> str:
    parts = []
    # An exploit at the last step copies a finished parent: a segment with nothing left to train.
    schedule = [seg for seg in schedule if seg["from_step"] < total]
    for i, seg in enumerate(schedule):
        end = schedule[i + 1]["from_step"] if i + 1 < len(schedule) else total
        parts.append(f"{unit} {seg['from_step'] + 1}-{end}: lr {seg['lr']:.3g}")
    return "; ".join(parts)


METHODS = ("pbt", "pb2", "fixed", "fixed+cosine", "fixed (pbt's lrs)", "ray-pbt", "ray-pb2")
SKIPPABLE = {"pb2": "pb2", "cosine": "fixed+cosine", "paired": "fixed (pbt's lrs)", "ray-pbt": "ray-pbt",
             "ray-pb2": "ray-pb2"}
# Paired differences reported, ours - theirs (and against the fixed baseline).
PAIRS = (("pbt", "ray-pbt"), ("pbt", "ray-pb2"), ("pb2", "ray-pbt"), ("pb2", "ray-pb2"), ("pbt", "fixed"),
         ("pb2", "fixed"), ("ray-pbt", "fixed"), ("ray-pb2", "fixed"))
DEFAULT_CACHE = os.path.join(HERE, "results", "pbt_runs.jsonl")


def variant(method: str) -> tuple[str, float] | None:
    """``"pbt q=0.125"`` -> ("perturb", 0.125); None for a method that is not a quantile variant."""
    base, _, q = method.partition(" q=")
    if base in ("pbt", "pb2") and q:
        return ("perturb" if base == "pbt" else "pb2", float(q))
    return None


def ordered(methods) -> list[str]:
    ms = set(methods)
    return [m for m in METHODS if m in ms] + sorted(m for m in ms if m not in METHODS)


def task_key(task: Task, quick: bool) -> dict[str, Any]:
    """What makes two runs comparable: a cached run is reused only under the same settings."""
    return {"task": task.name, "quick": quick, "population": task.population, "steps": task.steps,
            "interval": task.interval, "quantile": task.quantile, "lr": [task.lr_low, task.lr_high],
            "fixed": task.fixed}


def load_cache(path: str) -> list[dict[str, Any]]:
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    with contextlib.suppress(json.JSONDecodeError):  # a line cut by a crash
                        rows.append(json.loads(line))
    return rows


def cached_runs(rows: list[dict[str, Any]], key: dict[str, Any]) -> dict[int, dict[str, Outcome]]:
    """seed -> method -> Outcome of the cache's runs under ``key`` (the latest run wins)."""
    out: dict[int, dict[str, Outcome]] = {}
    for r in rows:
        if r.get("key") == key and "final" in r:
            out.setdefault(int(r["seed"]), {})[r["method"]] = Outcome(
                r["method"], float(r["final"]), int(r["compute"]), float(r["wall_s"]), r.get("detail", {}))
    return out


def append_cache(path: str, key: dict[str, Any], seed: int, o: Outcome, load: float) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    line = {"key": key, "seed": seed, "method": o.method, "final": o.final, "compute": o.compute,
            "wall_s": round(o.wall_s, 1), "load_avg_1m": round(load, 2), "cpus": os.cpu_count(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "detail": o.detail}
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())


def bootstrap_ci(values: list[float], n_boot: int = 10000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean over seeds."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return (float("nan"), float("nan"))
    idx = np.random.default_rng(seed).integers(0, len(v), size=(n_boot, len(v)))
    means = v[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(task: Task, rows: dict[int, dict[str, Outcome]]) -> dict[str, Any]:
    print(f"\n== {task.name}: population {task.population} x {task.steps} {task.unit}, interval "
          f"{task.interval}, quantile {task.quantile}, lr prior log-uniform [{task.lr_low:g}, {task.lr_high:g}]")
    print(f"{'seed':>4} {'method':<18} {'final val_loss':>14} {'compute':>8} {'wall s':>7}  note")
    out: dict[str, Any] = {"population": task.population, "steps": task.steps, "unit": task.unit,
                           "interval": task.interval, "quantile": task.quantile, "seeds": {}}
    for seed in sorted(rows):
        runs = rows[seed]
        for method in ordered(runs):
            o = runs[method]
            note = ""
            if method in ("pbt", "pb2") or variant(method):
                note = f"best member {o.detail['best_member']}, {o.detail['exploits']} exploits"
            elif method.startswith("fixed"):
                note = f"best lr {o.detail['best_lr']:.3g}"
            print(f"{seed:>4} {method:<18} {o.final:>14.4f} {o.compute:>8} {o.wall_s:>7.1f}  {note}")
        for m in ("pbt", "pb2"):
            if m in runs and runs[m].detail.get("schedule"):
                print(f"     {m} best member's lr schedule: "
                      f"{_schedule_text(runs[m].detail['schedule'], task.steps, task.unit)}")
        out["seeds"][str(seed)] = {m: {"final_val_loss": o.final, "compute": o.compute, "wall_s": round(o.wall_s, 1),
                                       **o.detail} for m, o in runs.items()}
    methods = ordered({m for r in rows.values() for m in r})
    out["mean"] = {}
    print(f"\n{'method':<18} {'seeds':>5} {'mean final':>10} {'95% interval':>19} {'compute':>8}")
    for m in methods:
        vals = [rows[s][m].final for s in sorted(rows) if m in rows[s]]
        lo, hi = bootstrap_ci(vals)
        comp = statistics.mean(rows[s][m].compute for s in rows if m in rows[s])
        out["mean"][m] = {"final_val_loss": statistics.mean(vals), "ci95": [lo, hi], "n": len(vals), "compute": comp}
        print(f"{m:<18} {len(vals):>5} {statistics.mean(vals):>10.4f} [{lo:>8.4f}, {hi:>8.4f}] {comp:>8.0f}")
    out["paired"] = {}
    print(f"\n{'paired difference':<22} {'seeds':>5} {'mean':>9} {'95% interval':>21} {'wins':>7} {'ties':>4}")
    extra = [(v, b) for v in methods if variant(v) for b in ("ray-pbt", "ray-pb2", v.partition(" ")[0])]
    for a, b in (*PAIRS, *extra):
        common = [s for s in sorted(rows) if a in rows[s] and b in rows[s]]
        if not common:
            continue
        diffs = [rows[s][a].final - rows[s][b].final for s in common]
        lo, hi = bootstrap_ci(diffs)
        wins, ties = sum(d < 0 for d in diffs), sum(d == 0 for d in diffs)
        out["paired"][f"{a} - {b}"] = {"mean": statistics.mean(diffs), "ci95": [lo, hi], "n": len(diffs),
                                       "wins": wins, "ties": ties, "diffs": dict(zip(map(str, common), diffs))}
        print(f"{a + ' - ' + b:<22} {len(diffs):>5} {statistics.mean(diffs):>+9.4f} [{lo:>+9.4f}, {hi:>+9.4f}] "
              f"{wins:>3}/{len(diffs):<3} {ties:>4}")
    return out


def plot(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["tasks"])
    fig, axes = plt.subplots(len(names), 2, figsize=(13, 4.6 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        t = result["tasks"][name]
        ax = row[0]
        methods = ordered(t["mean"])
        for i, m in enumerate(methods):
            per = [t["seeds"][s][m]["final_val_loss"] for s in t["seeds"] if m in t["seeds"][s]]
            ax.scatter([i + 0.18] * len(per), per, s=10, color="0.6", zorder=1)
            mu, (lo, hi) = t["mean"][m]["final_val_loss"], t["mean"][m]["ci95"]
            ax.errorbar([i], [mu], yerr=[[mu - lo], [hi - mu]], fmt="o", capsize=4, zorder=2,
                        color="C3" if m.startswith("ray") else "C0")
        ax.set_xticks(range(len(methods)), [m.replace(" (pbt's lrs)", "\n(pbt's lrs)") for m in methods],
                      rotation=30, fontsize=8)
        ax.set_ylabel("final val_loss of the best member")
        ax.set_title(f"{name}: mean and bootstrap 95% interval over seeds (grey: seeds)", fontsize=9)
        ax = row[1]
        pairs = [p for p in t["paired"] if not p.startswith("ray")][::-1]
        for i, p in enumerate(pairs):
            d = t["paired"][p]
            ax.scatter(list(d["diffs"].values()), [i - 0.18] * len(d["diffs"]), s=10, color="0.6", zorder=1)
            lo, hi = d["ci95"]
            ax.errorbar([d["mean"]], [i], xerr=[[d["mean"] - lo], [hi - d["mean"]]], fmt="o", capsize=4, zorder=2,
                        color="C2" if hi < 0 else ("C3" if lo > 0 else "C0"))
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(range(len(pairs)), [f"{p}  ({t['paired'][p]['wins']}/{t['paired'][p]['n']} wins)"
                                          for p in pairs], fontsize=8)
        ax.set_xlabel("paired difference in final val_loss (below 0: the first lower)")
        ax.set_title(f"{name}: paired differences per seed, mean and 95% interval", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="lm,cnn", help="comma-separated: lm, cnn")
    ap.add_argument("--seeds", default=None, help="comma-separated study seeds (default 0,1,2; with --report, "
                    "every cached seed)")
    ap.add_argument("--ray-seeds", default=None, help="seeds that also run Ray Tune's PBT and PB2 (default: all)")
    ap.add_argument("--quick", action="store_true", help="tiny budgets: checks the pipeline end to end")
    ap.add_argument("--skip-ray", action="store_true", help="leave out Ray Tune's PBT and PB2")
    ap.add_argument("--interval", type=int, default=None, help="steps between exploit checks (default: the task's)")
    ap.add_argument("--quantile", type=float, default=None, help="truncation quantile (default: 0.25)")
    ap.add_argument("--skip", default="", help="comma-separated methods to leave out: pb2, cosine (fixed+cosine), "
                    "paired (fixed (pbt's lrs)), ray-pbt, ray-pb2")
    ap.add_argument("--keep", default=None, metavar="DIR",
                    help="keep the study database and checkpoints in DIR (default: a temporary folder)")
    ap.add_argument("--cache", default=None, help="JSONL file of finished runs, appended to and reused "
                    "(default: bench/results/pbt_runs.jsonl, none with --quick, so a smoke run always "
                    "trains and never writes into the results); 'none' to neither read nor write one")
    ap.add_argument("--variants", default="", help="comma-separated extra methods with another truncation "
                    "quantile, e.g. 'pbt q=0.125,pb2 q=0.125' (a less greedy exploit: fewer members copy others)")
    ap.add_argument("--report", action="store_true", help="train nothing: print the tables from the cache")
    ap.add_argument("--plot", default=None, metavar="PNG", help="save the per-method and paired-difference plot")
    args = ap.parse_args(argv)
    all_tasks, names = prepare(args, tasks)
    for opt, value in (("interval", args.interval), ("quantile", args.quantile)):
        if value is not None:
            all_tasks = {n: dataclasses.replace(t, **{opt: value}) for n, t in all_tasks.items()}
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(SKIPPABLE)
    if unknown:
        ap.error(f"--skip: unknown method(s) {', '.join(sorted(unknown))}; choose from {', '.join(SKIPPABLE)}")
    cache = None if args.cache == "none" else args.cache or (None if args.quick else DEFAULT_CACHE)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if not variant(v):
            ap.error(f"--variants: expected 'pbt q=Q' or 'pb2 q=Q', got {v!r}")
    if args.report and cache is None:
        ap.error("--report reads the cache: give --cache FILE")
    if args.seeds is not None:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    else:
        seeds = None if args.report else ([0] if args.quick else [0, 1, 2])
    result: dict[str, Any] = {"bench": "pbt", "quick": args.quick, "cpus": os.cpu_count(), "tasks": {}}
    if args.report:
        rows_all = load_cache(cache)
        for name in names:
            task = all_tasks[name]
            rows = cached_runs(rows_all, task_key(task, args.quick))
            if seeds is not None:
                rows = {s: r for s, r in rows.items() if s in seeds}
            if not rows:
                print(f"\n== {name}: no cached runs under these settings in {cache}")
                continue
            loads = [r["load_avg_1m"] for r in rows_all if r.get("key") == task_key(task, args.quick)
                     and "load_avg_1m" in r and int(r["seed"]) in rows]
            result["tasks"][name] = summarize(task, rows)
            result["tasks"][name]["load_avg_1m"] = [min(loads), max(loads)] if loads else None
            if loads:
                print(f"load average (1 min) at the end of the runs: {min(loads):.1f}-{max(loads):.1f} "
                      f"on {os.cpu_count()} CPUs")
        result["seeds"] = sorted({int(s) for t in result["tasks"].values() for s in t["seeds"]})
        if args.plot and result["tasks"]:
            plot(result, args.plot)
        print(json.dumps(result))
        return result
    ray_seeds = set(seeds if args.ray_seeds is None else (int(s) for s in args.ray_seeds.split(",") if s))
    ray_seeds &= set(seeds)  # no Ray cluster for seeds that are not run
    if args.skip_ray or {"ray-pbt", "ray-pb2"} <= skip:
        ray_seeds = set()
    result["seeds"] = seeds
    ray_started = False
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory(prefix="bench-pbt-")) as wd:
        for name in names:
            task = all_tasks[name]
            key = task_key(task, args.quick)
            done = cached_runs(load_cache(cache), key) if cache else {}
            rows: dict[int, dict[str, Outcome]] = {}
            for seed in seeds:
                runs = dict(done.get(seed, {}))
                wanted = ["pbt", "pb2", "fixed", "fixed+cosine", "fixed (pbt's lrs)"]
                if seed in ray_seeds:
                    wanted += ["ray-pbt", "ray-pb2"]
                wanted = [m for m in wanted if m not in {SKIPPABLE[s] for s in skip}] + variants
                for m in wanted:
                    if m in runs:
                        continue
                    if m in ("ray-pbt", "ray-pb2") and not ray_started:
                        start_ray()
                        ray_started = True
                    if m == "pbt":
                        o = run_pbt(task, seed, wd)
                    elif m == "pb2":
                        o = run_pbt(task, seed, wd, explore="pb2")
                    elif variant(m):
                        o = run_pbt(task, seed, wd, *variant(m))
                    elif m == "fixed":
                        o = run_fixed(task, seed, wd, "constant")
                    elif m == "fixed+cosine":
                        o = run_fixed(task, seed, wd, "cosine")
                    elif m == "fixed (pbt's lrs)":
                        o = run_fixed(task, seed, wd, "constant", lrs=runs["pbt"].detail["initial_lrs"])
                    else:
                        o = run_ray(task, seed, runs["pbt"].detail["initial_lrs"], wd, m.removeprefix("ray-"))
                    runs[m] = o
                    if cache:
                        append_cache(cache, key, seed, o, os.getloadavg()[0])
                    print(f"[{name} seed {seed} {m}: {o.final:.4f}, {o.compute} {task.unit}, {o.wall_s:.0f} s]",
                          flush=True)
                rows[seed] = {m: o for m, o in runs.items() if m in wanted}
                print(f"[{name} seed {seed} done]", flush=True)
            result["tasks"][name] = summarize(task, rows)
    if args.plot and result["tasks"]:
        plot(result, args.plot)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
