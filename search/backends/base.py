"""The backend contract. The controller submits immutable specs and polls for events.

Events are ``trials.TrialEvent``s: ``report``, ``checkpoint``, ``done``, plus ``lost`` when the
worker running an attempt died (node loss, killed actor) and the attempt has no ``done``.
"""
from __future__ import annotations

import queue
from abc import ABC, abstractmethod

from trials.api import TrialEvent, TrialSpec

__all__ = ["Backend", "BackendError", "drain"]


class BackendError(RuntimeError):
    pass


class Backend(ABC):
    @abstractmethod
    def start(self, *, parallel: int, cpus: float, gpus: float, workers: int = 1) -> None:
        """Get ready to run ``parallel`` trials at once, each on ``workers`` processes with these
        resources each (only Ray runs a trial on more than one)."""

    @abstractmethod
    def submit(self, spec: TrialSpec) -> None:
        """Queue one attempt; never blocks on the trial itself."""

    @abstractmethod
    def request_stop(self, trial_id: int) -> None:
        """Ask a running trial to stop at its next report (it ends with ``stopped=True``)."""

    @abstractmethod
    def abandon(self, trial_id: int, attempt: int) -> None:
        """End ``attempt`` of the trial now, whatever it is doing (a time limit ran out): its worker
        is killed and replaced where the backend can (Ray), or left behind (a thread cannot be
        killed). No event of that attempt is delivered afterwards, and its slot is free."""

    @abstractmethod
    def poll(self, timeout: float) -> list[TrialEvent]:
        """Events that arrived, waiting up to ``timeout`` seconds for the first one."""

    @abstractmethod
    def shutdown(self) -> None:
        """Stop all workers; attempts still running are abandoned (the controller requeues them)."""


def drain(events: "queue.SimpleQueue[TrialEvent]", timeout: float) -> list[TrialEvent]:
    """Every event waiting in ``events``, blocking up to ``timeout`` seconds for the first."""
    out: list[TrialEvent] = []
    try:
        out.append(events.get(timeout=timeout))
    except queue.Empty:
        return out
    while True:
        try:
            out.append(events.get_nowait())
        except queue.Empty:
            return out
