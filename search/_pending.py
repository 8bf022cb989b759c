"""Carrying out decisions: the stops, pauses and PBT exploits decided for running attempts.

A decision other than ``Continue`` is kept, in memory and in storage's pending-decisions table,
from the report that decided it until the attempt it was made for has ended. It is carried out
when that attempt ends as asked, and also when it never does: its worker is lost, the run is
stopped, or the controller dies (the next run carries out what storage still holds).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from search._book import TrialBook, TrialWriter
from search.decisions import Exploit, Pause, Pending
from storage.records import CheckpointRecord, TrialRecord, TrialState
from trials import artifacts

if TYPE_CHECKING:
    from storage import Storage

__all__ = ["PendingDecisions", "exploit_checkpoint"]

log = logging.getLogger("search.controller")


def exploit_checkpoint(checkpoints: Iterable[CheckpointRecord], step: int | None, exists) -> CheckpointRecord | None:
    """The checkpoint an exploit copies: the parent's most recent one at ``step`` (the step PBT
    ranked it on; the parent may have trained on since), else its most recent one, among those
    whose file still exists."""
    recent = sorted((c for c in checkpoints if exists(c.path)), key=lambda c: c.id, reverse=True)
    if step is not None:
        for c in recent:
            if c.step == int(step):
                return c
    return recent[0] if recent else None


class PendingDecisions:
    """The pending decision of each trial (by trial id), and how each kind is carried out.

    ``dispatch`` sends a restarted member to the backend; ``retain`` applies checkpoint retention
    to a trial (after an exploit copied a checkpoint into it)."""

    def __init__(self, storage: Storage, study_id: int, book: TrialBook, writer: TrialWriter, *,
                 artifacts_root: str, study_name: str, dispatch: Callable[[TrialRecord], None],
                 retain: Callable[[int], None]) -> None:
        self.storage = storage
        self.study_id = study_id
        self.book = book
        self.writer = writer
        self.artifacts_root = artifacts_root
        self.study_name = study_name
        self.dispatch = dispatch
        self.retain = retain
        self.pending: dict[int, Pending] = {}

    # -- keeping ---------------------------------------------------------------------------------

    def of(self, rec: TrialRecord) -> Pending | None:
        """The decision pending for this attempt of the trial, if any: a trial that has one was
        asked to stop and gets no new decision."""
        p = self.pending.get(rec.id)
        return p if p is not None and p.attempt == rec.attempt else None

    def keep(self, pending: Pending, states: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Hold ``pending`` until its attempt ends; stored (with the algorithm's ``states``, in
        the same write) before the trial is asked to stop."""
        self.pending[pending.trial_id] = pending
        self.storage.put_decision(self.study_id, pending.to_record(), states=states)

    def drop(self, trial_id: int) -> None:
        if self.pending.pop(trial_id, None) is not None:
            self.storage.drop_decision(trial_id)

    def protected(self, trial_id: int, checkpoints: list[CheckpointRecord]) -> set[str]:
        """Paths among ``checkpoints`` (of ``trial_id``) that a pending exploit will copy."""
        out = set()
        for p in self.pending.values():
            d = p.decision
            if isinstance(d, Exploit):
                parent = self.book.trials.get(int(d.parent))
                if parent is not None and parent.id == trial_id:
                    ck = exploit_checkpoint(checkpoints, d.parent_step, artifacts.exists)
                    if ck is not None:
                        out.add(ck.path)
        return out

    # -- carrying out ----------------------------------------------------------------------------

    def exploit(self, rec: TrialRecord, decision: Exploit, step: int, dispatch: bool = True) -> bool:
        """Restart member ``rec``, whose attempt stopped at ``step``, from its parent's checkpoint
        at the step the decision ranked it on (the newest one if that is gone) with the explored
        params. The checkpoint is copied into the member's next attempt folder (so retention of the
        parent's files can never pull it away) and recorded as the member's own, with the exploit,
        in one storage write. Without ``dispatch`` (no backend to send it to) the restarted member
        waits for the next run. False, with nothing written, when the parent has no checkpoint
        yet, the copy's checksum differs, or ``rec`` is no longer the live attempt: the member
        then ends as it stopped. A failed copy raises."""
        parent = self.book.trials.get(int(decision.parent))
        ck = None if parent is None else exploit_checkpoint(
            self.storage.get_checkpoints(parent.id), decision.parent_step, artifacts.exists)
        if ck is None:
            log.warning("trial %d: exploit of %s skipped, the parent has no checkpoint yet", rec.number, decision.parent)
            return False
        dest = artifacts.join(self.artifacts_root, self.study_name, f"trial-{rec.number:05d}",
                              f"attempt-{rec.attempt + 1}", f"from-trial-{parent.number:05d}-step-{ck.step:08d}.pt")
        artifacts.copy(ck.path, dest)
        checksum = artifacts.checksum(dest)
        if checksum != ck.checksum:
            log.warning("trial %d: parent checkpoint %s is corrupt; exploit skipped", rec.number, ck.path)
            return False
        new = self.writer.exploit(rec, params=dict(decision.params), step=step, parent_number=parent.number,
                                  checkpoint=(ck.step, dest, checksum), wait=not dispatch)
        if new is None:
            return False
        self.retain(rec.id)
        if dispatch:
            self.dispatch(new)
        return True

    def carry_out(self, rec: TrialRecord, pending: Pending, dispatch: bool) -> bool:
        """End a RUNNING attempt as the stop, pause or exploit decided for it would have, at the
        step its reports reached, with its last report's metrics: for an attempt whose worker (or
        whose controller) went away before the decision took effect. PAUSED needs a checkpoint to
        resume from, else PRUNED; an exploit restarts the member from its parent's checkpoint (sent
        to the backend with ``dispatch``, else left WAITING for the next run), else PRUNED. False
        when the attempt is no longer the live one."""
        self.writer.flush()
        reports = self.storage.get_reports(rec.id)
        mine = [r for r in reports if r.attempt == pending.attempt] or reports  # the decided attempt's
        metrics = {k: v for k, v in mine[-1].metrics.items() if v is not None} if mine else {}
        self.book.release(rec.id)
        decision = pending.decision
        if isinstance(decision, Exploit):
            step = max((r.step for r in mine), default=pending.step)
            if self.exploit(rec, decision, step, dispatch=dispatch):
                return True
        if isinstance(decision, Pause) and self.storage.latest_checkpoint(rec.id, artifacts.exists) is not None:
            return self.writer.pause(rec, metrics=metrics) is not None
        done = self.writer.finish(rec, state=TrialState.PRUNED, metrics=metrics)
        if done is None:
            return False
        log.info("trial %d ends PRUNED at step %s: a %s decided for it before its attempt went away",
                 rec.number, done.last_step, decision.action)
        return True

    def carry_out_stored(self) -> None:
        """Carry out the stops, pauses and exploits decided before the last controller went away:
        the interrupted attempt would otherwise be requeued and run on as it was. A decision
        applies while its trial has not run since the decided attempt: RUNNING as that attempt, or
        RUNNING or WAITING as a later one (requeued after the decision) with no report or
        checkpoint of its own (an exploit already carried out has its copied checkpoint there).
        One that cannot be carried out is logged and dropped, and its trial is requeued as it was.
        Held in ``pending`` meanwhile, so retention keeps the parent checkpoints of exploits."""
        self.pending = {trial_id: Pending.from_record(r) for trial_id, r in self.storage.get_decisions(self.study_id).items()}
        for trial_id, p in list(self.pending.items()):
            t = self.book.by_id(trial_id)
            if (t is not None and t.state in (TrialState.RUNNING, TrialState.WAITING)
                    and t.attempt >= p.attempt and not self._ran_since(t.id, p.attempt)):
                try:
                    rec = self.writer.start(t.id) if t.state == TrialState.WAITING else t
                    if not self.carry_out(rec, p, dispatch=False):
                        log.warning("trial %d: the stored %s is no longer for its live attempt; dropped",
                                    t.number, p.decision.action)
                except Exception:  # noqa: BLE001 - the run goes on; the trial is requeued as it was
                    log.exception("trial %d: the stored %s could not be carried out; it runs on as it was",
                                  t.number, p.decision.action)
            self.drop(trial_id)

    def _ran_since(self, trial_id: int, attempt: int) -> bool:
        """Whether the trial reported or checkpointed as an attempt after ``attempt``."""
        return (any(c.attempt > attempt for c in self.storage.get_checkpoints(trial_id))
                or any(r.attempt > attempt for r in self.storage.get_reports(trial_id)))
