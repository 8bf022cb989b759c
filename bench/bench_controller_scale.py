"""One controller, many workers: reports recorded and ASHA decisions made per wall second, on
the simulated backend (virtual clock) with N concurrent trials each reporting every virtual
second, on SQLite and on PostgreSQL, and the share of that wall time spent in the store.

    python bench/bench_controller_scale.py [--concurrent 10,100,1000] [--steps 27] [--pg]

Each run: ``parallel`` = ``trials`` = N, all started at once (N workers), ASHA (stopping form,
grace 10, reduction 3, max_resource 30: rungs at 10 and 30) deciding at every report, random
sampling: about 17 reports per trial. Every
report is recorded in the store and decided by the scheduler. Time in the store is the sum over
the storage methods the controller calls (timed around each call); the rest is the controller,
the scheduler and the simulated backend's thread hand-offs. Where reports/s stops rising with N,
one controller is saturated; the JSON line gives the figures per store and N.

PostgreSQL: a scratch database on 127.0.0.1:5432 (user postgres; ``$SEARCH_TEST_PG`` overrides the
admin connection) is created for the run and dropped after it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
PG_ADMIN = os.environ.get("SEARCH_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")


def curve(config, reporter):
    """Reports a decreasing loss every virtual second until told to stop or ``steps`` is reached."""
    steps = int(config["steps"])
    loss = 1.0
    for step in range(1, steps + 1):
        loss = (config["x"] - 0.5) ** 2 + 1.0 / step
        if reporter.report(step, loss=loss):
            break
    return {"loss": loss}


class _Timed:
    """Wraps every public method of the storage instance with a timer (total seconds, calls)."""

    def __init__(self, storage) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.by_method: dict[str, list] = {}  # name -> [seconds, calls]
        for name in dir(storage):
            fn = getattr(storage, name)
            if name.startswith("_") or not callable(fn):
                continue
            setattr(storage, name, self._wrap(name, fn))

    def _wrap(self, name, fn):
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                dt = time.perf_counter() - t0
                self.seconds += dt
                self.calls += 1
                entry = self.by_method.setdefault(name, [0.0, 0])
                entry[0] += dt
                entry[1] += 1
        return timed

    def top(self, n: int = 4) -> dict[str, dict]:
        rows = sorted(self.by_method.items(), key=lambda kv: -kv[1][0])[:n]
        return {k: {"s": round(v[0], 3), "calls": v[1]} for k, v in rows}


def run(url: str, concurrent: int, steps: int, grace: int) -> dict:
    from search.algorithms import make_algorithm
    from search.backends.simulated import SimulatedBackend
    from search.config import parse_study
    from search.controller import Controller
    from storage import open_storage

    config = parse_study({
        "name": f"scale-{concurrent}", "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "bench_controller_scale:curve", "params": {"steps": steps}},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 0}, "budget": {"trials": concurrent, "parallel": concurrent},
        "scheduler": {"name": "asha", "grace_period": grace, "reduction_factor": 3, "max_resource": steps},
        "backend": {"name": "simulated"}, "artifacts": os.path.join(tempfile.gettempdir(), "bench-scale-artifacts"),
    })
    st = open_storage(url)
    rec = st.create_study(config.name, metrics=config.metrics, directions=config.directions, spec=dict(config.raw))
    backend = SimulatedBackend()
    backend.start(parallel=concurrent, cpus=1, gpus=0)
    algo = make_algorithm("random", config.space, config.metrics, config.directions, seed=0)
    ctl = Controller(config, st, backend, algo, rec)
    decisions = {"n": 0}
    on_report = ctl.scheduler.on_report

    def counted(*a, **k):
        decisions["n"] += 1
        return on_report(*a, **k)

    ctl.scheduler.on_report = counted
    timer = _Timed(st)  # after set-up: only the run's calls count
    t0 = time.perf_counter()
    summary = ctl.run()
    wall = time.perf_counter() - t0
    reports = sum(len(st.get_reports(t.id)) for t in st.get_trials(rec.id))
    st.close()
    return {"concurrent": concurrent, "trials": summary.complete + summary.pruned, "pruned": summary.pruned,
            "reports": reports, "decisions": decisions["n"], "wall_s": round(wall, 3),
            "reports_per_s": round(reports / wall, 1), "decisions_per_s": round(decisions["n"] / wall, 1),
            "store_s": round(timer.seconds, 3), "store_calls": timer.calls,
            "store_share": round(timer.seconds / wall, 3),
            "store_ms_per_report": round(1000 * timer.seconds / max(reports, 1), 3), "store_top": timer.top()}


def store_batches(url: str, reports: int = 1000, batches=(1, 10, 100)) -> dict[int, float]:
    """The store alone: ms per report when ``add_reports`` gets batches of 1, 10, 100 reports (each
    from a different one of 100 running trials, as the controller's writes are): what batching
    report writes would buy."""
    from storage import open_storage

    st = open_storage(url)
    rec = st.create_study(f"batch-{time.time_ns()}", metrics=("loss",), directions=("minimize",), spec={})
    ids = [st.create_trial(rec.id, {"x": i / 100}).id for i in range(100)]
    out = {}
    for b in batches:
        step = {i: 0 for i in ids}
        t0 = time.perf_counter()
        for k in range(0, reports, b):
            batch = []
            for j in range(k, min(k + b, reports)):
                tid = ids[j % len(ids)]
                step[tid] += 1
                batch.append((tid, 0, step[tid] + 1000 * b, {"loss": 1.0 / (j + 1)}))
            st.add_reports(batch)
        out[b] = round(1000 * (time.perf_counter() - t0) / reports, 3)
    st.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrent", default="10,100,1000", help="comma-separated concurrent trial counts")
    ap.add_argument("--steps", type=int, default=30, help="max_resource: steps of a trial ASHA never stops")
    ap.add_argument("--grace", type=int, default=10, help="ASHA's grace period (its first rung)")
    ap.add_argument("--pg", action="store_true", help="PostgreSQL too (a scratch database, dropped after)")
    args = ap.parse_args()
    sys.path.insert(0, HERE)
    import logging

    logging.getLogger("search").setLevel(logging.ERROR)
    levels = [int(x) for x in args.concurrent.split(",")]
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as wd:
        stores = [("sqlite", lambda n: f"sqlite:///{os.path.join(wd, f'scale-{n}.db')}")]
        if args.pg:
            import psycopg

            name = f"bench_scale_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            params = dict(kv.split("=", 1) for kv in PG_ADMIN.split())
            pg = (f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
                  f"{params.get('port', '5432')}/{name}")
            stores.append(("postgresql", lambda n: pg))
        try:
            for store, url in stores:
                for n in levels:
                    r = run(url(n), n, args.steps, args.grace)
                    results.setdefault(store, []).append(r)
                    print(f"{store:<10} {n:>5} concurrent: {r['reports']:>6} reports in {r['wall_s']:>7.2f} s = "
                          f"{r['reports_per_s']:>7.1f} reports/s, {r['decisions_per_s']:>7.1f} decisions/s; "
                          f"store {100 * r['store_share']:.0f}% of the wall ({r['store_ms_per_report']:.2f} ms "
                          "per report)", flush=True)
                batch_ms = store_batches(url(0))
                results[store][-1]["add_reports_ms_per_report_by_batch"] = batch_ms
                print(f"{store:<10} the store alone, add_reports ms per report by batch size: "
                      + ", ".join(f"{b}: {ms:.3f}" for b, ms in batch_ms.items()), flush=True)
        finally:
            if args.pg:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    summary = {}
    for store, rs in results.items():
        peak = max(rs, key=lambda r: r["reports_per_s"])
        top = rs[-1]
        summary[store] = {"peak_reports_per_s": peak["reports_per_s"], "at_concurrent": peak["concurrent"],
                          "reports_per_s_at_max_concurrent": top["reports_per_s"],
                          "store_share_at_max_concurrent": top["store_share"],
                          "store_top_at_max_concurrent": top["store_top"],
                          "add_reports_ms_per_report_by_batch": top["add_reports_ms_per_report_by_batch"]}
        # One controller serves reports_per_s / rate workers that each report `rate` times a second.
        print(f"{store}: one controller records {top['reports_per_s']:.0f} reports/s at {top['concurrent']} "
              f"concurrent trials: {top['reports_per_s'] * 10:.0f} workers reporting every 10 s, "
              f"{top['reports_per_s'] * 60:.0f} reporting every minute")
    print(f"{os.cpu_count()} cores, python {platform.python_version()}")
    print(json.dumps({"bench": "controller_scale", "steps": args.steps, "grace": args.grace, "results": results, "summary": summary}))


if __name__ == "__main__":
    main()
