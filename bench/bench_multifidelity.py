"""ASHA against random search and against Ray Tune's ASHAScheduler, on real training, side by side.

    nice python bench/bench_multifidelity.py [--tasks cnn,lm] [--seeds 0,1,2] [--quick] [--skip-ray]
                                             [--inprocess] [--draws K] [--no-same-configs]
                                             [--proposers bo,tpe]

The question: how much compute does each method spend before it first reaches the best validation
loss X that random search reaches with its full budget (N trials trained to the end)?

Primary protocol, equal compute (how ASHA is compared in Li et al. 2020, and how it is used: the
budget is compute, not a trial count). Random search's total compute B = N x max_resource is the
budget of every method. ASHA may try as many configurations as B allows: it gets a stream of
``K x N`` draws (random search's N first, then more from the same seeded stream), runs them in
order and ends when it has spent B. Rows ``asha@budget`` (ours) and ``ray-asha@budget`` (``tune.Tuner`` with
``ASHAScheduler``, same rungs, the same draws in the same order with the same trial seeds, stopped
by a ``Stopper`` once it has trained B). Trials run one at a time (``parallel: 1``;
``max_concurrent_trials=1``), so ASHA's decisions about a trial depend only on the trials before
it: a run over more draws, cut at compute B, is exactly the run a compute budget B would give
(ours is cut after the fact, Ray's is stopped at B; the curves of both are cut at B). A method
that has not reached X within B reports "never".

``--proposers bo,tpe`` adds rows ``asha+bo@budget`` / ``asha+tpe@budget``: the same ASHA and
budget B with configurations proposed by the model-based algorithm instead of the random stream
(BOHB-style: the proposer also learns from the trials ASHA stopped). ``bo`` is what a study with
``scheduler: {name: asha}`` and no algorithm runs.

Secondary protocol, same configurations (``--no-same-configs`` leaves it out): ASHA and Ray's
ASHA over random search's N configurations only, rows ``asha`` and ``ray-asha``. ASHA can then
only reach X if it promotes the trial that reached X to (nearly) the end, so this measures how
often the rungs keep the eventual best, not the method's efficiency.

Ours run on the simulated backend: the real controller, scheduler and trainer, with each report
answered before training goes on, which is also how Ray Tune's function trainables behave
(``tune.report`` waits for the next ``train()``). ``--inprocess`` adds our ASHA (same configurations) on the in-process
backend, where a report returns at once and a stop is seen at the trial's next report: the cost of
that asynchrony in extra compute.

Compute is the sum over trials of the resource actually trained (epochs for the CNN, optimiser
steps for the LM). "Compute to reach X" is computed the same way for every method: the compute
spent, trials in run order, until some trial first reports val_loss <= X (relative tolerance 1e-6:
the same trial retrained gives the same float up to summation order). Prints a table per task and
a final JSON line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for _p in (HERE, REPO):
    if _p not in sys.path:
        sys.path.insert(0, _p)

TOLERANCE = 1e-6


@dataclass(frozen=True)
class Task:
    name: str
    entrypoint: str
    fixed: dict[str, Any]
    space: dict[str, Any]
    budget_key: str  # the trainer param that sets the full resource
    max_resource: int
    min_resource: int
    eta: int
    trials: int
    unit: str  # rungs must be multiples of the trainer's reporting interval
    draws: int  # K: the equal-compute runs may draw K x trials configurations (enough to spend B)


def tasks(quick: bool) -> dict[str, Task]:
    if quick:
        return {
            "cnn": Task("cnn", "builtin:classifier",
                        {"model": "cnn", "data": "digits", "channels": 4, "checkpoint_every": 0,
                         "checkpoint_final": False},
                        {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
                        "epochs", 4, 1, 2, 4, "epochs", 4),
            "lm": Task("lm", "builtin:lm",
                       {"context": 16, "width": 16, "layers": 1, "batch_size": 4, "eval_tokens": 256,
                        "eval_every": 4, "checkpoint_every": 0, "checkpoint_final": False,
                        "corpus_bytes": 1 << 16},
                       {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
                       "steps", 8, 4, 2, 3, "steps", 4),
        }
    return {
        # Digits (1,437 training images) and a small CNN: an epoch is a fraction of a second.
        "cnn": Task("cnn", "builtin:classifier",
                    {"model": "cnn", "data": "digits", "checkpoint_every": 0, "checkpoint_final": False},
                    {"lr": {"type": "float", "low": 1e-4, "high": 3e-1, "log": True},
                     "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
                     "channels": {"type": "categorical", "choices": [4, 8, 16]},
                     "layers": {"type": "int", "low": 1, "high": 3},
                     "batch_size": {"type": "categorical", "choices": [32, 64, 128]}},
                    "epochs", 27, 1, 3, 32, "epochs", 12),
        # The byte-level LM on the stdlib corpus: rungs at 18, 54, 162 steps.
        "lm": Task("lm", "builtin:lm",
                   {"context": 64, "batch_size": 16, "eval_tokens": 4096, "eval_every": 18,
                    "checkpoint_every": 0, "checkpoint_final": False},
                   {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                    "width": {"type": "categorical", "choices": [32, 64]},
                    "layers": {"type": "int", "low": 1, "high": 2},
                    "weight_decay": {"type": "float", "low": 1e-3, "high": 0.3, "log": True}},
                   "steps", 162, 18, 3, 12, "steps", 8),
    }


@dataclass
class Run:
    """One method's run: per trial in run order, the (resource, val_loss) reports."""

    method: str
    curves: list[list[tuple[int, float]]]
    wall_s: float
    configs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def compute(self) -> int:
        return sum(c[-1][0] for c in self.curves if c)

    @property
    def best(self) -> float:
        return min(loss for c in self.curves for _, loss in c)

    @property
    def stopped(self) -> int:
        full = max((c[-1][0] for c in self.curves if c), default=0)
        return sum(1 for c in self.curves if c and c[-1][0] < full)


def rung_rank_correlation(curves: list[list[tuple[int, float]]], low: int, high: int) -> float | None:
    """Spearman correlation, over trials with reports at both, of the loss at resource ``low`` and
    at ``high``: how well the first rung predicts the final ranking (what ASHA bets on)."""
    from scipy.stats import spearmanr

    pairs = [(dict(c)[low], dict(c)[high]) for c in curves if low in dict(c) and high in dict(c)]
    if len(pairs) < 3:
        return None
    return float(spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic)


def compute_to_reach(curves: list[list[tuple[int, float]]], target: float) -> int | None:
    """Resource spent, trials in run order, until a report first has loss <= target; None if never.
    Each report's resource counts from the trial's previous report (trials start at 0)."""
    spent = 0
    for curve in curves:
        prev = 0
        for step, loss in curve:
            spent += step - prev
            prev = step
            if loss <= target + TOLERANCE * abs(target):
                return spent
    return None


def within_budget(curves: list[list[tuple[int, float]]], budget: int) -> list[list[tuple[int, float]]]:
    """The reports of a sequential run that fit in ``budget``: trials in run order, each report
    costing the resource trained since the trial's previous one; the run ends at the first report
    past the budget (that trial is cut there, later trials never start)."""
    out: list[list[tuple[int, float]]] = []
    spent = 0
    for curve in curves:
        kept, prev = [], 0
        for step, loss in curve:
            if spent + step - prev > budget:
                if kept:
                    out.append(kept)
                return out
            spent += step - prev
            prev = step
            kept.append((step, loss))
        out.append(kept)
    return out


def study(task: Task, seed: int, name: str, artifacts: str, scheduler: bool, trials: int,
          algorithm: str = "random") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name, "objective": {"metric": "val_loss", "direction": "minimize"},
        "trial": {"entrypoint": task.entrypoint, "params": {**task.fixed, task.budget_key: task.max_resource}},
        "space": task.space,
        "algorithm": {"name": algorithm, "seed": seed},
        "budget": {"trials": trials, "parallel": 1},
        "backend": {"name": "simulated"}, "artifacts": artifacts,
    }
    if scheduler:
        spec["scheduler"] = {"name": "asha", "min_resource": task.min_resource,
                             "reduction_factor": task.eta, "max_resource": task.max_resource}
    return spec


def run_ours(task: Task, seed: int, workdir: str, scheduler: bool, backend: str = "simulated",
             trials_factor: int = 1, algorithm: str = "random") -> Run:
    import search
    from storage import open_storage

    method = ("asha" if scheduler else "random") + ("" if algorithm == "random" else f"+{algorithm}")
    name = f"{task.name}-{method.replace('+', '-')}-{backend}-x{trials_factor}-s{seed}"
    url = f"sqlite:///{os.path.join(workdir, 'ours.db')}"
    t0 = time.perf_counter()
    spec = study(task, seed, name, os.path.join(workdir, "artifacts"), scheduler, task.trials * trials_factor,
                 algorithm)
    search.run(spec, storage=url, backend=backend)
    wall = time.perf_counter() - t0
    with open_storage(url) as st:
        trials = sorted(st.get_trials(st.get_study(name).id), key=lambda t: t.number)
        curves = []
        for t in trials:
            reps = sorted(st.get_reports(t.id), key=lambda r: r.step)
            curves.append([(r.step, float(r.metrics["val_loss"])) for r in reps if "val_loss" in r.metrics])
    if backend != "simulated":
        method += f" ({backend})"
    return Run(method, curves, wall, [dict(t.params) for t in trials])


def tune_trainable(config: dict[str, Any]) -> None:
    """A Ray Tune function trainable that trains our built-in trainer through ``run_trial``.

    The trial's parameters are ``config``'s top-level keys without a leading underscore, updated by
    those of ``config["_point"]`` (a fixed configuration handed over by a grid); ``_fixed`` holds
    the study's fixed parameters, ``_entrypoint`` the trainer, ``_seed``/``_data_seed`` its seeds
    and ``_member`` its position (top level or in ``_point``). Reports go to ``tune.report`` with
    the trainer's step as ``step`` and the resource trained since the previous report as
    ``trained``; a trainer checkpoint written at a report's step is handed to
    Tune with that report (what PBT clones), and ``tune.get_checkpoint()`` resumes the trainer.
    """
    import shutil

    import torch
    from ray import tune

    from trials.api import TrialSpec
    from trials.runner import run_trial

    torch.set_num_threads(1)
    flat = {**config, **config.get("_point", {})}
    params = {k: v for k, v in flat.items() if not k.startswith("_")}
    params.update(config["_fixed"])
    workdir = tempfile.mkdtemp(prefix="tune-trial-")
    resume = None
    at = {"step": 0}  # the trainer's step at the previous report (or the restored checkpoint)
    restored = tune.get_checkpoint()
    if restored is not None:
        local = restored.to_directory(os.path.join(workdir, "restored"))
        resume = os.path.join(local, "trainer.pt")
        with open(os.path.join(local, "step")) as f:
            at["step"] = int(f.read())
    spec = TrialSpec(study="tune", trial_id=0, number=int(flat.get("_member", 0)), attempt=0,
                     entrypoint=config["_entrypoint"], config=params, seed=int(flat["_seed"]),
                     data_seed=int(config["_data_seed"]), objective_metrics=("val_loss",),
                     checkpoint_dir=os.path.join(workdir, "out"), resume_from=resume, sync_checkpoints=True)
    pending: dict[int, str] = {}
    errors: list[str] = []

    def emit(ev) -> None:
        if ev.kind == "checkpoint":
            pending[int(ev.step)] = ev.path
        elif ev.kind == "report":
            # 'trained': the resource trained since the last report, so compute sums exactly
            # over restarts from checkpoints.
            metrics = {**ev.metrics, "step": int(ev.step), "trained": int(ev.step) - at["step"]}
            at["step"] = int(ev.step)
            path = pending.pop(int(ev.step), None)
            if path is None:
                tune.report(metrics)
                return
            ckdir = tempfile.mkdtemp(prefix="ck-", dir=workdir)
            shutil.move(path, os.path.join(ckdir, "trainer.pt"))
            with open(os.path.join(ckdir, "step"), "w") as f:
                f.write(str(int(ev.step)))
            try:
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(ckdir))
            finally:
                shutil.rmtree(ckdir, ignore_errors=True)
        elif ev.kind == "done" and ev.error is not None:
            errors.append(ev.error)

    try:
        run_trial(spec, emit)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if errors:
        raise RuntimeError(errors[0])


def run_ray_asha(task: Task, seed: int, configs: list[dict[str, Any]], workdir: str,
                 budget: int | None = None) -> Run:
    """Ray Tune's ASHA over ``configs`` in order; with ``budget``, stopped once it has trained that
    much (its curves are then cut at the budget as ours are)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from search.controller import trial_seed

    class ComputeBudget(tune.Stopper):
        def __init__(self) -> None:
            self.spent = 0

        def __call__(self, trial_id: str, result: dict) -> bool:
            self.spent += int(result.get("trained", 0))
            return False

        def stop_all(self) -> bool:
            return budget is not None and self.spent >= budget

    # A grid over our configurations: every trial is one of them, in our order, with the seed our
    # controller gave that trial number.
    points = [{**c, "_member": i, "_seed": trial_seed(seed, i)} for i, c in enumerate(configs)]
    param_space = {"_point": tune.grid_search(points), "_entrypoint": task.entrypoint, "_data_seed": seed,
                   "_fixed": {**task.fixed, task.budget_key: task.max_resource}}
    scheduler = ASHAScheduler(time_attr="step", max_t=task.max_resource, grace_period=task.min_resource,
                              reduction_factor=task.eta)
    tuner = tune.Tuner(
        tune_trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", scheduler=scheduler,
                                    max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=os.path.join(workdir, "tune"),
                                  name=f"{task.name}-asha-{len(configs)}-s{seed}", verbose=0, stop=ComputeBudget()),
    )
    t0 = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - t0
    by_member: dict[int, list[tuple[int, float]]] = {}
    for r in results:
        if r.error is not None:
            raise RuntimeError(f"ray tune trial failed: {r.error}")
        df = r.metrics_dataframe
        if df is None or "step" not in df:
            continue  # stopped by the budget before its first report
        df = df.sort_values("step")
        by_member[int(r.config["_point"]["_member"])] = [(int(s), float(v)) for s, v in zip(df["step"], df["val_loss"])]
    ran = sorted(by_member)
    if ran != list(range(len(ran))) or (budget is None and len(ran) != len(points)):
        raise RuntimeError(f"ray tune ran members {ran}, expected 0..{len(points) - 1} in order")
    curves = [by_member[i] for i in ran]
    if budget is None:
        return Run("ray-asha", curves, wall)
    return Run("ray-asha@budget", within_budget(curves, budget), wall)


def start_ray() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [HERE, REPO, os.environ.get("PYTHONPATH", "")] if p)
    logging.getLogger("ray").setLevel(logging.ERROR)
    from search.backends.ray_backend import init_local_ray

    # "local": a fresh instance of our own. With None, ray.init attaches to any cluster another
    # process started on this machine (/tmp/ray/ray_current_cluster) and shares its CPUs.
    env = {"PYTHONPATH": os.environ["PYTHONPATH"], "OMP_NUM_THREADS": "1"}
    init_local_ray("local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env})


def _fmt(v: float | int | None, nd: int = 0) -> str:
    if v is None:
        return "never"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def summarize(task: Task, per_seed: dict[int, dict[str, Run]]) -> dict[str, Any]:
    out: dict[str, Any] = {"unit": task.unit, "trials": task.trials, "max_resource": task.max_resource,
                           "min_resource": task.min_resource, "reduction_factor": task.eta, "seeds": {}}
    print(f"\n== {task.name}: random search {task.trials} trials x {task.max_resource} {task.unit}; ASHA rungs from "
          f"{task.min_resource} x{task.eta}; @budget: random's compute as the budget (more configurations), "
          f"else random's {task.trials} configurations; compute in {task.unit}")
    print(f"{'seed':>4} {'method':<20} {'best val_loss':>13} {'total':>7} {'stopped':>7} "
          f"{'to reach X':>10} {'random/method':>13} {'wall s':>7}")
    ratios: dict[str, list[float]] = {}
    for seed, runs in per_seed.items():
        target = runs["random"].best
        base = compute_to_reach(runs["random"].curves, target)
        seed_out: dict[str, Any] = {"target_val_loss": target, "first_rung_spearman": rung_rank_correlation(
            runs["random"].curves, task.min_resource, task.max_resource)}
        for method, run in runs.items():
            ctr = compute_to_reach(run.curves, target)
            ratio = None if ctr is None or base is None else base / ctr
            if ratio is not None:
                ratios.setdefault(method, []).append(ratio)
            seed_out[method] = {"best_val_loss": run.best, "compute": run.compute, "stopped": run.stopped,
                                "compute_to_reach": ctr, "random_over_method": ratio, "wall_s": round(run.wall_s, 1)}
            print(f"{seed:>4} {method:<20} {run.best:>13.4f} {run.compute:>7} {run.stopped:>7} {_fmt(ctr):>10} "
                  f"{_fmt(ratio, 2):>13} {run.wall_s:>7.1f}")
        for suffix in ("@budget", ""):
            if f"ray-asha{suffix}" in runs and f"asha{suffix}" in runs:
                a = compute_to_reach(runs[f"asha{suffix}"].curves, target)
                r = compute_to_reach(runs[f"ray-asha{suffix}"].curves, target)
                seed_out[f"ray_over_ours{suffix}"] = None if a is None or r is None else r / a
        print(f"     rank correlation of random search's losses at {task.min_resource} and {task.max_resource} "
              f"{task.unit}: {_fmt(seed_out['first_rung_spearman'], 2)}")
        out["seeds"][str(seed)] = seed_out
    methods = list(next(iter(per_seed.values())))
    out["mean"] = {}
    base_reach = [compute_to_reach(per_seed[s]["random"].curves, per_seed[s]["random"].best) for s in per_seed]
    for method in methods:
        reach = [compute_to_reach(per_seed[s][method].curves, per_seed[s]["random"].best) for s in per_seed]
        reached = [c for c in reach if c is not None]
        both = [(b, c) for b, c in zip(base_reach, reach) if b is not None and c is not None]
        mean = {"compute_to_reach": statistics.mean(reached) if reached else None,
                "reached": f"{len(reached)}/{len(reach)}",
                "random_over_method": statistics.mean(ratios[method]) if ratios.get(method) else None,
                # Over seeds where both reached X: total random compute / total method compute.
                "ratio_of_sums": sum(b for b, _ in both) / sum(c for _, c in both) if both else None,
                "compute": statistics.mean(per_seed[s][method].compute for s in per_seed)}
        out["mean"][method] = mean
        print(f"mean {method:<20} {'':>13} {mean['compute']:>7.0f} {'':>7} {_fmt(mean['compute_to_reach'], 1):>10} "
              f"{_fmt(mean['random_over_method'], 2):>13}   reached X in {mean['reached']} seeds; "
              f"ratio of sums {_fmt(mean['ratio_of_sums'], 2)}")
    return out


def prepare(args, task_table) -> tuple[dict, list[str]]:
    """Shared set-up of the benchmarks on the built-in trainers: one torch thread, quiet logs, and
    the ``--tasks`` chosen from ``task_table(quick)`` (exits with a one-line error on an unknown one)."""
    import torch

    torch.set_num_threads(1)
    logging.getLogger("search").setLevel(logging.ERROR)
    all_tasks = task_table(args.quick)
    r_min = getattr(args, "min_resource", None)
    if r_min is not None:
        # The first rung; it must be a step the trainer reports (any epoch for the CNN, multiples
        # of eval_every for the LM) or the first rung is judged at the next report.
        if r_min < 1:
            raise SystemExit(f"--min-resource: expected an integer >= 1, got {r_min}")
        all_tasks = {k: replace(t, min_resource=r_min) for k, t in all_tasks.items()}
    names = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in names if t not in all_tasks]
    if unknown:
        raise SystemExit(f"--tasks: unknown task {unknown[0]!r}; choose from {', '.join(all_tasks)}")
    return all_tasks, names


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="cnn,lm", help="comma-separated: cnn, lm")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated study seeds")
    ap.add_argument("--quick", action="store_true", help="tiny budgets: checks the pipeline end to end")
    ap.add_argument("--skip-ray", action="store_true", help="leave out Ray Tune's ASHA")
    ap.add_argument("--inprocess", action="store_true",
                    help="also run our ASHA on the in-process backend (reports answered asynchronously)")
    ap.add_argument("--draws", type=int, default=None, metavar="K",
                    help="the equal-compute runs draw up to K x trials configurations (default: the task's)")
    ap.add_argument("--proposers", default="",
                    help="comma-separated model-based algorithms (bo, tpe) to run with ASHA at budget B too")
    ap.add_argument("--min-resource", type=int, default=None,
                    help="first rung (grace period) instead of the task's: 1 epoch (CNN), 18 steps (LM)")
    ap.add_argument("--no-same-configs", action="store_true",
                    help="leave out the secondary protocol (ASHA over random search's N configurations)")
    args = ap.parse_args(argv)
    all_tasks, names = prepare(args, tasks)
    if args.draws is not None and args.draws < 1:
        raise SystemExit(f"--draws: must be >= 1, got {args.draws}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    proposers = [p for p in args.proposers.split(",") if p]
    bad = [p for p in proposers if p not in ("bo", "tpe", "gp")]
    if bad:
        raise SystemExit(f"--proposers: unknown algorithm {bad[0]!r}; choose from bo, tpe, gp")
    if args.quick and args.seeds == "0,1,2":
        seeds = [0]
    if not args.skip_ray:
        start_ray()
    result: dict[str, Any] = {"bench": "multifidelity", "quick": args.quick, "seeds": seeds,
                              "cpus": os.cpu_count(), "tasks": {}}
    with tempfile.TemporaryDirectory(prefix="bench-mf-") as wd:
        for name in names:
            task = all_tasks[name]
            k = args.draws or task.draws
            per_seed: dict[int, dict[str, Run]] = {}
            for seed in seeds:
                runs = {"random": run_ours(task, seed, wd, scheduler=False)}
                budget = runs["random"].compute
                full = run_ours(task, seed, wd, scheduler=True, trials_factor=k)
                if full.configs[:task.trials] != runs["random"].configs:
                    raise RuntimeError(f"{name} seed {seed}: ASHA and random drew different configurations")
                if full.compute < budget:
                    print(f"warning: {name} seed {seed}: ASHA spent {full.compute} < {budget} over {k} x "
                          f"{task.trials} draws; raise --draws", flush=True)
                runs["asha@budget"] = Run("asha@budget", within_budget(full.curves, budget), full.wall_s, full.configs)
                for proposer in proposers:
                    mb = run_ours(task, seed, wd, scheduler=True, trials_factor=k, algorithm=proposer)
                    runs[f"asha+{proposer}@budget"] = Run(f"asha+{proposer}@budget", within_budget(mb.curves, budget),
                                                          mb.wall_s, mb.configs)
                if not args.skip_ray:
                    runs["ray-asha@budget"] = run_ray_asha(task, seed, full.configs, wd, budget=budget)
                if not args.no_same_configs:
                    runs["asha"] = run_ours(task, seed, wd, scheduler=True)
                    if not args.skip_ray:
                        runs["ray-asha"] = run_ray_asha(task, seed, runs["random"].configs, wd)
                if args.inprocess:
                    runs["asha (inprocess)"] = run_ours(task, seed, wd, scheduler=True, backend="inprocess")
                per_seed[seed] = runs
                # One line per seed, so an interrupted run keeps its figures.
                target = runs["random"].best
                print(f"[{name} seed {seed} done] " + json.dumps(
                    {m: {"compute_to_reach": compute_to_reach(r.curves, target), "compute": r.compute,
                         "best_val_loss": r.best} for m, r in runs.items()}), flush=True)
            result["tasks"][name] = summarize(task, per_seed)
    print(json.dumps(result, default=lambda o: None))
    return result


if __name__ == "__main__":
    main()
