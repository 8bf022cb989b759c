"""What user code calls inside a trial, without a reporter argument: ``search.report`` and friends.

The service sets the running trial's ``Reporter`` in a context variable around the objective call
(each trial runs in its own thread or process, so each sees its own), and these functions use it.
An existing training loop needs two lines: ``import search`` and ``search.report(step, loss=...)``.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping

if TYPE_CHECKING:
    from trials.api import Reporter

__all__ = ["report", "should_stop", "save_checkpoint", "load_checkpoint", "get_trial", "TrialInfo",
           "running", "current"]

_current: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("search_trial", default=None)


@dataclass(frozen=True)
class TrialInfo:
    """The trial this code runs as: its study, number, attempt, configuration and seed."""

    study: str
    number: int
    attempt: int
    trial_id: int
    params: Mapping[str, Any]
    seed: int
    resuming: bool  # a checkpoint to continue from exists (a retry, a thaw, a PBT exploit)
    rank: int = 0  # this process's rank among the trial's workers
    world_size: int = 1  # the trial's workers (resources.workers)


@contextlib.contextmanager
def running(reporter: Reporter) -> Iterator[None]:
    """Make ``reporter`` the current trial's for the code run inside."""
    token = _current.set(reporter)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> Reporter:
    r = _current.get()
    if r is None:
        raise RuntimeError("no trial is running here: search.report() and friends work inside an objective "
                           "run by the service (search run, study.optimize); with ask/tell, call trial.report()")
    return r


def report(step: int, **metrics: float) -> bool:
    """Record ``metrics`` at ``step``; True once the trial is asked to stop (return then)."""
    return current().report(step, **metrics)


def should_stop() -> bool:
    """Whether a scheduler or algorithm has asked this trial to stop."""
    return current().should_stop


def save_checkpoint(state: Mapping[str, Any], step: int) -> str:
    """Save ``state`` (a dict ``torch.save`` can write) as the checkpoint at ``step``."""
    return current().save_checkpoint(state, step)


def load_checkpoint() -> dict[str, Any] | None:
    """The state to resume from (this trial's newest checkpoint, or a PBT parent's), or None."""
    return current().load_checkpoint()


def get_trial() -> TrialInfo:
    spec = current().spec
    return TrialInfo(study=spec.study, number=spec.number, attempt=spec.attempt, trial_id=spec.trial_id,
                     params=dict(spec.config), seed=spec.seed, resuming=spec.resume_from is not None,
                     rank=spec.rank, world_size=spec.workers)
