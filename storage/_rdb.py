"""The relational storage: SQLite (embedded default) or any SQLAlchemy URL such as PostgreSQL.

Thread-safety: a ``Storage`` may be shared by threads; each call opens its own short session and
commits before returning. Every record returned is an immutable snapshot.

The write set is narrow on purpose (create/start/finish trials, pause and thaw them, add reports
and checkpoints, requeue, heartbeat, algorithm state); everything else is a read derived from the tables.
"""
from __future__ import annotations

import json
import logging
import math
import random
import os
import time
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Float, String, bindparam, case, create_engine, event, func, insert, inspect, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from storage._schema import (NAME_MAX, AlgorithmStateRow, CheckpointRow, ExploitRow, PendingDecisionRow,
                             ReportRow, StudyRow, TrialParamRow, TrialRow)
from storage.records import (TERMINAL_STATES, CheckpointRecord, DecisionRecord, ExploitRecord,
                             ReportRecord, StudyRecord, TrialRecord, TrialState)

_T = TrialRow.__table__
_R = ReportRow.__table__
_S = StudyRow.__table__
_P = TrialParamRow.__table__

# The per-trial hot path's statements, built once: SQLAlchemy then reuses their cache key and
# compiled form, where building ``.values(...)`` per call cost more than the database did.
_NEXT_NUMBER = select(func.coalesce(func.max(_T.c.number), -1) + 1).where(_T.c.study_id == bindparam("b_study"))
_LOCK_STUDY = select(StudyRow.id).where(StudyRow.id == bindparam("b_study")).with_for_update()
_INSERT_TRIAL = insert(_T).returning(*_T.c)
_INSERT_REPORTS = insert(_R)
_INSERT_PARAMS = insert(_P)
_REPORTED: dict[int, Any] = {}


def _reported_statement(n_metrics: int):
    """UPDATE of a trial that reported: its step, heartbeat and ``last_value``, the study's first
    metric picked in SQL from the report's ``n_metrics`` metrics (bound as ``b_n<i>`` name and
    ``b_v<i>`` value) by a primary-key lookup of the study, so the hot path needs no extra query;
    a report without a finite value of that metric keeps the previous one."""
    stmt = _REPORTED.get(n_metrics)
    if stmt is None:
        values: dict[str, Any] = {"last_step": bindparam("b_step"), "heartbeat_at": bindparam("b_now")}
        if n_metrics:
            first = (select(_S.c.metrics[0].as_string()).where(_S.c.id == _T.c.study_id).scalar_subquery())
            picked = case(*[(bindparam(f"b_n{i}", type_=String), bindparam(f"b_v{i}", type_=Float))
                            for i in range(n_metrics)], value=first)
            values["last_value"] = func.coalesce(picked, _T.c.last_value)
        stmt = update(_T).where(_T.c.id == bindparam("b_id")).values(**values)
        _REPORTED[n_metrics] = stmt
    return stmt


_LEAVE: dict[tuple[str, ...], Any] = {}


def param_rows(trial_id: int, study_id: int, number: int, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``trial_params`` rows of a trial's ``params``: a finite number (not a boolean) in
    ``value_num``; a string as it is, any other value as JSON, in ``value_text``."""
    out = []
    for name, v in params.items():
        num = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
        out.append({"trial_id": trial_id, "study_id": study_id, "number": number, "name": str(name),
                    "value_num": num, "value_text": v if isinstance(v, str) else json.dumps(v)})
    return out


def _leave_statement(columns: tuple[str, ...]):
    """UPDATE of the live attempt out of RUNNING setting ``columns`` (bound as ``b_<column>``),
    its metrics, its step (kept when none is given) and its node (kept when none is given)."""
    stmt = _LEAVE.get(columns)
    if stmt is None:
        stmt = (update(_T)
                .where(_T.c.id == bindparam("b_id"), _T.c.attempt == bindparam("b_attempt"),
                       _T.c.state == TrialState.RUNNING)
                .values(metrics=bindparam("b_metrics", type_=_T.c.metrics.type),
                        last_step=func.coalesce(bindparam("b_last_step", type_=_T.c.last_step.type), _T.c.last_step),
                        node=func.coalesce(bindparam("b_node", type_=_T.c.node.type), _T.c.node),
                        **{c: bindparam(f"b_{c}", type_=_T.c[c].type) for c in columns})
                .returning(*_T.c))
        _LEAVE[columns] = stmt
    return stmt
log = logging.getLogger("search.storage")

__all__ = ["Storage", "StorageError", "StudyNotFound", "StudyExists", "SchemaOutdated", "safe_url"]

MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "migrations")
VERSION_TABLE = "search_alembic_version"


class StorageError(RuntimeError):
    """The storage cannot be used (unreachable, wrong URL, schema too old)."""


class StudyNotFound(StorageError):
    pass


class StudyExists(StorageError):
    pass


class SchemaOutdated(StorageError):
    pass


def _retrying(method):
    """Retry a storage call while the database is unreachable or locked (a restarted PostgreSQL
    server, a busy SQLite file), with exponential backoff up to ``retry_seconds``; then fail with
    the real error, never a masked one. Integrity errors are not retried here: they are answers."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        delay, waited = 0.25, 0.0
        while True:
            try:
                return method(self, *args, **kwargs)
            except (OperationalError, DBAPIError) as exc:
                if isinstance(exc, IntegrityError) or waited >= self.retry_seconds:
                    if isinstance(exc, IntegrityError):
                        raise
                    raise StorageError(
                        f"storage {safe_url(self.url)} unreachable for {waited:.0f}s during {method.__name__}: "
                        f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}"
                    ) from exc
                log.warning("storage %s: %s failed (%s); retrying in %.1fs", safe_url(self.url), method.__name__,
                            str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200], delay)
                self.engine.dispose()
                time.sleep(delay)
                waited += delay
                delay = min(delay * 2, 5.0)

    return wrapper


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown without its credentials part
        return url.split("@")[-1]


def _finite(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    # JSON has no NaN/inf and PostgreSQL rejects them; store them as null so both databases agree.
    out: dict[str, float | None] = {}
    for k, v in metrics.items():
        f = float(v)
        out[str(k)] = f if math.isfinite(f) else None
    return out


ERROR_MAX = 8000  # characters of a trial's error kept in the database


def clip_error(text: str | None, limit: int = ERROR_MAX) -> str | None:
    """A trial's error as stored: whole up to ``limit`` characters, else its head and its tail
    (where a traceback's cause is) around a note that says how much was cut."""
    if text is None or len(text) <= limit:
        return text
    keep = (limit - 60) // 2
    return f"{text[:keep]} [... {len(text) - 2 * keep} characters cut ...] {text[-keep:]}"


def _alembic_config(connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    cfg.attributes["connection"] = connection
    return cfg


# The newest migration's revision, so that opening a database already at it needs no Alembic
# (importing it and reading the migration scripts cost a read verb 0.3 s of its 1 s start-up).
# tests/storage/test_schema_upgrade.py checks it against the scripts.
HEAD_REVISION = "0004"


def _current_revision(conn) -> str | None:
    """The schema revision recorded in ``conn``'s database, None when it has no version table:
    what Alembic's ``MigrationContext.get_current_revision`` answers, read with one SELECT."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    found = sorted(v for (v,) in conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")))
    return ",".join(found) or None


class Storage:
    """Open with ``Storage(url)``; a new database is created at the newest schema, an older
    schema must be upgraded explicitly with ``upgrade()`` (``search db upgrade``)."""

    def __init__(self, url: str, *, create: bool = True, upgrade: bool = False,
                 retry_seconds: float = 120.0) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        db = make_url(url).database if url.startswith("sqlite") else None
        # A SQLite file this open creates: ``discard_if_unused`` removes it again when the run that
        # opened it fails before writing a study (nothing written means no file either).
        self._new_file = os.path.abspath(db) if db and db != ":memory:" and not os.path.exists(db) else None
        if not create:
            db = make_url(url).database if url.startswith("sqlite") else None
            if db and db != ":memory:" and not os.path.exists(db):
                raise StorageError(f"no database file at {db!r}; run a study first or check --storage")
        self.engine = self._make_engine(url)
        self._row_locks = self.engine.dialect.name != "sqlite"
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._prepare(create=create, upgrade=upgrade)

    # -- connection -------------------------------------------------------------------------

    @staticmethod
    def _make_engine(url: str) -> Engine:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StorageError(
                f"storage URL {url!r} is not a valid SQLAlchemy URL; use e.g. sqlite:///search.db "
                "or postgresql://user@host/db"
            ) from None
        backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"future": True}
        if backend == "sqlite":
            kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
            db = parsed.database
            if db and db != ":memory:" and not os.path.isdir(os.path.dirname(os.path.abspath(db))):
                raise StorageError(
                    f"storage {safe_url(url)}: folder {os.path.dirname(os.path.abspath(db))!r} does not exist; "
                    "create it or point --storage elsewhere"
                )
        else:
            kwargs["pool_pre_ping"] = True
            if backend == "postgresql" and parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
                kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            engine = create_engine(parsed, **kwargs)
        except (ImportError, SQLAlchemyError) as exc:
            raise StorageError(f"storage {safe_url(url)}: {exc.__class__.__name__}: {exc}") from None
        if backend == "sqlite":
            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=60000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()
        return engine

    def _prepare(self, *, create: bool, upgrade: bool) -> None:
        head = HEAD_REVISION

        def check(conn, locked: bool = True) -> bool:
            """True when the schema is at head; raises when it may not be made or upgraded here."""
            current = _current_revision(conn)
            if current == head:
                return True
            if current is None and inspect(conn).has_table("studies"):
                if not locked:
                    # Without the lock the two reads are not one snapshot on SQLite: another
                    # process may have committed the new schema between them. Decide under the lock.
                    return False
                raise SchemaOutdated(
                    f"storage {safe_url(self.url)} has search tables but no {VERSION_TABLE} table; "
                    "it was not made by this program"
                )
            if current is not None and not upgrade:
                raise SchemaOutdated(
                    f"storage {safe_url(self.url)} has schema revision {current}, this version needs "
                    f"{head}; run `search db upgrade --storage URL` first"
                )
            if current is None and not create:
                raise StorageError(f"storage {safe_url(self.url)} holds no search database")
            return False

        try:
            with self.engine.connect() as conn:
                if check(conn, locked=False):
                    return
            # Creating or upgrading: one process at a time (several `search run` may start at once
            # on a new database), the check repeated under the lock, so the others find it done.
            with self.engine.begin() as conn:
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, waited for (busy_timeout)
                elif conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7317152)")  # "search" schema lock
                if not check(conn):
                    from alembic import command

                    command.upgrade(_alembic_config(conn), "head")
        except StorageError:
            raise
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StorageError(
                f"cannot connect to storage {safe_url(self.url)}: {reason}; check --storage or SEARCH_STORAGE"
            ) from None
        except SQLAlchemyError as exc:
            raise StorageError(f"storage {safe_url(self.url)}: {exc.__class__.__name__}: {exc}") from None

    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return _current_revision(conn)

    def close(self) -> None:
        self.engine.dispose()

    def discard_if_unused(self) -> None:
        """Close, and delete the SQLite file this storage created if it still holds no study (a
        run refused before its study was written leaves no schema-only database behind)."""
        self.close()
        if self._new_file is None or not os.path.exists(self._new_file):
            return
        try:
            with self._session() as s:
                if s.scalar(select(func.count()).select_from(StudyRow)):
                    return
        except SQLAlchemyError:
            return
        finally:
            self.engine.dispose()
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.remove(self._new_file + suffix)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "Storage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- conversion ---------------------------------------------------------------------------

    @staticmethod
    def _study(row: StudyRow) -> StudyRecord:
        return StudyRecord(
            id=row.id, name=row.name, directions=tuple(row.directions), metrics=tuple(row.metrics),
            spec=dict(row.spec), state=row.state, created_at=row.created_at, finished_at=row.finished_at,
        )

    @staticmethod
    def _trial(row: TrialRow) -> TrialRecord:
        return TrialRecord(
            id=row.id, study_id=row.study_id, number=row.number, state=row.state,
            params=dict(row.params), values=None if row.values is None else tuple(row.values),
            metrics=dict(row.metrics or {}), error=row.error, attempt=row.attempt, failures=row.failures,
            worker=row.worker,
            node=row.node, last_step=row.last_step, created_at=row.created_at,
            started_at=row.started_at, finished_at=row.finished_at, heartbeat_at=row.heartbeat_at,
        )

    # -- studies ------------------------------------------------------------------------------

    @_retrying
    def create_study(self, name: str, *, metrics: Sequence[str], directions: Sequence[str],
                     spec: Mapping[str, Any]) -> StudyRecord:
        if not name or len(name) > NAME_MAX:
            raise ValueError(f"study name must have 1 to {NAME_MAX} characters, got {len(name)}")
        for d in directions:
            if d not in ("minimize", "maximize"):
                raise ValueError(f"direction must be 'minimize' or 'maximize', got {d!r}")
        row = StudyRow(name=name, directions=list(directions), metrics=list(metrics), spec=dict(spec),
                       state="RUNNING", created_at=_now())
        try:
            with self._session.begin() as s:
                s.add(row)
        except IntegrityError:
            raise StudyExists(f"study {name!r} already exists; run `search resume {name}` or pick another name") from None
        return self._study(row)

    @_retrying
    def get_study(self, name: str) -> StudyRecord:
        with self._session() as s:
            row = s.scalar(select(StudyRow).where(StudyRow.name == name))
            if row is None:
                raise StudyNotFound(f"no study named {name!r} in {safe_url(self.url)}; `search studies` lists them")
            return self._study(row)

    @_retrying
    def list_studies(self) -> list[StudyRecord]:
        with self._session() as s:
            return [self._study(r) for r in s.scalars(select(StudyRow).order_by(StudyRow.id))]

    @_retrying
    def set_study_state(self, study_id: int, state: str) -> None:
        finished = _now() if state == "COMPLETE" else None
        with self._session.begin() as s:
            s.execute(update(StudyRow).where(StudyRow.id == study_id).values(state=state, finished_at=finished))

    @_retrying
    def count_trials(self, study_id: int | None = None) -> dict[int, dict[str, int]]:
        """{study_id: {state: count}} for one study or all."""
        q = select(TrialRow.study_id, TrialRow.state, func.count()).group_by(TrialRow.study_id, TrialRow.state)
        if study_id is not None:
            q = q.where(TrialRow.study_id == study_id)
        out: dict[int, dict[str, int]] = {}
        with self._session() as s:
            for sid, state, n in s.execute(q):
                out.setdefault(sid, {})[state] = n
        return out

    # -- trials -------------------------------------------------------------------------------

    @_retrying
    def create_trial(self, study_id: int, params: Mapping[str, Any], *, state: str = TrialState.RUNNING,
                     worker: str | None = None) -> TrialRecord:
        """Insert a trial with the next free number. Numbers are unique by constraint; a concurrent
        writer that takes the same number makes this retry with the next one. (Core statements
        with RETURNING: this and ``finish_trial`` are the per-trial hot path.)"""
        if state not in (TrialState.RUNNING, TrialState.WAITING):
            raise ValueError(f"a new trial is RUNNING or WAITING, got {state!r}")
        running = state == TrialState.RUNNING
        for attempt in range(50):
            now = _now()
            try:
                with self.engine.begin() as conn:
                    if self._row_locks:
                        # Serialise number allocation per study on servers with row locks; SQLite
                        # serialises writers itself and a rare clash retries below.
                        conn.execute(_LOCK_STUDY, {"b_study": study_id})
                    number = conn.scalar(_NEXT_NUMBER, {"b_study": study_id})
                    row = conn.execute(_INSERT_TRIAL, dict(
                        study_id=study_id, number=number, state=state, params=dict(params), metrics={},
                        attempt=0, worker=worker, created_at=now, started_at=now if running else None,
                        heartbeat_at=now if running else None,
                    )).one()
                    if params:
                        conn.execute(_INSERT_PARAMS, param_rows(row.id, study_id, number, params))
                return self._trial(row)
            except IntegrityError:
                time.sleep(random.uniform(0.001, 0.005) * (attempt + 1))
        raise StorageError(f"could not allocate a trial number for study {study_id} after 50 tries")

    @_retrying
    def start_trial(self, trial_id: int, *, worker: str | None = None) -> TrialRecord:
        """WAITING -> RUNNING (a requeued trial being dispatched again)."""
        now = _now()
        with self.engine.begin() as conn:
            row = conn.execute(
                update(_T).where(_T.c.id == trial_id, _T.c.state == TrialState.WAITING)
                .values(state=TrialState.RUNNING, started_at=now, heartbeat_at=now, worker=worker)
                .returning(*_T.c)
            ).one_or_none()
        if row is None:
            raise StorageError(f"trial {trial_id} is not WAITING; it cannot be started")
        return self._trial(row)

    @_retrying
    def finish_trial(self, trial_id: int, attempt: int, *, state: str, values: Sequence[float] | None = None,
                     metrics: Mapping[str, float] | None = None, error: str | None = None,
                     last_step: int | None = None, node: str | None = None) -> TrialRecord | None:
        """RUNNING -> COMPLETE/PRUNED/FAILED for this ``attempt`` only. Returns None (and writes
        nothing) when the attempt is stale: the trial was reaped or finished already."""
        if state not in TERMINAL_STATES:
            raise ValueError(f"finish_trial needs a terminal state, got {state!r}")
        vals = None if values is None else [float(v) for v in values]
        return self._leave_running(trial_id, attempt, metrics, last_step, node, state=state, values=vals,
                                   value=None if vals is None else vals[0], error=clip_error(error),
                                   finished_at=_now())

    def _leave_running(self, trial_id: int, attempt: int, metrics: Mapping[str, float] | None,
                       last_step: int | None, node: str | None, **values: Any) -> TrialRecord | None:
        """Move the live ``attempt`` out of RUNNING with these column values, its final metrics,
        step and node. None (nothing written) when that attempt is no longer the live one."""
        stmt = _leave_statement(tuple(sorted(values)))
        params = {"b_id": trial_id, "b_attempt": attempt, "b_metrics": _finite(metrics or {}),
                  # No step or node from the worker: keep the ones its reports recorded.
                  "b_last_step": last_step, "b_node": node or None, **{f"b_{k}": v for k, v in values.items()}}
        with self.engine.begin() as conn:
            row = conn.execute(stmt, params).one_or_none()
        return None if row is None else self._trial(row)

    @_retrying
    def requeue_running(self, study_id: int, *, reason: str, trial_ids: Iterable[int] | None = None,
                        max_retries: int | None = None) -> list[TrialRecord]:
        """Interrupted RUNNING trials go back to WAITING with ``attempt + 1``, so a late report from
        the old attempt is rejected. With ``max_retries`` the retry counts as a failure (a lost
        worker), and a trial that already failed that often ends FAILED instead; without it (the
        controller itself stopped) nothing is counted against the trial."""
        out: list[TrialRecord] = []
        with self._session.begin() as s:
            q = select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.state == TrialState.RUNNING)
            if trial_ids is not None:
                q = q.where(TrialRow.id.in_(list(trial_ids)))
            for row in s.scalars(q.with_for_update()):
                if max_retries is not None and row.failures >= max_retries:
                    row.state = TrialState.FAILED
                    row.finished_at = _now()
                    row.error = clip_error(f"{reason}; gave up after {row.failures + 1} failed attempts")
                else:
                    row.state = TrialState.WAITING
                    row.attempt = row.attempt + 1
                    row.failures = row.failures + (1 if max_retries is not None else 0)
                    row.error = clip_error(reason)
                row.heartbeat_at = None
                out.append(row)
            s.flush()
            return [self._trial(r) for r in out]

    @_retrying
    def exploit_trial(self, trial_id: int, attempt: int, *, params: Mapping[str, Any], step: int,
                      parent_number: int, checkpoint: tuple[int, str, str], wait: bool = False) -> TrialRecord | None:
        """A PBT exploit, in one transaction: the RUNNING ``attempt``, which reached ``step``,
        continues as attempt + 1 with ``params`` from the parent's checkpoint ``(parent_step, path,
        checksum)`` (a copy, recorded as the trial's own), and the exploit (params before and
        after) goes into the lineage. The trial stays RUNNING, or with ``wait`` goes to WAITING for
        a later run to dispatch. None, and nothing written, when that attempt is no longer the live
        one. Idempotent: called again after it went through, it answers the trial as it left it."""
        parent_step, path, checksum = checkpoint
        live = (_T.c.id == trial_id, _T.c.attempt == attempt, _T.c.state == TrialState.RUNNING)
        now = _now()
        with self.engine.begin() as conn:
            before = conn.execute(select(_T.c.params).where(*live)).scalar_one_or_none()
            if before is None:
                # Already done by this very call, if a retry follows a commit whose answer was lost.
                done = conn.execute(select(CheckpointRow.id).where(
                    CheckpointRow.trial_id == trial_id, CheckpointRow.attempt == attempt + 1,
                    CheckpointRow.path == path)).first()
                row = conn.execute(select(*_T.c).where(_T.c.id == trial_id, _T.c.attempt == attempt + 1)).one_or_none()
                return self._trial(row) if done is not None and row is not None else None
            row = conn.execute(
                update(_T).where(*live)
                .values(attempt=attempt + 1, params=dict(params), started_at=now,
                        **({"state": TrialState.WAITING, "heartbeat_at": None} if wait else {"heartbeat_at": now}))
                .returning(*_T.c)
            ).one_or_none()
            if row is None:
                return None
            conn.execute(_P.delete().where(_P.c.trial_id == trial_id))
            if params:
                conn.execute(_INSERT_PARAMS, param_rows(trial_id, row.study_id, row.number, params))
            conn.execute(insert(CheckpointRow.__table__).values(
                trial_id=trial_id, attempt=attempt + 1, step=int(parent_step), path=path, checksum=checksum,
                created_at=now))
            conn.execute(insert(ExploitRow.__table__).values(
                study_id=row.study_id, trial_id=trial_id, number=row.number, parent_number=int(parent_number),
                step=int(step), parent_step=int(parent_step), params_before=dict(before), params_after=dict(params),
                created_at=now))
        return self._trial(row)

    @_retrying
    def pause_trial(self, trial_id: int, attempt: int, *, metrics: Mapping[str, float] | None = None,
                    last_step: int | None = None, node: str | None = None) -> TrialRecord | None:
        """RUNNING -> PAUSED for this ``attempt`` (a freeze-thaw scheduler froze it). None (and
        nothing written) when that attempt is no longer the live one."""
        return self._leave_running(trial_id, attempt, metrics, last_step, node, state=TrialState.PAUSED,
                                   heartbeat_at=_now())

    @_retrying
    def thaw_trial(self, trial_id: int) -> TrialRecord:
        """PAUSED -> RUNNING as ``attempt + 1``: the trial resumes from its newest checkpoint."""
        now = _now()
        with self.engine.begin() as conn:
            row = conn.execute(
                update(_T).where(_T.c.id == trial_id, _T.c.state == TrialState.PAUSED)
                .values(state=TrialState.RUNNING, attempt=_T.c.attempt + 1, started_at=now, heartbeat_at=now)
                .returning(*_T.c)
            ).one_or_none()
        if row is None:
            raise StorageError(f"trial {trial_id} is not PAUSED; it cannot be thawed")
        return self._trial(row)

    @_retrying
    def end_paused(self, study_id: int, *, trial_ids: Iterable[int] | None = None) -> list[TrialRecord]:
        """PAUSED trials of the study (all, or those in ``trial_ids``) -> PRUNED at the step they
        reached: the study ended before they were thawed."""
        q = update(_T).where(_T.c.study_id == study_id, _T.c.state == TrialState.PAUSED)
        if trial_ids is not None:
            q = q.where(_T.c.id.in_(list(trial_ids)))
        with self.engine.begin() as conn:
            rows = conn.execute(
                q
                .values(state=TrialState.PRUNED, finished_at=_now())
                .returning(*_T.c)
            ).all()
        return sorted((self._trial(r) for r in rows), key=lambda t: t.number)

    @_retrying
    def get_exploits(self, study_id: int) -> list[ExploitRecord]:
        """Every exploit of the study, oldest first."""
        with self._session() as s:
            rows = s.scalars(select(ExploitRow).where(ExploitRow.study_id == study_id).order_by(ExploitRow.id))
            return [ExploitRecord(id=r.id, number=r.number, parent_number=r.parent_number, step=r.step,
                                  parent_step=r.parent_step, params_before=dict(r.params_before),
                                  params_after=dict(r.params_after), created_at=r.created_at) for r in rows]

    @_retrying
    def heartbeat(self, trial_ids: Sequence[int]) -> None:
        if not trial_ids:
            return
        with self._session.begin() as s:
            s.execute(update(TrialRow).where(TrialRow.id.in_(list(trial_ids)), TrialRow.state == TrialState.RUNNING)
                      .values(heartbeat_at=_now()))

    @_retrying
    def get_trials(self, study_id: int, states: Sequence[str] | None = None) -> list[TrialRecord]:
        q = select(TrialRow).where(TrialRow.study_id == study_id).order_by(TrialRow.number)
        if states:
            q = q.where(TrialRow.state.in_(list(states)))
        with self._session() as s:
            return [self._trial(r) for r in s.scalars(q)]

    @_retrying
    def get_trial(self, study_id: int, number: int) -> TrialRecord:
        with self._session() as s:
            row = s.scalar(select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.number == number))
            if row is None:
                raise KeyError(f"study {study_id} has no trial number {number}")
            return self._trial(row)

    @_retrying
    def best_trial(self, study_id: int, direction: str) -> TrialRecord | None:
        order = TrialRow.value.desc() if direction == "maximize" else TrialRow.value.asc()
        with self._session() as s:
            row = s.scalar(
                select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.state == TrialState.COMPLETE,
                                       TrialRow.value.is_not(None))
                .order_by(order, TrialRow.number).limit(1)
            )
            return None if row is None else self._trial(row)

    # -- reports and checkpoints ---------------------------------------------------------------

    @_retrying
    def add_reports(self, reports: Sequence[tuple[int, int, int, Mapping[str, float]]]) -> None:
        """Batch insert of (trial_id, attempt, step, metrics); each trial that reported gets its
        newest step, a heartbeat and, from a report with a finite value of the study's first metric,
        its ``last_value``."""
        if not reports:
            return
        rows = [{"trial_id": t, "attempt": a, "step": int(st), "metrics": _finite(m)} for t, a, st, m in reports]
        # each trial's newest report in the batch (the later one on equal steps) sets its step and last value
        last: dict[int, tuple[int, dict[str, float | None]]] = {}
        for row in rows:
            t = row["trial_id"]
            if t not in last or row["step"] >= last[t][0]:
                last[t] = (row["step"], row["metrics"])
        now = _now()
        by_size: dict[int, list[dict[str, Any]]] = {}
        for t, (st, m) in last.items():
            named = [(k, v) for k, v in m.items() if v is not None]
            params: dict[str, Any] = {"b_id": t, "b_step": st, "b_now": now}
            for i, (k, v) in enumerate(named):
                params[f"b_n{i}"], params[f"b_v{i}"] = k, v
            by_size.setdefault(len(named), []).append(params)
        with self.engine.begin() as conn:
            conn.execute(_INSERT_REPORTS, rows)
            for size, params_list in by_size.items():
                conn.execute(_reported_statement(size), params_list)

    @_retrying
    def get_reports(self, trial_id: int) -> list[ReportRecord]:
        with self._session() as s:
            rows = s.scalars(select(ReportRow).where(ReportRow.trial_id == trial_id).order_by(ReportRow.step, ReportRow.id))
            return [ReportRecord(trial_id=r.trial_id, step=r.step, metrics=dict(r.metrics), attempt=r.attempt, id=r.id)
                    for r in rows]

    @_retrying
    def get_study_reports(self, study_id: int, after_id: int = 0) -> list[tuple[int, ReportRecord]]:
        """(trial number, report) for every report of the study recorded after report ``after_id``,
        in the order they were recorded: how a process catches up with reports others wrote."""
        q = (select(TrialRow.number, ReportRow).join(TrialRow, TrialRow.id == ReportRow.trial_id)
             .where(TrialRow.study_id == study_id, ReportRow.id > after_id).order_by(ReportRow.id))
        with self._session() as s:
            return [(number, ReportRecord(trial_id=r.trial_id, step=r.step, metrics=dict(r.metrics), attempt=r.attempt,
                                          id=r.id)) for number, r in s.execute(q)]

    @_retrying
    def add_checkpoint(self, trial_id: int, attempt: int, step: int, path: str, checksum: str) -> CheckpointRecord:
        row = CheckpointRow(trial_id=trial_id, attempt=attempt, step=int(step), path=path, checksum=checksum,
                            created_at=_now())
        with self._session.begin() as s:
            s.add(row)
        return CheckpointRecord(id=row.id, trial_id=trial_id, step=row.step, path=path, checksum=checksum,
                                attempt=attempt, created_at=row.created_at)

    @_retrying
    def get_checkpoints(self, trial_id: int) -> list[CheckpointRecord]:
        with self._session() as s:
            rows = s.scalars(select(CheckpointRow).where(CheckpointRow.trial_id == trial_id)
                             .order_by(CheckpointRow.step, CheckpointRow.id))
            return [CheckpointRecord(id=r.id, trial_id=r.trial_id, step=r.step, path=r.path, checksum=r.checksum,
                                     attempt=r.attempt, created_at=r.created_at) for r in rows]

    def latest_checkpoint(self, trial_id: int, exists=os.path.exists) -> CheckpointRecord | None:
        """The most recently recorded checkpoint whose file still exists, by ``exists`` (after a
        PBT exploit that is the parent's copied checkpoint, whatever its step)."""
        for ck in sorted(self.get_checkpoints(trial_id), key=lambda c: c.id, reverse=True):
            if exists(ck.path):
                return ck
        return None

    # -- algorithm state ----------------------------------------------------------------------

    @_retrying
    def set_algorithm_state(self, study_id: int, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the JSON document of each key in ``states`` (key -> document), all in one
        transaction: documents that must agree are never seen half written."""
        with self._session.begin() as s:
            self._put_states(s, study_id, states)

    @staticmethod
    def _put_states(s, study_id: int, states: Mapping[str, Mapping[str, Any]]) -> None:
        for key, value in states.items():
            row = s.get(AlgorithmStateRow, (study_id, key))
            if row is None:
                s.add(AlgorithmStateRow(study_id=study_id, key=key, value=dict(value), updated_at=_now()))
            else:
                row.value = dict(value)
                row.updated_at = _now()

    @_retrying
    def get_algorithm_state(self, study_id: int) -> dict[str, dict[str, Any]]:
        with self._session() as s:
            rows = s.scalars(select(AlgorithmStateRow).where(AlgorithmStateRow.study_id == study_id))
            return {r.key: dict(r.value) for r in rows}

    # -- pending decisions ---------------------------------------------------------------------

    @_retrying
    def put_decision(self, study_id: int, decision: DecisionRecord, *,
                     states: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Keep ``decision`` as its trial's pending decision (replacing any earlier one) and, with
        ``states``, the algorithm's state documents too, in one transaction: a PBT exploit and the
        readiness PBT counted from it are never seen one without the other. Idempotent."""
        with self._session.begin() as s:
            row = s.get(PendingDecisionRow, decision.trial_id)
            if row is None:
                row = PendingDecisionRow(trial_id=decision.trial_id, study_id=study_id)
                s.add(row)
            row.attempt, row.step, row.kind, row.reason = (int(decision.attempt), int(decision.step),
                                                           decision.kind.value, decision.reason)
            row.parent, row.parent_step = decision.parent, decision.parent_step
            row.params = None if decision.params is None else dict(decision.params)
            row.created_at = _now()
            if states:
                self._put_states(s, study_id, states)

    @_retrying
    def drop_decision(self, trial_id: int) -> None:
        """Forget the trial's pending decision (its attempt has ended); no-op when there is none."""
        with self._session.begin() as s:
            row = s.get(PendingDecisionRow, trial_id)
            if row is not None:
                s.delete(row)

    @_retrying
    def get_decisions(self, study_id: int) -> dict[int, DecisionRecord]:
        """The study's pending decisions, by trial id."""
        with self._session() as s:
            rows = s.scalars(select(PendingDecisionRow).where(PendingDecisionRow.study_id == study_id))
            return {r.trial_id: DecisionRecord(trial_id=r.trial_id, attempt=r.attempt, step=r.step, kind=r.kind,
                                               reason=r.reason, parent=r.parent, parent_step=r.parent_step,
                                               params=r.params) for r in rows}

    # -- schema -------------------------------------------------------------------------------

    def upgrade(self) -> tuple[str | None, str]:
        """Bring the schema to the newest revision; returns (before, after)."""
        from alembic import command

        before = self.schema_revision()
        with self.engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "head")
        return before, self.schema_revision()
