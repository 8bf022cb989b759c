"""Runs trials on threads of this process: the same controller path as Ray, no cluster needed.

One daemon thread per attempt (the controller keeps at most ``parallel`` in flight): an attempt that
hangs and is abandoned keeps its thread, never a slot, and cannot hold the process open at exit.
"""
from __future__ import annotations

import os
import queue
import threading

from search.backends.base import Backend, BackendError, drain
from trials.api import TrialEvent, TrialSpec
from trials.runner import run_trial

__all__ = ["InProcessBackend"]


def _cuda_devices() -> int:
    """CUDA devices torch sees; 0 without torch or CUDA. Asked only for a study that wants GPUs,
    since importing torch takes a second."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class InProcessBackend(Backend):
    def __init__(self) -> None:
        self._events: queue.SimpleQueue[TrialEvent] = queue.SimpleQueue()
        # (trial id, attempt) asked to stop: a late request cannot stop a later attempt of the trial
        self._stop: set[tuple[int, int]] = set()
        self._abandoned: set[tuple[int, int]] = set()  # attempts whose events are no longer wanted
        self._attempt: dict[int, int] = {}  # trial id -> its attempt submitted last
        self._lock = threading.Lock()
        self._started = False
        self._closed = threading.Event()

    def start(self, *, parallel: int, cpus: float, gpus: float, workers: int = 1) -> None:
        if workers > 1:
            raise BackendError(f"resources.workers={workers}: a trial on several workers runs on Ray Train; "
                               "use the ray backend")
        cores = os.cpu_count() or 1
        if cpus > cores:
            raise BackendError(f"resources.cpus={cpus:g} but this machine has {cores} CPUs (in-process backend); "
                               f"lower resources.cpus to at most {cores}")
        if gpus > 0:
            have = _cuda_devices()
            if gpus > have:
                raise BackendError(f"resources.gpus={gpus:g} but this machine has {have} CUDA GPUs (in-process "
                                   "backend); " + ("set resources.gpus: 0" if have == 0 else f"lower it to at most {have}"))
        self._started = True

    def _emit(self, ev: TrialEvent) -> None:
        if not self._closed.is_set() and (ev.trial_id, ev.attempt) not in self._abandoned:
            self._events.put(ev)

    def _run(self, spec: TrialSpec) -> None:
        key = (spec.trial_id, spec.attempt)
        try:
            run_trial(spec, self._emit, lambda: key in self._stop or key in self._abandoned or self._closed.is_set())
        except BaseException as exc:  # noqa: BLE001 - reported to the controller as a lost attempt
            self._emit(TrialEvent("lost", spec.trial_id, spec.attempt, error=f"{type(exc).__name__}: {exc}"))
        finally:
            with self._lock:
                self._stop.discard(key)
                self._abandoned.discard(key)

    def submit(self, spec: TrialSpec) -> None:
        assert self._started, "start() first"
        with self._lock:
            self._attempt[spec.trial_id] = spec.attempt
        threading.Thread(target=self._run, args=(spec,), name=f"search-trial-{spec.number}", daemon=True).start()

    def abandon(self, trial_id: int, attempt: int) -> None:
        with self._lock:
            self._abandoned.add((trial_id, attempt))

    def request_stop(self, trial_id: int) -> None:
        with self._lock:
            if trial_id in self._attempt:
                self._stop.add((trial_id, self._attempt[trial_id]))

    def poll(self, timeout: float) -> list[TrialEvent]:
        return drain(self._events, timeout)

    def shutdown(self) -> None:
        # Running threads cannot be killed; they see stop requested at their next report, and
        # being daemons they never hold the process open.
        self._closed.set()
