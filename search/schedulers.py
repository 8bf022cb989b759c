"""Early-stopping schedulers: a decision on every report, composable with any proposal algorithm.

``scheduler: {name: asha | hyperband | median | none, ...}`` in the study file. A scheduler sees
each report (trial number, step, metrics) and answers ``continue`` or ``stop``; a stopped trial
ends PRUNED at the step it reached. The resource is whatever step the trial reports (epochs for
``builtin:classifier``, optimiser steps for ``builtin:lm``). A scheduler holds no storage handle:
on resume the controller replays the stored reports through ``observe`` before any new decision.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from search.algorithms.base import CONTINUE, Decision

__all__ = ["Scheduler", "ASHA", "Hyperband", "MedianStopping", "SCHEDULERS", "make_scheduler"]

STOP = Decision("stop")


class Scheduler:
    """Subclasses implement ``_decide``. ``metric``/``mode`` name the value compared (default:
    the study's first objective)."""

    name = ""

    def __init__(self, metric: str, mode: str, seed: int = 0) -> None:
        self.metric = metric
        self.sign = -1.0 if mode == "maximize" else 1.0  # values are compared as losses
        self.seed = seed

    def _loss(self, metrics: Mapping[str, float]) -> float | None:
        v = metrics.get(self.metric)
        if v is None or not math.isfinite(v):
            return None
        return self.sign * float(v)

    def observe(self, number: int, step: int, metrics: Mapping[str, float]) -> None:
        """Record a report without deciding (replaying history after a restart)."""
        loss = self._loss(metrics)
        if loss is not None:
            self._record(number, step, loss)

    def on_report(self, number: int, step: int, metrics: Mapping[str, float]) -> Decision:
        loss = self._loss(metrics)
        if loss is None:
            return CONTINUE
        return self._decide(number, step, loss)

    def _record(self, number: int, step: int, loss: float) -> None:
        raise NotImplementedError

    def _decide(self, number: int, step: int, loss: float) -> Decision:
        raise NotImplementedError


def _check_int(options: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    v = options.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < minimum:
        raise ValueError(f"scheduler option {key!r} must be an integer >= {minimum}, got {v!r}")
    return int(v)


class _Rungs:
    """Successive-halving rungs at r_min * eta^k (capped at max_resource). For each rung, the loss
    each trial had when it first reached it."""

    def __init__(self, r_min: int, eta: int, r_max: int | None) -> None:
        self.r_min, self.eta, self.r_max = r_min, eta, r_max
        self.recorded: dict[int, dict[int, float]] = {}  # rung index -> {trial: loss}

    def rung_of(self, step: int) -> int | None:
        """Highest rung index whose level ``step`` has reached, or None below the first rung."""
        if step < self.r_min:
            return None
        k = int(math.floor(math.log(step / self.r_min, self.eta) + 1e-9))
        while self.r_max is not None and k > 0 and self.r_min * self.eta**k > self.r_max:
            k -= 1
        return k

    def level(self, k: int) -> int:
        return self.r_min * self.eta**k

    def record(self, number: int, step: int, loss: float) -> list[int]:
        """Record ``loss`` at every rung ``step`` newly reached; return those rung indices."""
        top = self.rung_of(step)
        new = []
        if top is None:
            return new
        for k in range(top + 1):
            rung = self.recorded.setdefault(k, {})
            if number not in rung:
                rung[number] = loss
                new.append(k)
        return new

    def decide(self, number: int, step: int, loss: float) -> Decision:
        """Record the report; stop the trial if, at a rung it has just reached, it is not in the
        top 1/eta. At full resource it always finishes."""
        new = self.record(number, step, loss)
        if self.r_max is not None and step >= self.r_max:
            return CONTINUE
        for k in new:
            if not self.promotable(number, k):
                return Decision("stop", f"not in the top 1/{self.eta} at rung {self.level(k)}")
        return CONTINUE

    def promotable(self, number: int, k: int) -> bool:
        """In the top 1/eta of the losses recorded at rung k (itself included): ASHA's rule."""
        losses = sorted(self.recorded[k].values())
        keep = max(1, len(losses) // self.eta)
        return self.recorded[k][number] <= losses[keep - 1]


class ASHA(Scheduler):
    """Asynchronous successive halving (Li et al. 2020), stopping form: when a trial reaches a rung
    it continues only if it ranks in the top 1/eta of the trials recorded at that rung so far."""

    name = "asha"

    def __init__(self, metric: str, mode: str, seed: int = 0, **options: Any) -> None:
        super().__init__(metric, mode, seed)
        unknown = set(options) - {"min_resource", "max_resource", "reduction_factor", "grace_period"}
        if unknown:
            raise ValueError(f"scheduler 'asha' takes no option {sorted(unknown)[0]!r}; it takes "
                             "min_resource, max_resource, reduction_factor, grace_period")
        grace = _check_int(options, "grace_period", 1, 1)
        r_min = _check_int(options, "min_resource", grace, 1)
        eta = _check_int(options, "reduction_factor", 3, 2)
        r_max = options.get("max_resource")
        if r_max is not None:
            r_max = _check_int(options, "max_resource", 0, r_min)
        self.rungs = _Rungs(max(r_min, grace), eta, r_max)

    def _record(self, number: int, step: int, loss: float) -> None:
        self.rungs.record(number, step, loss)

    def _decide(self, number: int, step: int, loss: float) -> Decision:
        return self.rungs.decide(number, step, loss)


class Hyperband(Scheduler):
    """Asynchronous Hyperband: trials are spread over brackets s = 0..s_max (by trial number);
    bracket s runs ASHA with minimum resource r_min * eta^s, hedging against misleading early
    results (Li et al. 2017/2020)."""

    name = "hyperband"

    def __init__(self, metric: str, mode: str, seed: int = 0, **options: Any) -> None:
        super().__init__(metric, mode, seed)
        unknown = set(options) - {"min_resource", "max_resource", "reduction_factor", "brackets"}
        if unknown:
            raise ValueError(f"scheduler 'hyperband' takes no option {sorted(unknown)[0]!r}; it takes "
                             "min_resource, max_resource, reduction_factor, brackets")
        r_min = _check_int(options, "min_resource", 1, 1)
        eta = _check_int(options, "reduction_factor", 3, 2)
        r_max = options.get("max_resource")
        if r_max is None:
            raise ValueError("scheduler 'hyperband' needs max_resource (the step a full trial reaches)")
        r_max = _check_int(options, "max_resource", 0, r_min)
        s_max = int(math.floor(math.log(r_max / r_min, eta) + 1e-9))
        n_brackets = _check_int(options, "brackets", s_max + 1, 1)
        self.brackets = [_Rungs(r_min * eta**s, eta, r_max) for s in range(min(n_brackets, s_max + 1))]

    def _bracket(self, number: int) -> _Rungs:
        return self.brackets[number % len(self.brackets)]

    def _record(self, number: int, step: int, loss: float) -> None:
        self._bracket(number).record(number, step, loss)

    def _decide(self, number: int, step: int, loss: float) -> Decision:
        return self._bracket(number).decide(number, step, loss)


class MedianStopping(Scheduler):
    """Median stopping rule (Golovin et al. 2017, Vizier): after ``grace_period`` steps, stop a
    trial whose best loss so far is worse than the median, over the other trials that reached the
    same step, of their best loss up to that step (needs ``min_samples`` such trials)."""

    name = "median"

    def __init__(self, metric: str, mode: str, seed: int = 0, **options: Any) -> None:
        super().__init__(metric, mode, seed)
        unknown = set(options) - {"grace_period", "min_samples"}
        if unknown:
            raise ValueError(f"scheduler 'median' takes no option {sorted(unknown)[0]!r}; it takes "
                             "grace_period, min_samples")
        self.grace = _check_int(options, "grace_period", 1, 0)
        self.min_samples = _check_int(options, "min_samples", 3, 1)
        self.curves: dict[int, list[tuple[int, float]]] = {}  # trial -> [(step, best so far)]

    def _record(self, number: int, step: int, loss: float) -> None:
        curve = self.curves.setdefault(number, [])
        best = min(loss, curve[-1][1]) if curve else loss
        curve.append((step, best))

    @staticmethod
    def _best_at(curve: list[tuple[int, float]], step: int) -> float | None:
        best = None
        for s, b in curve:
            if s > step:
                break
            best = b
        return best

    def _decide(self, number: int, step: int, loss: float) -> Decision:
        self._record(number, step, loss)
        if step < self.grace:
            return CONTINUE
        others = [self._best_at(c, step) for n, c in self.curves.items()
                  if n != number and c and c[-1][0] >= step]
        others = [o for o in others if o is not None]
        if len(others) < self.min_samples:
            return CONTINUE
        others.sort()
        mid = len(others) // 2
        median = others[mid] if len(others) % 2 else 0.5 * (others[mid - 1] + others[mid])
        mine = self.curves[number][-1][1]
        if mine > median:
            return Decision("stop", f"best {mine:.4g} worse than the median {median:.4g} at step {step}")
        return CONTINUE


SCHEDULERS: dict[str, type[Scheduler]] = {"asha": ASHA, "hyperband": Hyperband, "median": MedianStopping}


def make_scheduler(spec: Mapping[str, Any] | None, metrics: tuple[str, ...], directions: tuple[str, ...],
                   seed: int = 0) -> Scheduler | None:
    """``spec`` is the study file's ``scheduler`` mapping (``name`` plus options); None or
    ``{name: none}`` means no scheduler."""
    if not spec or spec.get("name", "none") == "none":
        return None
    options = dict(spec)
    name = options.pop("name", None)
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of none, {', '.join(sorted(SCHEDULERS))}")
    metric = options.pop("metric", metrics[0])
    mode = options.pop("mode", directions[metrics.index(metric)] if metric in metrics else "minimize")
    if mode not in ("minimize", "maximize"):
        raise ValueError(f"scheduler mode must be minimize or maximize, got {mode!r}")
    return SCHEDULERS[name](metric, mode, seed, **options)
