"""The controller: the only writer of study state.

    algorithm --proposals--> controller --specs--> backend --events--> controller --> storage

It asks the algorithm for proposals, records trials, dispatches specs, receives events, records
them, asks the algorithm (then the scheduler) for decisions, and reaps attempts that were
interrupted. The budget is the study's, counted in configurations: terminal trials in storage
count, whichever process ran them, and so do paused ones (a thaw resumes a configuration, it is
not a new one).
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from search.algorithms.base import CONTINUE, Algorithm, History, Proposal
from search.backends.base import Backend
from search.config import StudyConfig
from storage.records import TERMINAL_STATES, CheckpointRecord, StudyRecord, TrialRecord, TrialState
from trials import artifacts
from trials.api import TrialEvent, TrialSpec

if TYPE_CHECKING:
    from storage import Storage

__all__ = ["Controller", "RunSummary", "trial_seed"]

log = logging.getLogger("search.controller")


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


def exploit_checkpoint(checkpoints, step: int | None, exists) -> "CheckpointRecord | None":
    """The checkpoint an exploit copies: the parent's most recent one at ``step`` (the step PBT
    ranked it on; the parent may have trained on since), else its most recent one, among those
    whose file still exists."""
    recent = sorted((c for c in checkpoints if exists(c.path)), key=lambda c: c.id, reverse=True)
    if step is not None:
        for c in recent:
            if c.step == int(step):
                return c
    return recent[0] if recent else None


class Controller:
    """Drives one study on a backend that is already started; shuts the backend down at the end."""

    def __init__(self, config: StudyConfig, storage: Storage, backend: Backend, algorithm: Algorithm,
                 study: StudyRecord, *, on_progress: Callable[[Progress], None] | None = None,
                 heartbeat_s: float = 5.0) -> None:
        self.config = config
        self.storage = storage
        self.backend = backend
        self.algorithm = algorithm
        self.study = study
        self.on_progress = on_progress
        self.heartbeat_s = heartbeat_s
        self.artifacts = config.artifacts if artifacts.is_url(config.artifacts) else os.path.abspath(config.artifacts)
        self._trials: dict[int, TrialRecord] = {}  # by number; insertion order is number order
        self._running: dict[int, TrialRecord] = {}  # trial id -> record of the attempt in flight
        self._waiting: deque[int] = deque()  # trial numbers to dispatch again
        self._stop_requested: set[int] = set()
        self._pausing: set[int] = set()  # trial ids asked to stop by a "pause" decision
        self._dry = False  # the algorithm's last propose() returned nothing
        # trial id -> the stop, pause or PBT exploit decided for its running attempt, until that
        # attempt ends ({"action", "attempt", "step"}, and an exploit's "extra": parent, params,
        # parent_step); kept in storage too, so a decision outlives a controller that dies before
        # carrying it out
        self._decisions: dict[int, dict] = {}
        self._resumed_at: dict[int, int] = {}  # trial id -> step of the checkpoint it resumed from
        self._best: TrialRecord | None = None
        self._start = time.monotonic()
        from search.schedulers import make_scheduler

        self.scheduler = make_scheduler(config.scheduler, config.metrics, config.directions, seed=config.seed)

    # -- bookkeeping ------------------------------------------------------------------------------

    def _history(self) -> History:
        return History(tuple(self._trials.values()), self.config.metrics, self.config.directions)

    def _put(self, rec: TrialRecord) -> None:
        self._trials[rec.number] = rec
        if rec.state == TrialState.COMPLETE and rec.values is not None:
            sign = -1.0 if self.config.directions[0] == "maximize" else 1.0
            if self._best is None or sign * rec.values[0] < sign * self._best.values[0]:
                self._best = rec

    def _counts(self) -> tuple[int, int]:
        finished = sum(1 for t in self._trials.values() if t.state in TERMINAL_STATES)
        failed = sum(1 for t in self._trials.values() if t.state == TrialState.FAILED)
        return finished, failed

    def _progress(self, final: bool = False) -> None:
        if self.on_progress is None:
            return
        finished, failed = self._counts()
        self.on_progress(Progress(done=finished, running=len(self._running), failed=failed,
                                  budget=self.config.trials,
                                  best=None if self._best is None else self._best.values[0],
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
            cpus=cfg.cpus, gpus=cfg.gpus,
        )

    def _dispatch(self, rec: TrialRecord) -> None:
        # A later attempt (a retry, or a PBT member restarted from its parent's copied
        # checkpoint) continues from the trial's newest recorded checkpoint.
        resume = self.storage.latest_checkpoint(rec.id, artifacts.exists) if rec.attempt > 0 else None
        if resume is not None:
            self._resumed_at[rec.id] = resume.step
        self._running[rec.id] = rec
        self.backend.submit(self._spec(rec, resume))

    def _fill(self) -> None:
        """Fill every free slot: requeued trials first, then a paused trial the scheduler wants
        thawed, then new configurations while the budget allows and the algorithm proposes."""
        cfg = self.config
        while len(self._running) < cfg.parallel:
            finished = paused = 0
            for t in self._trials.values():
                if t.state in TERMINAL_STATES:
                    finished += 1
                elif t.state == TrialState.PAUSED:
                    paused += 1
            if self._waiting and finished + len(self._running) < cfg.trials:
                number = self._waiting.popleft()
                rec = self.storage.start_trial(self._trials[number].id)
                self._put(rec)
                self._dispatch(rec)
                continue
            left = self._left()
            if paused and self._thaw(can_start=left > 0):
                continue
            if left <= 0:
                return
            n = min(cfg.parallel - len(self._running), left)
            proposals: list[Proposal] = self.algorithm.propose(self._history(), n)
            self._dry = not proposals
            if not proposals:
                # The algorithm has nothing more to propose: as when the budget is spent, paused
                # trials are all that can still run.
                if paused and self._thaw(can_start=False):
                    continue
                return
            for p in proposals[:n]:
                rec = self.storage.create_trial(self.study.id, dict(p.params))
                self._put(rec)
                self._dispatch(rec)

    def _left(self) -> int:
        """How many new configurations the trial budget still allows (paused trials count as used)."""
        used = sum(1 for t in self._trials.values() if t.state in TERMINAL_STATES or t.state == TrialState.PAUSED)
        return self.config.trials - used - len(self._running)

    def _paused(self) -> dict[int, int]:
        """The paused trials, number -> step reached: what ``Scheduler.thaw`` chooses from."""
        return {t.number: int(t.last_step or 0) for t in self._trials.values() if t.state == TrialState.PAUSED}

    def _thawed_at_once(self, rec: TrialRecord, step: int) -> bool:
        """Whether a trial the scheduler just paused is the one ``_fill`` would thaw into the slot
        the pause frees, when no requeued trial waits and no new configuration would start (budget
        spent, or the algorithm ran dry). Pausing it then only costs a checkpoint round trip, so it
        goes on. The same order as ``_fill``: with budget left, the strict pick comes first."""
        left = self._left()
        if self._waiting or (left > 0 and not self._dry):
            return False
        paused = {**self._paused(), rec.number: step}
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
        paused = self._paused()
        number = self.scheduler.thaw(paused, can_start=can_start) if paused else None
        if number is None:
            return False
        rec = self._trials[number]
        if self.storage.latest_checkpoint(rec.id, artifacts.exists) is None:
            # Its checkpoint files are gone: resuming would silently restart it from step 0.
            log.warning("trial %d: no checkpoint left to thaw it from; it ends PRUNED at step %s",
                        number, rec.last_step)
            for r in self.storage.end_paused(self.study.id, trial_ids=[rec.id]):
                self._put(r)
                self._completed(r)
            return True
        new = self.storage.thaw_trial(rec.id)
        log.info("trial %d thawed at step %s as attempt %d", number, rec.last_step, new.attempt)
        self._put(new)
        self._dispatch(new)
        return True

    def _reload(self) -> None:
        self._trials = {rec.number: rec for rec in self.storage.get_trials(self.study.id)}

    # -- events -----------------------------------------------------------------------------------

    def _current(self, ev: TrialEvent) -> TrialRecord | None:
        rec = self._running.get(ev.trial_id)
        if rec is None or rec.attempt != ev.attempt:
            log.warning("ignoring %s from trial id %s attempt %s: that attempt is no longer running",
                        ev.kind, ev.trial_id, ev.attempt)
            return None
        return rec

    def _handle(self, events: list[TrialEvent]) -> None:
        reports: list[tuple[int, int, int, dict]] = []

        def flush() -> None:
            if reports:
                self.storage.add_reports(reports)
                reports.clear()

        for ev in events:
            rec = self._current(ev)
            if rec is None:
                continue
            if ev.kind == "report":
                step = int(ev.step or 0)
                reports.append((ev.trial_id, ev.attempt, step, dict(ev.metrics)))
                decision = None  # a trial already asked to stop gets no new decision
                if ev.trial_id not in self._stop_requested:
                    decision = self.algorithm.on_report(self._history(), rec, step, ev.metrics)
                    if self.algorithm.state_changed and decision.action != "exploit":
                        self._save_algorithm_state()
                if self.scheduler is not None:
                    if decision is not None and decision.action == "continue":
                        decision = self.scheduler.on_report(rec.number, step, ev.metrics)
                        if decision.action == "pause" and self._thawed_at_once(rec, step):
                            decision = CONTINUE
                    else:
                        # One the algorithm decided on, or one made before the trial saw its stop
                        # request: recorded without a decision, as a resume's replay records it.
                        self.scheduler.observe(rec.number, step, ev.metrics)
                if decision is not None and decision.action in ("stop", "exploit", "pause"):
                    flush()  # the report that decided it is stored before the decision
                    stored = {"action": decision.action, "attempt": rec.attempt, "step": step}
                    if decision.action == "exploit":
                        stored["extra"] = dict(decision.extra)
                    elif decision.action == "pause":
                        self._pausing.add(ev.trial_id)
                    self._decisions[ev.trial_id] = stored
                    # An exploit is stored with PBT's own state (readiness counted from the
                    # parent's step) in one write: either alone would disagree with the other.
                    self._save_decisions(with_algorithm=decision.action == "exploit")
                    self._stop_requested.add(ev.trial_id)
                    self.backend.request_stop(ev.trial_id)
            elif ev.kind == "checkpoint":
                flush()
                self.storage.add_checkpoint(ev.trial_id, ev.attempt, int(ev.step or 0), ev.path or "", ev.checksum or "")
                if self.config.keep_last is not None:
                    self._retain(ev.trial_id)
            elif ev.kind == "done":
                flush()
                self._finish(rec, ev)
            elif ev.kind == "lost":
                flush()
                self._lost(rec, ev.error or "worker lost")
        flush()

    def _save_decisions(self, with_algorithm: bool = False) -> None:
        states = {"decisions": {str(k): v for k, v in self._decisions.items()}}
        if with_algorithm:
            states.update(self._algorithm_state())
        self.storage.set_algorithm_state(self.study.id, states)

    def _decision_of(self, rec: TrialRecord) -> dict | None:
        """The stored decision for this attempt of the trial, if any."""
        d = self._decisions.get(rec.id)
        return d if d is not None and d["attempt"] == rec.attempt else None

    def _drop_decision(self, trial_id: int) -> dict | None:
        d = self._decisions.pop(trial_id, None)
        if d is not None:
            self._save_decisions()
        return d

    def _carry_out(self, rec: TrialRecord, decision: dict, dispatch: bool) -> bool:
        """End a RUNNING attempt as the stop, pause or exploit decided for it would have, at the
        step its reports reached, with its last report's metrics: for an attempt whose worker (or
        whose controller) went away before the decision took effect. PAUSED needs a checkpoint to
        resume from, else PRUNED; an exploit restarts the member from its parent's checkpoint (sent
        to the backend with ``dispatch``, else left WAITING for the next run), else PRUNED. False
        when the attempt is no longer the live one."""
        reports = self.storage.get_reports(rec.id)
        mine = [r for r in reports if r.attempt == decision["attempt"]] or reports  # the decided attempt's
        metrics = {k: v for k, v in mine[-1].metrics.items() if v is not None} if mine else {}
        self._running.pop(rec.id, None)
        self._stop_requested.discard(rec.id)
        self._pausing.discard(rec.id)
        self._resumed_at.pop(rec.id, None)
        if decision["action"] == "exploit":
            step = max((r.step for r in mine), default=decision["step"])
            if self._exploit(rec, decision["extra"], step, dispatch=dispatch):
                return True
        if decision["action"] == "pause" and self.storage.latest_checkpoint(rec.id, artifacts.exists) is not None:
            paused = self.storage.pause_trial(rec.id, rec.attempt, metrics=metrics)
            if paused is not None:
                self._put(paused)
            return paused is not None
        done = self.storage.finish_trial(rec.id, rec.attempt, state=TrialState.PRUNED, metrics=metrics)
        if done is None:
            return False
        log.info("trial %d ends PRUNED at step %s: a %s decided for it before its attempt went away",
                 rec.number, done.last_step, decision["action"])
        self._put(done)
        self._completed(done)
        return True

    def _carry_out_pending(self, stored: dict[str, dict]) -> None:
        """Carry out the stops, pauses and exploits decided before the last controller went away:
        the interrupted attempt would otherwise be requeued and run on as it was. A decision
        applies while its trial has not run since the decided attempt: RUNNING as that attempt, or
        RUNNING or WAITING as a later one (requeued after the decision) with no report or
        checkpoint of its own (an exploit already carried out has its copied checkpoint there).
        One that cannot be carried out is logged and dropped, and its trial is requeued as it was.
        Held in _decisions meanwhile, so retention keeps the parent checkpoints of exploits."""
        self._decisions = {int(k): d for k, d in stored.items()}
        for trial_id, decision in list(self._decisions.items()):
            t = next((t for t in self._trials.values() if t.id == trial_id), None)
            if (t is not None and t.state in (TrialState.RUNNING, TrialState.WAITING)
                    and t.attempt >= decision["attempt"] and not self._ran_since(t.id, decision["attempt"])):
                try:
                    rec = self.storage.start_trial(t.id) if t.state == TrialState.WAITING else t
                    if not self._carry_out(rec, decision, dispatch=False):
                        log.warning("trial %d: the stored %s is no longer for its live attempt; dropped",
                                    t.number, decision["action"])
                except Exception:  # noqa: BLE001 - the run goes on; the trial is requeued as it was
                    log.exception("trial %d: the stored %s could not be carried out; it runs on as it was",
                                  t.number, decision["action"])
            del self._decisions[trial_id]
        if stored:
            self._save_decisions()  # now empty

    def _ran_since(self, trial_id: int, attempt: int) -> bool:
        """Whether the trial reported or checkpointed as an attempt after ``attempt``."""
        return (any(c.attempt > attempt for c in self.storage.get_checkpoints(trial_id))
                or any(r.attempt > attempt for r in self.storage.get_reports(trial_id)))

    def _finish(self, rec: TrialRecord, ev: TrialEvent) -> None:
        # The stored decision goes once the attempt has ended (a crash in between leaves it, and
        # the restart skips a decision whose trial has run since: _carry_out_pending).
        self._end_attempt(rec, ev)
        self._drop_decision(rec.id)

    def _end_attempt(self, rec: TrialRecord, ev: TrialEvent) -> None:
        decision = self._decision_of(rec)
        if (decision is not None and decision["action"] == "exploit" and ev.error is None and ev.stopped
                and self._exploit(rec, decision["extra"], ev.step if ev.step is not None else decision["step"])):
            return
        pausing = rec.id in self._pausing
        self._pausing.discard(rec.id)
        if pausing and ev.error is None and ev.stopped and self._pause(rec, ev):
            return
        metrics = dict(ev.metrics)
        values = None
        error = ev.error
        if error is None and ev.stopped and rec.id in self._stop_requested:
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
        last_step = ev.step if ev.step is not None else self._resumed_at.get(rec.id)
        self._resumed_at.pop(rec.id, None)
        done = self.storage.finish_trial(rec.id, rec.attempt, state=state, values=values, metrics=metrics,
                                         error=error, last_step=last_step, node=ev.node)
        self._running.pop(rec.id, None)
        self._stop_requested.discard(rec.id)
        if done is None:
            log.warning("trial %d attempt %d finished after it was reaped; result dropped", rec.number, rec.attempt)
            self._reload()
            return
        if state == TrialState.FAILED:
            log.warning("trial %d failed: %s", rec.number, error)
        self._put(done)
        self._completed(done)

    def _pause(self, rec: TrialRecord, ev: TrialEvent) -> bool:
        """Freeze a trial the scheduler paused. False when it has no checkpoint to resume from:
        it then ends PRUNED as a stopped trial would."""
        if self.storage.latest_checkpoint(rec.id, artifacts.exists) is None:
            log.warning("trial %d: paused without a checkpoint (the trainer saved none); it ends PRUNED", rec.number)
            return False
        last_step = ev.step if ev.step is not None else self._resumed_at.get(rec.id)
        self._resumed_at.pop(rec.id, None)
        paused = self.storage.pause_trial(rec.id, rec.attempt, metrics=dict(ev.metrics), last_step=last_step,
                                          node=ev.node)
        self._running.pop(rec.id, None)
        self._stop_requested.discard(rec.id)
        if paused is None:
            log.warning("trial %d attempt %d paused after it was reaped; ignored", rec.number, rec.attempt)
            self._reload()
        else:
            self._put(paused)
        return True

    def _completed(self, rec: TrialRecord) -> None:
        self._dry = False  # a finished trial may give the algorithm something new to propose
        self.algorithm.on_complete(self._history(), rec)
        self._save_algorithm_state()

    def _retain(self, trial_id: int) -> None:
        """Keep-last-N: delete the files of a trial's older checkpoints. Nothing a pending decision
        refers to is touched: resumes and thaws of paused trials start from a trial's newest
        recorded checkpoint, a pending PBT exploit's checkpoint of its parent is kept until the
        exploit copies it, and the newest N stay."""
        cks = sorted(self.storage.get_checkpoints(trial_id), key=lambda c: c.id)
        protected = {c.path for c in cks[-self.config.keep_last:]}
        # and the checkpoint a pending exploit will copy (the parent's at the step it was ranked on)
        for d in self._decisions.values():
            if d["action"] != "exploit":
                continue
            extra = d["extra"]
            parent = self._trials.get(int(extra["parent"]))
            if parent is not None and parent.id == trial_id:
                ck = exploit_checkpoint(cks, extra.get("parent_step"), artifacts.exists)
                if ck is not None:
                    protected.add(ck.path)
        for c in cks[:-self.config.keep_last]:
            if c.path not in protected and artifacts.exists(c.path):
                try:
                    artifacts.remove(c.path)
                except OSError as exc:
                    log.warning("could not delete old checkpoint %s: %s", c.path, exc)

    def _algorithm_state(self) -> dict[str, dict]:
        self.algorithm.state_changed = False
        state = self.algorithm.state_dict()
        return {"algorithm": state} if state else {}

    def _save_algorithm_state(self) -> None:
        state = self._algorithm_state()
        if state:
            self.storage.set_algorithm_state(self.study.id, state)

    def _exploit(self, rec: TrialRecord, extra: dict, step: int, dispatch: bool = True) -> bool:
        """Restart member ``rec``, whose attempt stopped at ``step``, from its parent's checkpoint
        at the step the decision ranked it on (the newest one if that is gone) with the explored
        params. The checkpoint is copied into the member's next attempt folder (so retention of the
        parent's files can never pull it away) and recorded as the member's own, with the exploit,
        in one storage write. Without ``dispatch`` (no backend to send it to) the restarted member
        waits for the next run. False, with nothing written, when the parent has no checkpoint
        yet, the copy's checksum differs, or ``rec`` is no longer the live attempt: the member
        then ends as it stopped. A failed copy raises."""
        parent = self._trials.get(int(extra["parent"]))
        ck = None if parent is None else exploit_checkpoint(
            self.storage.get_checkpoints(parent.id), extra.get("parent_step"), artifacts.exists)
        if ck is None:
            log.warning("trial %d: exploit of %s skipped, the parent has no checkpoint yet", rec.number, extra["parent"])
            return False
        dest = artifacts.join(self.artifacts, self.config.name, f"trial-{rec.number:05d}", f"attempt-{rec.attempt + 1}",
                              f"from-trial-{parent.number:05d}-step-{ck.step:08d}.pt")
        artifacts.copy(ck.path, dest)
        checksum = artifacts.checksum(dest)
        if checksum != ck.checksum:
            log.warning("trial %d: parent checkpoint %s is corrupt; exploit skipped", rec.number, ck.path)
            return False
        new = self.storage.exploit_trial(rec.id, rec.attempt, params=dict(extra["params"]), step=step,
                                         parent_number=parent.number, checkpoint=(ck.step, dest, checksum),
                                         wait=not dispatch)
        if new is None:
            return False
        self._stop_requested.discard(rec.id)
        self._put(new)
        if self.config.keep_last is not None:
            self._retain(rec.id)
        if dispatch:
            self._dispatch(new)
        return True

    def _lost(self, rec: TrialRecord, reason: str) -> None:
        decision = self._decision_of(rec)
        if decision is not None and self._carry_out(rec, decision, dispatch=True):
            self._drop_decision(rec.id)
            return  # it was to stop, pause or exploit here anyway: no retry
        self._drop_decision(rec.id)
        self._running.pop(rec.id, None)
        self._stop_requested.discard(rec.id)
        self._pausing.discard(rec.id)
        for r in self.storage.requeue_running(self.study.id, reason=reason, trial_ids=[rec.id],
                                              max_retries=self.config.max_failures):
            self._put(r)
            if r.state == TrialState.WAITING:
                log.warning("trial %d lost (%s); retrying as attempt %d", r.number, reason, r.attempt)
                self._waiting.append(r.number)
            else:
                log.warning("trial %d lost (%s); giving up", r.number, reason)
                self._completed(r)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        cfg = self.config
        self._reload()
        saved_state = self.storage.get_algorithm_state(self.study.id)
        saved = saved_state.get("algorithm")
        if saved:
            self.algorithm.load_state_dict(saved)
        self._carry_out_pending(saved_state.get("decisions") or {})
        reaped = self.storage.requeue_running(
            self.study.id, reason="attempt interrupted (controller stopped while it ran)")
        self._reload()
        self._waiting.extend(t.number for t in self._trials.values() if t.state == TrialState.WAITING)
        for t in list(self._trials.values()):
            self._put(t)  # recomputes the best trial
        if self.scheduler is not None:
            # A scheduler decides from every report so far: replay the stored ones first.
            for t in self._trials.values():
                for r in sorted(self.storage.get_reports(t.id), key=lambda r: r.id):  # in the order they came
                    self.scheduler.observe(t.number, r.step, {k: v for k, v in r.metrics.items() if v is not None})
        self.storage.set_study_state(self.study.id, "RUNNING")
        interrupted = False
        last_beat = time.monotonic()
        try:
            while True:
                self._fill()
                if not self._running:
                    break  # budget covered, or the algorithm has nothing left to propose
                self._handle(self.backend.poll(timeout=min(1.0, self.heartbeat_s)))
                now = time.monotonic()
                if now - last_beat >= self.heartbeat_s:
                    self.storage.heartbeat(list(self._running))
                    last_beat = now
                self._progress()
            # Nothing runs and nothing more will start: paused trials not worth thawing end here.
            for r in self.storage.end_paused(self.study.id):
                self._put(r)
                self._completed(r)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self.backend.shutdown()
            for trial_id, rec in list(self._running.items()):
                decision = self._decision_of(rec)
                if decision is None:
                    continue
                # Stopped, paused or exploiting by a decision: end (or restart) it so, rather than
                # requeue it to run on as it was. If that fails it is requeued below, and the stored
                # decision is carried out by the next run.
                try:
                    done = self._carry_out(rec, decision, dispatch=False)
                except Exception:  # noqa: BLE001 - the other trials must still be requeued
                    log.exception("trial %d: the %s decided for it could not be carried out", rec.number,
                                  decision["action"])
                    done = False
                if done:
                    self._drop_decision(trial_id)
                else:
                    self._running[trial_id] = rec
            if self._running:
                self.storage.requeue_running(self.study.id, reason="attempt interrupted (run stopped)",
                                             trial_ids=list(self._running))
                self._running.clear()
        finished, failed = self._counts()
        self.storage.set_study_state(self.study.id, "INTERRUPTED" if interrupted else "COMPLETE")
        self._progress(final=True)
        return RunSummary(
            study=cfg.name, metrics=cfg.metrics,
            complete=sum(1 for t in self._trials.values() if t.state == TrialState.COMPLETE),
            pruned=sum(1 for t in self._trials.values() if t.state == TrialState.PRUNED),
            failed=failed, interrupted=interrupted, best=self._best,
            elapsed_s=time.monotonic() - self._start, requeued_at_start=len(reaped),
        )
