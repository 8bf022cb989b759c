"""Runs trials on threads of this process: the same controller path as Ray, no cluster needed."""
from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor

from search.backends.base import Backend, drain
from trials.api import TrialEvent, TrialSpec
from trials.runner import run_trial

__all__ = ["InProcessBackend"]


class InProcessBackend(Backend):
    def __init__(self) -> None:
        self._events: queue.SimpleQueue[TrialEvent] = queue.SimpleQueue()
        # (trial id, attempt) asked to stop: a late request cannot stop a later attempt of the trial
        self._stop: set[tuple[int, int]] = set()
        self._attempt: dict[int, int] = {}  # trial id -> its attempt submitted last
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = threading.Event()

    def start(self, *, parallel: int, cpus: float, gpus: float) -> None:
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="search-trial")

    def _emit(self, ev: TrialEvent) -> None:
        if not self._closed.is_set():
            self._events.put(ev)

    def _run(self, spec: TrialSpec) -> None:
        try:
            run_trial(spec, self._emit, lambda: (spec.trial_id, spec.attempt) in self._stop or self._closed.is_set())
        except BaseException as exc:  # noqa: BLE001 - reported to the controller as a lost attempt
            self._emit(TrialEvent("lost", spec.trial_id, spec.attempt, error=f"{type(exc).__name__}: {exc}"))
        finally:
            with self._lock:
                self._stop.discard((spec.trial_id, spec.attempt))

    def submit(self, spec: TrialSpec) -> None:
        assert self._pool is not None, "start() first"
        with self._lock:
            self._attempt[spec.trial_id] = spec.attempt
        self._pool.submit(self._run, spec)

    def request_stop(self, trial_id: int) -> None:
        with self._lock:
            if trial_id in self._attempt:
                self._stop.add((trial_id, self._attempt[trial_id]))

    def poll(self, timeout: float) -> list[TrialEvent]:
        return drain(self._events, timeout)

    def shutdown(self) -> None:
        self._closed.set()
        if self._pool is not None:
            # Running threads cannot be killed; they see stop requested at their next report.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
