"""The controller's memory of one study, and the one writer of trial state.

``TrialBook`` is the only owner of the id / number / attempt bookkeeping: every trial by number,
the attempts in flight by trial id, the trials waiting to be dispatched again. ``TrialWriter``
makes every change of a trial's state: each goes to storage first and then into the book, in one
place, so the two never disagree. The ask/tell API writes through the same writer.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from search.algorithms.base import History
from storage.records import TERMINAL_STATES, TrialRecord, TrialState

if TYPE_CHECKING:
    from storage import Storage

__all__ = ["TrialBook", "TrialWriter"]

log = logging.getLogger("search.controller")


class TrialBook:
    """Every trial of the study by number (insertion order is number order), the attempts in
    flight by trial id, the numbers waiting to be dispatched again, and the best trial. Records
    are frozen, so handing them to an algorithm (``history()``) can change nothing here."""

    def __init__(self, metrics: tuple[str, ...], directions: tuple[str, ...]) -> None:
        self.metrics = metrics
        self.directions = directions
        self.trials: dict[int, TrialRecord] = {}
        self.running: dict[int, TrialRecord] = {}  # trial id -> the record of its attempt in flight
        self.waiting: deque[int] = deque()  # trial numbers to dispatch again
        self.resumed_at: dict[int, int] = {}  # trial id -> step of the checkpoint its attempt resumed from
        # trial id -> (when its attempt was dispatched, when it last reported or checkpointed), in
        # time.monotonic() seconds: what the time limits are measured from
        self.clock: dict[int, tuple[float, float]] = {}
        self.best: TrialRecord | None = None
        # Kept up to date by put(), so the controller's per-event questions (how many finished,
        # which are paused, which number has this id) cost O(1), not a pass over the study.
        self._counts: Counter[str] = Counter()
        self._paused: dict[int, int] = {}
        self._numbers: dict[int, int] = {}  # trial id -> number
        self._history: History | None = None

    def put(self, rec: TrialRecord) -> None:
        old = self.trials.get(rec.number)
        if old is not None:
            self._counts[old.state] -= 1
        self._counts[rec.state] += 1
        if rec.state == TrialState.PAUSED:
            self._paused[rec.number] = int(rec.last_step or 0)
        else:
            self._paused.pop(rec.number, None)
        self._numbers[rec.id] = rec.number
        self._history = None
        self.trials[rec.number] = rec
        if rec.state == TrialState.COMPLETE and rec.values is not None:
            sign = -1.0 if self.directions[0] == "maximize" else 1.0
            if self.best is None or sign * rec.values[0] < sign * self.best.values[0]:
                self.best = rec

    def load(self, records: Iterable[TrialRecord]) -> None:
        """Replace what the book knows of the trials with ``records`` (the storage's view)."""
        self.trials = {}
        self._counts.clear()
        self._paused.clear()
        self._numbers.clear()
        self._history = None
        for rec in records:
            self.put(rec)

    def by_id(self, trial_id: int) -> TrialRecord | None:
        number = self._numbers.get(trial_id)
        return None if number is None else self.trials.get(number)

    def live(self, trial_id: int, attempt: int) -> TrialRecord | None:
        """The record of ``attempt`` of the trial if that attempt is the one in flight."""
        rec = self.running.get(trial_id)
        return rec if rec is not None and rec.attempt == attempt else None

    def dispatched(self, rec: TrialRecord, resumed_at: int | None) -> None:
        """``rec``'s attempt was sent to a worker (from a checkpoint at step ``resumed_at``)."""
        self.running[rec.id] = rec
        if resumed_at is not None:
            self.resumed_at[rec.id] = resumed_at
        now = time.monotonic()
        self.clock[rec.id] = (now, now)

    def active(self, trial_id: int) -> None:
        """The trial's attempt in flight reported or checkpointed."""
        started, _ = self.clock.get(trial_id, (time.monotonic(), 0.0))
        self.clock[trial_id] = (started, time.monotonic())

    def release(self, trial_id: int) -> None:
        """The trial's attempt in flight has ended (or was never going to report again)."""
        self.running.pop(trial_id, None)
        self.resumed_at.pop(trial_id, None)
        self.clock.pop(trial_id, None)

    def release_all(self) -> list[int]:
        """Forget every attempt in flight; returns their trial ids."""
        ids = list(self.running)
        for trial_id in ids:
            self.release(trial_id)
        return ids

    def history(self) -> History:
        if self._history is None:
            self._history = History(tuple(self.trials.values()), self.metrics, self.directions)
        return self._history

    def count(self, *states: str) -> int:
        return sum(self._counts[s] for s in states)

    def finished(self) -> int:
        return self.count(*TERMINAL_STATES)

    def used(self) -> int:
        """Configurations the budget has spent: terminal, paused and running trials."""
        return self.count(*TERMINAL_STATES, TrialState.PAUSED) + len(self.running)

    def paused(self) -> dict[int, int]:
        """The paused trials, number -> step reached: what ``Scheduler.thaw`` chooses from."""
        return dict(sorted(self._paused.items()))  # in number order, as the trials are


class TrialWriter:
    """The one writer of trial state for a study: each method writes storage, then puts what
    storage answered into the book. ``on_finished`` is called with every record that has just
    become terminal (the controller tells the algorithm). Methods that take an ``attempt`` write
    nothing and answer None when that attempt is no longer the live one.

    Reports may be held back and written in batches (``report_batch`` reports or ``report_delay``
    seconds, whichever comes first; the controller's choice, the ask/tell API writes each at once):
    one commit per report is what bounds a controller on PostgreSQL. Every write that changes a
    trial's state or stores what depends on its reports (a checkpoint, a heartbeat) flushes the held
    reports first, and the controller flushes before it stores a decision or the algorithm's state:
    the store never holds a state change without the reports that came before it, and a crash
    loses only reports nothing stored depends on (the attempt is requeued and reports them again)."""

    def __init__(self, storage: Storage, study_id: int, book: TrialBook,
                 on_finished: Callable[[TrialRecord], None], *,
                 report_batch: int = 1, report_delay: float = 0.0) -> None:
        self.storage = storage
        self.study_id = study_id
        self.book = book
        self.on_finished = on_finished
        self.report_batch = max(1, int(report_batch))
        self.report_delay = float(report_delay)
        self._held: list[tuple[int, int, int, Mapping[str, float]]] = []
        self._held_since = 0.0

    def _put(self, rec: TrialRecord | None) -> TrialRecord | None:
        if rec is not None:
            self.book.put(rec)
            if rec.state in TERMINAL_STATES:
                self.on_finished(rec)
        return rec

    def reload(self) -> None:
        self.book.load(self.storage.get_trials(self.study_id))

    def create(self, params: Mapping[str, Any], *, worker: str | None = None) -> TrialRecord:
        """A new RUNNING trial with the next number (``worker``: who runs it, for an asked trial)."""
        return self._put(self.storage.create_trial(self.study_id, dict(params), worker=worker))  # type: ignore[return-value]

    def start(self, trial_id: int, *, worker: str | None = None) -> TrialRecord:
        """WAITING -> RUNNING as its current attempt."""
        return self._put(self.storage.start_trial(trial_id, worker=worker))  # type: ignore[return-value]

    def finish(self, rec: TrialRecord, **fields: Any) -> TrialRecord | None:
        """RUNNING -> COMPLETE, PRUNED or FAILED (``state=``, and values, metrics, error, last_step,
        node as ``Storage.finish_trial`` takes them)."""
        self.flush()
        done = self.storage.finish_trial(rec.id, rec.attempt, **fields)
        if done is None:
            log.warning("trial %d attempt %d finished after it was reaped; result dropped", rec.number, rec.attempt)
            self.reload()
        return self._put(done)

    def pause(self, rec: TrialRecord, **fields: Any) -> TrialRecord | None:
        """RUNNING -> PAUSED (metrics, last_step, node as ``Storage.pause_trial`` takes them)."""
        self.flush()
        paused = self.storage.pause_trial(rec.id, rec.attempt, **fields)
        if paused is None:
            log.warning("trial %d attempt %d paused after it was reaped; ignored", rec.number, rec.attempt)
            self.reload()
        return self._put(paused)

    def thaw(self, rec: TrialRecord) -> TrialRecord:
        """PAUSED -> RUNNING as the next attempt."""
        self.flush()
        return self._put(self.storage.thaw_trial(rec.id))  # type: ignore[return-value]

    def exploit(self, rec: TrialRecord, **fields: Any) -> TrialRecord | None:
        """The member's attempt restarts as the next one from a parent's copied checkpoint
        (``Storage.exploit_trial``)."""
        self.flush()
        return self._put(self.storage.exploit_trial(rec.id, rec.attempt, **fields))

    def requeue(self, *, reason: str, trial_ids: Sequence[int] | None = None,
                max_retries: int | None = None) -> list[TrialRecord]:
        """RUNNING attempts -> WAITING as a next attempt (or FAILED past ``max_retries``)."""
        self.flush()
        return [self._put(r) for r in self.storage.requeue_running(  # type: ignore[misc]
            self.study_id, reason=reason, trial_ids=trial_ids, max_retries=max_retries)]

    def end_paused(self, trial_ids: Sequence[int] | None = None) -> list[TrialRecord]:
        """PAUSED -> PRUNED at the step reached: the study ends before they are thawed."""
        self.flush()
        return [self._put(r) for r in self.storage.end_paused(self.study_id, trial_ids=trial_ids)]  # type: ignore[misc]

    def add_reports(self, reports: Sequence[tuple[int, int, int, Mapping[str, float]]]) -> None:
        """Record reports (trial id, attempt, step, metrics), at once or held for the next batch."""
        if not reports:
            return
        if not self._held:
            self._held_since = time.monotonic()
        self._held.extend(reports)
        if len(self._held) >= self.report_batch or self.report_delay <= 0:
            self.flush()

    def flush(self) -> None:
        """Write the reports held back, if any."""
        if self._held:
            held, self._held = self._held, []
            self.storage.add_reports(held)

    def flush_due(self) -> None:
        """Write the reports held back if the oldest has waited ``report_delay`` seconds."""
        if self._held and time.monotonic() - self._held_since >= self.report_delay:
            self.flush()

    def add_checkpoint(self, trial_id: int, attempt: int, step: int, path: str, checksum: str) -> None:
        self.flush()
        self.storage.add_checkpoint(trial_id, attempt, step, path, checksum)

    def heartbeat(self, trial_ids: Sequence[int]) -> None:
        self.flush()
        self.storage.heartbeat(list(trial_ids))
