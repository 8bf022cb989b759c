"""Dashboard at scale, side by side with optuna-dashboard on the same trials (issue 22, item 4).

One study of ``--trials`` trials with ``--reports`` reports per trial on average (100,000 x 50 =
5 M reports) is written by bulk SQL at the current schema, on SQLite and/or PostgreSQL, shaped like
an ASHA study: rungs at g, 3g and 9g steps and the full budget at 27g (g = reports / 3, so the
mean is ``--reports``); a noisy rank of each trial's final loss decides the rung it stops at, so
26 in 27 trials are PRUNED at various steps and about 1 in 27 COMPLETE; 0.4 % FAILED at a random
step, 1 % retried once, the newest 16 RUNNING and 8 WAITING; 16 workers on 4 nodes (56-character
node ids); four parameters (log-float, float, log-int, categorical). The same trials are copied,
by bulk SQL too, into an Optuna storage (schema made by ``optuna.storages.RDBStorage`` on an empty
database; PRUNED trials carry their last intermediate value as their value, as Optuna's ``tell``
records them), which optuna-dashboard serves. Going through either program's Python API would take
hours at this size and is not what is measured.

Generated databases are cached (``--cache-dir`` for SQLite files, databases ``benchdash_*`` on the
PostgreSQL server) with a marker naming the generator, the size, the seed and the schema revision;
a re-run with the same marker reuses them (``--rebuild`` forces it, ``--drop-pg`` drops the
PostgreSQL ones at the end).

Both dashboards run in their own process (``python -m search dashboard``; ``optuna-dashboard
--server wsgiref``, its default without gunicorn) and every request is timed from this client,
body read in full: each figure is an upper bound on server time (it includes the loopback HTTP
round trip). The server process's own CPU time (from /proc) is read around every request too:
under shared load it says what the code costs better than the wall clock (on PostgreSQL the queries
run in the database's processes, so it is the dashboard's share only). A screen is its requests one
after another (a browser overlaps them, so it draws
sooner). Rows are timed once cold (straight after the server started) and then ``--repeat``
times; the table shows the cold time and the median of the repeats. A request of optuna-dashboard
that takes longer than ``--their-timeout`` seconds (120) is recorded as a timeout, its server is
restarted and that request is not tried again (``--their-mem-gib`` caps its address space).

Which requests a screen makes is recorded from the pages themselves: a tiny study is served by
both dashboards, each page is loaded once in headless Chromium (Playwright, /usr/bin/chromium) and
the requests it makes until it has been quiet for 2.5 s are kept, in order, with the tiny study's
trial number swapped for the big one's ("all on load"). The study page's first screen is its HTML,
static files and the API requests issued before the first API answer came back: the first batch
the page draws from (ours: updates and history; optuna-dashboard: its study detail, every trial
with every intermediate value, which all its charts are drawn from, and its importance).
``--no-browser`` uses the lists in ``SCREENS`` instead (kept here, in one place).

Also timed: the CLI's read verbs (a fresh ``python -m search`` process each, output to /dev/null)
and ``load_study(...).trials_dataframe()`` in this process.

Floors (issue 22): studies page < 300 ms, study page first screen < 1 s, a trial-table page
< 200 ms, a trial page < 200 ms (medians). The 1-minute load average is printed beside the figures:
on a shared machine the neighbours move the cold times most.

Peer packages (not project dependencies)::

    pip install "torch==2.13.0" optuna-dashboard playwright   # Chromium: /usr/bin/chromium

Run::

    nice -n 10 python bench/bench_dashboard.py --trials 100000 --reports 50 --storage both
    python bench/bench_dashboard.py --trials 2000 --reports 10 --storage sqlite --repeat 3   # quick
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import heapq
import http.client
import json
import math
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GENERATOR = "asha-v1"  # bump when the generated data changes, so caches are rebuilt
STUDY = "bench-study"
METRIC = "val_loss"
SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "width": {"type": "int", "low": 16, "high": 1024, "log": True},
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "adamw"]},
}
N_WORKERS, N_NODES, N_RUNNING, N_WAITING = 16, 4, 16, 8
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/"
CHROMIUM = "/usr/bin/chromium"
# The trial number whose page is recorded on the tiny study (swapped for the big study's).
REC_TRIAL, REC_TRIALS, REC_REPORTS = 123, 200, 6

# What each page requests on load, as recorded on 2026-12-06 (dashboard of commit eca589f): used with --no-browser (or when Playwright or
# Chromium is missing), else replaced by what the pages are seen to request. {study} is the study
# name (optuna-dashboard: {id}, its study id), {trial} a trial number.
SCREENS: dict[str, dict[str, list[str]]] = {
    "ours": {
        "studies": ["/", "/static/style.css", "/static/plotly.min.js", "/static/app.js", "/api/v1/studies"],
        "study_first": ["/studies/{study}", "/static/style.css", "/static/plotly.min.js", "/static/app.js",
                        "/api/v1/studies/{study}/updates?", "/api/v1/studies/{study}/history"],
        "study": ["/studies/{study}", "/static/style.css", "/static/plotly.min.js", "/static/app.js",
                  "/api/v1/studies/{study}/updates?", "/api/v1/studies/{study}/history", "/api/v1/studies/{study}",
                  "/api/v1/studies/{study}/curves?metric=val_loss&offset=0&limit=100",
                  "/api/v1/studies/{study}/params", "/api/v1/studies/{study}/importance",
                  "/api/v1/studies/{study}/timeline",
                  "/api/v1/studies/{study}/trials?offset=0&limit=50&sort=number&order=asc", "/api/v1/studies"],
        "trial": ["/studies/{study}/trials/{trial}", "/static/style.css", "/static/plotly.min.js",
                  "/static/app.js", "/api/v1/studies/{study}/trials/{trial}"],
    },
    "theirs": {
        "studies": ["/dashboard", "/static/bundle.js", "/api/meta", "/api/studies"],
        "study_first": ["/dashboard/studies/{id}", "/static/bundle.js", "/api/studies/{id}/param_importances",
                        "/api/meta", "/api/studies/{id}?after=0"],
        "study": ["/dashboard/studies/{id}", "/static/bundle.js", "/api/studies/{id}/param_importances",
                  "/api/meta", "/api/studies/{id}?after=0"],
        "trial": ["/dashboard/studies/{id}/trials?numbers={trial}", "/static/bundle.js", "/api/meta",
                  "/api/studies/{id}?after=0"],
    },
}
PAGE_URLS = {"ours": {"studies": "/", "study": "/studies/{study}", "trial": "/studies/{study}/trials/{trial}"},
             "theirs": {"studies": "/dashboard", "study": "/dashboard/studies/{id}",
                        "trial": "/dashboard/studies/{id}/trials?numbers={trial}"}}
# Our plot endpoints, each timed on its own row (with whatever the page requests).
PLOTS = ["/api/v1/studies/{study}/history", "/api/v1/studies/{study}/params",
         "/api/v1/studies/{study}/importance", "/api/v1/studies/{study}/curves?metric=val_loss&offset=0&limit=100",
         "/api/v1/studies/{study}/timeline"]
# optuna-dashboard's server-side plots (used by its Plotly-Python mode; by default its browser
# draws them from the study detail, timed in its first screen) and its importance.
THEIR_PLOTS = {"params": ["/api/studies/{id}/plot/parallel_coordinate"],
               "timeline": ["/api/studies/{id}/plot/timeline"],
               "importance": ["/api/studies/{id}/param_importances"]}
THEIR_EXTRA_PLOTS = ["/api/studies/{id}/plot/slice", "/api/studies/{id}/plot/contour"]
FLOORS_MS = {"studies page": 300.0, "study page, first screen": 1000.0, "trial-table page (slowest)": 200.0,
             "trial page": 200.0}


# ----------------------------------------------------------------------------------- the data


def make_plan(n_trials: int, mean_reports: int, seed: int = 0) -> dict[str, Any]:
    """Every trial of the study (its reports are made on the fly by ``reports_of``)."""
    rng = random.Random(seed)
    g = max(1, round(mean_reports / 3))
    rungs, max_t = [g, 3 * g, 9 * g], 27 * g
    nodes = ["%056x" % rng.getrandbits(224) for _ in range(N_NODES)]
    trials = []
    for i in range(n_trials):
        p = {"lr": 10 ** rng.uniform(-5, -1), "dropout": rng.uniform(0, 0.5),
             "width": int(round(2 ** rng.uniform(4, 10))), "optimizer": rng.choice(SPACE["optimizer"]["choices"])}
        final = (0.1 + (math.log10(p["lr"]) + 3) ** 2 * 0.05 + p["dropout"] * 0.2
                 + {"adam": 0.0, "adamw": -0.01, "sgd": 0.04}[p["optimizer"]] + rng.gauss(0, 0.02))
        trials.append({"number": i, "params": p, "final": final, "curve": 1.0 + rng.random(), "attempt": 0})
    # ASHA: a noisy rank of the final loss decides how many rungs a trial passes.
    order = sorted(range(n_trials), key=lambda i: trials[i]["final"] + rng.gauss(0, 0.03))
    for pos, i in enumerate(order):
        q = pos / max(1, n_trials)
        trials[i]["stop"] = max_t if q < 1 / 27 else rungs[2] if q < 1 / 9 else rungs[1] if q < 1 / 3 else rungs[0]
    first_open = max(0, n_trials - N_RUNNING - N_WAITING)
    for t in trials:
        i = t["number"]
        if i >= n_trials - N_WAITING:
            t["state"], t["steps"] = "WAITING", 0
        elif i >= first_open:
            t["state"], t["steps"] = "RUNNING", rng.randint(1, max(1, t["stop"] - 1))
        elif rng.random() < 0.004:
            t["state"], t["steps"] = "FAILED", rng.randint(1, t["stop"])
            t["error"] = ("Traceback (most recent call last):\n  File \"train.py\", line 88, in fit\n"
                          "    loss.backward()\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
                          f"{rng.randint(64, 4096)} MiB (GPU 0; 79.1 GiB total capacity)")
        else:
            t["state"] = "COMPLETE" if t["stop"] == max_t else "PRUNED"
            t["steps"] = t["stop"]
        if t["state"] != "WAITING" and rng.random() < 0.01:
            t["attempt"] = 1  # retried once after a lost worker
    # Sixteen workers take trials in number order; a trial lasts 2 s per step plus 3 s start-up.
    base = datetime(2026, 1, 1)
    free = [(0.0, w) for w in range(N_WORKERS)]
    for t in trials:
        t["created"] = base + timedelta(seconds=t["number"] * 0.5)
        if t["state"] == "WAITING":
            t["start"] = t["end"] = t["worker"] = t["node"] = None
            t["beat"] = None
            continue
        at, w = heapq.heappop(free)
        start = max(at, t["number"] * 0.5)
        dur = 3.0 + 2.0 * t["steps"]
        heapq.heappush(free, (start + dur, w))
        t["start"] = base + timedelta(seconds=start)
        t["end"] = None if t["state"] == "RUNNING" else base + timedelta(seconds=start + dur)
        t["beat"] = base + timedelta(seconds=start + dur)
        t["worker"], t["node"] = f"worker-{w}", nodes[w % N_NODES]
        last = loss(t, t["steps"]) if t["steps"] else None
        t["last"] = last
    for t in trials:
        t.setdefault("last", None)
        t.setdefault("error", None)
        t["value"] = t["last"] if t["state"] == "COMPLETE" else None
    return {"trials": trials, "rungs": rungs, "max_t": max_t, "nodes": nodes, "base": base,
            "n_reports": sum(t["steps"] for t in trials)}


def loss(t: dict[str, Any], step: int) -> float:
    # Deterministic wiggle instead of a random draw per report: 5 M draws would cost more than the SQL.
    return round(t["final"] + t["curve"] / math.sqrt(step) + 0.004 * math.sin(step * 0.7 + t["number"]), 6)


def reports_of(t: dict[str, Any]) -> Iterator[tuple[int, float]]:
    for s in range(1, t["steps"] + 1):
        yield s, loss(t, s)


def trial_metrics(t: dict[str, Any]) -> dict[str, float]:
    if t["state"] in ("RUNNING", "WAITING") or t["last"] is None:
        return {}
    m = {METRIC: t["last"], "train_loss": round(t["last"] * 0.9, 6)}
    if t["state"] == "COMPLETE":
        m["val_accuracy"] = round(1 - t["last"] / 3, 6)
    return m


def study_spec(n_trials: int, plan: dict[str, Any]) -> dict[str, Any]:
    return {"name": STUDY, "objective": {"metric": METRIC, "direction": "minimize"},
            "trial": {"entrypoint": "builtin:classifier", "params": {"epochs": plan["max_t"]}},
            "space": SPACE, "algorithm": {"name": "random", "seed": 0},
            "scheduler": {"name": "asha", "grace_period": plan["rungs"][0], "max_resource": plan["max_t"],
                          "reduction_factor": 3},
            "budget": {"trials": n_trials, "parallel": N_WORKERS}}


# -------------------------------------------------------------------------------- databases


def _ts(d: datetime | None) -> str | None:
    return None if d is None else d.strftime("%Y-%m-%d %H:%M:%S.%f")


def _our_trial_rows(plan: dict[str, Any], study_id: int, text_times: bool) -> Iterator[tuple]:
    conv: Callable[[datetime | None], Any] = _ts if text_times else (lambda d: d)
    for t in plan["trials"]:
        value = t["value"]
        yield (t["number"] + 1, study_id, t["number"], t["state"], json.dumps(t["params"]),
               None if value is None else json.dumps([value]), value, json.dumps(trial_metrics(t)), t["error"],
               t["attempt"], t["attempt"], t["worker"], t["node"], t["steps"] or None, conv(t["created"]),
               conv(t["start"]), conv(t["end"]), conv(t["beat"]), t["last"])


def _our_param_rows(plan: dict[str, Any], study_id: int) -> Iterator[tuple]:
    """``trial_params`` as ``storage`` writes it for each new trial."""
    from storage._rdb import param_rows

    for t in plan["trials"]:
        for r in param_rows(t["number"] + 1, study_id, t["number"], t["params"]):
            yield r["trial_id"], r["name"], r["study_id"], r["number"], r["value_num"], r["value_text"]


def _our_report_rows(plan: dict[str, Any]) -> Iterator[tuple]:
    rid = 0
    for t in plan["trials"]:
        tid, attempt = t["number"] + 1, t["attempt"]
        for s, v in reports_of(t):
            rid += 1
            yield rid, tid, attempt, s, f'{{"{METRIC}": {v!r}, "train_loss": {round(v * 0.9, 6)!r}}}'


_OUR_TRIAL_COLS = ('id, study_id, number, state, params, "values", value, metrics, error, attempt, failures, '
                   "worker, node, last_step, created_at, started_at, finished_at, heartbeat_at, last_value")
_OUR_PARAM_COLS = "trial_id, name, study_id, number, value_num, value_text"


def build_ours(url: str, plan: dict[str, Any], n_trials: int) -> None:
    """Our schema (made by ``open_storage``, i.e. Alembic at head) and the study, then the trials
    and reports by bulk SQL into the empty tables."""
    from storage import open_storage

    with open_storage(url) as st:
        study = st.create_study(STUDY, metrics=[METRIC], directions=["minimize"], spec=study_spec(n_trials, plan))
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA synchronous=OFF")
        with conn:
            conn.executemany(f"INSERT INTO trials ({_OUR_TRIAL_COLS}) VALUES ({', '.join('?' * 19)})",
                             _our_trial_rows(plan, study.id, True))
            conn.executemany(f"INSERT INTO trial_params ({_OUR_PARAM_COLS}) VALUES ({', '.join('?' * 6)})",
                             _our_param_rows(plan, study.id))
            conn.executemany("INSERT INTO reports (id, trial_id, attempt, step, metrics) VALUES (?, ?, ?, ?, ?)",
                             _our_report_rows(plan))
        conn.close()
        _analyze(url)
        return
    import psycopg

    with psycopg.connect(_libpq(url)) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY trials ({_OUR_TRIAL_COLS}) FROM STDIN") as cp:
                for row in _our_trial_rows(plan, study.id, False):
                    cp.write_row(row)
            with cur.copy(f"COPY trial_params ({_OUR_PARAM_COLS}) FROM STDIN") as cp:
                for row in _our_param_rows(plan, study.id):
                    cp.write_row(row)
            with cur.copy("COPY reports (id, trial_id, attempt, step, metrics) FROM STDIN") as cp:
                for row in _our_report_rows(plan):
                    cp.write_row(row)
            for table in ("trials", "reports"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.commit()
    _analyze(url)


def _analyze(url: str) -> None:
    """Planner statistics after a bulk load or an upgrade (SQLite: ANALYZE; PostgreSQL: VACUUM
    ANALYZE, which also sets the visibility map that index-only scans need)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split("///", 1)[1])
        conn.execute("ANALYZE")
        conn.close()
        return
    import psycopg

    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


_OPTUNA_STATE = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "FAILED": "FAIL", "RUNNING": "RUNNING",
                 "WAITING": "WAITING"}


def build_optuna(url: str, plan: dict[str, Any]) -> None:
    """Optuna's schema (made by ``RDBStorage`` on the empty database) and the study through its
    API, then the same trials by bulk SQL: trials, params, values, intermediate values."""
    import optuna
    from optuna.distributions import (CategoricalDistribution, FloatDistribution, IntDistribution,
                                      distribution_to_json)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    study_id = optuna.create_study(study_name=STUDY, storage=storage, direction="minimize")._study_id
    storage.remove_session() if hasattr(storage, "remove_session") else None
    storage.engine.dispose()
    dists = {"lr": FloatDistribution(1e-5, 1e-1, log=True), "dropout": FloatDistribution(0.0, 0.5),
             "width": IntDistribution(16, 1024, log=True),
             "optimizer": CategoricalDistribution(SPACE["optimizer"]["choices"])}
    dj = {k: distribution_to_json(d) for k, d in dists.items()}
    choices = SPACE["optimizer"]["choices"]
    sqlite = url.startswith("sqlite")
    conv: Callable[[datetime | None], Any] = _ts if sqlite else (lambda d: d)

    def trials():
        for t in plan["trials"]:
            yield t["number"] + 1, t["number"], study_id, _OPTUNA_STATE[t["state"]], conv(t["start"]), conv(t["end"])

    def params():
        pid = 0
        for t in plan["trials"]:
            for k, v in t["params"].items():
                pid += 1
                yield pid, t["number"] + 1, k, float(choices.index(v) if k == "optimizer" else v), dj[k]

    def values():
        vid = 0
        for t in plan["trials"]:
            # Optuna's tell records a pruned trial's last intermediate value as its value.
            v = t["value"] if t["state"] == "COMPLETE" else t["last"] if t["state"] == "PRUNED" else None
            if v is not None:
                vid += 1
                yield vid, t["number"] + 1, 0, v, "FINITE"

    def intermediate():
        iid = 0
        for t in plan["trials"]:
            for s, v in reports_of(t):
                iid += 1
                yield iid, t["number"] + 1, s, v, "FINITE"

    tables = [("trials", "trial_id, number, study_id, state, datetime_start, datetime_complete", trials),
              ("trial_params", "param_id, trial_id, param_name, param_value, distribution_json", params),
              ("trial_values", "trial_value_id, trial_id, objective, value, value_type", values),
              ("trial_intermediate_values", "trial_intermediate_value_id, trial_id, step, intermediate_value, "
                                            "intermediate_value_type", intermediate)]
    if sqlite:
        conn = sqlite3.connect(url.split("///", 1)[1])
        conn.execute("PRAGMA synchronous=OFF")
        with conn:
            for table, cols, rows in tables:
                conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * (cols.count(',') + 1))})",
                                 rows())
        conn.execute("ANALYZE")
        conn.close()
        return
    import psycopg

    with psycopg.connect(_libpq(url)) as conn:
        with conn.cursor() as cur:
            for table, cols, rows in tables:
                with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
                    for row in rows():
                        cp.write_row(row)
                key = cols.split(",")[0]
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{key}'), (SELECT max({key}) FROM {table}))")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


def _libpq(url: str) -> str:
    """A psycopg connection string from a SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    parts = [f"host={u.host or '127.0.0.1'}", f"port={u.port or 5432}", f"user={u.username or 'postgres'}",
             f"dbname={u.database}"]
    if u.password:
        parts.append(f"password={u.password}")
    return " ".join(parts)


def _pg_admin(base: str):
    import psycopg

    conn = psycopg.connect(_libpq(base + "postgres"))
    conn.autocommit = True
    return conn


class Cached:
    """One generated database (ours or Optuna's, SQLite or PostgreSQL), reused while its marker
    (generator, size, seed, schema revision) matches."""

    def __init__(self, system: str, backend: str, args: argparse.Namespace, marker: dict[str, Any]) -> None:
        self.system, self.backend, self.marker = system, backend, marker
        tag = f"{args.trials}x{args.reports}s{args.seed}"
        if backend == "sqlite":
            self.path = Path(args.cache_dir) / f"{system}-{tag}.db"
            self.url = f"sqlite:///{self.path}"
        else:
            self.dbname = f"benchdash_{system}_{tag}"
            self.url = args.pg_url + self.dbname
        self.args = args

    def _stored_marker(self) -> dict[str, Any] | None:
        try:
            if self.backend == "sqlite":
                side = self.path.with_suffix(".json")
                return json.loads(side.read_text()) if self.path.exists() and side.exists() else None
            with _pg_admin(self.args.pg_url) as conn:
                row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                                   (self.dbname,)).fetchone()
            return None if row is None or not row[0] else json.loads(row[0])
        except (OSError, ValueError):
            return None

    def drop(self) -> None:
        if self.backend == "sqlite":
            for p in (self.path, self.path.with_suffix(".json"), Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                p.unlink(missing_ok=True)
        else:
            with _pg_admin(self.args.pg_url) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')

    def ensure(self, build: Callable[[str], None]) -> tuple[bool, float]:
        """(reused, seconds spent building). One of ours made at an older schema revision, from
        the same plan, is upgraded in place (``open_storage(upgrade=True)``, as
        ``search db upgrade`` does), which also times the migration at this size."""
        stored = None if self.args.rebuild else self._stored_marker()
        if stored == self.marker:
            return True, 0.0
        if (self.system == "ours" and stored is not None and "schema" in stored
                and {**stored, "schema": self.marker["schema"]} == self.marker):
            from storage import open_storage

            t0 = time.perf_counter()
            with open_storage(self.url, upgrade=True):
                pass
            _analyze(self.url)
            print(f"ours: upgraded from schema {stored['schema']} to {self.marker['schema']} in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
            self._write_marker()
            return True, 0.0
        t0 = time.perf_counter()
        self.drop()
        if self.backend == "sqlite":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            with _pg_admin(self.args.pg_url) as conn:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')
        build(self.url)
        self._write_marker()
        return False, time.perf_counter() - t0

    def _write_marker(self) -> None:
        if self.backend == "sqlite":
            self.path.with_suffix(".json").write_text(json.dumps(self.marker))
        else:
            with _pg_admin(self.args.pg_url) as conn:
                conn.execute(f"COMMENT ON DATABASE \"{self.dbname}\" IS '{json.dumps(self.marker)}'")

    def size_mib(self) -> float:
        if self.backend == "sqlite":
            return self.path.stat().st_size / 2**20
        with _pg_admin(self.args.pg_url) as conn:
            return conn.execute("SELECT pg_database_size(%s)", (self.dbname,)).fetchone()[0] / 2**20


def our_marker(args: argparse.Namespace) -> dict[str, Any]:
    from storage._rdb import HEAD_REVISION

    return {"generator": GENERATOR, "trials": args.trials, "reports": args.reports, "seed": args.seed,
            "schema": HEAD_REVISION}


def optuna_marker(args: argparse.Namespace) -> dict[str, Any]:
    import optuna

    return {"generator": GENERATOR, "trials": args.trials, "reports": args.reports, "seed": args.seed,
            "optuna": optuna.__version__}


# --------------------------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Timeout(Exception):
    pass


class Server:
    """One dashboard in its own process (its own process group, so a stuck one is killed whole)."""

    def __init__(self, system: str, url: str, mem_gib: float | None = None) -> None:
        self.system, self.url, self.mem_gib = system, url, mem_gib
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-dash-{system}-", suffix=".log", delete=False)

    def start(self) -> float:
        self.port = _free_port()
        if self.system == "ours":
            cmd = [sys.executable, "-m", "search", "dashboard", "--storage", self.url, "--port", str(self.port)]
            probe = "/api/v1/meta"
        else:
            exe = shutil.which("optuna-dashboard") or "optuna-dashboard"
            cmd = [exe, self.url, "--host", "127.0.0.1", "--port", str(self.port), "--server", "wsgiref", "--quiet"]
            probe = "/api/meta"
        limit = None if self.mem_gib is None else int(self.mem_gib * 2**30)

        def pre() -> None:
            os.setsid()
            if limit is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=pre)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.system} dashboard exited {self.proc.returncode}: {self.tail()}")
            try:
                status, _n = fetch(self.port, probe, 5)[1:]
                if status == 200:
                    return time.perf_counter() - t0
            except (OSError, Timeout):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.system} dashboard did not answer within 90 s: {self.tail()}")

    def tail(self) -> str:
        try:
            return Path(self.log.name).read_text(errors="replace")[-800:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cpu(self) -> float:
        """CPU seconds (user + system) the server process has used so far."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.stop()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def fetch(port: int, path: str, timeout: float) -> tuple[float, int, int]:
    """(seconds, status, body bytes) of one GET, body read in full; ``Timeout`` past ``timeout``."""
    deadline = time.perf_counter() + timeout
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        n = 0
        while True:
            if time.perf_counter() > deadline:
                raise Timeout(path)
            chunk = r.read(1 << 20)
            if not chunk:
                break
            n += len(chunk)
        return time.perf_counter() - t0, r.status, n
    except socket.timeout:
        raise Timeout(path) from None
    finally:
        conn.close()


# ------------------------------------------------------------------------- what pages request


def record_screens(servers: dict[str, Server]) -> dict[str, dict[str, list[str]]] | None:
    """What each page requests on load, seen by headless Chromium; None when it cannot run.

    Per page: every request until the page has been quiet (no request to a new path) for 2.5 s;
    for the study page also its first screen: the HTML, its static files and the API requests
    issued before the first API answer arrived (the page's first batch, drawn together)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not os.path.exists(CHROMIUM):
        return None
    out: dict[str, dict[str, list[str]]] = {}
    subs = {"study": STUDY, "id": "1", "trial": str(REC_TRIAL)}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for system, srv in servers.items():
                out[system] = {}
                origin = f"http://127.0.0.1:{srv.port}"
                for page_name, url in PAGE_URLS[system].items():
                    seen: list[tuple[str, bool]] = []  # (path, issued before the first API answer)
                    answered = [False]
                    last_new = [time.monotonic()]

                    def on_request(req, seen=seen, answered=answered, last_new=last_new, origin=origin) -> None:
                        if not req.url.startswith(origin) or req.method != "GET":
                            return
                        path = req.url[len(origin):]
                        if path.split("?")[0] not in {p.split("?")[0] for p, _ in seen}:
                            last_new[0] = time.monotonic()
                            seen.append((path, not answered[0]))

                    def on_finished(req, answered=answered, origin=origin) -> None:
                        if req.url.startswith(origin + "/api/") and not req.url.startswith(origin + "/api/meta"):
                            answered[0] = True

                    page = browser.new_page()
                    page.on("request", on_request)
                    page.on("requestfinished", on_finished)
                    page.goto(origin + url.format(**subs), wait_until="load", timeout=60_000)
                    deadline = time.monotonic() + 40
                    while time.monotonic() < deadline:
                        page.wait_for_timeout(250)
                        api = any(p.startswith("/api/") and not p.startswith("/api/meta") for p, _ in seen)
                        if api and time.monotonic() - last_new[0] > 2.5:
                            break
                    page.close()
                    paths = [(_generalise(p), early) for p, early in seen if not p.startswith("/favicon")]
                    out[system][page_name] = [p for p, _ in paths]
                    if page_name == "study":
                        out[system]["study_first"] = [p for p, early in paths if early]
        finally:
            browser.close()
    return out


def _generalise(path: str) -> str:
    from urllib.parse import quote

    for text in (quote(STUDY, safe=""), STUDY):
        path = path.replace(f"/{text}", "/{study}")
    path = path.replace("/api/studies/1", "/api/studies/{id}").replace("/dashboard/studies/1", "/dashboard/studies/{id}")
    return path.replace(f"/trials/{REC_TRIAL}", "/trials/{trial}").replace(f"numbers={REC_TRIAL}", "numbers={trial}")


# ---------------------------------------------------------------------------------- timing


class Timer:
    """Times request lists against one server; a request that timed out once is not tried again."""

    def __init__(self, server: Server, timeout: float, subs: dict[str, str]) -> None:
        self.server, self.timeout, self.subs = server, timeout, subs
        self.dead: dict[str, float] = {}
        self.per_path: dict[str, list[float]] = {}
        self.sizes: dict[str, int] = {}
        self.errors: dict[str, str] = {}

    def one(self, path: str) -> float | None:
        """Seconds for ``path``, or None when it timed out or failed (now or before)."""
        path = path.format(**self.subs)
        if path in self.dead or path in self.errors:
            return None
        try:
            dt, status, n = fetch(self.server.port, path, self.timeout)
        except Timeout:
            self.dead[path] = self.timeout
            print(f"  {self.server.system}: GET {path} timed out after {self.timeout:.0f} s; restarting it",
                  flush=True)
            self.server.restart()
            return None
        except (OSError, http.client.HTTPException) as exc:
            self.errors[path] = f"{type(exc).__name__}: {exc}"
            print(f"  {self.server.system}: GET {path} failed ({exc}); restarting it", flush=True)
            self.server.restart()
            return None
        if status != 200:
            self.errors[path] = f"HTTP {status}"
            print(f"  {self.server.system}: GET {path} answered {status}", flush=True)
            return None
        self.per_path.setdefault(path, []).append(dt)
        self.sizes[path] = n
        return dt

    def screen(self, paths: list[str]) -> tuple[float, float] | None:
        """(wall seconds, server CPU seconds) of the requests one after another."""
        total, cpu = 0.0, 0.0
        for p in paths:
            c0 = self.server.cpu()
            dt = self.one(p)
            if dt is None:
                return None
            cpu += self.server.cpu() - c0
            total += dt
        return total, cpu

    def why(self, paths: list[str]) -> str:
        for p in paths:
            p = p.format(**self.subs)
            if p in self.dead:
                return f"timeout >{self.dead[p]:.0f} s ({p})"
            if p in self.errors:
                return f"{self.errors[p]} ({p})"
        return ""


def table_pages(n: int) -> list[tuple[str, str]]:
    api = "/api/v1/studies/{study}/trials"
    return [("first page", f"{api}?offset=0&limit=50&sort=number&order=asc"),
            ("middle page", f"{api}?offset={n // 2}&limit=50&sort=number&order=asc"),
            ("last page, descending", f"{api}?offset={max(0, n - 50)}&limit=50&sort=number&order=desc"),
            ("by value", f"{api}?offset=0&limit=50&sort=value&order=asc"),
            ("middle page by params.lr", f"{api}?offset={n // 2}&limit=50&sort=params.lr&order=desc"),
            ("by metrics.val_accuracy", f"{api}?offset=0&limit=50&sort=metrics.val_accuracy&order=desc"),
            ("state RUNNING", f"{api}?offset=0&limit=50&sort=number&state=RUNNING"),
            ("filter lr < 1e-3 and adam",
             f"{api}?offset=0&limit=50&sort=value&filter=params.lr%20%3C%200.001%20and%20params.optimizer%20%3D%20adam"),
            ("500 rows", f"{api}?offset=0&limit=500&sort=number")]


def rows_for(screens: dict[str, dict[str, list[str]]], n_trials: int, have_theirs: bool) -> list[dict[str, Any]]:
    """The rows of the table: a name, our request list, theirs (None: nothing equivalent)."""
    th = screens.get("theirs") if have_theirs else None
    ours = screens["ours"]
    rows = [
        {"name": "studies page", "ours": ours["studies"], "theirs": th and th["studies"]},
        {"name": "study page, first screen", "ours": ours["study_first"], "theirs": th and th["study_first"]},
        {"name": "study page, all on load", "ours": ours["study"], "theirs": th and th["study"]},
        {"name": "trial page", "ours": ours["trial"], "theirs": th and th["trial"]},
    ]
    for label, p in table_pages(n_trials):
        rows.append({"name": f"table: {label}", "ours": [p], "theirs": None, "table": True})
    api_seen = [p for p in ours["study"] + PLOTS if p.startswith("/api/") and "/trials?" not in p
                and p not in ("/api/v1/studies", "/api/v1/studies/{study}")]
    for p in dict.fromkeys(api_seen):
        name = p.split("/")[-1].split("?")[0]
        rows.append({"name": f"api: {name}", "ours": [p], "theirs": th and THEIR_PLOTS.get(name)})
    if th:  # their other server-side plots: ours draws them from /params
        for extra in THEIR_EXTRA_PLOTS:
            rows.append({"name": f"api: {extra.rsplit('/', 1)[1]} (ours: params)",
                         "ours": ["/api/v1/studies/{study}/params"], "theirs": [extra]})
    return rows


def run_rows(rows: list[dict[str, Any]], timers: dict[str, Timer], repeat: int) -> dict[str, dict[str, Any]]:
    """Each row once cold, then ``repeat`` times; per row and system: cold, median, or why none."""
    times: dict[str, dict[str, list[tuple[float, float] | None]]] = {r["name"]: {"ours": [], "theirs": []}
                                                                      for r in rows}
    for rep in range(repeat + 1):
        for r in rows:
            for system in ("ours", "theirs"):
                paths = r.get(system)
                if not paths or system not in timers:
                    continue
                times[r["name"]][system].append(timers[system].screen(paths))
        print(f"  repetition {rep}/{repeat} done (load {os.getloadavg()[0]:.1f})", flush=True)
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        res: dict[str, Any] = {}
        for system in ("ours", "theirs"):
            ts = times[r["name"]][system]
            paths = r.get(system)
            if not paths or system not in timers:
                res[system] = None
                continue
            ok = [t for t in (ts[1:] if repeat else ts) if t is not None]  # --repeat 0: the cold run
            cold = ts[0]
            res[system] = {"cold_ms": None if cold is None else cold[0] * 1000,
                           "median_ms": statistics.median(t[0] for t in ok) * 1000 if ok else None,
                           "cpu_median_ms": statistics.median(t[1] for t in ok) * 1000 if ok else None,
                           "requests": len(paths), "why": timers[system].why(paths) or None}
        out[r["name"]] = res
    return out


# ------------------------------------------------------------------------- CLI and Python API

CLI_VERBS = {
    "studies": ["studies"],
    "trials": ["trials", STUDY],
    "trials --state running": ["trials", STUDY, "--state", "running"],
    "trials --state complete": ["trials", STUDY, "--state", "complete"],
    "trials --limit 50 --newest": ["trials", STUDY, "--limit", "50", "--newest"],
    "best": ["best", STUDY],
    "importance": ["importance", STUDY],
    "export csv": ["export", STUDY, "--format", "csv", "-o", "{tmp}/trials.csv"],
}


def time_cli(url: str, verbs: list[str], repeat: int, timeout: float) -> dict[str, dict[str, Any]]:
    """Wall and CPU seconds (user + system, of the child) of each verb in a fresh process; the
    first run and the median of ``repeat``. A baseline (``search --help``-like start-up: the verb
    ``studies`` on this storage) is among them, so start-up can be told from the work."""
    import resource

    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for verb in verbs:
            argv = [a.format(tmp=tmp) for a in CLI_VERBS[verb]]
            ts: list[tuple[float, float]] = []
            why = None
            for _ in range(repeat):
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                try:
                    p = subprocess.run([sys.executable, "-m", "search", *argv, "--storage", url], cwd=ROOT,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
                except subprocess.TimeoutExpired:
                    why = f"timeout >{timeout:.0f} s"
                    break
                if p.returncode != 0:
                    why = f"exit {p.returncode}: {p.stderr.decode(errors='replace').strip()[-200:]}"
                    break
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                ts.append((time.perf_counter() - t0, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime))
            out[verb] = {"first_s": ts[0][0] if ts else None,
                         "median_s": statistics.median(t[0] for t in ts) if ts else None,
                         "cpu_median_s": statistics.median(t[1] for t in ts) if ts else None, "why": why}
    return out


def time_dataframe(url: str, repeat: int) -> dict[str, Any]:
    from search.api import load_study

    ts, cpu, rows = [], [], 0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        study = load_study(STUDY, storage=url)
        try:
            rows = len(study.trials_dataframe())
        finally:
            study.close()
        ts.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"first_s": ts[0], "median_s": statistics.median(ts), "cpu_median_s": statistics.median(cpu),
            "rows": rows}


# ------------------------------------------------------------------------------------ main


def _fmt_ms(res: dict[str, Any] | None, key: str) -> str:
    if res is None:
        return "-"
    v = res.get(key)
    if v is None:
        return "timeout" if (res.get("why") or "").startswith("timeout") else "error"
    return f"{v:.0f}" if v >= 9.95 else f"{v:.1f}"


def _ratio(ours: dict[str, Any] | None, theirs: dict[str, Any] | None) -> tuple[str, float | None]:
    if not ours or not theirs or ours.get("median_ms") is None:
        return "-", None
    if theirs.get("median_ms") is None:
        if theirs.get("why", "").startswith("timeout"):
            bound = float(theirs["why"].split(">")[1].split(" ")[0]) * 1000
            return f">{bound / ours['median_ms']:.0f}x", None
        return "-", None
    r = theirs["median_ms"] / ours["median_ms"]
    return f"{r:.1f}x" if r < 100 else f"{r:.0f}x", r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--reports", type=int, default=50, help="reports per trial on average")
    ap.add_argument("--repeat", type=int, default=5, help="timed repetitions after the cold one (0: the cold one only)")
    ap.add_argument("--storage", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--pg-url", default=PG_DEFAULT, help="server URL ending in '/' (databases benchdash_* are made there)")
    ap.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "search-bench", "dashboard"))
    ap.add_argument("--rebuild", action="store_true", help="rebuild the databases even when cached")
    ap.add_argument("--drop-pg", action="store_true", help="drop the PostgreSQL databases at the end")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-browser", action="store_true", help="use SCREENS instead of recording the pages")
    ap.add_argument("--no-theirs", action="store_true", help="skip optuna-dashboard")
    ap.add_argument("--their-timeout", type=float, default=120.0, help="seconds before an optuna-dashboard request counts as a timeout")
    ap.add_argument("--their-mem-gib", type=float, default=8.0, help="address-space cap of optuna-dashboard's process")
    ap.add_argument("--cli", default="all", help="comma-separated CLI verbs to time (all, none, or from: "
                    + ", ".join(CLI_VERBS) + ")")
    ap.add_argument("--cli-repeat", type=int, default=3)
    ap.add_argument("--build-only", action="store_true", help="make (or check) the cached databases and stop")
    args = ap.parse_args(argv)
    backends = ["sqlite", "postgres"] if args.storage == "both" else [args.storage]
    verbs = list(CLI_VERBS) if args.cli == "all" else [] if args.cli == "none" else [v.strip() for v in args.cli.split(",")]
    for v in verbs:
        if v not in CLI_VERBS:
            ap.error(f"--cli: unknown verb {v!r}; use {', '.join(CLI_VERBS)}")
    have_theirs = not args.no_theirs
    if have_theirs:
        try:
            import optuna_dashboard  # noqa: F401
        except ImportError:
            print("optuna-dashboard is not installed: timing ours only (pip install optuna-dashboard)")
            have_theirs = False
    load0 = os.getloadavg()
    print(f"dashboard bench: {args.trials} trials x {args.reports} reports (mean), storage {', '.join(backends)}, "
          f"repeat {args.repeat}; load average {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f} on {os.cpu_count()} CPUs",
          flush=True)

    t0 = time.perf_counter()
    plan = make_plan(args.trials, args.reports, args.seed)
    states: dict[str, int] = {}
    for t in plan["trials"]:
        states[t["state"]] = states.get(t["state"], 0) + 1
    print(f"plan: {plan['n_reports']:,} reports, rungs {plan['rungs']} / {plan['max_t']}, states {states} "
          f"({time.perf_counter() - t0:.1f}s)", flush=True)
    shown = next((t["number"] for t in plan["trials"][args.trials // 2:] if t["state"] == "COMPLETE"),
                 args.trials // 2)

    # The pages' requests, recorded on a tiny study served by both dashboards.
    screens = SCREENS
    if not args.no_browser and not args.build_only:
        with tempfile.TemporaryDirectory() as tmp:
            small = make_plan(REC_TRIALS, REC_REPORTS, args.seed)
            build_ours(f"sqlite:///{tmp}/ours.db", small, REC_TRIALS)
            servers = {"ours": Server("ours", f"sqlite:///{tmp}/ours.db")}
            if have_theirs:
                build_optuna(f"sqlite:///{tmp}/optuna.db", small)
                servers["theirs"] = Server("theirs", f"sqlite:///{tmp}/optuna.db")
            try:
                for s in servers.values():
                    s.start()
                recorded = record_screens(servers)
            finally:
                for s in servers.values():
                    s.close()
        if recorded is None:
            print("Playwright or Chromium missing: using the request lists in SCREENS")
        else:
            screens = {**SCREENS, **recorded}
            for system, pages in recorded.items():
                for page_name, paths in pages.items():
                    print(f"recorded {system} {page_name} page: {len(paths)} requests: {' '.join(paths)}")
    rows = rows_for(screens, args.trials, have_theirs)

    results: dict[str, Any] = {"screens": screens}
    for backend in backends:
        print(f"\n== {backend} ==", flush=True)
        ours_db = Cached("ours", backend, args, our_marker(args))
        reused, secs = ours_db.ensure(lambda url: build_ours(url, plan, args.trials))
        print(f"ours: {'cached' if reused else f'built in {secs:.0f} s'}, {ours_db.size_mib():.0f} MiB", flush=True)
        theirs_db = None
        if have_theirs:
            theirs_db = Cached("optuna", backend, args, optuna_marker(args))
            reused, secs = theirs_db.ensure(lambda url: build_optuna(url, plan))
            print(f"optuna: {'cached' if reused else f'built in {secs:.0f} s'}, {theirs_db.size_mib():.0f} MiB",
                  flush=True)
        if args.build_only:
            continue
        servers = {"ours": Server("ours", ours_db.url)}
        if theirs_db is not None:
            servers["theirs"] = Server("theirs", theirs_db.url, mem_gib=args.their_mem_gib)
        subs = {"study": STUDY, "id": "1", "trial": str(shown)}
        try:
            starts = {k: s.start() for k, s in servers.items()}
            timers = {"ours": Timer(servers["ours"], 120.0, subs)}
            if "theirs" in servers:
                timers["theirs"] = Timer(servers["theirs"], args.their_timeout, subs)
            load_before = os.getloadavg()[0]
            table = run_rows(rows, timers, args.repeat)
            load_after = os.getloadavg()[0]
        finally:
            for s in servers.values():
                s.close()
        cli = time_cli(ours_db.url, verbs, args.cli_repeat, 300.0) if verbs else {}
        df = time_dataframe(ours_db.url, min(3, max(1, args.cli_repeat)))
        results[backend] = {"rows": table, "server_start_s": starts, "load_average_1m": [load_before, load_after],
                            "dead": {k: {p: f"timeout >{v:.0f} s" for p, v in t.dead.items()} for k, t in timers.items()},
                            "errors": {k: dict(t.errors) for k, t in timers.items()},
                            "per_path": {k: dict(t.per_path) for k, t in timers.items()},
                            "cli": cli, "trials_dataframe": df,
                            "sizes_bytes": {k: t.sizes for k, t in timers.items()}}
        if args.drop_pg and backend == "postgres":
            ours_db.drop()
            if theirs_db is not None:
                theirs_db.drop()

    if args.build_only:
        return 0
    # -- the table
    ok_all = True
    summary: dict[str, Any] = {}
    for backend in backends:
        r = results[backend]
        la = r["load_average_1m"]
        print(f"\n{backend}: {args.trials:,} trials, {plan['n_reports']:,} reports; load average (1 min) "
              f"{la[0]:.1f} before, {la[1]:.1f} after, {os.cpu_count()} CPUs. Milliseconds from the client: cold, "
              f"median of {args.repeat}, and the server process's CPU time (median)")
        width = max(len(n) for n in r["rows"])
        print(f"{'row':<{width}}  {'ours':>7} {'median':>7} {'cpu':>6}  {'optuna-d.':>9} {'median':>7} {'cpu':>6}  "
              f"{'theirs/ours':>11}  floor (median)")
        table_worst = None
        for row in rows:
            name = row["name"]
            res = r["rows"][name]
            ratio_text, ratio = _ratio(res["ours"], res["theirs"])
            floor = FLOORS_MS.get(name)
            med = res["ours"]["median_ms"] if res["ours"] else None
            if row.get("table") and med is not None:
                table_worst = max(table_worst or 0.0, med)
            mark = ""
            if floor is not None:
                good = med is not None and med < floor
                ok_all &= good
                mark = f"< {floor:.0f} {'ok' if good else 'MISSED'}"
            print(f"{name:<{width}}  {_fmt_ms(res['ours'], 'cold_ms'):>7} {_fmt_ms(res['ours'], 'median_ms'):>7} "
                  f"{_fmt_ms(res['ours'], 'cpu_median_ms'):>6}  {_fmt_ms(res['theirs'], 'cold_ms'):>9} "
                  f"{_fmt_ms(res['theirs'], 'median_ms'):>7} {_fmt_ms(res['theirs'], 'cpu_median_ms'):>6}  "
                  f"{ratio_text:>11}  {mark}")
            res["ratio"] = ratio
        tfloor = FLOORS_MS["trial-table page (slowest)"]
        good = table_worst is not None and table_worst < tfloor
        ok_all &= good
        print(f"{'table: slowest median':<{width}}  {'':>7} {_num(table_worst):>7}  "
              f"{'(optuna-dashboard: client-side, from the study detail)':<40}  < {tfloor:.0f} {'ok' if good else 'MISSED'}")
        for system in ("ours", "theirs"):
            for p, why in {**r["dead"].get(system, {}), **r["errors"].get(system, {})}.items():
                print(f"  {system}: {p}: {why}")
        for verb, c in r["cli"].items():
            v = (c["why"] or "error") if c["median_s"] is None else \
                f"{c['first_s']:.2f} s first, {c['median_s']:.2f} s median wall, {c['cpu_median_s']:.2f} s CPU"
            print(f"  search {verb}: {v}")
        d = r["trials_dataframe"]
        print(f"  load_study(...).trials_dataframe(): {d['first_s']:.2f} s first, {d['median_s']:.2f} s median wall, "
              f"{d['cpu_median_s']:.2f} s CPU ({d['rows']:,} rows)")
        summary[backend] = {
            "rows": {n: {"ours_cold_ms": _round(v["ours"], "cold_ms"), "ours_median_ms": _round(v["ours"], "median_ms"),
                         "ours_cpu_ms": _round(v["ours"], "cpu_median_ms"),
                         "theirs_cold_ms": _round(v["theirs"], "cold_ms"),
                         "theirs_median_ms": _round(v["theirs"], "median_ms"),
                         "theirs_cpu_ms": _round(v["theirs"], "cpu_median_ms"),
                         "theirs_why": v["theirs"] and v["theirs"]["why"],
                         "ratio": None if v.get("ratio") is None else round(v["ratio"], 1)}
                     for n, v in r["rows"].items()},
            "table_page_slowest_median_ms": table_worst and round(table_worst, 1),
            "cli_median_s": {k: c["median_s"] and round(c["median_s"], 2) for k, c in r["cli"].items()},
            "cli_cpu_s": {k: c["cpu_median_s"] and round(c["cpu_median_s"], 2) for k, c in r["cli"].items()},
            "trials_dataframe_median_s": round(d["median_s"], 2), "trials_dataframe_cpu_s": round(d["cpu_median_s"], 2),
            "load_average_1m": [round(x, 1) for x in r["load_average_1m"]],
            "per_request_median_ms": {k: {p: round(statistics.median(v) * 1000, 1) for p, v in t.items()}
                                      for k, t in r["per_path"].items()},
        }
    print(json.dumps({"bench": "dashboard", "trials": args.trials, "reports_mean": args.reports,
                      "reports_total": plan["n_reports"], "repeat": args.repeat, "cpus": os.cpu_count(),
                      "load_average_1m_end": round(os.getloadavg()[0], 1), "meets_floors_median": ok_all,
                      "optuna_dashboard": have_theirs, "results": summary}))
    return 0


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _round(res: dict[str, Any] | None, key: str) -> float | None:
    if res is None or res.get(key) is None:
        return None
    return round(res[key], 1)


if __name__ == "__main__":
    sys.exit(main())
