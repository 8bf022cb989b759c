"""The controller: the only writer of study state.

    algorithm --proposals--> controller --specs--> backend --events--> controller --> storage

It asks the algorithm for proposals, records trials, dispatches specs, receives events, records
them, asks the algorithm (then the scheduler) for decisions, and reaps attempts that were
interrupted. Its parts, one job each: ``TrialBook`` (what it knows of the trials, by number, id
and attempt), ``TrialWriter`` (the one writer of trial state), ``PendingDecisions`` (keeping and
carrying out stops, pauses and exploits); dispatch and checkpoint retention are methods here. The budget is the study's, counted in configurations: terminal trials in storage
count, whichever process ran them, and so do paused ones (a thaw resumes a configuration, it is
not a new one).
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from search._book import TrialBook, TrialWriter
from search._pending import PendingDecisions
from search.algorithms.base import Algorithm
from search.backends.base import Backend
from search.config import StudyConfig
from search.decisions import CONTINUE, Continue, Exploit, Pause, Pending
from search.tracking import StudyReader
from storage.records import CheckpointRecord, StudyRecord, TrialRecord, TrialState
from trials import artifacts
from trials.api import EventKind, TrialEvent, TrialSpec

if TYPE_CHECKING:
    from storage import Storage

__all__ = ["Controller", "RunSummary", "Progress", "trial_seed"]

log = logging.getLogger("search.controller")

# Reports are written in batches of up to this many, or once the oldest has waited this long: one
# commit per report is what bounds a controller on PostgreSQL (bench/bench_controller_scale.py).
REPORT_BATCH = 256
REPORT_DELAY_S = 0.2


def trial_seed(study_seed: int, number: int) -> int:
    return (int(study_seed) * 1_000_003 + int(number)) % (2**31 - 1)


@dataclass(frozen=True)
class RunSummary:
    study: str
    metrics: tuple[str, ...]
    complete: int
    pruned: int
    failed: int
    interrupted: bool
    best: TrialRecord | None
    elapsed_s: float
    requeued_at_start: int


@dataclass(frozen=True)
class Progress:
    done: int
    running: int
    failed: int
    budget: int
    best: float | None
    elapsed_s: float
    final: bool = False


class Controller:
    """Drives one study on a backend that is already started; shuts the backend down at the end."""

    def __init__(self, config: StudyConfig, storage: Storage, backend: Backend, algorithm: Algorithm,
                 study: StudyRecord, *, on_progress: Callable[[Progress], None] | None = None,
                 heartbeat_s: float = 5.0, deadline: float | None = None,
                 callbacks: Sequence[Callable[[Any, TrialRecord], None]] = ()) -> None:
        self.config = config
        self.storage = storage
        self.backend = backend
        self.algorithm = algorithm
        self.study = study
        self.on_progress = on_progress
        self.heartbeat_s = heartbeat_s
        # time.monotonic() after which nothing new starts: running trials finish, paused ones stay
        # paused, and the study is left INTERRUPTED with its budget to finish later
        self.deadline = deadline
        # called as callback(study, trial) with each trial that has just finished (tracking)
        self.callbacks = tuple(callbacks)
        self._reader = StudyReader(config.name, storage)
        self.artifacts = config.artifacts if artifacts.is_url(config.artifacts) else os.path.abspath(config.artifacts)
        self.book = TrialBook(config.metrics, config.directions)
        self.writer = TrialWriter(storage, study.id, self.book, on_finished=self._completed,
                                  report_batch=REPORT_BATCH, report_delay=REPORT_DELAY_S)
        self.decisions = PendingDecisions(storage, study.id, self.book, self.writer, artifacts_root=self.artifacts,
                                          study_name=config.name, dispatch=self._dispatch, retain=self._retain)
        self._dry = False  # the algorithm's last propose() returned nothing
        self._start = time.monotonic()
        from search.schedulers import make_scheduler

        self.scheduler = make_scheduler(config.scheduler, config.metrics, config.directions, seed=config.seed)

    def _progress(self, final: bool = False) -> None:
        if self.on_progress is None:
            return
        best = self.book.best
        self.on_progress(Progress(done=self.book.finished(), running=len(self.book.running),
                                  failed=self.book.count(TrialState.FAILED), budget=self.config.trials,
                                  best=None if best is None else best.values[0],
                                  elapsed_s=time.monotonic() - self._start, final=final))

    # -- dispatch ---------------------------------------------------------------------------------

    def _spec(self, rec: TrialRecord, resume: CheckpointRecord | None) -> TrialSpec:
        cfg = self.config
        return TrialSpec(
            study=cfg.name, trial_id=rec.id, number=rec.number, attempt=rec.attempt,
            entrypoint=cfg.entrypoint, config={**cfg.trial_params, **rec.params},
            seed=trial_seed(cfg.seed, rec.number), data_seed=cfg.seed, objective_metrics=cfg.metrics,
            checkpoint_dir=artifacts.join(self.artifacts, cfg.name, f"trial-{rec.number:05d}", f"attempt-{rec.attempt}"),
            resume_from=None if resume is None else resume.path,
            resume_checksum=None if resume is None else resume.checksum,
            cpus=cfg.cpus, gpus=cfg.gpus, workers=cfg.workers,
        )

    def _dispatch(self, rec: TrialRecord) -> None:
        # A later attempt (a retry, a thaw, or a PBT member restarted from its parent's copied
        # checkpoint) continues from the trial's newest recorded checkpoint.
        resume = self.storage.latest_checkpoint(rec.id, artifacts.exists) if rec.attempt > 0 else None
        self.book.dispatched(rec, None if resume is None else resume.step)
        self.backend.submit(self._spec(rec, resume))

    def _fill(self) -> None:
        """Fill every free slot: requeued trials first, then a paused trial the scheduler wants
        thawed, then new configurations while the budget allows and the algorithm proposes."""
        cfg, book = self.config, self.book
        while len(book.running) < cfg.parallel and not self._past_deadline():
            if book.waiting and book.finished() + len(book.running) < cfg.trials:
                self._dispatch(self.writer.start(book.trials[book.waiting.popleft()].id))
                continue
            left = self._left()
            paused = bool(book.paused())
            if paused and self._thaw(can_start=left > 0):
                continue
            if left <= 0:
                return
            n = min(cfg.parallel - len(book.running), left)
            proposals = self.algorithm.propose(book.history(), n)
            self._dry = not proposals
            if not proposals:
                # The algorithm has nothing more to propose: as when the budget is spent, paused
                # trials are all that can still run.
                if paused and self._thaw(can_start=False):
                    continue
                return
            for p in proposals[:n]:
                self._dispatch(self.writer.create(p.params))

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _left(self) -> int:
        """How many new configurations the trial budget still allows (paused trials count as used)."""
        return self.config.trials - self.book.used()

    def _thawed_at_once(self, rec: TrialRecord, step: int) -> bool:
        """Whether a trial the scheduler just paused is the one ``_fill`` would thaw into the slot
        the pause frees, when no requeued trial waits and no new configuration would start (budget
        spent, or the algorithm ran dry). Pausing it then only costs a checkpoint round trip, so it
        goes on. The same order as ``_fill``: with budget left, the strict pick comes first."""
        left = self._left()
        if self.book.waiting or (left > 0 and not self._dry):
            return False
        paused = {**self.book.paused(), rec.number: step}
        if left > 0:
            pick = self.scheduler.thaw(paused, can_start=True)
            if pick is not None:
                return pick == rec.number
        return self.scheduler.thaw(paused, can_start=False) == rec.number

    def _thaw(self, can_start: bool) -> bool:
        """Resume the paused trial the scheduler picks, from its newest checkpoint, as a new
        attempt of the same trial. False when there is none to thaw. ``can_start``: whether the
        budget still allows a new configuration if none is thawed."""
        if self.scheduler is None:
            return False
        paused = self.book.paused()
        number = self.scheduler.thaw(paused, can_start=can_start) if paused else None
        if number is None:
            return False
        rec = self.book.trials[number]
        if self.storage.latest_checkpoint(rec.id, artifacts.exists) is None:
            # Its checkpoint files are gone: resuming would silently restart it from step 0.
            log.warning("trial %d: no checkpoint left to thaw it from; it ends PRUNED at step %s",
                        number, rec.last_step)
            self.writer.end_paused([rec.id])
            return True
        new = self.writer.thaw(rec)
        log.info("trial %d thawed at step %s as attempt %d", number, rec.last_step, new.attempt)
        self._dispatch(new)
        return True

    # -- events -----------------------------------------------------------------------------------

    def _handle(self, events: list[TrialEvent]) -> None:
        flush = self.writer.flush
        for ev in events:
            rec = self.book.live(ev.trial_id, ev.attempt)
            if rec is None:
                log.warning("ignoring %s from trial id %s attempt %s: that attempt is no longer running",
                            ev.kind, ev.trial_id, ev.attempt)
                continue
            if ev.kind in (EventKind.REPORT, EventKind.CHECKPOINT):
                self.book.active(rec.id)
            if ev.kind == EventKind.REPORT:
                step = int(ev.step or 0)
                self.writer.add_reports([(ev.trial_id, ev.attempt, step, dict(ev.metrics))])
                if self._decide(rec, step, ev.metrics, flush):
                    self.backend.request_stop(ev.trial_id)
            elif ev.kind == EventKind.CHECKPOINT:
                flush()
                self.writer.add_checkpoint(ev.trial_id, ev.attempt, int(ev.step or 0), ev.path or "", ev.checksum or "")
                self._retain(ev.trial_id)
            elif ev.kind == EventKind.DONE:
                flush()
                self._end_attempt(rec, ev)
                # The pending decision goes once the attempt has ended (a crash in between leaves
                # it, and the restart skips a decision whose trial has run since).
                self.decisions.drop(rec.id)
            elif ev.kind == EventKind.LOST:
                flush()
                self._lost(rec, ev.error or "worker lost")
        self.writer.flush_due()

    def _decide(self, rec: TrialRecord, step: int, metrics, flush: Callable[[], None]) -> bool:
        """Ask the algorithm, then the scheduler, what happens next to ``rec`` after its report
        at ``step``; True when it is to stop (a stop, pause or exploit, kept as pending). A trial
        already asked to stop gets no new decision: its report is only recorded by the scheduler,
        as a resume's replay records it."""
        decision = None
        if self.decisions.of(rec) is None:
            decision = self.algorithm.on_report(self.book.history(), rec, step, metrics)
            if isinstance(decision, Continue) and decision.state_changed:
                self._save_algorithm_state()
        if self.scheduler is not None:
            if isinstance(decision, Continue):
                decision = self.scheduler.on_report(rec.number, step, metrics)
                if isinstance(decision, Pause) and self._thawed_at_once(rec, step):
                    decision = CONTINUE
            else:
                self.scheduler.observe(rec.number, step, metrics)
        if decision is None or isinstance(decision, Continue):
            return False
        flush()  # the report that decided it is stored before the decision
        # An exploit is stored with PBT's own state (readiness counted from the parent's step) in
        # one write: either alone would disagree with the other.
        states = self._algorithm_state() if isinstance(decision, Exploit) else None
        self.decisions.keep(Pending(rec.id, rec.attempt, step, decision), states=states)
        return True

    def _end_attempt(self, rec: TrialRecord, ev: TrialEvent) -> None:
        pending = self.decisions.of(rec)
        decision = None if pending is None else pending.decision
        if ev.error is None and ev.stopped and isinstance(decision, Exploit):
            if self.decisions.exploit(rec, decision, ev.step if ev.step is not None else pending.step):
                return
        if ev.error is None and ev.stopped and isinstance(decision, Pause) and self._pause(rec, ev):
            return
        metrics = dict(ev.metrics)
        values = None
        error = ev.error
        if error is None and ev.stopped and decision is not None:
            state = TrialState.PRUNED
        elif error is None:
            vals = [metrics.get(m) for m in self.config.metrics]
            bad = [m for m, v in zip(self.config.metrics, vals) if v is None or not math.isfinite(v)]
            if bad:
                state, error = TrialState.FAILED, f"objective metric {bad[0]!r} missing or not finite: {metrics.get(bad[0])!r}"
            else:
                state, values = TrialState.COMPLETE, [float(v) for v in vals]  # type: ignore[arg-type]
        else:
            state = TrialState.FAILED
        # A trial resumed from a checkpoint at its final step reports nothing more: it ended there.
        last_step = ev.step if ev.step is not None else self.book.resumed_at.get(rec.id)
        self.book.release(rec.id)
        done = self.writer.finish(rec, state=state, values=values, metrics=metrics, error=error,
                                  last_step=last_step, node=ev.node)
        if done is not None and state == TrialState.FAILED:
            log.warning("trial %d failed: %s", rec.number, error)

    def _pause(self, rec: TrialRecord, ev: TrialEvent) -> bool:
        """Freeze a trial the scheduler paused. False when it has no checkpoint to resume from:
        it then ends PRUNED as a stopped trial would."""
        if self.storage.latest_checkpoint(rec.id, artifacts.exists) is None:
            log.warning("trial %d: paused without a checkpoint (the trainer saved none); it ends PRUNED", rec.number)
            return False
        last_step = ev.step if ev.step is not None else self.book.resumed_at.get(rec.id)
        self.book.release(rec.id)
        self.writer.pause(rec, metrics=dict(ev.metrics), last_step=last_step, node=ev.node)
        return True

    def _expire(self) -> None:
        """End the attempts that ran past ``budget.trial_timeout`` or went ``budget.hang_timeout``
        without a report or checkpoint: the backend abandons the worker, and the trial ends FAILED
        with the reason (``on_timeout: fail``) or is retried like a lost worker (``retry``). One
        that was already asked to stop is ended as its decision says."""
        cfg = self.config
        if cfg.trial_timeout is None and cfg.hang_timeout is None:
            return
        now = time.monotonic()
        for trial_id, rec in list(self.book.running.items()):
            started, active = self.book.clock[trial_id]
            if cfg.trial_timeout is not None and now - started > cfg.trial_timeout:
                reason = f"timed out after {cfg.trial_timeout:g} s (budget.trial_timeout)"
            elif cfg.hang_timeout is not None and now - active > cfg.hang_timeout:
                reason = f"timed out after {cfg.hang_timeout:g} s without a report or checkpoint (budget.hang_timeout)"
            else:
                continue
            self.backend.abandon(trial_id, rec.attempt)
            if cfg.on_timeout == "retry" or self.decisions.of(rec) is not None:
                self._lost(rec, reason)
                continue
            self.writer.flush()
            reports = self.storage.get_reports(rec.id)
            metrics = {k: v for k, v in reports[-1].metrics.items() if v is not None} if reports else {}
            self.book.release(rec.id)
            if self.writer.finish(rec, state=TrialState.FAILED, metrics=metrics, error=reason) is not None:
                log.warning("trial %d failed: %s", rec.number, reason)

    def _lost(self, rec: TrialRecord, reason: str) -> None:
        pending = self.decisions.of(rec)
        if pending is not None and self.decisions.carry_out(rec, pending, dispatch=True):
            self.decisions.drop(rec.id)
            return  # it was to stop, pause or exploit here anyway: no retry
        self.decisions.drop(rec.id)
        self.book.release(rec.id)
        for r in self.writer.requeue(reason=reason, trial_ids=[rec.id], max_retries=self.config.max_failures):
            if r.state == TrialState.WAITING:
                log.warning("trial %d lost (%s); retrying as attempt %d", r.number, reason, r.attempt)
                self.book.waiting.append(r.number)
            else:
                log.warning("trial %d lost (%s); giving up", r.number, reason)

    def _completed(self, rec: TrialRecord) -> None:
        self._dry = False  # a finished trial may give the algorithm something new to propose
        self.algorithm.on_complete(self.book.history(), rec)
        self._save_algorithm_state()
        for callback in self.callbacks:
            callback(self._reader, rec)

    # -- algorithm state and retention ------------------------------------------------------------

    def _algorithm_state(self) -> dict[str, dict]:
        state = self.algorithm.state_dict()
        return {"algorithm": state} if state else {}

    def _save_algorithm_state(self) -> None:
        state = self._algorithm_state()
        if state:
            self.writer.flush()  # the state may count reports: they are stored first
            self.storage.set_algorithm_state(self.study.id, state)

    def _retain(self, trial_id: int) -> None:
        """Keep-last-N: delete the files of a trial's older checkpoints. Nothing a pending decision
        refers to is touched: resumes and thaws of paused trials start from a trial's newest
        recorded checkpoint, a pending PBT exploit's checkpoint of its parent is kept until the
        exploit copies it, and the newest N stay."""
        keep = self.config.keep_last
        if keep is None:
            return
        cks = sorted(self.storage.get_checkpoints(trial_id), key=lambda c: c.id)
        protected = {c.path for c in cks[-keep:]} | self.decisions.protected(trial_id, cks)
        for c in cks[:-keep]:
            if c.path not in protected and artifacts.exists(c.path):
                try:
                    artifacts.remove(c.path)
                except OSError as exc:
                    log.warning("could not delete old checkpoint %s: %s", c.path, exc)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        cfg, book = self.config, self.book
        self.writer.reload()
        saved = self.storage.get_algorithm_state(self.study.id).get("algorithm")
        if saved:
            self.algorithm.load_state_dict(saved)
        self.decisions.carry_out_stored()
        reaped = self._reap()
        self.writer.reload()
        book.waiting.extend(t.number for t in book.trials.values() if t.state == TrialState.WAITING)
        if self.scheduler is not None:
            # A scheduler decides from every report so far: replay the stored ones first.
            for t in book.trials.values():
                for r in sorted(self.storage.get_reports(t.id), key=lambda r: r.id):  # in the order they came
                    self.scheduler.observe(t.number, r.step, {k: v for k, v in r.metrics.items() if v is not None})
        self.storage.set_study_state(self.study.id, "RUNNING")
        interrupted = out_of_time = False
        last_beat = time.monotonic()
        try:
            while True:
                self._fill()
                if not book.running:
                    break  # budget covered, or the algorithm has nothing left to propose
                self._handle(self.backend.poll(timeout=min(1.0, self.heartbeat_s)))
                self._expire()
                now = time.monotonic()
                if now - last_beat >= self.heartbeat_s:
                    self.writer.heartbeat(list(book.running))
                    last_beat = now
                self._progress()
            out_of_time = self._past_deadline() and bool(self._left() > 0 or book.waiting or book.paused())
            if not out_of_time:
                # Nothing runs and nothing more will start: paused trials not worth thawing end here.
                self.writer.end_paused()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            try:
                self.writer.flush()
            finally:
                self.backend.shutdown()
                self._stop_running()
        self.storage.set_study_state(self.study.id, "INTERRUPTED" if interrupted or out_of_time else "COMPLETE")
        self._progress(final=True)
        return RunSummary(
            study=cfg.name, metrics=cfg.metrics, complete=book.count(TrialState.COMPLETE),
            pruned=book.count(TrialState.PRUNED), failed=book.count(TrialState.FAILED),
            interrupted=interrupted, best=book.best, elapsed_s=time.monotonic() - self._start,
            requeued_at_start=len(reaped),
        )

    def _reap(self) -> list[TrialRecord]:
        """Requeue the attempts left RUNNING by a controller that died (kill -9, a crash). That
        alone is not held against a trial; but a trial running at two such deaths in a row counts
        a failure from the second on, so one that kills the process it shares with the controller
        (``os._exit`` in-process, a segfault) ends FAILED after ``max_failures`` instead of being
        re-run on every resume."""
        died = "attempt interrupted (controller stopped while it ran)"
        running = [t for t in self.book.trials.values() if t.state == TrialState.RUNNING]
        again = [t.id for t in running if (t.error or "").startswith(died)]
        first = [t.id for t in running if t.id not in again]
        out = self.writer.requeue(reason=died, trial_ids=first) if first else []
        if again:
            out += self.writer.requeue(reason=f"{died} again", trial_ids=again, max_retries=self.config.max_failures)
        return out

    def _stop_running(self) -> None:
        """The run is over with attempts still in flight. One stopped, paused or exploiting by a
        decision ends (or restarts) so, rather than run on as it was; if that fails it is requeued
        with the rest, and the stored decision is carried out by the next run."""
        left = []
        for trial_id, rec in list(self.book.running.items()):
            pending = self.decisions.of(rec)
            done = False
            if pending is not None:
                try:
                    done = self.decisions.carry_out(rec, pending, dispatch=False)
                except Exception:  # noqa: BLE001 - the other trials must still be requeued
                    log.exception("trial %d: the %s decided for it could not be carried out", rec.number,
                                  pending.decision.action)
            if done:
                self.decisions.drop(trial_id)
            else:
                left.append(trial_id)
        self.book.release_all()
        if left:
            self.writer.requeue(reason="attempt interrupted (run stopped)", trial_ids=left)
