"""Anytime regret of multi-fidelity methods, ours and peers', on a table of real learning curves.

    python bench/bench_mf_regret.py build-table        # once: trains the grid (about 15 min, one core)
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 10 python bench/bench_mf_regret.py run \
        [--methods all|NAME,PREFIX*] [--seeds 0-19] [--runs FILE] [--plot PNG] [--all-seeds]

The table (``bench/results/mf_regret_cnn_table.json.gz``): the built-in CNN on digits
(``builtin:classifier``, ``model: cnn``) over a grid of 216 configurations, lr in {1e-4, 3e-4,
1e-3, 3e-3, 1e-2, 1e-1} x optimizer {adam, sgd} x channels {4, 8, 16} x layers {1, 2, 3} x
batch_size {64, 128}, each trained once for 27 epochs (constant learning rate, so a curve does
not depend on the budget it was trained for; trial seed and data seed 0), val_loss recorded every
epoch. ``build-table`` checkpoints each configuration to a JSON-lines file and resumes from it.

Every method then "trains" configuration c to epoch e by reading val_loss[c][e]. Compute is epochs,
charged as each method really spends them:
- one epoch per report for methods that train a trial epoch by epoch and stop it (ours: ASHA,
  Hyperband, bo+ASHA, random; Ray Tune's and Syne Tune's ASHA, Syne Tune's BOHB, Optuna's
  HyperbandPruner); a stopped trial is never resumed;
- for methods that pause and resume (ours: ASHA's promotion form, freeze-thaw; the one-epoch
  baseline), a resumed trial pays only for the epochs it adds (the objective checkpoints its epoch
  and resumes from it, as the real trainer does);
- DEHB and SMAC3 evaluate a configuration at a fidelity from scratch: each evaluation costs its
  whole fidelity (1, 3, 9 or 27 epochs), even for a configuration seen at a lower one.
Every method stops at 50 full trainings (1,350 epochs).

Regret at compute B (in full trainings): the best val_loss at 27 epochs among the results a method
obtained within B, minus the table's best final val_loss. A seed where the method has trained no
configuration to 27 epochs yet counts as the worst configuration's regret (no model to hand over)
and is counted in the printout. ``regret_incumbent`` in the runs file is the other convention of
tabular benchmarks (before the first full training, the final val_loss of the best configuration
at the highest fidelity reached, a model the method has not trained to the end).

All methods search the same encoding of the grid: an integer index per numeric list (lr_i 0-5,
channels_i 0-2, batch_i 0-1), layers 1-3, optimizer a category. Ours run through the Python API
(``search.create_study`` + ``Study.optimize``) on the simulated backend, parallel 1; the peers
through their own ask/tell or tuner APIs, one trial at a time. Prints the regret table (mean and
bootstrap 95% interval over seeds), the paired difference to our default (``scheduler: asha`` with
no algorithm: bo proposes), a JSON line, and a plot.
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import math
import os
import platform
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for _p in (HERE, REPO):
    if _p not in sys.path:
        sys.path.insert(0, _p)

RESULTS = os.path.join(HERE, "results")
MAX_EPOCHS = 27

# The CNN-on-digits grid: 6 x 2 x 3 x 3 x 2 = 216 configurations. Honest ranges: SGD at 1e-4 barely
# learns in 27 epochs, Adam at 0.1 often diverges.
CNN_GRID: dict[str, list[Any]] = {
    "lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 1e-1],
    "optimizer": ["adam", "sgd"],
    "channels": [4, 8, 16],
    "layers": [1, 2, 3],
    "batch_size": [64, 128],
}
CNN_FIXED: dict[str, Any] = {"model": "cnn", "data": "digits", "checkpoint_every": 0, "checkpoint_final": False,
                             "epochs": MAX_EPOCHS}
TABLE_SEED = 0  # the trial seed (weights, batch order) and the data seed (train/validation split)


def grid_configs(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def train_curve(params: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration with the built-in trainer; its per-epoch val_loss (up to a failure)."""
    from trials.api import TrialSpec
    from trials.runner import run_trial

    curve: list[float] = []
    error: list[str] = []

    def emit(ev) -> None:
        if ev.kind == "report" and "val_loss" in ev.metrics:
            curve.append(float(ev.metrics["val_loss"]))
        elif ev.kind == "done" and ev.error is not None:
            error.append(str(ev.error).splitlines()[0][:200])

    with tempfile.TemporaryDirectory(prefix="mf-table-") as wd:
        spec = TrialSpec(study="mf-table", trial_id=0, number=0, attempt=0, entrypoint="builtin:classifier",
                         config={**CNN_FIXED, **params}, seed=TABLE_SEED, data_seed=TABLE_SEED,
                         objective_metrics=("val_loss",), checkpoint_dir=wd)
        t0 = time.perf_counter()
        run_trial(spec, emit)
        wall = time.perf_counter() - t0
    return {"val_loss": curve, "error": error[0] if error else None, "wall_s": round(wall, 3)}


def build_table(out: str, progress: str) -> None:
    """Train every grid configuration once for MAX_EPOCHS epochs; one JSON line per configuration
    in ``progress`` (resumed after a crash), then the gzipped table at ``out``."""
    import torch

    torch.set_num_threads(1)
    configs = grid_configs(CNN_GRID)
    done: dict[int, dict[str, Any]] = {}
    if os.path.exists(progress):
        with open(progress) as f:
            for line in f:
                if line.strip():
                    rec = json.loads(line)
                    if rec["config"] in configs:  # a line of an earlier grid is kept but not used
                        done[configs.index(rec["config"])] = {**rec, "index": configs.index(rec["config"])}
    t0 = time.perf_counter()
    with open(progress, "a") as f:
        for i, cfg in enumerate(configs):
            if i in done:
                continue
            rec = {"index": i, "config": cfg, **train_curve(cfg)}
            f.write(json.dumps(rec) + "\n")
            f.flush()
            done[i] = rec
            print(f"[{len(done)}/{len(configs)}] {cfg} final {rec['val_loss'][-1] if rec['val_loss'] else None} "
                  f"{rec['wall_s']:.1f}s err={rec['error']} elapsed {time.perf_counter() - t0:.0f}s", flush=True)
    table = {
        "task": "builtin:classifier cnn on digits", "fixed": CNN_FIXED, "grid": CNN_GRID,
        "max_epochs": MAX_EPOCHS, "seed": TABLE_SEED,
        "made_by": "python bench/bench_mf_regret.py build-table",
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch 1 thread, {platform.python_version()}",
        "total_train_s": round(sum(done[i]["wall_s"] for i in done), 1),
        "configs": [done[i] for i in range(len(configs))],
    }
    with gzip.open(out, "wt") as f:
        json.dump(table, f)
    print(f"wrote {out}: {len(configs)} configurations, {table['total_train_s']:.0f} s of training")



# -- the table --------------------------------------------------------------------------------
FULL = MAX_EPOCHS  # one full training, in epochs
BUDGETS = (5, 10, 20, 30, 50)  # in full trainings
CAP = max(BUDGETS) * FULL
TABLE_PATH = os.path.join(RESULTS, "mf_regret_cnn_table.json.gz")
RUNS_PATH = os.path.join(RESULTS, "mf_regret_cnn_runs.jsonl")

# Every method searches the grid through the same integer encoding: an index into each numeric
# list (the grid is ordered, so an integer keeps the order) and the optimiser as a category.
INDEXED = {"lr": "lr_i", "channels": "channels_i", "batch_size": "batch_i"}


class Table:
    """The learning curves: ``curves[i, e - 1]`` is configuration i's val_loss after e epochs. A
    configuration whose training diverged (the trainer stops with a non-finite loss) gets, from
    the epoch it failed at, ``PENALTY``: the loss of predicting uniformly over the 10 classes
    (ln 10) or the worst loss in the table if that is higher."""

    def __init__(self, path: str = TABLE_PATH) -> None:
        import numpy as np

        with gzip.open(path, "rt") as f:
            raw = json.load(f)
        self.raw = raw
        self.grid: dict[str, list[Any]] = raw["grid"]
        configs = raw["configs"]
        finite = [v for c in configs for v in c["val_loss"] if math.isfinite(v)]
        self.penalty = max(math.log(10), max(finite))
        curves = np.full((len(configs), FULL), self.penalty)
        for i, c in enumerate(configs):
            for e, v in enumerate(c["val_loss"][:FULL]):
                if math.isfinite(v):
                    curves[i, e] = v
                else:
                    break
        self.curves = curves
        self.failed = [i for i, c in enumerate(configs) if len(c["val_loss"]) < FULL or c["error"]]
        self.finals = curves[:, -1]
        self.best_final = float(self.finals.min())
        self.n = len(configs)

    def index(self, point: dict[str, Any]) -> int:
        """The table row of a point in the shared encoding (``lr_i``, ``optimizer``, ``channels_i``,
        ``layers``, ``batch_i``); values may come back from a peer as floats or numpy ints."""
        i = 0
        for name, values in self.grid.items():
            if name in INDEXED:
                j = int(round(float(point[INDEXED[name]])))
            elif name == "optimizer":
                j = values.index(str(point["optimizer"]))
            else:  # layers, an integer whose values are consecutive
                j = values.index(int(round(float(point[name]))))
            i = i * len(values) + j
        return i

    def point(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, values in reversed(list(self.grid.items())):
            i, j = divmod(i, len(values))
            out[INDEXED.get(name, name)] = values[j] if name in ("optimizer", "layers") else j
        return dict(reversed(list(out.items())))


class BudgetSpent(Exception):
    """Raised once a method has used the compute cap (stops its loop)."""


class Ledger:
    """The compute a method uses, in epochs, in the order it used it: one event per result it
    got, ``(row, epoch, val_loss, cost)``. ``cost`` is the epochs trained to get that result: 1 for
    an epoch of a trial that trains on (or resumes from its checkpoint), the whole fidelity for a
    method that retrains from scratch at each fidelity (DEHB, SMAC)."""

    trace: str | None = None  # set by --trace: every event is also appended there (a slow run's partial curve)

    def __init__(self, table: Table, cap: int = CAP) -> None:
        self.table, self.cap = table, cap
        self.events: list[tuple[int, int, float, int]] = []
        self.spent = 0
        self.exhausted: str | None = None  # why a method ended before the cap (it had nothing to propose)
        if Ledger.trace:
            with open(Ledger.trace, "w"):
                pass

    @property
    def full(self) -> bool:
        return self.spent >= self.cap

    def train(self, row: int, epoch: int, cost: int = 1) -> float:
        """Charge ``cost`` epochs and return row's val_loss at ``epoch``; BudgetSpent once the cap
        is used up (before charging)."""
        if self.full:
            raise BudgetSpent
        loss = float(self.table.curves[row, epoch - 1])
        self.spent += cost
        self.events.append((row, epoch, loss, cost))
        if Ledger.trace:
            with open(Ledger.trace, "a") as f:
                f.write(json.dumps([row, epoch, loss, cost]) + "\n")
        return loss


def regret_curve(events: list[tuple[int, int, float, int]], table: Table, budgets: list[float],
                 incumbent: bool = False) -> list[float | None]:
    """Anytime regret at each budget (in full trainings): the best val_loss at full fidelity (27
    epochs) among the results obtained within the budget, minus the table's best final val_loss (0:
    the method has trained the best configuration to the end). None where no configuration has
    reached full fidelity yet.

    With ``incumbent``, the convention of several tabular benchmarks instead: before the first
    full-fidelity result, the incumbent is the configuration with the lowest val_loss at the
    highest fidelity reached so far, and the regret is its final val_loss from the table (credit
    for a model the method has not trained to the end)."""
    out: list[float | None] = []
    spent, k = 0, 0
    best_full: float | None = None
    top = (0, math.inf, -1)  # (epoch, loss, row) of the best result at the highest fidelity
    for b in budgets:
        limit = b * FULL
        while k < len(events) and spent + events[k][3] <= limit + 1e-9:
            row, epoch, loss, cost = events[k]
            spent += cost
            k += 1
            if epoch >= FULL:
                best_full = loss if best_full is None else min(best_full, loss)
            if epoch > top[0] or (epoch == top[0] and loss < top[1]):
                top = (epoch, loss, row)
        if best_full is not None:
            out.append(best_full - table.best_final)
        elif incumbent and top[2] >= 0:
            out.append(float(table.finals[top[2]]) - table.best_final)
        else:
            out.append(None)
    return out


# -- ours, through the Python API on the simulated backend --------------------------------------
OURS_SPACE = {
    "lr_i": {"type": "int", "low": 0, "high": 5},
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    "channels_i": {"type": "int", "low": 0, "high": 2},
    "layers": {"type": "int", "low": 1, "high": 3},
    "batch_i": {"type": "int", "low": 0, "high": 1},
}
_LEDGER: list[Ledger] = []  # the ledger of the run in progress (trials run in this process's threads)


def tabular_objective(config: dict[str, Any], reporter) -> dict[str, float]:
    """A "training" of a grid configuration: epoch by epoch, the table's val_loss. It checkpoints
    its epoch at every report and resumes from a checkpoint it is given (what pausing schedulers
    need), so a resumed trial pays only for the epochs it adds."""
    ledger = _LEDGER[-1]
    row = ledger.table.index(config)
    state = reporter.load_checkpoint()
    start = 0 if state is None else int(state["epoch"])
    loss = math.nan
    for epoch in range(start + 1, FULL + 1):
        loss = ledger.train(row, epoch)
        if config.get("_pauses"):
            reporter.save_checkpoint({"epoch": epoch}, epoch)
        if reporter.report(epoch, val_loss=loss):
            break
    return {"val_loss": loss}


def run_ours(table: Table, seed: int, algorithm: str | None, scheduler: dict[str, Any] | None,
             trials: int = 5000) -> Ledger:
    import search

    ledger = Ledger(table)
    _LEDGER.append(ledger)

    def cap(_study, _trial) -> None:
        if ledger.full:
            raise BudgetSpent

    pauses = bool(scheduler) and (scheduler.get("type") == "promotion" or scheduler["name"] == "freeze-thaw")
    with tempfile.TemporaryDirectory(prefix="mf-regret-") as wd:
        spec: dict[str, Any] = {
            "name": "mf-regret", "objective": {"metric": "val_loss", "direction": "minimize"},
            "trial": {"entrypoint": tabular_objective, "params": {"_pauses": pauses}},
            "space": OURS_SPACE, "algorithm": {"seed": seed, **({"name": algorithm} if algorithm else {})},
            "budget": {"trials": trials, "parallel": 1}, "artifacts": os.path.join(wd, "artifacts"),
        }
        if scheduler:
            spec["scheduler"] = scheduler
        study = search.create_study(spec, storage=f"sqlite:///{os.path.join(wd, 'ours.db')}")
        try:
            study.optimize(tabular_objective, backend="simulated", show_progress=False, callbacks=[cap])
        except BudgetSpent:
            pass
        finally:
            study.close()
            _LEDGER.pop()
    return ledger


ASHA_OPTS = {"min_resource": 1, "reduction_factor": 3, "max_resource": FULL}


def _register_quantile_asha() -> None:
    """An experiment, not the product: ASHA (stopping form) with the rung rule of Syne Tune's and
    Ray Tune's ASHA. Ours keeps the best max(1, floor(n/eta)) of the n trials at a rung, ties to the
    earlier trial; this one lets a trial go on when at most n/eta of the n trials there are strictly
    better (ties share the better rank), so e.g. 2 of 3 go on where ours keeps 1. Registered under
    the name ``asha-quantile`` in this process only."""
    from search import schedulers

    if "asha-quantile" in schedulers.SCHEDULERS:
        return

    class QuantileRungs(schedulers._Rungs):
        def promotable(self, number: int, k: int, strict: bool = False) -> bool:
            rung = self.recorded[k]
            return sum(v < rung[number] for v in rung.values()) <= len(rung) / self.eta

    class QuantileASHA(schedulers.ASHA):
        name = "asha-quantile"

        def __init__(self, metric: str, mode: str, seed: int = 0, **options: Any) -> None:
            super().__init__(metric, mode, seed, **options)
            if self.promotion:
                raise ValueError("asha-quantile is the stopping form only")
            self.rungs = QuantileRungs(self.rungs.r_min, self.rungs.eta, self.rungs.r_max)

    schedulers.SCHEDULERS["asha-quantile"] = QuantileASHA


def run_quantile(table: Table, seed: int, algorithm: str | None) -> Ledger:
    _register_quantile_asha()
    return run_ours(table, seed, algorithm, {"name": "asha-quantile", **ASHA_OPTS})


def ours_methods() -> dict[str, Any]:
    return {
        # what `scheduler: {name: asha}` gives with no algorithm: bo proposes, ASHA (stopping) stops
        "ours: bo+asha (default)": lambda t, s: run_ours(t, s, None, {"name": "asha", **ASHA_OPTS}),
        # the same with ASHA's promotion form (pause, resume later): a candidate default
        "ours: bo+asha promotion": lambda t, s: run_ours(t, s, None, {"name": "asha", "type": "promotion",
                                                                       **ASHA_OPTS}),
        "ours: asha": lambda t, s: run_ours(t, s, "random", {"name": "asha", **ASHA_OPTS}),
        "ours: asha promotion": lambda t, s: run_ours(t, s, "random", {"name": "asha", "type": "promotion",
                                                                       **ASHA_OPTS}),
        "ours: hyperband": lambda t, s: run_ours(t, s, "random", {"name": "hyperband", **ASHA_OPTS}),
        "ours: freeze-thaw": lambda t, s: run_ours(t, s, "random", {"name": "freeze-thaw", **ASHA_OPTS}),
        "ours: random": lambda t, s: run_ours(t, s, "random", None, trials=max(BUDGETS)),
        # experiments (not the product): our controller with Syne Tune's / Ray Tune's rung rule
        "exp: bo+asha quantile-rule": lambda t, s: run_quantile(t, s, None),
        "exp: asha quantile-rule": lambda t, s: run_quantile(t, s, "random"),
    }


# -- the one-epoch baseline (Egele et al. 2023) ---------------------------------------------------
def run_one_epoch_topk(table: Table, seed: int) -> Ledger:
    """Train every configuration of the grid (in a seeded random order) for one epoch, then train
    the best of them, in the order of their one-epoch loss, to the end, resuming each from its
    first epoch (26 more epochs each) until the budget is spent."""
    import numpy as np

    ledger = Ledger(table)
    order = np.random.default_rng(seed).permutation(table.n)
    try:
        first = [(ledger.train(int(r), 1), int(r)) for r in order]
        for _, r in sorted(first):
            for epoch in range(2, FULL + 1):
                ledger.train(r, epoch)
    except BudgetSpent:
        pass
    return ledger



# -- peers, each through its own API ---------------------------------------------------------------
def _configspace(seed: int):
    from ConfigSpace import Categorical, ConfigurationSpace, Integer

    cs = ConfigurationSpace(seed=seed)
    cs.add([Integer("lr_i", (0, 5)), Categorical("optimizer", ["adam", "sgd"]), Integer("channels_i", (0, 2)),
            Integer("layers", (1, 3)), Integer("batch_i", (0, 1))])
    return cs


def run_dehb(table: Table, seed: int) -> Ledger:
    """DEHB (Awad et al. 2021) through ask/tell, fidelities 1..27 epochs with eta 3. DEHB evaluates a
    configuration at a fidelity from scratch: each evaluation costs its fidelity."""
    from dehb import DEHB

    ledger = Ledger(table)
    with tempfile.TemporaryDirectory(prefix="dehb-") as wd:
        opt = DEHB(cs=_configspace(seed), dimensions=5, min_fidelity=1, max_fidelity=FULL, eta=3, n_workers=1,
                   seed=seed, output_path=wd, log_level="ERROR", save_freq=None)
        try:
            while True:
                job = opt.ask()
                fid = int(round(job["fidelity"]))
                loss = ledger.train(table.index(dict(job["config"])), fid, cost=fid)
                opt.tell(job, {"fitness": loss, "cost": fid})
        except BudgetSpent:
            pass
    return ledger


def run_smac(table: Table, seed: int, facade: str) -> Ledger:
    """SMAC3's MultiFidelityFacade (random forest + Hyperband: BOHB-like) or HyperbandFacade (random
    configurations + Hyperband) through ask/tell, budgets 1..27 epochs, eta 3; each trial at a
    budget trains from scratch (SMAC does not continue a configuration's training)."""
    from smac import HyperbandFacade, MultiFidelityFacade, Scenario
    from smac.runhistory.dataclasses import TrialValue
    from smac.main.exceptions import ConfigurationSpaceExhaustedException

    ledger = Ledger(table)
    cls = MultiFidelityFacade if facade == "mf" else HyperbandFacade
    with tempfile.TemporaryDirectory(prefix="smac-") as wd:
        scenario = Scenario(_configspace(seed), deterministic=True, n_trials=100000, min_budget=1, max_budget=FULL,
                            seed=seed, output_directory=wd)
        smac = cls(scenario, lambda config, seed=0, budget=None: 0.0,
                   intensifier=cls.get_intensifier(scenario, eta=3), overwrite=True, logging_level=40)
        try:
            while True:
                info = smac.ask()
                fid = int(round(info.budget))
                loss = ledger.train(table.index(dict(info.config)), fid, cost=fid)
                smac.tell(info, TrialValue(cost=loss))
        except BudgetSpent:
            pass
        except ConfigurationSpaceExhaustedException:
            # SMAC proposes no configuration twice; on a finite grid it can run out
            ledger.exhausted = f"ConfigurationSpaceExhaustedException after {ledger.spent} epochs"
    return ledger


def run_syne(table: Table, seed: int, which: str) -> Ledger:
    """Syne Tune's ASHA or BOHB (ASHA with a KDE searcher) driven one trial at a time as its
    backends do with one worker: suggest, report every epoch, stop when the scheduler says so.
    Both are the stopping form (a stopped trial is never resumed)."""
    from datetime import datetime

    from syne_tune.backend.trial_status import Trial
    from syne_tune.config_space import choice, randint
    from syne_tune.optimizer.baselines import ASHA, BOHB

    space = {"lr_i": randint(0, 5), "optimizer": choice(["adam", "sgd"]), "channels_i": randint(0, 2),
             "layers": randint(1, 3), "batch_i": randint(0, 1)}
    cls = ASHA if which == "asha" else BOHB
    sched = cls(space, metric="val_loss", time_attr="epoch", max_t=FULL, do_minimize=True, random_seed=seed,
                grace_period=1, reduction_factor=3)
    ledger = Ledger(table)
    try:
        for tid in itertools.count():
            sugg = sched.suggest()
            if sugg is None:
                break
            trial = Trial(trial_id=tid, config=sugg.config, creation_time=datetime.now())
            sched.on_trial_add(trial)
            row = table.index(sugg.config)
            for epoch in range(1, FULL + 1):
                result = {"val_loss": ledger.train(row, epoch), "epoch": epoch}
                if epoch == FULL:
                    sched.on_trial_complete(trial, result)
                    break
                if sched.on_trial_result(trial, result) != "CONTINUE":
                    break
    except BudgetSpent:
        pass
    return ledger


def run_optuna(table: Table, seed: int) -> Ledger:
    """Optuna's TPE with its HyperbandPruner (min 1, max 27 epochs, eta 3): a pruned trial stops."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    ledger = Ledger(table)

    def objective(trial) -> float:
        point = {"lr_i": trial.suggest_int("lr_i", 0, 5), "optimizer": trial.suggest_categorical("optimizer", ["adam", "sgd"]),
                 "channels_i": trial.suggest_int("channels_i", 0, 2), "layers": trial.suggest_int("layers", 1, 3),
                 "batch_i": trial.suggest_int("batch_i", 0, 1)}
        row = table.index(point)
        loss = math.nan
        for epoch in range(1, FULL + 1):
            loss = ledger.train(row, epoch)
            trial.report(loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return loss

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=FULL,
                                                                      reduction_factor=3))
    try:
        study.optimize(objective, n_trials=100000, catch=())
    except BudgetSpent:
        pass
    return ledger


def _tune_trainable(config: dict[str, Any], curves: list[list[float]], rows: dict[str, int]) -> None:
    from ray import tune

    row = rows[_key(config)]
    for epoch in range(1, FULL + 1):
        tune.report({"val_loss": curves[row][epoch - 1], "epoch": epoch, "row": row})


def _key(point: dict[str, Any]) -> str:
    return f"{int(point['lr_i'])}/{point['optimizer']}/{int(point['channels_i'])}/{int(point['layers'])}/{int(point['batch_i'])}"


def run_ray_asha(table: Table, seed: int) -> Ledger:
    """Ray Tune's ASHAScheduler (stopping form, grace 1, max_t 27, eta 3) over Ray Tune's own random
    search (seeded BasicVariantGenerator), ``tune.Tuner`` with ``max_concurrent_trials=1``. Each
    result the driver receives is charged one epoch; a Stopper ends the run at the cap."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from search.backends.ray_backend import init_local_ray

    # "local": a fresh instance of our own, never one another process on this machine started
    init_local_ray("local", num_cpus=2, include_dashboard=False,
                   runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([HERE, REPO])}})
    ledger = Ledger(table)
    rows = {_key(table.point(i)): i for i in range(table.n)}

    class Cap(tune.Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            if not ledger.full and "val_loss" in result:
                ledger.train(int(result["row"]), int(result["epoch"]))
            return False

        def stop_all(self) -> bool:
            return ledger.full

    space = {"lr_i": tune.randint(0, 6), "optimizer": tune.choice(["adam", "sgd"]),
             "channels_i": tune.randint(0, 3), "layers": tune.randint(1, 4), "batch_i": tune.randint(0, 2)}
    with tempfile.TemporaryDirectory(prefix="tune-") as wd:
        tuner = tune.Tuner(
            tune.with_parameters(_tune_trainable, curves=table.curves.tolist(), rows=rows), param_space=space,
            tune_config=tune.TuneConfig(metric="val_loss", mode="min", num_samples=5000, max_concurrent_trials=1,
                                        reuse_actors=True,
                                        search_alg=BasicVariantGenerator(random_state=seed, max_concurrent=1),
                                        scheduler=ASHAScheduler(time_attr="epoch", max_t=FULL, grace_period=1,
                                                                reduction_factor=3)),
            run_config=tune.RunConfig(storage_path=wd, name=f"asha-s{seed}", verbose=0, stop=Cap()),
        )
        tuner.fit()
    return ledger


def peer_methods() -> dict[str, Any]:
    return {
        "DEHB": run_dehb,
        "SMAC3 MF (BOHB-like)": lambda t, s: run_smac(t, s, "mf"),
        "SMAC3 Hyperband": lambda t, s: run_smac(t, s, "hb"),
        "Syne Tune ASHA": lambda t, s: run_syne(t, s, "asha"),
        "Syne Tune BOHB": lambda t, s: run_syne(t, s, "bohb"),
        "Optuna TPE+Hyperband": run_optuna,
        "Ray Tune ASHA": run_ray_asha,
        "1 epoch each, then top-k": run_one_epoch_topk,
    }


# -- running, summarising ----------------------------------------------------------------------------
DEFAULT = "ours: bo+asha (default)"
PLOT_BUDGETS = [0.5 * k for k in range(2, 2 * max(BUDGETS) + 1)]  # 1, 1.5, ..., 50 full trainings


def all_methods() -> dict[str, Any]:
    return {**ours_methods(), **peer_methods()}


def run_cell(table: Table, method: str, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    ledger = all_methods()[method](table, seed)
    wall = time.perf_counter() - t0
    if ledger.spent < ledger.cap and not ledger.exhausted:
        # e.g. an interrupted study (the controller ends a run it is signalled to stop)
        raise RuntimeError(f"{method} seed {seed} ended after {ledger.spent} of {ledger.cap} epochs")
    full = sum(1 for e in ledger.events if e[1] >= FULL)
    spent, first_full = 0, None
    for e in ledger.events:
        spent += e[3]
        if e[1] >= FULL:
            first_full = spent / FULL
            break
    return {"first_full_at": first_full, "method": method, "seed": seed, "spent": ledger.spent, "results": len(ledger.events),
            "full_trainings_completed": full, "wall_s": round(wall, 2),
            "exhausted": ledger.exhausted,
            "regret": regret_curve(ledger.events, table, PLOT_BUDGETS),
            "regret_incumbent": regret_curve(ledger.events, table, PLOT_BUDGETS, incumbent=True)}


def load_runs(path: str) -> dict[tuple[str, int], dict[str, Any]]:
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    if r["spent"] >= CAP or r.get("exhausted"):  # complete runs only
                        runs[(r["method"], r["seed"])] = r
    return runs


def bootstrap(values, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and the percentile bootstrap 95% interval of the mean."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(reps, len(v)))].mean(axis=1)
    return float(v.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(table: Table, runs: dict[tuple[str, int], dict[str, Any]], methods: list[str],
              plot: str | None, markdown: bool = False) -> dict[str, Any]:
    import numpy as np

    at = {b: PLOT_BUDGETS.index(float(b)) for b in BUDGETS}
    seeds_of = {m: sorted(s for (mm, s) in runs if mm == m) for m in methods}
    methods = [m for m in methods if seeds_of[m]]

    worst = float(table.finals.max()) - table.best_final

    def reg(m: str, b: int, seeds: list[int], key: str = "regret") -> list[float]:
        # None (nothing trained to 27 epochs yet) counts as the worst configuration's regret.
        return [runs[(m, s)][key][at[b]] if runs[(m, s)][key][at[b]] is not None else worst for s in seeds]

    def none(m: str, b: int) -> int:
        return sum(runs[(m, s)]["regret"][at[b]] is None for s in seeds_of[m])

    out: dict[str, Any] = {"bench": "mf_regret", "task": "cnn-digits table", "configs": table.n,
                           "best_final_val_loss": table.best_final, "budgets_full_trainings": list(BUDGETS),
                           "cpus": os.cpu_count(), "methods": {}}
    print(f"\nAnytime regret (val_loss of the incumbent after 27 epochs minus the table's best, "
          f"{table.best_final:.4f}), mean [95% bootstrap interval] over seeds, at compute in full trainings")
    print(f"{'method':<26} {'seeds':>5} " + " ".join(f"{b:>22}" for b in BUDGETS))
    for m in methods:
        cells, row = [], {}
        for b in BUDGETS:
            mean, lo, hi = bootstrap(reg(m, b, seeds_of[m]))
            row[str(b)] = {"mean": mean, "lo": lo, "hi": hi, "seeds_without_full_training": none(m, b),
                           "mean_incumbent_convention": float(np.mean(reg(m, b, seeds_of[m], "regret_incumbent")))}
            cells.append(f"{mean:.4f} [{lo:.4f},{hi:.4f}]" + (f"*{none(m, b)}" if none(m, b) else ""))
        out["methods"][m] = {"seeds": len(seeds_of[m]), "regret": row,
                             "wall_s_per_run": float(np.mean([runs[(m, s)]["wall_s"] for s in seeds_of[m]]))}
        print(f"{m:<26} {len(seeds_of[m]):>5} " + " ".join(f"{c:>22}" for c in cells))
    print(f"*k: k seeds had no configuration trained to 27 epochs yet (counted as the worst, {worst:.4f})")
    if DEFAULT in methods:
        print(f"\nDifference to {DEFAULT} (method - ours; > 0: ours lower), paired over common seeds, mean [95% interval]")
        print(f"{'method':<26} {'seeds':>5} " + " ".join(f"{b:>24}" for b in BUDGETS))
        for m in methods:
            if m == DEFAULT:
                continue
            common = sorted(set(seeds_of[m]) & set(seeds_of[DEFAULT]))
            if not common:
                continue
            cells, row = [], {}
            for b in BUDGETS:
                d = np.array(reg(m, b, common)) - np.array(reg(DEFAULT, b, common))
                mean, lo, hi = bootstrap(d)
                row[str(b)] = {"mean": mean, "lo": lo, "hi": hi}
                cells.append(f"{mean:+.4f} [{lo:+.4f},{hi:+.4f}]")
            out["methods"][m]["minus_default"] = row
            print(f"{m:<26} {len(common):>5} " + " ".join(f"{c:>24}" for c in cells))
        lowest = {}
        for b in BUDGETS:
            means = {m: out["methods"][m]["regret"][str(b)]["mean"] for m in methods}
            lowest[str(b)] = min(means, key=means.get)
        out["lowest_mean_regret"] = lowest
        out["goal_met"] = all(v == DEFAULT or out["methods"][v]["regret"][str(b)]["mean"]
                              >= out["methods"][DEFAULT]["regret"][str(b)]["mean"] for b, v in lowest.items())
        print("\nlowest mean regret: " + ", ".join(f"{b}: {m}" for b, m in lowest.items()))
    if markdown:
        print("\n| method | seeds | " + " | ".join(f"{b} full trainings" for b in BUDGETS) + " |")
        print("| --- | --- | " + " | ".join("---" for _ in BUDGETS) + " |")
        for m in methods:
            cells = []
            for b in BUDGETS:
                c = out["methods"][m]["regret"][str(b)]
                d = out["methods"][m].get("minus_default", {}).get(str(b))
                cell = f"{c['mean']:.4f} [{c['lo']:.4f}, {c['hi']:.4f}]"
                if c["seeds_without_full_training"]:
                    cell += f" ({c['seeds_without_full_training']} seeds: none at 27 epochs)"
                if d is not None:
                    cell += f"<br>{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]"
                cells.append(cell)
            name = f"**{m}**" if m == DEFAULT else m
            print(f"| {name} | {len(seeds_of[m])} | " + " | ".join(cells) + " |")
    if plot:
        plot_regret(table, runs, methods, seeds_of, plot)
        out["plot"] = os.path.relpath(plot, REPO)
    return out


def plot_regret(table: Table, runs, methods: list[str], seeds_of, path: str) -> None:
    """Two panels on one scale: ours (and the experiments) on the left, the peers on the right,
    our default on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    worst = float(table.finals.max()) - table.best_final
    x = np.array(PLOT_BUDGETS)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    panels = [[m for m in methods if m.startswith(("ours", "exp"))],
              [m for m in methods if m == DEFAULT or not m.startswith(("ours", "exp"))]]
    for ax, panel, title in zip(axes, panels, ("ours", "peers (our default in bold)")):
        ax.set_prop_cycle(color=[plt.get_cmap("tab10")(i) for i in range(10)])
        for m in panel:
            ys = np.array([[v if v is not None else worst for v in runs[(m, s)]["regret"]] for s in seeds_of[m]])
            stats = [bootstrap(ys[:, j], reps=500) for j in range(len(x))]
            bold = m == DEFAULT
            line = ax.plot(x, [st[0] for st in stats], label=f"{m} ({len(seeds_of[m])} seeds)", lw=2.6 if bold else 1.4,
                           color="black" if bold else None, ls=":" if m.startswith("exp") else "-")[0]
            ax.fill_between(x, [st[1] for st in stats], [st[2] for st in stats], color=line.get_color(),
                            alpha=0.15 if bold else 0.07)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_ylim(0, 3)
        ax.set_xticks(list(BUDGETS) + [1, 2])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("compute (full 27-epoch trainings)")
        ax.set_title(title)
        ax.legend(fontsize=7.5)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("regret: best final val_loss found - best in table")
    fig.suptitle(f"CNN on digits, {table.n} configurations from a table of real curves: anytime regret, "
                 "mean and 95% interval over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    import logging

    logging.getLogger("search").setLevel(logging.ERROR)
    table = Table(args.table)
    names = list(all_methods())
    wanted = [w.strip().lower() for w in args.methods.split(",")]
    methods = names if args.methods == "all" else [m for m in names if m.lower() in wanted or any(
        w.endswith("*") and m.lower().startswith(w[:-1]) for w in wanted)]
    if "-" in args.seeds:
        lo, hi = args.seeds.split("-")
        seeds = list(range(int(lo), int(hi) + 1))
    else:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    runs = load_runs(args.runs)
    Ledger.trace = args.trace
    if "ray" in " ".join(methods).lower():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    print(f"table: {table.n} configurations, best final val_loss {table.best_final:.4f}, "
          f"{len(table.failed)} diverged; methods: {methods}; seeds: {seeds}", flush=True)
    for m in methods:
        for seed in seeds:
            if args.report or ((m, seed) in runs and not args.rerun):
                continue
            try:
                r = run_cell(table, m, seed)
            except Exception as e:  # a peer that fails is reported, the others go on
                print(f"[{m} seed {seed}] FAILED: {type(e).__name__}: {str(e)[:300]}", flush=True)
                break
            runs[(m, seed)] = r
            with open(args.runs, "a") as f:
                f.write(json.dumps(r) + "\n")
            at = {b: r["regret"][PLOT_BUDGETS.index(float(b))] for b in BUDGETS}
            print(f"[{m} seed {seed}] {r['wall_s']:.1f}s, {r['results']} results, "
                  f"{r['full_trainings_completed']} at 27 epochs; regret {at}", flush=True)
    shown = [m for m in names if any(mm == m for mm, _ in runs)] if args.methods == "all" else methods
    result = summarize(table, {k: v for k, v in runs.items() if k[1] in seeds or args.all_seeds}, shown, args.plot,
                       markdown=args.markdown)
    print(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    b = sub.add_parser("build-table", help="train the grid once (the table every method runs on)")
    b.add_argument("--out", default=TABLE_PATH)
    b.add_argument("--progress", default=os.path.join(tempfile.gettempdir(), "mf_regret_cnn_table.jsonl"))
    r = sub.add_parser("run", help="run the methods on the table and print the regret table")
    r.add_argument("--table", default=TABLE_PATH)
    r.add_argument("--methods", default="all",
                   help="'all' or comma-separated method names (case-insensitive; 'PREFIX*' for all that start so)")
    r.add_argument("--seeds", default="0-19", help="a range A-B or a comma-separated list")
    r.add_argument("--runs", default=RUNS_PATH, help="JSON lines of finished (method, seed) runs, reused")
    r.add_argument("--markdown", action="store_true", help="also print the table as Markdown (the docs' table)")
    r.add_argument("--report", action="store_true", help="run nothing: summarise what --runs holds")
    r.add_argument("--rerun", action="store_true", help="run again the (method, seed) pairs already in --runs")
    r.add_argument("--all-seeds", action="store_true", help="summarise every seed in --runs, not only --seeds")
    r.add_argument("--trace", default=None, help="append each result of the run in progress to this file")
    r.add_argument("--plot", default=os.path.join(REPO, "docs", "images", "mf-regret.png"))
    args = ap.parse_args(argv)
    if args.cmd == "build-table":
        build_table(args.out, args.progress)
    elif args.cmd == "run":
        run(args)
    else:
        ap.print_help()


if __name__ == "__main__":
    main()
