"""Per-trial dispatch overhead for a no-op objective: search-service on Ray vs Ray Tune (reused
actors) vs Optuna's in-process optimize, side by side in one process run.

    python bench/bench_dispatch.py [--trials 200] [--parallel 2] [--repeats 3]

Each system runs ``--repeats`` pairs of a short and a long study; the marginal cost per trial is
the median over pairs of the slope (t_long - t_short) / (n_long - n_short), which excludes fixed
start-up (Ray, actors, imports); its range is printed too.
All three use random sampling so the sampler's own cost does not enter the figure.
Prints one line per system, the ratios, the marginal CPU time of our driver process per trial (less
sensitive than wall time to other load on the machine), and a final JSON line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


# n -> CPU seconds of this process (the controller and the slot threads) per run of n trials: less
# sensitive than wall time to other load on the machine.
DRIVER_CPU: dict[int, list[float]] = {}


def ours(n: int, parallel: int, workdir: str) -> float:
    from search.algorithms import make_algorithm
    from search.backends.ray_backend import RayBackend
    from search.config import parse_study
    from search.controller import Controller
    from storage import open_storage

    config = parse_study({
        "name": f"bench-{n}", "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "bench_objectives:noop"},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 0}, "budget": {"trials": n, "parallel": parallel},
        "resources": {"cpus": 1}, "artifacts": os.path.join(workdir, "artifacts"),
    })
    st = open_storage(f"sqlite:///{os.path.join(workdir, f'ours-{n}-{time.time_ns()}.db')}")
    rec = st.create_study(config.name, metrics=config.metrics, directions=config.directions, spec=dict(config.raw))
    backend = RayBackend()
    backend.start(parallel=parallel, cpus=1, gpus=0)
    backend.wait_placed()  # actors up: time the dispatch, not Ray starting workers
    algo = make_algorithm("random", config.space, config.metrics, config.directions, seed=0)
    t0, c0 = time.perf_counter(), time.process_time()
    summary = Controller(config, st, backend, algo, rec).run()
    elapsed = time.perf_counter() - t0
    DRIVER_CPU.setdefault(n, []).append(time.process_time() - c0)
    assert summary.complete == n, summary
    st.close()
    return elapsed


def ray_tune(n: int, parallel: int, workdir: str) -> float:
    from ray import tune

    from bench_objectives import noop

    def trainable(config):
        return {"loss": noop(config)}

    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.uniform(0.0, 1.0)},
        tune_config=tune.TuneConfig(num_samples=n, max_concurrent_trials=parallel, reuse_actors=True,
                                    metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=os.path.join(workdir, "tune"), name=f"tune-{n}-{time.time_ns()}",
                                  verbose=0),
    )
    t0 = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - t0
    assert len(results) == n
    return elapsed


def optuna_inprocess(n: int, parallel: int, workdir: str, sqlite: bool) -> float:
    import optuna

    from bench_objectives import noop

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{os.path.join(workdir, f'optuna-{n}-{time.time_ns()}.db')}" if sqlite else None
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        return noop({"x": trial.suggest_float("x", 0.0, 1.0)})

    t0 = time.perf_counter()
    study.optimize(objective, n_trials=n, n_jobs=parallel)
    return time.perf_counter() - t0


def marginal(fn, n_short: int, n_long: int, repeats: int) -> tuple[float, float, float, float]:
    """Marginal ms per trial as the median over ``repeats`` (short, long) pairs of the slope
    (t_long - t_short) / (n_long - n_short), with its range, and the median total ms per trial of
    the long runs. Ray Tune's time per run varies by 2x between identical runs here, hence pairs."""
    import statistics

    slopes, totals = [], []
    for _ in range(repeats):
        t_short, t_long = fn(n_short), fn(n_long)
        slopes.append(1000 * (t_long - t_short) / (n_long - n_short))
        totals.append(1000 * t_long / n_long)
    return statistics.median(slopes), min(slopes), max(slopes), statistics.median(totals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["PYTHONPATH"] = os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])
    logging.getLogger("ray").setLevel(logging.ERROR)

    from search.backends.ray_backend import init_local_ray

    init_local_ray(None, runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}})
    n_long, n_short = args.trials, max(10, args.trials // 4)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    res: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as wd:
        ours(8, args.parallel, wd)  # warm: actor class export, imports
        r = args.repeats
        res["search-service (ray, sqlite)"] = marginal(lambda n: ours(n, args.parallel, wd), n_short, n_long, r)
        res["ray tune (reuse_actors)"] = marginal(lambda n: ray_tune(n, args.parallel, wd), n_short, n_long, r)
        res["optuna optimize (in-memory)"] = marginal(lambda n: optuna_inprocess(n, args.parallel, wd, False),
                                                      n_short, n_long, r)
        res["optuna optimize (sqlite)"] = marginal(lambda n: optuna_inprocess(n, args.parallel, wd, True),
                                                   n_short, n_long, r)
    print(f"no-op objective, {n_long} trials, parallel {args.parallel}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    print(f"{'system':<32} {'marginal ms/trial (median, range)':>34} {'total ms/trial':>15}")
    for name, (m, lo, hi, tot) in res.items():
        print(f"{name:<32} {m:>12.2f} ({lo:>7.2f} .. {hi:>7.2f}) {tot:>15.2f}")
    import statistics

    cpu = statistics.median(1000 * (lo - sh) / (n_long - n_short)
                            for sh, lo in zip(DRIVER_CPU[n_short], DRIVER_CPU[n_long]))
    print(f"search-service driver CPU (controller + slot threads), marginal ms/trial: {cpu:.2f}")
    ours_ms = res["search-service (ray, sqlite)"][0]
    tune_ms = res["ray tune (reuse_actors)"][0]
    print(f"ray tune / search-service marginal: {tune_ms / ours_ms:.1f}x")
    print(f"optuna sqlite / search-service marginal: {res['optuna optimize (sqlite)'][0] / ours_ms:.2f}x")
    print(json.dumps({
        "bench": "dispatch", "trials": n_long, "parallel": args.parallel,
        "ms_per_trial": {k: round(v[0], 3) for k, v in res.items()},
        "ms_per_trial_range": {k: [round(v[1], 3), round(v[2], 3)] for k, v in res.items()},
        "total_ms_per_trial": {k: round(v[3], 3) for k, v in res.items()},
        "tune_over_ours": round(tune_ms / ours_ms, 2), "ours_driver_cpu_ms_per_trial": round(cpu, 3),
    }))


if __name__ == "__main__":
    main()
