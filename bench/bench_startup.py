"""Start-up: time from the command to the first trial running, and the wall time of a 20-trial
study of a no-op objective, for `search run` (a fresh local Ray instance, the instance `search ray
start` left running, the in-process backend), Ray Tune (`Tuner.fit()`) and Optuna (`optimize`, in
memory and SQLite), side by side in one run.

    python bench/bench_startup.py [--trials 20] [--parallel 2] [--repeats 3]

Every system runs as a fresh Python process, timed from its launch: imports, starting Ray and
opening storage all count, as they do for a user. The objective writes the wall-clock time of its
first call to a file: that minus the launch time is "first trial". Ray Tune gets a fresh local Ray
instance (``ray.init(address="local")``, Ray's defaults otherwise), as on a clean machine. Medians over ``--repeats`` runs,
with the range. The `search ray start` instance is started once, before its runs, in a private
folder (``SEARCH_RAY_DIR``), and its own start-up time is printed apart. Prints one line per
system, the ratios, and a final JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def first(config) -> float:
    """The no-op objective: records when the first trial ran (the first call creates the file)."""
    try:
        fd = os.open(config["stamp"], os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return 0.0
    with os.fdopen(fd, "w") as f:
        f.write(repr(time.time()))
    return 0.0


TUNE = """
import os, sys, time
import ray
from ray import tune
from bench_startup import first
# A fresh local instance, as on a clean machine: a bare ray.init() would join any Ray it finds here.
ray.init(address="local")
def trainable(config):
    return {"loss": first(config)}
tuner = tune.Tuner(trainable, param_space={"x": tune.uniform(0.0, 1.0), "stamp": STAMP},
                   tune_config=tune.TuneConfig(num_samples=N, max_concurrent_trials=P, metric="loss", mode="min"),
                   run_config=tune.RunConfig(storage_path=WD, name="tune", verbose=0))
assert len(tuner.fit()) == N
"""

OPTUNA = """
import optuna
from bench_startup import first
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(storage=STORAGE, sampler=optuna.samplers.RandomSampler(seed=0))
study.optimize(lambda t: first({"x": t.suggest_float("x", 0.0, 1.0), "stamp": STAMP}), n_trials=N, n_jobs=P)
assert len(study.trials) == N
"""


def _env(ray_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEARCH_") and k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([HERE, REPO, os.environ.get("PYTHONPATH", "")])
    env["SEARCH_RAY_DIR"] = ray_dir
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _timed(cmd: list[str], env: dict[str, str], stamp: str, cwd: str) -> tuple[float, float]:
    """(seconds to the first trial, seconds to exit) of ``cmd`` from its launch."""
    if os.path.exists(stamp):
        os.unlink(stamp)
    t0 = time.time()
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    wall = time.time() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {out.returncode}: {out.stderr[-2000:]}")
    with open(stamp, encoding="utf-8") as f:
        return float(f.read()) - t0, wall


def _study(path: str, name: str, n: int, parallel: int, backend: str, stamp: str, wd: str) -> None:
    import yaml

    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({
            "name": name, "objective": {"metric": "loss", "direction": "minimize"},
            "trial": {"entrypoint": "bench_startup:first", "params": {"stamp": stamp}},
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "algorithm": {"name": "random", "seed": 0}, "budget": {"trials": n, "parallel": parallel},
            "resources": {"cpus": 1}, "backend": {"name": backend}, "artifacts": os.path.join(wd, "artifacts"),
        }, f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    n, p = args.trials, args.parallel
    search = [sys.executable, "-m", "search"]
    runs: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as wd:
        stamp = os.path.join(wd, "first")
        fresh_env, reuse_env = _env(os.path.join(wd, "no-instance")), _env(os.path.join(wd, "ray"))

        def ours(label: str, backend: str, env: dict[str, str], i: int) -> None:
            k = sum(map(len, runs.values()))  # a fresh study file and database per run
            path = os.path.join(wd, f"study-{k}.yaml")
            _study(path, f"startup-{k}", n, p, backend, stamp, wd)
            db = f"sqlite:///{os.path.join(wd, f'search-{k}.db')}"
            runs.setdefault(label, []).append(_timed([*search, "run", path, "--storage", db, "--quiet"],
                                                     env, stamp, wd))

        def script(label: str, code: str, i: int, **consts) -> None:
            consts.update(N=n, P=p, STAMP=stamp, WD=os.path.join(wd, f"tune-{i}"))
            prelude = "".join(f"{k} = {v!r}\n" for k, v in consts.items())
            runs.setdefault(label, []).append(
                _timed([sys.executable, "-c", prelude + textwrap.dedent(code)], fresh_env, stamp, wd))

        t0 = time.time()
        subprocess.run([*search, "ray", "start"], env=reuse_env, check=True, capture_output=True, timeout=300)
        ray_start_s = time.time() - t0
        try:
            for i in range(args.repeats):
                ours("search run (fresh local Ray)", "ray", fresh_env, i)
                ours("search run (search ray start)", "ray", reuse_env, i)
                ours("search run (in-process)", "inprocess", fresh_env, i)
                script("ray tune Tuner.fit()", TUNE, i)
                script("optuna optimize (in memory)", OPTUNA, i, STORAGE=None)
                script("optuna optimize (sqlite)", OPTUNA, i,
                       STORAGE=f"sqlite:///{os.path.join(wd, f'optuna-{i}.db')}")
        finally:
            subprocess.run([*search, "ray", "stop"], env=reuse_env, capture_output=True, timeout=120)

    def med(label: str, k: int) -> float:
        return statistics.median(r[k] for r in runs[label])

    print(f"no-op objective, {n} trials, parallel {p}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"median of {args.repeats}; `search ray start` itself took {ray_start_s:.1f} s (once)")
    print(f"{'system':<34} {'first trial s (range)':>24} {'wall s (range)':>24}")
    for label, rs in runs.items():
        f = [r[0] for r in rs]
        w = [r[1] for r in rs]
        print(f"{label:<34} {med(label, 0):>7.2f} ({min(f):>6.2f} .. {max(f):>6.2f}) "
              f"{med(label, 1):>7.2f} ({min(w):>6.2f} .. {max(w):>6.2f})")
    tune = med("ray tune Tuner.fit()", 1)
    ratios = {label: round(med(label, 1) / tune, 3) for label in runs if label.startswith("search")}
    for label, r in ratios.items():
        print(f"{label} wall / ray tune wall: {r:.2f} (goal < 0.5)")
    print(json.dumps({
        "bench": "startup", "trials": n, "parallel": p, "repeats": args.repeats, "cores": os.cpu_count(),
        "search_ray_start_s": round(ray_start_s, 2),
        "first_trial_s": {k: round(med(k, 0), 3) for k in runs},
        "wall_s": {k: round(med(k, 1), 3) for k in runs},
        "wall_range_s": {k: [round(min(r[1] for r in v), 3), round(max(r[1] for r in v), 3)] for k, v in runs.items()},
        "wall_over_ray_tune": ratios,
    }))


if __name__ == "__main__":
    main()
