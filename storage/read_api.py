"""The read API: the small, versioned, read-only view of the storage that the dashboard uses.

Every answer is plain JSON-ready data (dicts, lists, numbers, strings, ``None``; timestamps as
ISO-8601 UTC strings ending in ``Z``; non-finite floats as ``None``). ``READ_API_VERSION`` changes
when a key is removed or changes meaning; adding keys does not change it.

Read-only by construction: nothing here issues a write, and the database is opened read-only where
the backend allows it (SQLite through a ``file:...?mode=ro`` URI plus ``PRAGMA query_only``;
PostgreSQL with ``default_transaction_read_only`` set at connect and the session characteristics
set to READ ONLY). Unlike ``open_storage`` it never creates or migrates a schema: a database at
another schema revision is refused with the fix (``check_schema=False`` opens it anyway, for
``schema_revision`` alone: ``search db current`` answers on an old database too).

Durations: a study or trial that stopped without a finish time (interrupted, or its controller
killed, so its RUNNING trials' heartbeats went silent for ``STALE_AFTER_S``) counts up to its last
activity, never up to now.

Aggregation happens in SQL: counts are GROUP BYs, the trial table is a LIMIT/OFFSET page,
learning curves are downsampled with a window function. The plots of every trial (``history``,
``param_points``) read each trial once, a few columns, and answer at most a few thousand points
(min/max per bin of the trial-number axis, or the best half and an even spread), so a study of
100,000 trials with 5 million reports is browsed without a pass over its reports or O(n²) work.
``updates`` answers what changed after a cursor (the newest report and trial ids), for live pages.

Two kinds of answer: JSON-ready views for the dashboard (``studies``, ``study_header``,
``trials_page``, ``history``, ``updates``, ``values_at_step``, ...) and frozen records (``get_study``, ``get_trials``, ``best_trial``, ``get_exploits``,
``get_algorithm_state``) for the CLI's read verbs and for ``analysis``, which computes importance,
Pareto fronts and scaling fits from them. Storage returns records and queries only; it fits nothing.

Thread-safety: a ``ReadAPI`` may be shared by threads (one pooled connection per call).
"""
from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, Iterable, Mapping, Sequence

from storage.records import ExploitRecord, StudyRecord, TrialRecord, TrialState

__all__ = ["READ_API_VERSION", "ReadAPI", "open_read_api", "parse_filter", "FILTER_HELP", "declared_space",
           "json_safe", "scheduler_rungs"]

READ_API_VERSION = 1
MAX_PAGE = 500
# Caps that keep a plot readable and its payload small; every answer that applies one says so.
MAX_PARAM_POINTS = 2000
MAX_TIMELINE = 2000
MAX_CURVES_PAGE = 500
MAX_HISTORY_POINTS = 4000
MAX_RUNNING = 500
MAX_WATCH = 1000
MAX_LIVE_POINTS = 20_000
# A RUNNING trial is heartbeaten by its controller every few seconds (5 by default). One silent for
# longer than this has no controller any more (killed): its time, and its study's, stop at the last
# heartbeat instead of growing with the clock.
STALE_AFTER_S = 60.0

FILTER_HELP = ("clauses joined by 'and' or ',': FIELD OP VALUE with OP one of = != < <= > >= ~ "
               "(~ is 'contains'); FIELD is number, state, value, attempt, last_step, worker, node, "
               "error, params.NAME or metrics.NAME; e.g. params.lr < 0.01 and state = COMPLETE")

_CLAUSE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(<=|>=|!=|=|<|>|~)\s*(.*?)\s*$")
_SPLIT = re.compile(r"\s+and\s+|,", re.IGNORECASE)
_PLAIN_COLUMNS = {"number": "int", "state": "str", "value": "float", "attempt": "int",
                  "last_step": "int", "worker": "str", "node": "str", "error": "str"}
_SORT_COLUMNS = ("number", "state", "value", "attempt", "last_step", "worker", "node",
                 "started_at", "finished_at")
_NOT_NULL = ("number", "state", "attempt")
# The trials columns a TrialRecord is made of, in its field order.
_RECORD_COLUMNS = ("id", "study_id", "number", "state", "params", "values", "metrics", "error", "attempt", "failures",
                   "worker", "node", "last_step", "created_at", "started_at", "finished_at", "heartbeat_at")


def _in_states(t, states: Sequence[str]):
    """``t.state`` in ``states``: an equality for one state, which SQLite serves in trial number
    order from the (study_id, state, number) index; its planner does not for ``IN (?)``."""
    states = list(states)
    return t.c.state == states[0] if len(states) == 1 else t.c.state.in_(states)


def _iso(d: datetime | None) -> str | None:
    return None if d is None else d.replace(tzinfo=None).isoformat() + "Z"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _trial_end(state: str, finished_at: datetime | None, heartbeat_at: datetime | None,
               now: datetime) -> datetime | None:
    """When a trial's time stops: its finish; for a RUNNING trial, now while its heartbeat is fresh,
    else its last heartbeat; for one that left RUNNING unfinished (paused), its last heartbeat."""
    if finished_at is not None:
        return finished_at
    if state == TrialState.RUNNING and (heartbeat_at is None
                                        or (now - heartbeat_at).total_seconds() <= STALE_AFTER_S):
        return now
    return heartbeat_at


def _text(value: str, what: str) -> str:
    """``value`` unless it holds a control character (NUL breaks SQLite's JSON paths and every
    PostgreSQL text parameter): then a ``ValueError`` naming ``what``."""
    if any(ord(ch) < 32 or ch == "\x7f" for ch in value):
        raise ValueError(f"{what} must not contain control characters, got {value[:40]!r}")
    return value


def _num(v: Any) -> float | None:
    """``v`` as a finite float, or None when it is missing, not a number or not finite."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def json_safe(obj: Any) -> Any:
    """Plain JSON data: mappings with string keys, lists for tuples and arrays, numpy scalars as
    Python numbers, and None for NaN and infinities (JSON has none, and PostgreSQL's JSON rejects
    them). The project's one JSON-cleaning helper: the read API's answers, ``analysis``'s views, the
    dashboard's responses, the CLI's ``--json`` output and the scaling ladder's stored state all go
    through it."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return json_safe(obj.tolist())
    return obj


def _envelope(numbers: Sequence[int], values: Sequence[float], max_points: int) -> list[int]:
    """Indices of the points to draw of a series sorted by ``numbers``: all of them up to
    ``max_points``; above, the number axis is cut into ``max_points // 2`` equal bins and each bin
    keeps the points with its lowest and highest value, as a screen column of the plot would
    show them (M4-style downsampling). Sorts in numpy: O(n log n), no Python loop over points."""
    import numpy as np

    n = len(numbers)
    if n <= max_points:
        return list(range(n))
    bins = max(1, max_points // 2)
    x = np.asarray(numbers, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    b = ((x - x[0]) / ((x[-1] - x[0] + 1) / bins)).astype(np.int64)
    order = np.lexsort((np.arange(n), v, b))  # by bin, then value, ties to the earlier point
    sb = b[order]
    first = np.flatnonzero(np.r_[True, sb[1:] != sb[:-1]])
    last = np.r_[first[1:] - 1, n - 1]
    return sorted(set(order[first].tolist()) | set(order[last].tolist()))


def _best_and_spread(scored: Sequence[tuple[int, float]], max_points: int, sign: float) -> list[tuple[int, float]]:
    """``scored`` (number, value) itself up to ``max_points``; above, the best half (``sign`` -1
    for maximised values) and an even spread of the rest, by number."""
    if len(scored) <= max_points:
        return list(scored)
    ranked = sorted(scored, key=lambda x: sign * x[1])
    best_part, rest = ranked[: max_points // 2], ranked[max_points // 2:]
    step = len(rest) / (max_points - len(best_part))
    return sorted(best_part + [rest[int(i * step)] for i in range(max_points - len(best_part))])


def _ancestry(exploits: Sequence[Any], number: int) -> list[dict[str, Any]]:
    """The exploits that made trial ``number`` what it is, newest first: its last exploit, then
    the parent's last exploit before that one, and so on back (PBT ancestry)."""
    by_member: dict[int, list[Any]] = {}
    for x in exploits:  # oldest first
        by_member.setdefault(x.number, []).append(x)
    out: list[dict[str, Any]] = []
    bound = None
    while len(out) <= len(exploits):
        prior = [x for x in by_member.get(number, ()) if bound is None or x.id < bound]
        if not prior:
            break
        x = prior[-1]
        out.append({"number": x.number, "parent": x.parent_number, "step": x.step, "parent_step": x.parent_step,
                    "params_before": json_safe(dict(x.params_before or {})),
                    "params_after": json_safe(dict(x.params_after or {})), "at": _iso(x.created_at)})
        number, bound = x.parent_number, x.id
    return out


def _parse_cursor(since: str | None) -> tuple[int, int]:
    """``updates``' cursor "REPORT_ID.TRIAL_ID" as two ints; a ``ValueError`` naming it otherwise."""
    if since is None:
        return 0, 0
    m = re.fullmatch(r"([0-9]{1,12})\.([0-9]{1,12})", since.strip())
    if not m:
        raise ValueError(f"since must be a cursor from a previous answer (two integers joined by '.'), got {since[:40]!r}")
    return int(m.group(1)), int(m.group(2))


def declared_space(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The study's declared parameters as {name, type, low, high, log, choices}."""
    out = []
    for name, p in (spec.get("space") or {}).items():
        if not isinstance(p, dict):
            continue
        kind = p.get("type")
        item: dict[str, Any] = {"name": str(name), "type": str(kind)}
        if kind in ("float", "int"):
            item.update(low=p.get("low"), high=p.get("high"), log=bool(p.get("log", False)), step=p.get("step"))
        elif kind == "categorical":
            item["choices"] = list(p.get("choices") or [])
        out.append(item)
    return out


def scheduler_rungs(spec: Mapping[str, Any], max_step: int | None = None) -> list[int]:
    """The steps at which the study's successive-halving scheduler (asha, hyperband, freeze-thaw)
    judges trials, r_min * eta^k up to its max_resource (else up to ``max_step``, at most 30
    levels), from the study file's ``scheduler`` options and their defaults; [] for any other."""
    sched = spec.get("scheduler")
    if not isinstance(sched, Mapping) or sched.get("name") not in ("asha", "hyperband", "freeze-thaw"):
        return []

    def opt(key: str, default: int) -> int:
        v = sched.get(key, default)
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1 else default

    grace = opt("grace_period", 1) if sched["name"] == "asha" else 1
    r_min = max(opt("min_resource", grace), grace)
    eta = max(2, opt("reduction_factor", 3))
    top = sched.get("max_resource") if isinstance(sched.get("max_resource"), int) else max_step
    levels = []
    level = r_min
    while len(levels) < 30 and (top is None or level <= top):
        levels.append(level)
        level *= eta
    return levels


def parse_filter(text: str, space: Sequence[dict[str, Any]] = ()) -> list[tuple[str, str, str, Any]]:
    """Parse a trial filter (see ``FILTER_HELP``) into (kind, field, op, value) clauses, where
    kind is 'column', 'param' or 'metric'. Raises ``ValueError`` naming the bad clause."""
    clauses: list[tuple[str, str, str, Any]] = []
    if not text or not text.strip():
        return clauses
    kinds = {p["name"]: p["type"] for p in space}
    for raw in _SPLIT.split(text):
        if not raw.strip():
            continue
        m = _CLAUSE.match(raw)
        if not m:
            raise ValueError(f"filter clause {raw.strip()!r} is not FIELD OP VALUE; use {FILTER_HELP}")
        field, op, value = m.group(1), m.group(2), _text(m.group(3).strip("'\""), f"filter value of {m.group(1)!r}")
        if field in _PLAIN_COLUMNS:
            kind, typ = "column", _PLAIN_COLUMNS[field]
        elif field.startswith("params.") and len(field) > 7:
            kind = "param"
            typ = {"float": "float", "int": "float", "categorical": "str"}.get(kinds.get(field[7:], ""), "any")
            field = field[7:]
        elif field.startswith("metrics.") and len(field) > 8:
            kind, typ, field = "metric", "float", field[8:]
        else:
            raise ValueError(f"unknown filter field {field!r}; use {FILTER_HELP}")
        if op == "~":
            if typ in ("float", "int"):
                raise ValueError(f"'~' (contains) compares text; {m.group(1)!r} is numeric, use = < > instead")
            clauses.append((kind, field, op, value))
            continue
        if typ in ("float", "int") or (typ == "any" and _num(value) is not None):
            number = _num(value)
            if number is None:
                raise ValueError(f"filter on {m.group(1)!r} needs a number, got {value!r}")
            clauses.append((kind, field, op, number))
        else:
            if op not in ("=", "!="):
                raise ValueError(f"filter on {m.group(1)!r} compares text; use = != or ~, got {op!r}")
            clauses.append((kind, field, op, value.upper() if field == "state" else value))
    return clauses


class ReadAPI:
    """Read-only queries over one storage URL. Use ``open_read_api(url)``."""

    def __init__(self, url: str, *, check_schema: bool = True) -> None:
        from storage._rdb import safe_url

        self.url_safe = safe_url(url)
        self.backend = ""
        self.engine = self._make_engine(url)
        if check_schema:
            self._check_schema()

    # -- connection -------------------------------------------------------------------------

    def _make_engine(self, url: str):
        import os
        import sqlite3

        from sqlalchemy import create_engine, event
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
        from sqlalchemy.pool import QueuePool

        from storage._rdb import StorageError

        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StorageError(f"storage URL {self.url_safe!r} is not a valid SQLAlchemy URL; "
                               "use e.g. sqlite:///search.db or postgresql://user@host/db") from None
        self.backend = parsed.get_backend_name()
        if self.backend == "sqlite":
            db = parsed.database
            if not db or db == ":memory:":
                raise StorageError("reading needs a database file: an in-memory SQLite database holds no "
                                   "studies; point --storage at a file, e.g. sqlite:///search.db")
            path = os.path.abspath(db)
            if not os.path.exists(path):
                raise StorageError(f"no database file at {path!r}; run a study first or check --storage")
            if os.path.isdir(path):
                raise StorageError(f"{path!r} is a folder, not a database file; check --storage")
            uri = f"file:{path}?mode=ro"

            def connect() -> sqlite3.Connection:
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=60)
                conn.execute("PRAGMA query_only=ON")
                conn.execute("PRAGMA busy_timeout=60000")
                return conn

            # QueuePool, not the SingletonThreadPool SQLAlchemy picks for a bare "sqlite://": that
            # one closes other threads' connections under load, and requests run on many threads.
            return create_engine("sqlite://", creator=connect, poolclass=QueuePool, pool_size=8,
                                 max_overflow=16, future=True)
        kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": True}
        if self.backend == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            # jit=off: the planner charges the dashboard's correlated subqueries per row, so at
            # 100,000 trials it JIT-compiles them, which costs more than it saves (history: 620-735
            # ms with JIT, 325-330 ms without, bench/bench_dashboard.py).
            kwargs["connect_args"] = {"connect_timeout": 10,
                                      "options": "-c default_transaction_read_only=on -c jit=off"}
        try:
            engine = create_engine(parsed, **kwargs)
        except Exception as exc:  # noqa: BLE001 - driver missing or bad URL, reported without the password
            raise StorageError(f"storage {self.url_safe}: {exc.__class__.__name__}") from None
        if self.backend == "postgresql":
            @event.listens_for(engine, "connect")
            def _read_only(dbapi_conn, _record):  # pragma: no cover - trivial
                # Outside a transaction, so the setting is not rolled back with the first one.
                autocommit = dbapi_conn.autocommit
                dbapi_conn.autocommit = True
                dbapi_conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                dbapi_conn.autocommit = autocommit
        return engine

    def schema_revision(self) -> tuple[str | None, str]:
        """(the database's schema revision, None without a version table; the revision this
        version of the program reads)."""
        from sqlalchemy.exc import SQLAlchemyError

        from storage._rdb import HEAD_REVISION, StorageError, _current_revision

        try:
            with self.engine.connect() as conn:
                current = _current_revision(conn)
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None)
            reason = str(orig or exc).strip().splitlines()[0] if str(orig or exc).strip() else type(exc).__name__
            raise StorageError(f"cannot read storage {self.url_safe}: {reason.replace(self._password(), '***')}; "
                               "check --storage or SEARCH_STORAGE") from None
        return current, HEAD_REVISION

    def _check_schema(self) -> None:
        from storage._rdb import VERSION_TABLE, StorageError

        current, head = self.schema_revision()
        if current is None:
            raise StorageError(f"storage {self.url_safe} holds no search database (no {VERSION_TABLE} table)")
        if current != head:
            raise StorageError(f"storage {self.url_safe} has schema revision {current}, this version reads {head}; "
                               "run `search db upgrade --storage URL` first")

    def _password(self) -> str:
        pw = self.engine.url.password
        return str(pw) if pw else "\0"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "ReadAPI":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------------------------

    def _rows(self, stmt) -> list[Any]:
        with self.engine.connect() as conn:
            return conn.execute(stmt).all()  # one fetchall: iterating fetches row by row, 2x slower

    @staticmethod
    def _plain(conn, stmt) -> list[tuple]:
        """``stmt``'s rows as the driver's own tuples, for the scans over every trial of a study:
        SQLAlchemy's Row objects and their unpacking cost more than the database did (2x at
        100,000 trials). No result processing happens: the caller decodes what a driver answers
        as text (SQLite's JSON and timestamps; psycopg decodes both itself)."""
        result = conn.execute(stmt)
        try:
            return result.cursor.fetchall()
        finally:
            result.close()

    def _study_row(self, name: str):
        from sqlalchemy import select

        from storage._rdb import StudyNotFound
        from storage._schema import StudyRow

        # A name with a control character names no study (and PostgreSQL refuses NUL in a query).
        rows = [] if any(ord(ch) < 32 for ch in name) else self._rows(
            select(StudyRow.__table__).where(StudyRow.__table__.c.name == name))
        if not rows:
            raise StudyNotFound(f"no study named {name!r}")
        return rows[0]

    @staticmethod
    def _study_dict(row, counts: dict[str, int], best: float | None,
                    activity: tuple[datetime | None, datetime | None]) -> dict[str, Any]:
        """``activity``: (the latest time any of its trials or checkpoints was written, the latest
        heartbeat of its RUNNING trials)."""
        spec = dict(row.spec or {})
        algo, budget = spec.get("algorithm"), spec.get("budget")
        last, beat = activity
        now = _now()
        # How long it ran, not how long ago it started: a study that stopped without finished_at
        # (interrupted) ends at its last activity; a RUNNING one whose trials' heartbeats went
        # silent (its controller was killed) too, flagged stale.
        stale = False
        if row.finished_at is not None:
            end = row.finished_at
        elif row.state != "RUNNING":
            end = last or row.created_at
        elif beat is not None and (now - beat).total_seconds() > STALE_AFTER_S:
            end, stale = last or beat, True
        else:
            end = now
        done = sum(counts.get(s, 0) for s in (TrialState.COMPLETE, TrialState.PRUNED))
        return {
            "id": row.id, "name": row.name, "state": row.state,
            "algorithm": algo.get("name") if isinstance(algo, dict) else None,
            "metrics": list(row.metrics), "directions": list(row.directions),
            "counts": {s: counts.get(s, 0) for s in TrialState.ALL},
            "done": done, "running": counts.get(TrialState.RUNNING, 0),
            "failed": counts.get(TrialState.FAILED, 0), "waiting": counts.get(TrialState.WAITING, 0),
            "paused": counts.get(TrialState.PAUSED, 0),
            "total": sum(counts.values()),
            "budget": budget.get("trials") if isinstance(budget, dict) else None,
            "best": _num(best),
            "started_at": _iso(row.created_at), "finished_at": _iso(row.finished_at),
            "duration_s": max(0.0, (end - row.created_at).total_seconds()),
            "last_activity_at": _iso(last), "stale": stale,
        }

    def _aggregates(self, study_id: int | None):
        from sqlalchemy import func, select

        from storage._schema import TrialRow

        t = TrialRow.__table__
        q_counts = select(t.c.study_id, t.c.state, func.count()).group_by(t.c.study_id, t.c.state)
        q_best = (select(t.c.study_id, func.min(t.c.value), func.max(t.c.value))
                  .where(t.c.state == TrialState.COMPLETE).group_by(t.c.study_id))
        if study_id is not None:
            q_counts = q_counts.where(t.c.study_id == study_id)
            q_best = q_best.where(t.c.study_id == study_id)
        counts: dict[int, dict[str, int]] = {}
        best: dict[int, tuple[Any, Any]] = {}
        with self.engine.connect() as conn:
            for sid, state, n in conn.execute(q_counts):
                counts.setdefault(sid, {})[state] = n
            for sid, lo, hi in conn.execute(q_best):
                best[sid] = (lo, hi)
        return counts, best

    def _activity(self, rows: Sequence[Any]) -> dict[int, tuple[datetime | None, datetime | None]]:
        """{study id: (its last activity, the newest heartbeat of its RUNNING trials)} for the
        given study rows: only those without finished_at need it, so a finished study costs
        nothing here. A RUNNING study whose running trials heartbeat (its controller is alive)
        is active now: its newest heartbeat stands for its last activity, from the (study_id,
        state) index alone. The others (interrupted, or stale) need the latest start, finish,
        heartbeat or checkpoint of all their trials: one pass over them."""
        from sqlalchemy import func, select

        from storage._schema import CheckpointRow, TrialRow

        rows = [r for r in rows if r.finished_at is None]
        if not rows:
            return {}
        t, c = TrialRow.__table__, CheckpointRow.__table__
        now = _now()
        beats: dict[int, Any] = {}
        with self.engine.connect() as conn:
            for sid, beat in conn.execute(select(t.c.study_id, func.max(t.c.heartbeat_at))
                                          .where(t.c.study_id.in_([r.id for r in rows]), t.c.state == TrialState.RUNNING)
                                          .group_by(t.c.study_id)):
                beats[sid] = beat
            out = {r.id: (beats[r.id], beats[r.id]) for r in rows
                   if r.state == "RUNNING" and beats.get(r.id) is not None
                   and (now - beats[r.id]).total_seconds() <= STALE_AFTER_S}
            ids = [r.id for r in rows if r.id not in out]
            if not ids:
                return out
            q_times = (select(t.c.study_id, func.max(t.c.created_at), func.max(t.c.started_at), func.max(t.c.finished_at),
                              func.max(t.c.heartbeat_at))
                       .where(t.c.study_id.in_(ids)).group_by(t.c.study_id))
            q_ckpt = (select(t.c.study_id, func.max(c.c.created_at)).join(t, t.c.id == c.c.trial_id)
                      .where(t.c.study_id.in_(ids)).group_by(t.c.study_id))
            times: dict[int, list[Any]] = {}
            for sid, *stamps in conn.execute(q_times):
                times[sid] = list(stamps)
            for sid, stamp in conn.execute(q_ckpt):
                times.setdefault(sid, []).append(stamp)
        out.update({sid: (max((x for x in stamps if x is not None), default=None), beats.get(sid))
                    for sid, stamps in times.items()})
        return out

    def _summary(self, row, counts, best, activity) -> dict[str, Any]:
        lo, hi = best.get(row.id, (None, None))
        value = hi if list(row.directions)[0] == "maximize" else lo
        return self._study_dict(row, counts.get(row.id, {}), value, activity.get(row.id, (None, None)))

    # -- records ------------------------------------------------------------------------------
    # Frozen records for the CLI's read verbs and for ``analysis``: the same rows the views read.

    def get_study(self, name: str) -> StudyRecord:
        """The study named ``name``; ``StudyNotFound`` if there is none."""
        from storage._rdb import Storage

        return Storage._study(SimpleNamespace(**self._study_row(name)._mapping))

    def get_trials(self, name: str, states: Sequence[str] = (), *, limit: int | None = None,
                   newest: bool = False) -> list[TrialRecord]:
        """The study's trials in ``states`` (every state when empty) by trial number, newest first
        with ``newest``; with ``limit``, only the first ``limit`` of that order."""
        return [TrialRecord(*row) for row in self.trial_rows(name, states, limit=limit, newest=newest)]

    def trial_rows(self, name: str, states: Sequence[str] = (), *, limit: int | None = None,
                   newest: bool = False) -> list[tuple]:
        """``get_trials``' trials as plain tuples in ``TrialRecord``'s field order (``values`` a
        tuple or None, ``params`` and ``metrics`` plain dicts, times as datetimes), for readers of
        every trial that build columns (``Study.trials_dataframe``): making and freezing 100,000
        records cost about as much as reading them."""
        from sqlalchemy import select

        from storage._schema import TrialRow

        bad = [s for s in states if s not in TrialState.ALL]
        if bad:
            raise ValueError(f"state must be one of {', '.join(TrialState.ALL)}, got {bad[0]!r}")
        row = self._study_row(name)
        t = TrialRow.__table__
        q = select(*(t.c[c] for c in _RECORD_COLUMNS)).where(t.c.study_id == row.id)
        q = q.order_by(t.c.number.desc() if newest else t.c.number)
        if states:
            q = q.where(_in_states(t, states))
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            rows = self._plain(conn, q)
        # The driver's tuples decoded here, once: JSON text (SQLite; psycopg decodes it itself)
        # and SQLite's timestamp text by ``fromisoformat`` (C), where SQLAlchemy's processors and
        # Row objects cost more than the rest of building 100,000 records.
        loads, stamp = json.loads, datetime.fromisoformat
        out = []
        for (tid, sid, number, state, params, values, metrics, error, attempt, failures, worker, node, last_step,
             created, started, finished, beat) in rows:
            if type(params) is str:
                params, values, metrics = loads(params), None if values is None else loads(values), loads(metrics)
            if type(created) is str:
                created, started, finished, beat = (None if x is None else stamp(x)
                                                    for x in (created, started, finished, beat))
            out.append((tid, sid, number, state, params, None if values is None else tuple(values), metrics or {},
                        error, attempt, failures, worker, node, last_step, created, started, finished, beat))
        return out

    def last_reported(self, name: str, metric: str, numbers: Sequence[int]) -> dict[int, tuple[int, float]]:
        """{trial number: (step, value)} of the last report of ``metric`` by each of the trials
        ``numbers`` that reported a finite one: what a pruned, paused or running trial reached."""
        from sqlalchemy import select

        from storage._schema import TrialRow

        if not numbers:
            return {}
        row = self._study_row(name)
        t = TrialRow.__table__
        ids = dict(self._rows(select(t.c.id, t.c.number).where(t.c.study_id == row.id,
                                                                t.c.number.in_(list(numbers)))))
        out: dict[int, tuple[int, float]] = {}
        # each trial's last report comes last in its group (when it lacks the metric, its first
        # report's value stands)
        for tid, step, _attempt, value in self._thinned_reports(list(ids), 2, metric):
            v = _num(value)
            if v is not None:
                out[ids[tid]] = (step, v)
        return out

    def best_trial(self, name: str) -> TrialRecord | None:
        """The completed trial with the best first-objective value (the lowest number on ties)."""
        from sqlalchemy import select

        from storage._rdb import Storage
        from storage._schema import TrialRow

        row = self._study_row(name)
        t = TrialRow.__table__
        order = t.c.value.desc() if row.directions[0] == "maximize" else t.c.value.asc()
        rows = self._rows(select(t).where(t.c.study_id == row.id, t.c.state == TrialState.COMPLETE,
                                          t.c.value.is_not(None)).order_by(order, t.c.number).limit(1))
        return Storage._trial(SimpleNamespace(**rows[0]._mapping)) if rows else None

    def get_exploits(self, name: str) -> list[ExploitRecord]:
        """Every PBT exploit of the study, oldest first."""
        from sqlalchemy import select

        from storage._schema import ExploitRow

        e = ExploitRow.__table__
        rows = self._rows(select(e).where(e.c.study_id == self._study_row(name).id).order_by(e.c.id))
        return [ExploitRecord(id=r.id, number=r.number, parent_number=r.parent_number, step=r.step,
                              parent_step=r.parent_step, params_before=dict(r.params_before),
                              params_after=dict(r.params_after), created_at=r.created_at) for r in rows]

    def get_algorithm_state(self, name: str) -> dict[str, dict[str, Any]]:
        """The algorithm state the controller recorded for the study, by key."""
        from sqlalchemy import select

        from storage._schema import AlgorithmStateRow

        a = AlgorithmStateRow.__table__
        rows = self._rows(select(a.c.key, a.c.value).where(a.c.study_id == self._study_row(name).id))
        return {k: dict(v) for k, v in rows}

    # -- studies ------------------------------------------------------------------------------

    def studies(self) -> list[dict[str, Any]]:
        """Every study with its trial counts by state, best first-objective value and timing."""
        from sqlalchemy import select

        from storage._schema import StudyRow

        rows = self._rows(select(StudyRow.__table__).order_by(StudyRow.__table__.c.id))
        counts, best = self._aggregates(None)
        activity = self._activity(rows)
        return [self._summary(r, counts, best, activity) for r in rows]

    def study(self, name: str) -> dict[str, Any]:
        """One study's summary plus what ``study_header`` answers."""
        row = self._study_row(name)
        counts, best = self._aggregates(row.id)
        out = self._summary(row, counts, best, self._activity([row]))
        out.update(self._header(row))
        return out

    def study_header(self, name: str) -> dict[str, Any]:
        """What a page's header needs, without the counts (no pass over the trials): the study's
        name, state, objectives, space, fixed params and entrypoint, the metric names seen in
        trials and reports (from a sample of trials), which optional views have data (pareto,
        scaling, lineage) and its scheduler's rungs."""
        row = self._study_row(name)
        return {"id": row.id, "name": row.name, "state": row.state, "metrics": list(row.metrics),
                "directions": list(row.directions), **self._header(row)}

    def _header(self, row) -> dict[str, Any]:
        from sqlalchemy import select

        from storage._schema import ExploitRow, ReportRow, TrialRow

        spec = dict(row.spec or {})
        out: dict[str, Any] = {"space": declared_space(spec),
                               "fixed_params": json_safe(dict((spec.get("trial") or {}).get("params") or {})),
                               "entrypoint": (spec.get("trial") or {}).get("entrypoint")}
        t, r = TrialRow.__table__, ReportRow.__table__
        # walks the (study_id, number) index and stops at the 50th complete trial
        sample = self._rows(select(t.c.id, t.c.metrics).where(t.c.study_id == row.id, t.c.state == TrialState.COMPLETE)
                            .order_by(t.c.number).limit(50))
        metric_names: dict[str, None] = {}
        for _id, m in sample:
            metric_names.update(dict.fromkeys((m or {}).keys()))
        ids = [i for i, _ in sample] or [i for (i,) in self._rows(
            select(t.c.id).where(t.c.study_id == row.id).order_by(t.c.number.desc()).limit(50))]
        report_names: dict[str, None] = {}
        if ids:
            # each sampled trial's last report: one (trial_id, step) lookup each, not all their reports
            for (m,) in self._rows(select(r.c.metrics).join(t, (t.c.id == r.c.trial_id) & (r.c.step == t.c.last_step))
                                   .where(r.c.trial_id.in_(ids)).limit(200)):
                report_names.update(dict.fromkeys((m or {}).keys()))
        out["trial_metrics"] = list(metric_names)
        out["report_metrics"] = list(report_names)
        keys = set(metric_names) | set(out["fixed_params"]) | {p["name"] for p in out["space"]}
        out["has_pareto"] = len(row.metrics) >= 2
        out["has_scaling"] = "params" in keys and ("tokens" in keys or "flops" in keys)
        e = ExploitRow.__table__
        out["has_lineage"] = bool(self._rows(select(e.c.id).where(e.c.study_id == row.id).limit(1)))
        sched = spec.get("scheduler")
        out["scheduler"] = sched.get("name") if isinstance(sched, dict) else None
        out["rungs"] = scheduler_rungs(spec)
        out["read_api_version"] = READ_API_VERSION
        return out

    # -- trials -------------------------------------------------------------------------------

    def _json_field(self, col, key: str, typ: str):
        expr = col[key]
        return expr.as_float() if typ == "float" else expr.as_string()

    def _where(self, study_id: int, clauses: Iterable[tuple[str, str, str, Any]]):
        # A parameter's or metric's clause extracts it from the row's JSON: one pass over the
        # study's trials, which measured faster than semi-joins on trial_params on both databases
        # (100,000 trials: SQLite 67 against 125 to 224 ms of CPU; PostgreSQL 158-167 against 255 ms).
        from sqlalchemy import and_, not_

        from storage._schema import TrialRow

        t = TrialRow.__table__
        conds = [t.c.study_id == study_id]
        for kind, field, op, value in clauses:
            if kind == "column":
                col = t.c[field]
            elif kind == "param":
                col = self._json_field(t.c.params, field, "str" if isinstance(value, str) else "float")
            else:
                col = self._json_field(t.c.metrics, field, "float")
            if op == "~":
                escaped = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                conds.append(col.like(f"%{escaped}%", escape="\\"))
                continue
            cond = {"=": col == value, "!=": col != value, "<": col < value, "<=": col <= value,
                    ">": col > value, ">=": col >= value}[op]
            conds.append(cond if op != "!=" else not_(col == value) | col.is_(None))
        return and_(*conds)

    def _param_page(self, conn, study_id: int, name: str, offset: int, limit: int, descending: bool) -> list[int]:
        """Trial numbers of one page of a study's whole table sorted by the number parameter
        ``name``, ties by trial number, trials without it last: a walk of the (study_id, name,
        value_num, number) index (or its descending twin), which alone answers it (PostgreSQL: an
        index-only scan), not a sort of every trial."""
        from sqlalchemy import func, select

        from storage._schema import TrialParamRow, TrialRow

        t, p = TrialRow.__table__, TrialParamRow.__table__
        has = (p.c.study_id == study_id, p.c.name == name, p.c.value_num.is_not(None))
        n_has = conn.scalar(select(func.count()).select_from(p).where(*has))
        numbers = []
        if offset < n_has:
            key = p.c.value_num.desc() if descending else p.c.value_num
            numbers = [n for (n,) in conn.execute(select(p.c.number).where(*has).order_by(key, p.c.number)
                                                  .limit(limit).offset(offset))]
        if len(numbers) < limit:
            lacking = ~select(p.c.trial_id).where(p.c.trial_id == t.c.id, p.c.name == name,
                                                  p.c.value_num.is_not(None)).exists()
            numbers += [n for (n,) in conn.execute(select(t.c.number).where(t.c.study_id == study_id, lacking)
                                                   .order_by(t.c.number).limit(limit - len(numbers))
                                                   .offset(max(0, offset - n_has)))]
        return numbers

    def trials_page(self, name: str, *, offset: int = 0, limit: int = 50, sort: str = "number",
                    descending: bool = False, states: Sequence[str] = (), filter: str = "") -> dict[str, Any]:
        """One page of the trial table, sorted and filtered in SQL.

        ``sort`` is a column (number, state, value, attempt, last_step, worker, node, started_at,
        finished_at), ``values.I`` for objective I, ``params.NAME`` or ``metrics.NAME``; missing
        values sort last. ``filter`` follows ``FILTER_HELP``. Returns {total, offset, limit, rows}.
        """
        from sqlalchemy import func, select

        from storage._schema import TrialParamRow, TrialRow

        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be in [1, {MAX_PAGE}], got {limit}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        bad = [s for s in states if s not in TrialState.ALL]
        if bad:
            raise ValueError(f"state must be one of {', '.join(TrialState.ALL)}, got {bad[0]!r}")
        row = self._study_row(name)
        space = declared_space(dict(row.spec or {}))
        t, tp = TrialRow.__table__, TrialParamRow.__table__
        clauses = parse_filter(filter, space)
        where = self._where(row.id, clauses)
        if states:
            where = where & _in_states(t, states)
        kinds = {p["name"]: p["type"] for p in space}
        source = t
        if sort in _SORT_COLUMNS:
            key = t.c[sort]
        elif sort.startswith("params.") and sort[7:] in kinds:
            by = tp.alias("sort_param")
            source = t.outerjoin(by, (by.c.trial_id == t.c.id) & (by.c.name == sort[7:]))
            key = by.c.value_text if kinds[sort[7:]] == "categorical" else by.c.value_num
        elif sort.startswith("metrics.") and len(sort) > 8 and _text(sort, "sort"):
            key = self._json_field(t.c.metrics, sort[8:], "float")
        elif re.fullmatch(r"values\.\d{1,6}", sort) and int(sort[7:]) < len(row.directions):
            key = t.c["values"][int(sort[7:])].as_float()
        else:
            raise ValueError(f"cannot sort by {sort!r}; use one of {', '.join(_SORT_COLUMNS)}, values.I, "
                             f"params.NAME (NAME in {', '.join(kinds) or 'the space'}) or metrics.NAME")
        order = [key.desc() if descending else key.asc()]
        if sort not in _NOT_NULL:  # missing values last; a NOT NULL column keeps its index order
            order = [order[0].nulls_last()]  # (not "key IS NULL" first: that evaluated a JSON key twice per row)
        if sort != "number":  # ties by number; repeating number itself makes SQLite sort instead of walking an index
            order.append(t.c.number)
        cols = [t.c.id, t.c.number, t.c.state, t.c.params, t.c["values"], t.c.error, t.c.attempt, t.c.worker,
                t.c.node, t.c.last_step, t.c.started_at, t.c.finished_at, t.c.heartbeat_at]
        with self.engine.connect() as conn:
            # The page's numbers first, then their rows: the sort then carries (key, number), not
            # every row's params, values and error text, which is what made deep pages slow.
            if source is not t and key.name == "value_num" and not clauses and not states:
                total = conn.scalar(select(func.count()).select_from(t).where(where))
                numbers = self._param_page(conn, row.id, sort[7:], offset, limit, descending)
            elif clauses:
                # A filter reads every trial of the study (JSON fields): one pass answers both the
                # page and the count (in each row); an empty page needs the count on its own.
                found = conn.execute(select(t.c.number, func.count().over()).select_from(source).where(where)
                                     .order_by(*order).limit(limit).offset(offset)).all()
                numbers = [n for n, _ in found]
                total = found[0][1] if found else conn.scalar(select(func.count()).select_from(t).where(where))
            else:
                total = conn.scalar(select(func.count()).select_from(t).where(where))
                numbers = [n for (n,) in conn.execute(select(t.c.number).select_from(source).where(where)
                                                      .order_by(*order).limit(limit).offset(offset))]
            by_number = ({r.number: r for r in conn.execute(
                select(*cols).where(t.c.study_id == row.id, t.c.number.in_(numbers)))} if numbers else {})
            rows = [by_number[n] for n in numbers if n in by_number]
        now = _now()
        out = []
        for r in rows:
            end = _trial_end(r.state, r.finished_at, r.heartbeat_at, now)
            out.append({
                "number": r.number, "state": r.state, "params": json_safe(dict(r.params or {})),
                "values": None if r[4] is None else [_num(v) for v in r[4]],
                "error": None if r.error is None else r.error[:300],
                "attempt": r.attempt, "worker": r.worker, "node": r.node, "last_step": r.last_step,
                "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at),
                "duration_s": None if r.started_at is None or end is None else (end - r.started_at).total_seconds(),
            })
        return {"total": total, "offset": offset, "limit": limit, "sort": sort, "descending": descending,
                "rows": out}

    def trial(self, name: str, number: int, *, max_reports: int = 2000, with_best: bool = True) -> dict[str, Any]:
        """One trial with its reports (evenly thinned to ``max_reports``, the last one kept),
        checkpoints, attempts (``attempt_history``: each attempt's reports, steps and checkpoints
        and how it ended, as far as the records tell), PBT ``ancestry`` (the exploits that made
        it, newest first, back through each parent) and ``children`` (members that copied it),
        and with ``with_best`` the study's best trial's curve of the first objective (``best``)."""
        from sqlalchemy import func, select

        from storage._schema import CheckpointRow, ExploitRow, ReportRow, TrialRow

        study = self._study_row(name)
        t, r, c, e = TrialRow.__table__, ReportRow.__table__, CheckpointRow.__table__, ExploitRow.__table__
        rows = self._rows(select(t).where(t.c.study_id == study.id, t.c.number == number))
        if not rows:
            raise KeyError(f"study {name!r} has no trial number {number}")
        tr = rows[0]
        with self.engine.connect() as conn:
            per_attempt = list(conn.execute(
                select(r.c.attempt, func.count(), func.min(r.c.step), func.max(r.c.step))
                .where(r.c.trial_id == tr.id).group_by(r.c.attempt).order_by(r.c.attempt)))
            exploits = list(conn.execute(select(e).where(e.c.study_id == study.id).order_by(e.c.id)))
        n_reports = sum(n for _a, n, _lo, _hi in per_attempt)
        reports = self._thinned_reports([tr.id], max_reports)
        cks = self._rows(select(c).where(c.c.trial_id == tr.id).order_by(c.c.step, c.c.id))
        end = _trial_end(tr.state, tr.finished_at, tr.heartbeat_at, _now())
        out = {
            "study": study.name, "metrics_names": list(study.metrics), "directions": list(study.directions),
            "number": tr.number, "state": tr.state, "params": json_safe(dict(tr.params or {})),
            "values": None if tr._mapping["values"] is None else [_num(v) for v in tr._mapping["values"]],
            "metrics": json_safe(dict(tr.metrics or {})), "error": tr.error, "attempt": tr.attempt,
            "attempts": tr.attempt + 1, "failures": tr.failures, "worker": tr.worker, "node": tr.node, "last_step": tr.last_step,
            "created_at": _iso(tr.created_at), "started_at": _iso(tr.started_at),
            "finished_at": _iso(tr.finished_at), "heartbeat_at": _iso(tr.heartbeat_at),
            "duration_s": None if tr.started_at is None or end is None else (end - tr.started_at).total_seconds(),
            "n_reports": n_reports,
            "reports": [{"step": s, "attempt": a, "metrics": json_safe(dict(m or {}))} for _tid, s, a, m in reports],
            "checkpoints": [{"step": k.step, "attempt": k.attempt, "path": k.path, "checksum": k.checksum,
                             "created_at": _iso(k.created_at)} for k in cks],
        }
        out["attempt_history"] = self._attempts(tr, per_attempt, cks, [x for x in exploits if x.number == tr.number])
        out["ancestry"] = _ancestry(exploits, tr.number)
        out["children"] = [{"number": x.number, "step": x.step, "parent_step": x.parent_step, "at": _iso(x.created_at)}
                           for x in exploits if x.parent_number == tr.number]
        if with_best:
            out["best"] = self._best_curve(study, max_reports)
        return out

    @staticmethod
    def _attempts(tr, per_attempt, cks, own_exploits) -> list[dict[str, Any]]:
        """Each attempt of the trial: its reports (count, first and last step), checkpoints and how
        it ended. An attempt before the current one ended in an exploit when one of the trial's
        exploits happened at its last step (PBT: it restarted from a parent's checkpoint), else it
        was cut short (its worker lost, its controller stopped, or a freeze-thaw pause) and the
        next attempt resumed from the newest checkpoint. Storage keeps the newest error only."""
        reported = {a: (n, lo, hi) for a, n, lo, hi in per_attempt}
        unused = list(own_exploits)
        out = []
        for a in range(tr.attempt + 1):
            n, lo, hi = reported.get(a, (0, None, None))
            item: dict[str, Any] = {"attempt": a, "reports": n, "first_step": lo, "last_step": hi,
                                    "checkpoints": sum(1 for k in cks if k.attempt == a)}
            if a == tr.attempt:
                item["ended"] = tr.state
                item["error"] = tr.error
                item["detail"] = None
            else:
                x = next((x for x in unused if hi is not None and x.step == hi), None)
                if x is not None:
                    unused.remove(x)
                    item["ended"] = "EXPLOIT"
                    item["detail"] = (f"restarted from trial {x.parent_number}'s checkpoint at step {x.parent_step} "
                                      f"with {json.dumps(json_safe(dict(x.params_after or {})))}")
                else:
                    item["ended"] = "INTERRUPTED"
                    item["detail"] = ("cut short (worker lost, controller stopped or paused); the next attempt "
                                      "resumed from the newest checkpoint")
                item["error"] = None
            out.append(item)
        return out

    def _best_curve(self, study, points: int) -> dict[str, Any] | None:
        """The best COMPLETE trial's number, value and curve of the first objective's metric."""
        from sqlalchemy import select

        from storage._schema import TrialRow

        t = TrialRow.__table__
        order = t.c.value.desc() if study.directions[0] == "maximize" else t.c.value.asc()
        rows = self._rows(select(t.c.id, t.c.number, t.c.value).where(
            t.c.study_id == study.id, t.c.state == TrialState.COMPLETE, t.c.value.is_not(None))
            .order_by(order, t.c.number).limit(1))
        if not rows:
            return None
        tid, number, value = rows[0]
        steps, values = [], []
        for _tid, step, _a, v in self._thinned_reports([tid], points, _text(study.metrics[0], "metric")):
            if _num(v) is not None:
                steps.append(step)
                values.append(_num(v))
        return {"number": number, "value": _num(value), "metric": study.metrics[0], "steps": steps, "values": values}

    def _thinned_reports(self, trial_ids: Sequence[int], points: int,
                         metric: str | None = None) -> list[tuple[int, int, int, Any]]:
        """(trial_id, step, attempt, metrics) for the given trials, at most ``points`` per trial
        (every k-th report plus the last), thinned in SQL: window functions rank the rows on the
        (trial_id, step) index alone, and only the kept rows are read. With ``metric``, the last
        field is that metric's value, extracted in SQL, instead of the metrics dict."""
        from sqlalchemy import func, or_, select

        from storage._schema import ReportRow

        if not trial_ids:
            return []
        r = ReportRow.__table__
        rn = func.row_number().over(partition_by=r.c.trial_id, order_by=(r.c.step, r.c.id)).label("rn")
        n = func.count().over(partition_by=r.c.trial_id).label("n")
        ranked = select(r.c.id, rn, n).where(r.c.trial_id.in_(list(trial_ids))).subquery()
        # k = ceil(n / points): keep rows whose (rn - 1) is a multiple of k, and the last row.
        k = (ranked.c.n + points - 1) / points
        payload = r.c.metrics if metric is None else r.c.metrics[metric].as_float()
        stmt = (select(r.c.trial_id, r.c.step, r.c.attempt, payload)
                .join(ranked, ranked.c.id == r.c.id)
                .where(or_((ranked.c.rn - 1) % k == 0, ranked.c.rn == ranked.c.n))
                .order_by(r.c.trial_id, r.c.step, r.c.id))
        return [tuple(x) for x in self._rows(stmt)]

    # -- plots --------------------------------------------------------------------------------

    def _last_value(self, row, objective: int = 0):
        """SQL for a trial's last reported value of objective ``objective``'s metric. For the first
        objective that is the ``last_value`` column, kept by every report (a trial that never
        reported falls back to the metrics its attempt ended with). For another objective, the
        metrics its attempt ended with, else its report at ``last_step`` (one indexed lookup on
        (trial_id, step))."""
        from sqlalchemy import func, select

        from storage._schema import ReportRow, TrialRow

        t, r = TrialRow.__table__, ReportRow.__table__
        metric = _text(row.metrics[objective], "metric")
        if objective == 0:
            return func.coalesce(t.c.last_value, t.c.metrics[metric].as_float())
        from_report = (select(r.c.metrics[metric].as_float())
                       .where(r.c.trial_id == t.c.id, r.c.step == t.c.last_step)
                       .order_by(r.c.id.desc()).limit(1).scalar_subquery())
        return func.coalesce(t.c.metrics[metric].as_float(), from_report)

    def _scored(self, row, objective: int = 0) -> tuple[list[tuple[int, float]], list[tuple[int, str, float, int | None]]]:
        """(every COMPLETE trial's (number, value) of objective ``objective``, every other trial's
        (number, state, last reported value of that objective's metric, step reached)) by trial
        number, trials without a finite value left out. Two reads of plain columns: the COMPLETE
        trials by the (study_id, state) index, then the others."""
        from sqlalchemy import select

        from storage._schema import TrialRow

        t = TrialRow.__table__
        last = self._last_value(row, objective)
        own = t.c.value if objective == 0 else t.c["values"]
        done = TrialState.COMPLETE
        with self.engine.connect() as conn:
            q_own = select(t.c.number, own).where(t.c.study_id == row.id, t.c.state == done, own.is_not(None))
            scored = (self._plain(conn, q_own.order_by(t.c.number)) if objective == 0
                      else conn.execute(q_own.order_by(t.c.number)).all())  # a JSON list: decoded by SQLAlchemy
            # Sorted here, not by the database: rows come nearly in number order, which Python's
            # sort takes in one pass, where PostgreSQL sorted 96,000 rows on disk (work_mem).
            others = sorted(self._plain(conn, select(t.c.number, t.c.state, last, t.c.last_step)
                                        .where(t.c.study_id == row.id, t.c.state != done, last.is_not(None))))
        # ``v - v == 0`` holds for a finite number only (inf - inf and nan - nan are nan).
        if objective == 0:
            complete = [(n, float(v)) for n, v in scored if v - v == 0]
        else:
            picked = [(n, vals[objective] if isinstance(vals, list) and len(vals) > objective else None)
                      for n, vals in scored]
            complete = [(n, float(v)) for n, v in picked
                        if isinstance(v, (float, int)) and not isinstance(v, bool) and v - v == 0]
        stopped = [(n, s, float(lv), st) for n, s, lv, st in others if lv - lv == 0]
        return complete, stopped

    def history(self, name: str, objective: int = 0, *, max_points: int = MAX_HISTORY_POINTS) -> dict[str, Any]:
        """Objective ``objective`` by trial number: ``numbers``/``values`` of COMPLETE trials with
        ``best`` (the best so far at each), ``stopped`` (every other trial that reported the
        objective's metric, at its last reported value, with its state and step) and
        ``best_line`` (each trial that improved the best: the best-so-far staircase, exact).

        Above ``max_points`` points of a kind, the trial-number axis is cut into ``max_points // 2``
        equal bins and each bin keeps its lowest and highest value (what one screen column shows:
        the envelope and the outliers survive, the dense middle is thinned); ``total``/``shown``
        and ``total_stopped``/``shown_stopped`` say so."""
        if not 16 <= max_points <= 100_000:
            raise ValueError(f"max_points must be in [16, 100000], got {max_points}")
        row = self._study_row(name)
        if not 0 <= objective < len(row.directions):
            raise ValueError(f"objective must be in [0, {len(row.directions)}), got {objective}")
        direction = row.directions[objective]
        complete, stopped = self._scored(row, objective)
        best: list[float] = []
        line_n: list[int] = []
        line_v: list[float] = []
        cur: float | None = None
        for number, v in complete:
            if cur is None or (v > cur if direction == "maximize" else v < cur):
                cur = v
                line_n.append(number)
                line_v.append(v)
            best.append(cur)
        keep = _envelope([n for n, _ in complete], [v for _, v in complete], max_points)
        keep_s = _envelope([s[0] for s in stopped], [s[2] for s in stopped], max_points)
        keep_l = _envelope(line_n, line_v, max_points)
        return {"study": row.name, "metric": row.metrics[objective], "direction": direction,
                "numbers": [complete[i][0] for i in keep], "values": [complete[i][1] for i in keep],
                "best": [best[i] for i in keep],
                "stopped": {"numbers": [stopped[i][0] for i in keep_s], "values": [stopped[i][2] for i in keep_s],
                            "states": [stopped[i][1] for i in keep_s], "steps": [stopped[i][3] for i in keep_s]},
                "best_line": {"numbers": [line_n[i] for i in keep_l], "values": [line_v[i] for i in keep_l]},
                "best_value": cur, "best_number": line_n[-1] if line_n else None,
                "total": len(complete), "shown": len(keep), "total_stopped": len(stopped), "shown_stopped": len(keep_s),
                "max_points": max_points}

    def param_points(self, name: str, *, max_points: int = MAX_PARAM_POINTS) -> dict[str, Any]:
        """Parameters and first objective for parallel coordinates, slice and contour plots:
        COMPLETE trials in ``numbers``/``values``/``params``, and in ``stopped`` every other trial
        that reported the objective's metric, at its last reported value, with its state and step.
        Above ``max_points`` trials of a kind, the best half and an even spread of the rest are
        kept; ``shown``/``total`` (and ``stopped.shown``/``stopped.total``) say so."""
        from sqlalchemy import select

        from storage._schema import TrialRow

        row = self._study_row(name)
        sign = -1.0 if row.directions[0] == "maximize" else 1.0
        complete, stopped = self._scored(row, 0)
        chosen = _best_and_spread(complete, max_points, sign)
        chosen_s = _best_and_spread([(s[0], s[2]) for s in stopped], max_points // 2, sign)
        info = {s[0]: s for s in stopped}
        # Only the chosen trials' params are read and decoded.
        wanted = [n for n, _ in chosen] + [n for n, _ in chosen_s]
        t = TrialRow.__table__
        params_of: dict[int, Any] = {}
        for i in range(0, len(wanted), 1000):
            params_of.update(self._rows(select(t.c.number, t.c.params).where(
                t.c.study_id == row.id, t.c.number.in_(wanted[i:i + 1000]))))
        space = declared_space(dict(row.spec or {}))
        names = [p["name"] for p in space]

        def columns(points):
            return {k: [json_safe((params_of.get(n) or {}).get(k)) for n, _ in points] for k in names}

        return {"study": row.name, "metric": row.metrics[0], "direction": row.directions[0], "space": space,
                "numbers": [n for n, _ in chosen], "values": [v for _, v in chosen], "params": columns(chosen),
                "shown": len(chosen), "total": len(complete),
                "stopped": {"numbers": [n for n, _ in chosen_s], "values": [v for _, v in chosen_s],
                            "states": [info[n][1] for n, _ in chosen_s], "steps": [info[n][3] for n, _ in chosen_s],
                            "params": columns(chosen_s), "shown": len(chosen_s), "total": len(stopped)}}

    def learning_curves(self, name: str, metric: str | None = None, *, offset: int = 0, limit: int = 200,
                        points: int = 40) -> dict[str, Any]:
        """Reported ``metric`` against step for a page of trials, each curve thinned in SQL to
        at most ``points`` points. Trials come running first, then by best first-objective value,
        then the rest by number, so the first page shows what matters; ``total`` counts all
        trials that reported."""
        from sqlalchemy import case, exists, func, select

        from storage._schema import ReportRow, TrialRow

        if not 1 <= limit <= MAX_CURVES_PAGE:
            raise ValueError(f"limit must be in [1, {MAX_CURVES_PAGE}], got {limit}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if not 2 <= points <= 1000:
            raise ValueError(f"points must be in [2, 1000], got {points}")
        row = self._study_row(name)
        metric = _text(metric or row.metrics[0], "metric")
        t, r = TrialRow.__table__, ReportRow.__table__
        # last_step is set by every report; the EXISTS probe only runs for trials without one.
        reported = t.c.last_step.is_not(None) | exists().where(r.c.trial_id == t.c.id)
        value_key = t.c.value.desc() if row.directions[0] == "maximize" else t.c.value.asc()
        q = (select(t.c.id, t.c.number, t.c.state).where(t.c.study_id == row.id, reported)
             .order_by(case((t.c.state == TrialState.RUNNING, 0), else_=1), t.c.value.is_(None), value_key,
                       t.c.number).limit(limit).offset(offset))
        with self.engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(t).where(t.c.study_id == row.id, reported))
            page = list(conn.execute(q))
        info = {tid: (number, state) for tid, number, state in page}
        curves: dict[int, dict[str, Any]] = {}
        for tid, step, _attempt, m in self._thinned_reports(list(info), points, metric):
            v = _num(m)
            if v is None:
                continue
            number, state = info[tid]
            c = curves.setdefault(tid, {"number": number, "state": state, "steps": [], "values": []})
            c["steps"].append(step)
            c["values"].append(v)
        ordered = [curves[tid] for tid, _n, _s in page if tid in curves]
        return {"study": row.name, "metric": metric, "offset": offset, "limit": limit, "total": total,
                "curves": ordered}

    def timeline(self, name: str, *, max_trials: int = MAX_TIMELINE) -> dict[str, Any]:
        """Start and end of the newest ``max_trials`` started trials with their worker and node."""
        from sqlalchemy import func, select

        from storage._schema import TrialRow

        row = self._study_row(name)
        t = TrialRow.__table__
        where = (t.c.study_id == row.id) & t.c.started_at.is_not(None)
        with self.engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(t).where(where))
            rows = list(conn.execute(
                select(t.c.number, t.c.state, t.c.worker, t.c.node, t.c.started_at, t.c.finished_at,
                       t.c.heartbeat_at).where(where).order_by(t.c.number.desc()).limit(max_trials)))
        now = _now()
        out = []
        for r in reversed(rows):
            end = _trial_end(r.state, r.finished_at, r.heartbeat_at, now) or r.started_at
            out.append({"number": r.number, "state": r.state, "worker": r.worker, "node": r.node,
                        "start": _iso(r.started_at), "end": _iso(end),
                        "duration_s": (end - r.started_at).total_seconds()})
        return {"study": row.name, "trials": out, "shown": len(out), "total": total}

    def updates(self, name: str, since: str | None = None, *, watch: Sequence[int] = (),
                metric: str | None = None) -> dict[str, Any]:
        """What changed in a study since ``since`` (the ``cursor`` of the previous answer; None
        for the first call), for a live page that does not refetch everything.

        Answers ``cursor`` (the newest report and trial ids now), ``summary`` (the study's counts
        and best, as ``studies`` gives them), ``running`` (every RUNNING trial, at most
        ``MAX_RUNNING``, with its latest report), ``waiting`` (the numbers of WAITING and PAUSED
        trials, for the page to watch), ``changed`` (trials created after the cursor
        and the ``watch``ed ones, the trials the page showed running, with their state now and
        their value: the objective when COMPLETE, else the last reported one) and ``points``
        (the ``metric`` reports of running and watched trials recorded after the cursor, at most
        ``MAX_LIVE_POINTS``). Every query is a primary-key range after the cursor, the
        (study_id, state) index, or a lookup of the given trials, so a poll costs what changed,
        not the study's size (the summary's GROUP BY excepted, which the index covers)."""
        from sqlalchemy import func, or_, select

        from storage._schema import ReportRow, TrialRow

        row = self._study_row(name)
        metric = _text(metric or row.metrics[0], "metric")
        if len(watch) > MAX_WATCH:
            raise ValueError(f"watch may name at most {MAX_WATCH} trials, got {len(watch)}")
        after_report, after_trial = _parse_cursor(since)
        t, r = TrialRow.__table__, ReportRow.__table__
        last = self._last_value(row)
        cols = (t.c.id, t.c.number, t.c.state, t.c.value, last.label("last_value"), t.c.last_step, t.c.attempt,
                t.c.worker, t.c.node, t.c.started_at, t.c.heartbeat_at, t.c.error)
        with self.engine.connect() as conn:
            cursor = (conn.scalar(select(func.max(r.c.id))) or 0, conn.scalar(select(func.max(t.c.id))) or 0)
            running = list(conn.execute(select(*cols).where(t.c.study_id == row.id, t.c.state == TrialState.RUNNING)
                                        .order_by(t.c.number).limit(MAX_RUNNING)))
            # one (study_id, state, number) index range per state, merged: an IN over both would
            # walk every trial of the study in number order on SQLite
            waiting = sorted(n for state in (TrialState.WAITING, TrialState.PAUSED) for (n,) in conn.execute(
                select(t.c.number).where(t.c.study_id == row.id, t.c.state == state)
                .order_by(t.c.number).limit(MAX_RUNNING)))[:MAX_RUNNING]
            changed = []
            if since is not None:
                cond = [t.c.id > after_trial]
                if watch:
                    cond.append(t.c.number.in_(sorted(set(watch))))
                changed = list(conn.execute(select(*cols).where(t.c.study_id == row.id, or_(*cond))
                                            .order_by(t.c.number).limit(MAX_WATCH + MAX_RUNNING)))
            ids = {x.id: x.number for x in running} | {x.id: x.number for x in changed}
            latest: dict[int, Any] = {}
            if running:
                # each running trial's report at its last step: one (trial_id, step) lookup each
                for tid, step, metrics in conn.execute(
                        select(r.c.trial_id, r.c.step, r.c.metrics)
                        .join(t, (t.c.id == r.c.trial_id) & (r.c.step == t.c.last_step))
                        .where(r.c.trial_id.in_([x.id for x in running])).order_by(r.c.id)):
                    latest[tid] = {"step": step, "metrics": json_safe(dict(metrics or {}))}
            points: dict[int, tuple[list[int], list[float]]] = {}
            if since is not None and ids:
                for tid, step, v in conn.execute(
                        select(r.c.trial_id, r.c.step, r.c.metrics[metric].as_float())
                        .where(r.c.id > after_report, r.c.id <= cursor[0], r.c.trial_id.in_(list(ids)))
                        .order_by(r.c.id).limit(MAX_LIVE_POINTS)):
                    if _num(v) is not None:
                        p = points.setdefault(tid, ([], []))
                        p[0].append(step)
                        p[1].append(_num(v))
        counts, best = self._aggregates(row.id)
        summary = self._summary(row, counts, best, self._activity([row]))
        now = _now()

        def trial(x, with_latest: bool) -> dict[str, Any]:
            end = _trial_end(x.state, None, x.heartbeat_at, now)
            item = {"number": x.number, "state": x.state, "attempt": x.attempt, "worker": x.worker, "node": x.node,
                    "last_step": x.last_step, "started_at": _iso(x.started_at),
                    "duration_s": None if x.started_at is None or end is None else (end - x.started_at).total_seconds(),
                    "value": _num(x.value) if x.state == TrialState.COMPLETE else _num(x.last_value),
                    "error": None if x.error is None else x.error[:300]}
            if with_latest:
                item["latest"] = latest.get(x.id)
            return item

        return {"study": row.name, "metric": metric, "cursor": f"{cursor[0]}.{cursor[1]}", "summary": summary,
                "running": [trial(x, True) for x in running], "waiting": waiting,
                "changed": [trial(x, False) for x in changed],
                "points": [{"number": ids[tid], "steps": s, "values": v} for tid, (s, v) in points.items()]}

    def values_at_step(self, name: str, metric: str | None = None, *, max_trials: int = 500) -> dict[str, Any]:
        """Every trial's value of ``metric`` (default: the first objective's) at one common step,
        for comparisons across a multi-fidelity study where most trials were stopped early.

        The step is the largest that at least half of the trials that reported reached (their
        ``last_step``), so it holds most trials at the highest fidelity most of them share; each
        trial that reached it counts with its last report at or before it. The newest
        ``max_trials`` such trials are answered: {step, numbers, values, params, states, total}."""
        from sqlalchemy import func, select

        from storage._schema import ReportRow, TrialRow

        row = self._study_row(name)
        metric = _text(metric or row.metrics[0], "metric")
        t, r = TrialRow.__table__, ReportRow.__table__
        reached = self._rows(select(t.c.last_step, func.count()).where(t.c.study_id == row.id, t.c.last_step.is_not(None))
                             .group_by(t.c.last_step).order_by(t.c.last_step.desc()))
        n = sum(k for _s, k in reached)
        base = {"study": row.name, "metric": metric, "step": None, "numbers": [], "values": [], "params": [],
                "states": [], "total": 0}
        if not n:
            return base
        seen, step = 0, None
        for s, k in reached:  # largest first
            seen += k
            if 2 * seen >= n:
                step = s
                break
        chosen = self._rows(select(t.c.id, t.c.number, t.c.state, t.c.params)
                            .where(t.c.study_id == row.id, t.c.last_step >= step)
                            .order_by(t.c.number.desc()).limit(max_trials))
        info = {x.id: x for x in chosen}
        rn = func.row_number().over(partition_by=r.c.trial_id, order_by=(r.c.step.desc(), r.c.id.desc())).label("rn")
        ranked = (select(r.c.trial_id, r.c.metrics[metric].as_float().label("v"), rn)
                  .where(r.c.trial_id.in_(list(info)), r.c.step <= step).subquery())
        found = {tid: _num(v) for tid, v in self._rows(select(ranked.c.trial_id, ranked.c.v).where(ranked.c.rn == 1))}
        kept = sorted((info[tid].number, tid) for tid, v in found.items() if v is not None)
        return {**base, "step": step, "numbers": [nb for nb, _ in kept], "values": [found[tid] for _, tid in kept],
                "params": [json_safe(dict(info[tid].params or {})) for _, tid in kept],
                "states": [info[tid].state for _, tid in kept], "total": n}

    def lineage(self, name: str) -> dict[str, Any]:
        """PBT lineage: every exploit (member ``number`` continued from ``parent_number``'s
        checkpoint at ``parent_step`` with ``params_after``; it had reached ``step`` with
        ``params_before``), oldest first, and every member's state, value, last step and current
        params. Studies without exploits answer with an empty list."""
        from sqlalchemy import select

        from storage._schema import ExploitRow, TrialRow

        row = self._study_row(name)
        e, t = ExploitRow.__table__, TrialRow.__table__
        exploits = self._rows(select(e).where(e.c.study_id == row.id).order_by(e.c.id))
        members = self._rows(select(t.c.number, t.c.state, t.c.value, t.c.last_step, t.c.params)
                             .where(t.c.study_id == row.id).order_by(t.c.number))
        return {
            "study": row.name, "metric": row.metrics[0], "direction": row.directions[0],
            "exploits": [{"number": x.number, "parent": x.parent_number, "step": x.step,
                          "parent_step": x.parent_step, "params_before": json_safe(dict(x.params_before or {})),
                          "params_after": json_safe(dict(x.params_after or {})), "at": _iso(x.created_at)}
                         for x in exploits],
            "members": [{"number": m.number, "state": m.state, "value": _num(m.value), "last_step": m.last_step,
                         "params": json_safe(dict(m.params or {}))} for m in members],
        }

    def compare(self, names: Sequence[str], objective: int = 0) -> dict[str, Any]:
        """Histories (with best so far) of several studies, for one plot."""
        if len(names) < 1:
            raise ValueError("compare needs at least one study name")
        return {"studies": [self.history(n, objective=min(objective, len(self._study_row(n).directions) - 1))
                            for n in dict.fromkeys(names)]}

def open_read_api(url: str | None = None, *, check_schema: bool = True) -> ReadAPI:
    """A read-only view of ``url`` (default: ``resolve_url``'s choice)."""
    from storage import resolve_url

    return ReadAPI(resolve_url(url), check_schema=check_schema)
