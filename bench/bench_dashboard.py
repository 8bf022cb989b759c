"""Benchmark the dashboard on a large generated study (issue 8's speed floors).

A SQLite database is created at the current schema, then a study of ``--trials`` trials with
``--reports`` reports each is bulk-inserted with plain SQL (the controller's write path would take
far longer and is not what is measured). The dashboard runs in uvicorn on a loopback port and
every request is timed from the client, so each figure is an upper bound on server time (it
includes the local HTTP round trip). Each request runs ``--repeat`` times; the first (cold, right
after start), the median and the max are reported. Floors: studies page and the first screen of
the study view < 1 s, one trial-table page < 300 ms. The load average is printed with the figures:
on a shared machine the max tracks the neighbours, the median the code.

"First screen of the study view" = the HTML page plus the requests its script makes before the
first paint of the table and plots (summary, first table page, history, parameters, first 100
learning curves, timeline), timed one after another (the browser overlaps them).
Parameter importance (a forest fit) and the compare list load after the first screen and are
reported separately.

    python bench/bench_dashboard.py                     # 10,000 trials x 100 reports
    python bench/bench_dashboard.py --trials 2000 --reports 20 --repeat 3   # quick
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import http.client
import json
import math
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboards.app import create_app  # noqa: E402
from dashboards.server import ServerThread  # noqa: E402
from storage import open_storage  # noqa: E402

STUDY = "bench-study"
SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "width": {"type": "int", "low": 16, "high": 1024, "log": True},
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "adamw"]},
}


def _ts(d: datetime) -> str:
    return d.strftime("%Y-%m-%d %H:%M:%S.%f")


def generate(path: str, n_trials: int, n_reports: int, seed: int = 0) -> float:
    """Create the database and bulk-insert the study; returns seconds taken."""
    t0 = time.perf_counter()
    url = f"sqlite:///{path}"
    with open_storage(url) as st:
        study = st.create_study(STUDY, metrics=["val_loss"], directions=["minimize"], spec={
            "name": STUDY, "objective": {"metric": "val_loss", "direction": "minimize"},
            "trial": {"entrypoint": "builtin:classifier", "params": {"epochs": n_reports}},
            "space": SPACE, "algorithm": {"name": "tpe", "seed": seed},
            "budget": {"trials": n_trials, "parallel": 16}})
    rng = random.Random(seed)
    start = datetime(2026, 1, 1)
    trials, reports = [], []
    for i in range(n_trials):
        p = {"lr": 10 ** rng.uniform(-5, -1), "dropout": rng.uniform(0, 0.5),
             "width": int(round(2 ** rng.uniform(4, 10))), "optimizer": rng.choice(SPACE["optimizer"]["choices"])}
        final = 0.1 + (math.log10(p["lr"]) + 3) ** 2 * 0.05 + p["dropout"] * 0.2 + rng.gauss(0, 0.02)
        running = i >= n_trials - 50
        failed = not running and rng.random() < 0.005
        state = "RUNNING" if running else "FAILED" if failed else "COMPLETE"
        steps = n_reports // 2 if running else n_reports
        t_start = start + timedelta(seconds=i * 6)
        t_end = None if running else t_start + timedelta(seconds=90)
        value = final if state == "COMPLETE" else None
        trials.append((study.id, i, state, json.dumps(p), None if value is None else json.dumps([value]), value,
                       json.dumps({"val_loss": final, "val_accuracy": 1 - final} if value is not None else {}),
                       "RuntimeError: CUDA out of memory" if failed else None, 0, f"worker-{i % 16}",
                       f"node-{i % 4}", steps, _ts(t_start), _ts(t_start), None if t_end is None else _ts(t_end),
                       _ts(t_end or t_start)))
        for s in range(1, steps + 1):
            loss = final + 2.0 / s
            reports.append((i, 0, s, json.dumps({"val_loss": loss, "train_loss": loss * 0.9})))
    with sqlite3.connect(path) as conn:
        conn.executemany(
            'INSERT INTO trials (study_id, number, state, params, "values", value, metrics, error, attempt, worker,'
            " node, last_step, created_at, started_at, finished_at, heartbeat_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", trials)
        ids = dict(conn.execute("SELECT number, id FROM trials WHERE study_id = ?", (study.id,)).fetchall())
        conn.executemany("INSERT INTO reports (trial_id, attempt, step, metrics) VALUES (?, ?, ?, ?)",
                         [(ids[n], a, s, m) for n, a, s, m in reports])
        conn.execute("ANALYZE")
    return time.perf_counter() - t0


def get(port: int, path: str) -> tuple[float, int, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    dt = time.perf_counter() - t0
    conn.close()
    if r.status != 200:
        raise RuntimeError(f"GET {path} answered {r.status}: {body[:200]!r}")
    return dt, r.status, len(body)


def measure(port: int, path: str, repeat: int) -> dict[str, float]:
    times, size = [], 0
    for _ in range(repeat):
        dt, _status, size = get(port, path)
        times.append(dt)
    return {"median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000, "bytes": size}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--reports", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--db", default=None, help="database path (default: a temporary folder, removed after)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or os.path.join(tmp, "bench.db")
        if os.path.exists(path):
            sys.exit(f"{path} exists; pass a new path to --db")
        gen_s = generate(path, args.trials, args.reports)
        print(f"generated {args.trials} trials x {args.reports} reports in {gen_s:.1f}s "
              f"({os.path.getsize(path) / 2**20:.0f} MiB)")
        app = create_app(f"sqlite:///{path}")
        s = STUDY
        api = f"/api/v1/studies/{s}"
        groups = {
            "studies_page": ["/", "/api/v1/studies"],
            "study_first_screen": [f"/studies/{s}", api, f"{api}/trials?offset=0&limit=50&sort=number&order=asc",
                                   f"{api}/history", f"{api}/params", f"{api}/curves?metric=val_loss&offset=0&limit=100",
                                   f"{api}/timeline"],
        }
        table_pages = [
            f"{api}/trials?offset=0&limit=50&sort=number&order=asc",
            f"{api}/trials?offset={args.trials // 2}&limit=50&sort=number&order=asc",
            f"{api}/trials?offset={max(0, args.trials - 50)}&limit=50&sort=number&order=desc",
            f"{api}/trials?offset=0&limit=50&sort=value&order=asc",
            f"{api}/trials?offset={args.trials // 2}&limit=50&sort=params.lr&order=desc",
            f"{api}/trials?offset=0&limit=50&sort=metrics.val_accuracy&order=desc",
            f"{api}/trials?offset=0&limit=50&sort=number&state=RUNNING",
            f"{api}/trials?offset=0&limit=50&sort=value&filter=params.lr%20%3C%200.001%20and%20params.optimizer%20%3D%20adam",
            f"{api}/trials?offset=0&limit=500&sort=number",
        ]
        later = [f"{api}/importance", f"{api}/trials/{args.trials // 2}", "/static/plotly.min.js",
                 f"{api}/curves?metric=val_loss&offset=100&limit=500"]
        results: dict[str, dict[str, float]] = {}
        screens: dict[str, list[float]] = {g: [] for g in groups}
        with ServerThread(app) as srv:
            get(srv.port, "/api/v1/meta")  # connection warm-up, not timed
            # A screen is timed as one unit per repetition (its requests one after another); the
            # first repetition is the cold one, straight after the server started.
            for _ in range(args.repeat):
                for g, paths in groups.items():
                    total = 0.0
                    for path_ in paths:
                        dt, _status, size = get(srv.port, path_)
                        total += dt
                        results.setdefault(path_, {"times": [], "bytes": size})["times"].append(dt)
                    screens[g].append(total * 1000)
            for path_ in table_pages + later:
                results[path_] = {"times": [], "bytes": 0}
                for _ in range(args.repeat):
                    dt, _status, size = get(srv.port, path_)
                    results[path_]["times"].append(dt)
                    results[path_]["bytes"] = size
        app.app.state.read_api.close()

    def stats(times_ms: list[float]) -> dict[str, float]:
        return {"first_ms": times_ms[0], "median_ms": statistics.median(times_ms), "max_ms": max(times_ms)}

    width = max(len(p) for p in results)
    print(f"{'request':<{width}}   first ms  median ms   max ms      bytes")
    per_path = {p: stats([t * 1000 for t in r["times"]]) for p, r in results.items()}
    for p, r in per_path.items():
        print(f"{p:<{width}}  {r['first_ms']:9.1f} {r['median_ms']:9.1f} {r['max_ms']:8.1f} {results[p]['bytes']:10d}")
    screen = {g: stats(v) for g, v in screens.items()}
    for g, v in screen.items():
        print(f"{g}: first {v['first_ms']:.0f} ms, median {v['median_ms']:.0f} ms, max {v['max_ms']:.0f} ms "
              f"(its {len(groups[g])} requests in sequence); floor 1000 ms")
    table_median = max(per_path[p]["median_ms"] for p in table_pages)
    table_max = max(per_path[p]["max_ms"] for p in table_pages)
    print(f"trial-table page: slowest median {table_median:.0f} ms, slowest max {table_max:.0f} ms; floor 300 ms")
    summary = {
        "bench": "dashboard", "trials": args.trials, "reports_per_trial": args.reports, "repeat": args.repeat,
        "load_average_1m": round(os.getloadavg()[0], 1), "cpus": os.cpu_count(),
        "studies_page_ms": {k: round(v, 1) for k, v in screen["studies_page"].items()},
        "study_first_screen_ms": {k: round(v, 1) for k, v in screen["study_first_screen"].items()},
        "trial_table_page_ms": {"slowest_median_ms": round(table_median, 1), "slowest_max_ms": round(table_max, 1)},
        "importance_ms": {k: round(v, 1) for k, v in per_path[f"{api}/importance"].items()},
        "trial_detail_ms": {k: round(v, 1) for k, v in per_path[f"{api}/trials/{args.trials // 2}"].items()},
        "meets_floors_median": screen["studies_page"]["median_ms"] < 1000
        and screen["study_first_screen"]["median_ms"] < 1000 and table_median < 300,
        "meets_floors_max": screen["studies_page"]["max_ms"] < 1000
        and screen["study_first_screen"]["max_ms"] < 1000 and table_max < 300,
    }
    print(json.dumps(summary))
    return 0 if summary["meets_floors_median"] else 1


if __name__ == "__main__":
    sys.exit(main())
