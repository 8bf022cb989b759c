"""A deterministic backend on a virtual clock: the real controller, algorithms and schedulers,
with trials interleaved in a reproducible order, so scheduling is tested in seconds.

Each trial runs in its own thread but only one thread ever runs at a time: a new trial waits to be
started, and every event a trial emits blocks it until the next ``poll``. A ``poll`` releases the
trial whose event was delivered last (so a stop requested in between is seen at its very next
report) and waits until it is blocked again, then starts new trials one after the other, each up
to its first event, then delivers the pending event with the smallest virtual time. Trials that
seed and draw from process-wide generators therefore never interleave. A report advances that
trial's clock by ``config["step_time"]`` (default 1.0), so faster configurations can overtake.
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field

from search.backends.base import Backend
from trials.api import TrialEvent, TrialSpec
from trials.runner import run_trial

__all__ = ["SimulatedBackend"]


@dataclass
class _Trial:
    spec: TrialSpec
    clock: float
    step_time: float
    pending: TrialEvent | None = None
    go: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    abandoned: bool = False


class SimulatedBackend(Backend):
    def __init__(self) -> None:
        self._trials: dict[int, _Trial] = {}
        self._stop: set[int] = set()
        self._cond = threading.Condition()
        self._released: _Trial | None = None
        self._closed = False
        self.now = 0.0  # virtual time of the last delivered event

    def start(self, *, parallel: int, cpus: float, gpus: float, workers: int = 1) -> None:
        pass

    def submit(self, spec: TrialSpec) -> None:
        spec = dataclasses.replace(spec, sync_checkpoints=True)
        tr = _Trial(spec, clock=self.now, step_time=float(spec.config.get("step_time", 1.0)))
        with self._cond:
            self._trials[spec.trial_id] = tr
        threading.Thread(target=self._run, args=(tr,), name=f"sim-trial-{spec.number}", daemon=True).start()

    def _emit(self, tr: _Trial, ev: TrialEvent) -> None:
        with self._cond:
            if self._closed or tr.abandoned:
                return
            tr.pending = ev
            tr.go.clear()
            self._cond.notify_all()
        if ev.kind != "done":
            tr.go.wait()

    def _run(self, tr: _Trial) -> None:
        spec = tr.spec
        tr.go.wait()
        try:
            run_trial(spec, lambda ev: self._emit(tr, ev), lambda: spec.trial_id in self._stop or self._closed)
        except BaseException as exc:  # noqa: BLE001 - a lost attempt, as on a real backend
            self._emit(tr, TrialEvent("lost", spec.trial_id, spec.attempt, error=f"{type(exc).__name__}: {exc}"))

    def request_stop(self, trial_id: int) -> None:
        with self._cond:
            self._stop.add(trial_id)

    def abandon(self, trial_id: int, attempt: int) -> None:
        with self._cond:
            tr = self._trials.get(trial_id)
            if tr is not None and tr.spec.attempt == attempt:
                del self._trials[trial_id]
                self._stop.discard(trial_id)
                tr.go.set()  # its thread runs on unobserved, emitting into the void
                tr.abandoned = True

    def _wait_blocked(self, trials, timeout: float) -> None:
        if not self._cond.wait_for(lambda: all(t.pending is not None for t in trials), timeout=max(timeout, 60.0)):
            raise RuntimeError("simulated backend: a trial neither reported nor finished within 60 s")

    def poll(self, timeout: float) -> list[TrialEvent]:
        with self._cond:
            if self._released is not None:
                self._released.go.set()
                self._released = None
            self._wait_blocked([t for t in self._trials.values() if t.started], timeout)
            for tr in sorted((t for t in self._trials.values() if not t.started), key=lambda t: t.spec.number):
                tr.started = True
                tr.go.set()
                self._wait_blocked([tr], timeout)
            if not self._trials:
                return []
            tr = min(self._trials.values(), key=lambda t: (t.clock, t.spec.number))
            ev, tr.pending = tr.pending, None
            self.now = max(self.now, tr.clock)
            if ev.kind == "report":
                tr.clock += tr.step_time
            if ev.kind in ("done", "lost"):
                del self._trials[ev.trial_id]
                self._stop.discard(ev.trial_id)
            else:
                self._released = tr
            return [ev]

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            for tr in self._trials.values():
                tr.go.set()
            self._trials.clear()
