"""Early-stopping schedulers: a decision on every report, composable with any proposal algorithm.

``scheduler: {name: asha | hyperband | median | freeze-thaw | none, ...}`` in the study file. A
scheduler sees each report (trial number, step, metrics) and answers ``continue``, ``stop`` or
``pause``; a stopped trial ends PRUNED at the step it reached. A paused trial keeps its checkpoint
and waits: when a slot frees, the controller asks ``thaw`` which paused trial (if any) to resume
from its checkpoint before it proposes a new configuration; paused trials never thawed end PRUNED
at the step they reached when the study ends. The resource is whatever step the trial reports (epochs for
``builtin:classifier``, optimiser steps for ``builtin:lm``). A scheduler holds no storage handle:
on resume the controller replays the stored reports through ``observe`` before any new decision.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from search.decisions import CONTINUE, Decision, Pause, Stop

__all__ = ["Scheduler", "ASHA", "Hyperband", "MedianStopping", "FreezeThaw", "SCHEDULERS", "make_scheduler"]


class Scheduler:
    """Subclasses implement ``_decide``. ``metric``/``mode`` name the value compared (default:
    the study's first objective)."""

    name = ""
    pauses = False  # whether it ever answers "pause" (the trainer must then checkpoint at reports)

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
        """Record a report without deciding: one the trial made before it saw its stop request,
        one the algorithm decided on, or history replayed after a restart (in the order the
        reports came, so a resumed scheduler holds what the live one held)."""
        loss = self._loss(metrics)
        if loss is not None:
            self._record(number, step, loss)

    def on_report(self, number: int, step: int, metrics: Mapping[str, float]) -> Decision:
        loss = self._loss(metrics)
        if loss is None:
            return CONTINUE
        return self._decide(number, step, loss)

    def thaw(self, paused: Mapping[int, int], can_start: bool = True) -> int | None:
        """Of the paused trials (number -> step reached), the one to resume now, or None to leave
        them all paused (the controller then proposes a new configuration). ``can_start`` says
        whether the controller could still start a new configuration (False once the study's
        trial budget is spent). Only schedulers that pause override this."""
        return None

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

    def decide(self, number: int, step: int, loss: float, promotion: bool = False) -> Decision:
        """Record the report. At a rung it has just reached, a trial not in the top 1/eta is
        stopped (stopping form) or, with ``promotion``, paused unless promotable now by the strict
        rule (it waits for ``to_promote``). At full resource it always finishes."""
        new = self.record(number, step, loss)
        if self.r_max is not None and step >= self.r_max:
            return CONTINUE
        for k in new:
            if not self.promotable(number, k, strict=promotion):
                if promotion:
                    return Pause(f"not (yet) in the top 1/{self.eta} at rung {self.level(k)}")
                return Stop(f"not in the top 1/{self.eta} at rung {self.level(k)}")
        return CONTINUE

    def top(self, k: int, strict: bool = False) -> list[int]:
        """The trials in the top 1/eta at rung k, ranked by loss, ties to the earlier trial: ASHA's
        rule. The top 1/eta of n trials is the best max(1, floor(n/eta)), so the first trial at a
        rung goes on; ``strict`` is the paper's floor(n/eta), which holds everyone until eta have
        arrived."""
        rung = self.recorded[k]
        keep = len(rung) // self.eta if strict else max(1, len(rung) // self.eta)
        return sorted(rung, key=lambda n: (rung[n], n))[:keep]

    def promotable(self, number: int, k: int, strict: bool = False) -> bool:
        """Whether the trial is in ``top(k, strict)`` (itself included among the trials ranked)."""
        return number in self.top(k, strict)

    def highest(self, trials) -> dict[int, int]:
        """For each of ``trials`` with a record here, the highest rung index it has one at."""
        out: dict[int, int] = {}
        for k, rung in self.recorded.items():
            for number in rung:
                if number in trials:
                    out[number] = max(k, out.get(number, k))
        return out

    def to_promote(self, paused: Mapping[int, int], strict: bool) -> tuple[int, float, int] | None:
        """Of the paused trials (number -> step) recorded at these rungs, the one to promote as
        (-resource of its rung, loss there, number): the highest rung first (Li et al. 2020,
        Algorithm 2), then the lowest loss. A trial is judged at the highest rung it has a record
        at (a trainer may report past the rung it paused at). None when none is promotable.
        Each rung is ranked once per call, not once per paused trial."""
        highest = self.highest(paused)
        tops = {k: set(self.top(k, strict)) for k in set(highest.values())}
        ready = [(-self.level(k), self.recorded[k][number], number) for number, k in highest.items()
                 if number in tops[k]]
        return min(ready) if ready else None


def _check_type(options: Mapping[str, Any], scheduler: str) -> bool:
    """The ``type`` option: True for the promotion form, False for the stopping form (default)."""
    kind = options.get("type", "stopping")
    if kind not in ("stopping", "promotion"):
        raise ValueError(f"scheduler {scheduler!r} option 'type' must be stopping or promotion, got {kind!r}")
    return kind == "promotion"


class ASHA(Scheduler):
    """Asynchronous successive halving (Li et al. 2020). Stopping form (``type: stopping``, the
    default, as Ray Tune's ASHAScheduler): when a trial reaches a rung it continues only if it
    ranks in the top 1/eta of the trials recorded at that rung so far, and stops otherwise.
    Promotion form (``type: promotion``, the paper's Algorithm 2): a trial reaching a rung pauses
    unless it is promotable, i.e. among the best floor(n/eta) of the n trials at that rung; when a
    slot frees, the paused trial promotable at the highest rung resumes from its checkpoint before
    any new configuration starts, so a trial can be promoted later, once enough trials have
    arrived to rank it. Once the study's trial budget is spent, the best paused trial at a rung
    with fewer than eta members is promotable too, so the best trials are carried to the end."""

    name = "asha"

    def __init__(self, metric: str, mode: str, seed: int = 0, **options: Any) -> None:
        super().__init__(metric, mode, seed)
        unknown = set(options) - {"min_resource", "max_resource", "reduction_factor", "grace_period", "type"}
        if unknown:
            raise ValueError(f"scheduler 'asha' takes no option {sorted(unknown)[0]!r}; it takes "
                             "min_resource, max_resource, reduction_factor, grace_period, type")
        self.promotion = self.pauses = _check_type(options, "asha")
        grace = _check_int(options, "grace_period", 1, 1)
        r_min = _check_int(options, "min_resource", grace, 1)
        eta = _check_int(options, "reduction_factor", 3, 2)
        r_max = options.get("max_resource")
        if r_max is not None:
            r_max = _check_int(options, "max_resource", 0, r_min)
        elif self.promotion:
            raise ValueError("scheduler 'asha' with type: promotion needs max_resource (the step a full trial "
                             "reaches), or a trial ending at a rung would wait there to be promoted")
        self.rungs = _Rungs(max(r_min, grace), eta, r_max)

    def _record(self, number: int, step: int, loss: float) -> None:
        self.rungs.record(number, step, loss)

    def _decide(self, number: int, step: int, loss: float) -> Decision:
        return self.rungs.decide(number, step, loss, self.promotion)

    def thaw(self, paused: Mapping[int, int], can_start: bool = True) -> int | None:
        if not self.promotion:
            return None
        pick = self.rungs.to_promote(paused, strict=can_start)
        return None if pick is None else pick[2]


class Hyperband(Scheduler):
    """Asynchronous Hyperband: trials are spread over brackets s = 0..s_max (by trial number);
    bracket s runs ASHA with minimum resource r_min * eta^s, hedging against misleading early
    results (Li et al. 2017/2020). ``type`` is ASHA's: stopping (default) or promotion, in every
    bracket."""

    name = "hyperband"

    def __init__(self, metric: str, mode: str, seed: int = 0, **options: Any) -> None:
        super().__init__(metric, mode, seed)
        unknown = set(options) - {"min_resource", "max_resource", "reduction_factor", "brackets", "type"}
        if unknown:
            raise ValueError(f"scheduler 'hyperband' takes no option {sorted(unknown)[0]!r}; it takes "
                             "min_resource, max_resource, reduction_factor, brackets, type")
        self.promotion = self.pauses = _check_type(options, "hyperband")
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
        return self._bracket(number).decide(number, step, loss, self.promotion)

    def thaw(self, paused: Mapping[int, int], can_start: bool = True) -> int | None:
        if not self.promotion:
            return None
        # Brackets compare by the resource of the rung (their rung indices start at different levels).
        picks = [rungs.to_promote({n: s for n, s in paused.items() if self._bracket(n) is rungs}, can_start)
                 for rungs in self.brackets]
        picks = [p for p in picks if p is not None]
        return min(picks)[2] if picks else None


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
            return Stop(f"best {mine:.4g} worse than the median {median:.4g} at step {step}")
        return CONTINUE


class FreezeThaw(Scheduler):
    """Freeze-thaw scheduling (after Swersky, Snoek & Adams 2014): pause trials instead of stopping
    them, and resume the paused trial whose predicted final value is best.

    Trials are frozen at successive-halving rungs r_min * eta^k below max_resource. A trial's value
    at max_resource is predicted from its learning curve by ``surrogates.learning_curve``
    (a parametric ensemble after Domhan et al. 2015); at a rung every trial that reached it is
    predicted from its curve up to that rung, so all are judged on the same information, and a
    trial that reached max_resource counts with its value there. A trial reaching a rung goes on
    if its prediction ranks in the top 1/eta at that rung, and is paused otherwise (it keeps its
    checkpoint). When a slot frees, ``thaw`` picks, among the paused trials that now rank in the
    top 1/eta at their rung (more trials at a rung admit more), the one with the best predicted
    final value; with none, the controller starts a new configuration. With max_resource 27 and
    eta 3 a trial is judged at 1, 3 and 9 steps: from one point the prediction is the value itself
    (as ASHA ranks), from three or more the extrapolated curve, so a steep curve can overtake a
    flat one that is ahead now. This is the asynchronous promotion form of successive halving
    ranked by extrapolated curves; the thaw-or-start choice is this rule, not the paper's entropy
    search over a Gaussian process of curves.
    """

    name = "freeze-thaw"
    pauses = True

    def __init__(self, metric: str, mode: str, seed: int = 0, **options: Any) -> None:
        super().__init__(metric, mode, seed)
        unknown = set(options) - {"min_resource", "max_resource", "reduction_factor"}
        if unknown:
            raise ValueError(f"scheduler 'freeze-thaw' takes no option {sorted(unknown)[0]!r}; it takes "
                             "min_resource, max_resource, reduction_factor")
        r_min = _check_int(options, "min_resource", 1, 1)
        eta = _check_int(options, "reduction_factor", 3, 2)
        if options.get("max_resource") is None:
            raise ValueError("scheduler 'freeze-thaw' needs max_resource (the step a full trial reaches, "
                             "where final values are predicted)")
        self.r_max = _check_int(options, "max_resource", 0, r_min + 1)
        self.rungs = _Rungs(r_min, eta, self.r_max)
        self.curves: dict[int, list[tuple[int, float]]] = {}  # trial -> [(step, loss)] by step
        # (trial, last step fitted) -> (points, last value, predicted final): fits are reused
        # until that part of the curve changes
        self._predicted: dict[tuple[int, int], tuple[int, float, float]] = {}

    def _record(self, number: int, step: int, loss: float) -> list[int]:
        """Add the report to the trial's curve; return the rungs it newly reached."""
        # A trial thawed from an older checkpoint reports some steps again: the newer value wins.
        curve = [p for p in self.curves.get(number, []) if p[0] < step]
        curve.append((step, loss))
        self.curves[number] = curve
        return self.rungs.record(number, step, loss)

    def predicted_final(self, number: int, upto: int | None = None) -> float:
        """The trial's predicted loss at max_resource from its curve up to step ``upto`` (all of
        it by default); its value there once it reached it."""
        curve = [p for p in self.curves[number] if upto is None or p[0] <= upto]
        if curve[-1][0] >= self.r_max:
            return curve[-1][1]
        key = (number, curve[-1][0])
        cached = self._predicted.get(key)
        if cached is not None and cached[0] == len(curve) and cached[1] == curve[-1][1]:
            return cached[2]
        import numpy as np

        from surrogates.learning_curve import LearningCurve

        steps = np.array([[float(s)] for s, _ in curve])
        mean, _ = LearningCurve().fit(steps, np.array([v for _, v in curve])).predict(np.array([[float(self.r_max)]]))
        value = float(mean[0])
        self._predicted[key] = (len(curve), curve[-1][1], value)
        return value

    def _ranks_in(self, number: int, k: int) -> bool:
        """Whether the trial's predicted final value is in the top 1/eta at rung k. Every member
        is predicted from its curve up to the rung, so all are judged on the same information."""
        level = self.rungs.level(k)
        members = sorted(self.rungs.recorded[k], key=lambda n: (self.predicted_final(n, level), n))
        keep = max(1, len(members) // self.rungs.eta)
        return number in members[:keep]

    def _decide(self, number: int, step: int, loss: float) -> Decision:
        new = self._record(number, step, loss)
        if step >= self.r_max:
            return CONTINUE
        for k in new:
            if not self._ranks_in(number, k):
                return Pause(f"predicted final {self.predicted_final(number, step):.4g} not in the top "
                                         f"1/{self.rungs.eta} at rung {self.rungs.level(k)}")
        return CONTINUE

    def thaw(self, paused: Mapping[int, int], can_start: bool = True) -> int | None:
        """A paused trial is judged at the highest rung it has a record at, not the rung its last
        step falls in: a report without a finite value is stored but not recorded at a rung, and
        judging by it would leave the trial paused for good."""
        ready = [(self.predicted_final(number, paused[number]), number)
                 for number, k in self.rungs.highest(paused).items() if self._ranks_in(number, k)]
        return min(ready)[1] if ready else None


SCHEDULERS: dict[str, type[Scheduler]] = {"asha": ASHA, "hyperband": Hyperband, "median": MedianStopping,
                                          "freeze-thaw": FreezeThaw}


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
