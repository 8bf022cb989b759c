"""The Python Study API: create or load a study, optimize a callable, or ask and tell from your own loop.

    study = search.create_study({"name": "py", "objective": {"metric": "loss", "direction": "minimize"},
                                 "space": {"x": {"type": "float", "low": 0, "high": 1}}}, load_if_exists=True)
    study.optimize(objective)            # the service runs the loop (the controller of `search run`)
    trial = study.ask()                  # or your loop runs it
    study.tell(trial, 0.25)

``optimize`` drives the study with the controller of ``search run``; ``ask``/``tell`` write through
the same writer of trial state (``search._book.TrialWriter``) under one lock, so several threads may
hold asked trials at once, and several processes may share the study through its storage.
"""
from __future__ import annotations

import dataclasses
import math
import os
import socket
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from search.config import ConfigError, StudyConfig, check_params, parse_study
from search.decisions import Continue, Exploit, Pending, Stop
from storage.records import TERMINAL_STATES, TrialRecord, TrialState
from trials.runner import CALLABLE_PREFIX

if TYPE_CHECKING:
    import pandas as pd

    from search.controller import Progress, RunSummary
    from storage import Storage

__all__ = ["create_study", "load_study", "Study", "AskedTrial"]

# An asked trial whose process reports nothing for this long (budget.hang_timeout when set) is
# taken back by the next ask, load or create of the study.
ASK_HANG_S = 600.0
_HOST = socket.gethostname()


def _prepare(spec: Any) -> dict[str, Any]:
    """A study-file path or a dict of its keys, as plain data. A missing ``trial`` section (the
    objective comes with ``optimize``) or a callable entrypoint is recorded as ``python:NAME``."""
    if isinstance(spec, (str, os.PathLike)):
        from search.config import load_study_file

        spec = dict(load_study_file(os.fspath(spec)).raw)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"study: expected a study-file path or a dict of its keys, got {type(spec).__name__}")
    raw = dict(spec)
    trial = dict(raw.get("trial") or {})
    fn = trial.get("entrypoint")
    if fn is None:
        trial["entrypoint"] = f"{CALLABLE_PREFIX}objective"
    elif callable(fn):
        trial["entrypoint"] = f"{CALLABLE_PREFIX}{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
    raw["trial"] = trial
    return raw


def _callable_of(spec: Any) -> Callable[..., Any] | None:
    fn = (spec.get("trial") or {}).get("entrypoint") if isinstance(spec, Mapping) else None
    return fn if callable(fn) else None


def create_study(spec: Any, storage: str | None = None, load_if_exists: bool = False) -> Study:
    """Create the study ``spec`` (a study-file path or a dict with the study file's keys) in
    ``storage`` (default: ``$SEARCH_STORAGE`` or ``sqlite:///search.db``). With ``load_if_exists``
    an existing study of that name is loaded instead (its stored settings win), as with Optuna's
    ``create_study(load_if_exists=True)``; without, an existing name raises ``StudyExists``."""
    from storage import StudyExists, StudyNotFound, open_storage
    from trials.artifacts import is_url

    config = parse_study(_prepare(spec))
    if not load_if_exists:
        from search.config import check_artifacts

        check_artifacts(config.artifacts)  # a location that cannot be written fails before anything exists
    st = open_storage(storage)
    try:
        try:
            record = st.get_study(config.name)
        except StudyNotFound:
            raw = dict(config.raw)
            raw["artifacts"] = config.artifacts if is_url(config.artifacts) else os.path.abspath(config.artifacts)
            try:
                record = st.create_study(config.name, metrics=config.metrics, directions=config.directions, spec=raw)
                from search.study import enqueue_configured

                enqueue_configured(config, st, record)
            except StudyExists:  # another process created it meanwhile
                if not load_if_exists:
                    raise
                record = st.get_study(config.name)
        else:
            if not load_if_exists:
                raise StudyExists(f"study {config.name!r} already exists; pass load_if_exists=True to continue it, "
                                  "or change name")
    except BaseException:
        st.close()
        raise
    return Study(st, record, objective=_callable_of(spec))


def load_study(name: str, storage: str | None = None) -> Study:
    """The study ``name`` of ``storage``, as stored."""
    from storage import open_storage

    st = open_storage(storage, create=False)
    try:
        record = st.get_study(name)
    except BaseException:
        st.close()
        raise
    return Study(st, record)


class Study:
    """One study of a storage. Thread-safe: ``ask``, ``tell`` and ``AskedTrial.report`` share one
    lock. Reads (``trials``, ``best_trial``, ``trials_dataframe``...) come fresh from storage."""

    def __init__(self, storage: Storage, record, objective: Callable[..., Any] | None = None) -> None:
        self._storage = storage
        self._record = record
        self.name: str = record.name
        self.config: StudyConfig = parse_study(record.spec, check_entrypoint=False)
        self._objective = objective
        self._lock = threading.RLock()
        self._loop: _AskLoop | None = None  # the ask/tell side, made on the first ask
        self._reap_askers()

    def __repr__(self) -> str:
        return f"Study({self.name!r})"

    def close(self) -> None:
        self._storage.close()

    # -- running it ----------------------------------------------------------------------------

    def optimize(self, objective: Callable[..., Any] | str | None = None, n_trials: int | None = None,
                 timeout: float | None = None, parallel: int | None = None, backend: str | None = None,
                 show_progress: bool = True, callbacks: Sequence[Callable[[Any, TrialRecord], None]] = ()) -> RunSummary:
        """Run the study with the controller of ``search run``: to the end of its budget, or until
        ``n_trials`` more trials have finished, or until ``timeout`` seconds have passed (running
        trials then finish; the rest of the budget waits for the next call). Called again, it
        continues the study as ``search resume`` does. ``objective``: any callable (closures too;
        Ray ships it to its workers as it ships functions) or ``"module:function"``; by default the
        study's ``trial.entrypoint``. ``backend``: ``ray``, ``inprocess`` or ``simulated``.
        ``callbacks`` are called as ``callback(study, trial)`` when each trial finishes (e.g.
        ``search.integrations.mlflow.MLflowCallback``); ``study`` has ``name`` and ``reports(trial)``."""
        from search.study import drive

        config = self.config
        objective = objective if objective is not None else self._objective
        if objective is None and str(config.entrypoint).startswith(CALLABLE_PREFIX):
            raise ConfigError("objective: this study's objective is a Python callable; pass it: "
                              "study.optimize(objective)")
        changes: dict[str, Any] = {}
        if isinstance(objective, str):
            config = parse_study({**config.raw, "trial": {**config.raw["trial"], "entrypoint": objective}})
        elif callable(objective):
            changes["entrypoint"] = objective
        elif objective is not None:
            raise ConfigError(f"objective: expected a callable or 'module:function', got {type(objective).__name__}")
        if parallel is not None:
            if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
                raise ConfigError(f"parallel: must be an int >= 1, got {parallel!r}")
            changes["parallel"] = parallel
        if n_trials is not None:
            if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
                raise ConfigError(f"n_trials: must be an int >= 1, got {n_trials!r}")
            finished = sum(1 for t in self._storage.get_trials(self._record.id) if t.state in TERMINAL_STATES)
            changes["trials"] = finished + n_trials
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ConfigError(f"timeout: must be a number of seconds > 0, got {timeout!r}")
        config = dataclasses.replace(config, **changes)
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        with self._lock:
            self._loop = None  # the controller takes the study over; ask/tell starts afresh after
            progress = _ProgressBar(self.name, config.trials) if show_progress else None
            record = self._storage.get_study(self.name)
            return drive(config, self._storage, record, backend, progress, deadline=deadline, callbacks=callbacks)

    def enqueue(self, params: Mapping[str, Any]) -> TrialRecord:
        """Queue a known configuration, checked against the space: the next ``ask`` or
        ``optimize`` runs it before anything the algorithm proposes."""
        clean = check_params(self.config.space, params, "enqueue")
        return self._storage.create_trial(self._record.id, clean, state=TrialState.WAITING)

    # -- ask and tell ----------------------------------------------------------------------------

    def ask(self) -> AskedTrial:
        """A trial to run in your own loop: an enqueued configuration first, else the algorithm's
        next proposal. Several may be asked (from several threads) before any is told."""
        with self._lock:
            self._reap_askers()
            if self._loop is None:
                self._loop = _AskLoop(self)
            return self._loop.ask()

    def tell(self, trial: AskedTrial | int, values: float | Sequence[float] | Mapping[str, float] | None = None,
             state: str | None = None) -> TrialRecord:
        """End an asked trial: ``values`` is the objective's value (a float, one per objective, or
        ``{metric: value}``); ``state="pruned"`` ends it PRUNED at its last report, ``"failed"``
        FAILED. A trial a scheduler asked to stop (``report`` answered True) ends PRUNED."""
        with self._lock:
            if self._loop is None:
                self._loop = _AskLoop(self)
            return self._loop.tell(trial, values, state)

    def _reap_askers(self) -> None:
        """Take back trials asked by a process that is gone: on this host one whose process has
        exited, anywhere one silent for the study's hang limit. Each is requeued as a retry (the
        next ask gets it) or, past ``budget.max_failures``, FAILED: none is left RUNNING."""
        limit = self.config.hang_timeout or ASK_HANG_S
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        gone: dict[str, list[int]] = {}
        for t in self._storage.get_trials(self._record.id, states=[TrialState.RUNNING]):
            parts = (t.worker or "").split(":")
            if len(parts) != 3 or parts[0] != "ask":
                continue
            host, pid = parts[1], parts[2]
            if host == _HOST and pid.isdigit() and not _alive(int(pid)):
                gone.setdefault(f"asked by process {pid}, which exited before tell", []).append(t.id)
            elif t.heartbeat_at is not None and (now - t.heartbeat_at).total_seconds() > limit:
                gone.setdefault(f"asked trial silent for more than {limit:g} s", []).append(t.id)
        for reason, ids in gone.items():
            self._storage.requeue_running(self._record.id, reason=reason, trial_ids=ids,
                                          max_retries=self.config.max_failures)

    # -- reading it ------------------------------------------------------------------------------

    @property
    def trials(self) -> list[TrialRecord]:
        """Every trial, in number order (frozen records)."""
        return self._storage.get_trials(self._record.id)

    @property
    def best_trial(self) -> TrialRecord:
        """The best COMPLETE trial of a single-objective study."""
        if len(self.config.metrics) > 1:
            raise ValueError(f"study {self.name!r} has {len(self.config.metrics)} objectives; use best_trials "
                             "(its Pareto front)")
        best = self._storage.best_trial(self._record.id, self.config.directions[0])
        if best is None:
            raise ValueError(f"study {self.name!r} has no COMPLETE trial yet")
        return best

    @property
    def best_trials(self) -> list[TrialRecord]:
        """The Pareto front of the COMPLETE trials (the best trial when there is one objective)."""
        from analysis.pareto import pareto_front

        return pareto_front(self.trials, self.config.directions)

    def trials_dataframe(self) -> pd.DataFrame:
        """One row per trial, as Optuna's: ``number``, ``state``, ``value`` (``values_0``...
        with several objectives), ``params_*``, ``metrics_*`` (final, or last reported),
        ``datetime_start``, ``datetime_complete``, ``duration``, ``attempt``, ``failures``,
        ``last_step``, ``error``."""
        import pandas as pd

        from storage import StorageError
        from storage.read_api import open_read_api

        # Read through the read API as plain tuples (no ORM identity map, no records: 100,000
        # trials take about a third of the CPU of ``self.trials``) and build the frame column by
        # column, not from a dict per row. An in-memory SQLite database has no read-only view: the
        # storage reads it.
        try:
            with open_read_api(self._storage.url) as api:
                rows = api.trial_rows(self.name)
        except StorageError:
            rows = [tuple(getattr(t, f.name) for f in dataclasses.fields(t)) for t in self.trials]
        (_, _, number, state, params, values, metrics, error, attempt, failures, _, _, last_step, _,
         start, end, _) = (list(c) for c in zip(*rows)) if rows else ([] for _ in range(17))
        data: dict[str, Any] = {"number": number, "state": [getattr(s, "value", s) for s in state]}
        if len(self.config.metrics) == 1:
            data["value"] = [None if v is None else v[0] for v in values]
        else:
            for i in range(len(self.config.metrics)):
                data[f"values_{i}"] = [None if v is None else v[i] for v in values]
        for prefix, dicts in (("params", params), ("metrics", metrics)):
            for k in dict.fromkeys(k for d in dicts for k in d):
                data[f"{prefix}_{k}"] = [d.get(k) for d in dicts]
        data.update(datetime_start=start, datetime_complete=end,
                    duration=[None if s is None or e is None else e - s for s, e in zip(start, end)],
                    attempt=attempt, failures=failures, last_step=last_step, error=error)
        return pd.DataFrame(data)

    def reports(self, trial: TrialRecord | int) -> list:
        """Every report of a trial (a record or its number), in step order."""
        rec = trial if isinstance(trial, TrialRecord) else self._storage.get_trial(self._record.id, int(trial))
        return self._storage.get_reports(rec.id)

    def lineage(self):
        """PBT's exploits, oldest first (member, parent, steps, params before and after)."""
        return self._storage.get_exploits(self._record.id)

    def importance(self, objective: int = 0) -> dict[str, float]:
        """Parameter importance for objective ``objective``, highest first (as the dashboard's)."""
        from analysis.importance import importance_from_trials

        imp = importance_from_trials(list(self.config.space.params), self.trials, self.config.directions[objective],
                                     index=objective)
        return dict(sorted(imp.items(), key=lambda kv: -kv[1]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AskedTrial:
    """A trial handed out by ``Study.ask``: run it, ``report`` as it goes, then ``Study.tell`` it."""

    def __init__(self, loop: _AskLoop, record: TrialRecord, reporter) -> None:
        self._loop = loop
        self._record = record
        self._reporter = reporter
        self.stop_decided = False

    def __repr__(self) -> str:
        return f"AskedTrial(number={self.number}, params={dict(self.params)})"

    @property
    def number(self) -> int:
        return self._record.number

    @property
    def params(self) -> Mapping[str, Any]:
        """The configuration to run: the study's fixed ``trial.params`` and the proposed ones."""
        return {**self._loop.study.config.trial_params, **self._record.params}

    def report(self, step: int, **metrics: float) -> bool:
        """Record ``metrics`` at ``step``; True once a scheduler or the algorithm says stop (then
        tell the trial: it ends PRUNED)."""
        return self._loop.report(self, step, metrics)

    def should_stop(self) -> bool:
        return self.stop_decided

    def save_checkpoint(self, state: Mapping[str, Any], step: int) -> str:
        """Save ``state`` as this trial's checkpoint at ``step``, in the study's artifact store."""
        return self._reporter.save_checkpoint(state, step)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """This trial's newest checkpoint when it is a retry (its asker went away), else None."""
        return self._reporter.load_checkpoint()


class _AskLoop:
    """The ask/tell side of one ``Study``: its algorithm and scheduler, fed every report of the
    study (other processes' too: caught up from storage before each decision), and the writer."""

    def __init__(self, study: Study) -> None:
        from search._book import TrialBook, TrialWriter
        from search.schedulers import make_scheduler
        from search.study import make_study_algorithm

        cfg = study.config
        if cfg.algorithm == "pbt":
            raise ConfigError("algorithm: pbt restarts members from each other's checkpoints, which needs the "
                              "service's loop: use study.optimize(objective) for PBT")
        self.study = study
        self.storage = study._storage
        self.study_id = study._record.id
        self.algorithm = make_study_algorithm(cfg, self.storage)
        saved = self.storage.get_algorithm_state(self.study_id).get("algorithm")
        if saved:
            self.algorithm.load_state_dict(saved)
        self.scheduler = make_scheduler(cfg.scheduler, cfg.metrics, cfg.directions, seed=cfg.seed)
        self.book = TrialBook(cfg.metrics, cfg.directions)
        self.writer = TrialWriter(self.storage, self.study_id, self.book, on_finished=self._finished)
        self.seen = 0  # the newest report id the scheduler has seen
        self.mine: set[tuple[int, int, int]] = set()  # (trial id, attempt, step) fed here already

    def _catch_up(self) -> None:
        for number, r in self.storage.get_study_reports(self.study_id, after_id=self.seen):
            self.seen = max(self.seen, r.id)
            key = (r.trial_id, r.attempt, r.step)
            if key in self.mine:
                self.mine.discard(key)
            elif self.scheduler is not None:
                self.scheduler.observe(number, r.step, {k: v for k, v in r.metrics.items() if v is not None})

    def ask(self) -> AskedTrial:
        from storage import StorageError
        from trials.api import Reporter

        worker = f"ask:{_HOST}:{os.getpid()}"
        self.writer.reload()
        rec = None
        for t in [t for t in self.book.trials.values() if t.state == TrialState.WAITING]:
            try:
                rec = self.writer.start(t.id, worker=worker)
                break
            except StorageError:  # another process took it first
                continue
        if rec is None:
            proposals = self.algorithm.propose(self.book.history(), 1)
            if not proposals:
                raise RuntimeError(f"study {self.study.name!r}: the algorithm has nothing more to propose "
                                   "(a grid that is done?)")
            rec = self.writer.create(proposals[0].params, worker=worker)
        resume = self.storage.latest_checkpoint(rec.id) if rec.attempt > 0 else None
        return AskedTrial(self, rec, Reporter(_spec(self.study.config, rec, resume), self._emit))

    def _emit(self, ev) -> None:
        # Checkpoints arrive here (reports go through report()).
        if ev.kind == "checkpoint":
            with self.study._lock:
                self.writer.add_checkpoint(ev.trial_id, ev.attempt, int(ev.step or 0), ev.path or "", ev.checksum or "")

    def report(self, trial: AskedTrial, step: int, metrics: Mapping[str, float]) -> bool:
        for k, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"report({k}={v!r}): metrics must be numbers")
        clean = {str(k): float(v) for k, v in metrics.items()}
        step = int(step)
        with self.study._lock:
            rec = trial._record
            self._catch_up()
            self.writer.add_reports([(rec.id, rec.attempt, step, clean)])
            self.mine.add((rec.id, rec.attempt, step))
            trial._reporter.last_step = step
            trial._reporter.last_metrics.update(clean)
            if trial.stop_decided:
                if self.scheduler is not None:
                    self.scheduler.observe(rec.number, step, clean)
                return True
            decision = self.algorithm.on_report(self.book.history(), rec, step, clean)
            if isinstance(decision, Continue) and decision.state_changed:
                self._save_state()
            if self.scheduler is not None:
                if isinstance(decision, Continue):
                    decision = self.scheduler.on_report(rec.number, step, clean)
                else:
                    self.scheduler.observe(rec.number, step, clean)
            if isinstance(decision, (Continue, Exploit)):
                return False
            # A stop, or a pause (a loop the service does not run has no thaw): kept pending, so
            # the trial ends PRUNED however it is told.
            self.storage.put_decision(self.study_id, Pending(rec.id, rec.attempt, step, Stop(decision.reason)).to_record())
            trial.stop_decided = True
            return True

    def tell(self, trial: AskedTrial | int, values: Any, state: str | None) -> TrialRecord:
        cfg = self.study.config
        number = trial.number if isinstance(trial, AskedTrial) else int(trial)
        if state not in (None, "complete", "pruned", "failed"):
            raise ValueError(f"state must be 'complete', 'pruned' or 'failed', got {state!r}")
        told = _told(values, cfg.metrics)
        self.writer.reload()
        rec = self.book.trials.get(number)
        if rec is None:
            raise ValueError(f"study {self.study.name!r} has no trial number {number}")
        if rec.state != TrialState.RUNNING:
            raise ValueError(f"trial {number} is {rec.state.value}, not RUNNING: it was told already, or taken back "
                             "after its process went silent")
        if isinstance(trial, AskedTrial):
            trial._reporter.flush()
        pending = self.storage.get_decisions(self.study_id).get(rec.id)
        stopped = pending is not None and pending.attempt == rec.attempt
        metrics = dict(rec.metrics)
        for r in self.storage.get_reports(rec.id)[-1:]:
            metrics.update({k: v for k, v in r.metrics.items() if v is not None})
        metrics.update(told)
        error, values_out = None, None
        if state == "failed":
            final, error = TrialState.FAILED, "told failed"
        elif state == "pruned" or stopped:
            final = TrialState.PRUNED
        else:
            bad = [m for m in cfg.metrics if not isinstance(metrics.get(m), (int, float)) or not math.isfinite(metrics[m])]
            if bad:
                final, error = TrialState.FAILED, f"objective metric {bad[0]!r} missing or not finite: {metrics.get(bad[0])!r}"
            else:
                final, values_out = TrialState.COMPLETE, [float(metrics[m]) for m in cfg.metrics]
        done = self.writer.finish(rec, state=final, values=values_out, metrics=metrics, error=error)
        if stopped:
            self.storage.drop_decision(rec.id)
        if done is None:
            raise ValueError(f"trial {number} was taken back before it was told")
        return done

    def _finished(self, rec: TrialRecord) -> None:
        self.algorithm.on_complete(self.book.history(), rec)
        self._save_state()

    def _save_state(self) -> None:
        state = self.algorithm.state_dict()
        if state:
            self.storage.set_algorithm_state(self.study_id, {"algorithm": state})


def _told(values: Any, metrics: tuple[str, ...]) -> dict[str, float]:
    """What ``tell`` was given, as {metric: value}."""
    if values is None:
        return {}
    if isinstance(values, bool):
        raise TypeError(f"tell: a value must be a number, got the boolean {values!r}")
    if isinstance(values, Mapping):
        pairs = list(values.items())
    elif isinstance(values, (int, float)) and not isinstance(values, bool):
        if len(metrics) != 1:
            raise ValueError(f"tell: the study has {len(metrics)} objectives {list(metrics)}; give one value each")
        pairs = [(metrics[0], values)]
    elif isinstance(values, (list, tuple)) and len(values) == len(metrics):
        pairs = list(zip(metrics, values))
    else:
        raise ValueError(f"tell: expected a number, {len(metrics)} numbers for {list(metrics)} or "
                         f"{{metric: number}}, got {values!r}")
    for k, v in pairs:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"tell: {k}={v!r} must be a number (a boolean is not)")
    return {str(k): float(v) for k, v in pairs}


def _spec(config: StudyConfig, rec: TrialRecord, resume):
    """The spec an asked trial's checkpoints are written under (as the controller's would be)."""
    from search.controller import trial_seed
    from trials import artifacts
    from trials.api import TrialSpec

    root = config.artifacts if artifacts.is_url(config.artifacts) else os.path.abspath(config.artifacts)
    return TrialSpec(
        study=config.name, trial_id=rec.id, number=rec.number, attempt=rec.attempt, entrypoint=config.entrypoint,
        config={**config.trial_params, **rec.params}, seed=trial_seed(config.seed, rec.number),
        data_seed=config.seed, objective_metrics=config.metrics,
        checkpoint_dir=artifacts.join(root, config.name, f"trial-{rec.number:05d}", f"attempt-{rec.attempt}"),
        resume_from=None if resume is None else resume.path,
        resume_checksum=None if resume is None else resume.checksum, sync_checkpoints=True,
    )


class _ProgressBar:
    """A live progress display for ``optimize``: tqdm's bar in terminals, its widget in notebooks."""

    def __init__(self, name: str, total: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=name, unit="trial", dynamic_ncols=True)

    def __call__(self, p: Progress) -> None:
        self.bar.n = p.done
        self.bar.set_postfix(best="-" if p.best is None else f"{p.best:.4g}", running=p.running, failed=p.failed,
                             refresh=False)
        self.bar.refresh()
        if p.final:
            self.bar.close()
