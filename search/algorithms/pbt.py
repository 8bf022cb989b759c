"""Population Based Training (Jaderberg et al. 2017), asynchronous.

The population is the study's trials (``population`` defaults to ``budget.trials``). A member is
*ready* once it has trained ``interval`` steps since it started or last exploited. A ready member
in the bottom ``quantile`` of the population (ranked by each member's latest reported value)
exploits: it continues from the checkpoint of a member drawn from the top ``quantile``, with that
member's hyperparameters explored — each continuous one multiplied by a random factor from
``perturbation_factors`` (0.8 or 1.2) or, with ``resample_probability``, drawn afresh from the prior;
categorical ones resampled with that probability. No member waits for the others. No member
exploits at the end of training (``horizon``, or the last step of members already complete).

The exploit is a decision carried as data: ``Decision("exploit", extra={"parent", "params"})``; the
controller copies the parent's checkpoint through the artifact store, restarts the member from it,
and records the exploit in the lineage table. The result is a hyperparameter schedule per member.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from search.algorithms.base import CONTINUE, Algorithm, Decision, History, Proposal
from search.space import CategoricalParam, FloatParam, IntParam
from storage.records import TrialRecord

__all__ = ["PBT"]


class PBT(Algorithm):
    name = "pbt"

    def __init__(self, space, metrics, directions, seed=None, *, population: int = 8, interval: int = 4,
                 quantile: float = 0.2, resample_probability: float = 0.25,
                 perturbation_factors: tuple[float, float] | list[float] = (0.8, 1.2),
                 metric: str | None = None, horizon: int | None = None) -> None:
        super().__init__(space, metrics, directions, seed)
        if not isinstance(population, int) or population < 2:
            raise ValueError(f"pbt option 'population' must be an integer >= 2, got {population!r}")
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"pbt option 'interval' must be an integer >= 1 (steps between exploits), got {interval!r}")
        if not 0 < quantile <= 0.5:
            raise ValueError(f"pbt option 'quantile' must be in (0, 0.5], got {quantile!r}")
        if not 0 <= resample_probability <= 1:
            raise ValueError(f"pbt option 'resample_probability' must be in [0, 1], got {resample_probability!r}")
        factors = tuple(float(f) for f in perturbation_factors)
        if len(factors) < 1 or any(f <= 0 for f in factors):
            raise ValueError(f"pbt option 'perturbation_factors' must be positive numbers, got {perturbation_factors!r}")
        if horizon is not None and (not isinstance(horizon, int) or horizon < 1):
            raise ValueError(f"pbt option 'horizon' must be an integer >= 1 (the step training ends at), got {horizon!r}")
        self.horizon = horizon
        self.metric = metric or metrics[0]
        if self.metric not in metrics and metric is None:
            raise ValueError(f"pbt metric {self.metric!r} is not an objective")
        direction = directions[metrics.index(self.metric)] if self.metric in metrics else "minimize"
        self.sign = -1.0 if direction == "maximize" else 1.0
        self.population, self.interval, self.quantile = population, interval, quantile
        self.resample_probability, self.factors = resample_probability, factors
        # number -> latest loss (signed), step of that report; number -> step of last readiness.
        self.scores: dict[int, tuple[float, int]] = {}
        self.last_ready: dict[int, int] = {}

    # -- proposals ---------------------------------------------------------------------------

    def _rng(self, *key: int):
        import numpy as np

        return np.random.default_rng([self.seed or 0, *key])

    def propose(self, history: History, n: int) -> list[Proposal]:
        start = len(history.trials)
        k = max(0, min(n, self.population - start))
        return [Proposal(self.space.sample(self._rng(0, start + i))) for i in range(k)]

    # -- decisions ---------------------------------------------------------------------------

    def on_report(self, history: History, trial: TrialRecord, step: int, metrics: Mapping[str, float]) -> Decision:
        v = metrics.get(self.metric)
        if v is None or not math.isfinite(v):
            return CONTINUE
        self.scores[trial.number] = (self.sign * float(v), step)
        base = self.last_ready.get(trial.number, 0)
        if step - base < self.interval:
            return CONTINUE
        self.last_ready[trial.number] = step
        # Never exploit at the end of training: the member would restart from its parent's final
        # checkpoint, train nothing and copy the parent's result. The end is ``horizon`` if given,
        # else the last step of members that have already completed.
        end = self.horizon
        if end is None:
            ends = [t.last_step for t in history.trials if t.state == "COMPLETE" and t.last_step]
            end = max(ends) if ends else None
        if end is not None and step >= end:
            return CONTINUE
        ranked = sorted(self.scores, key=lambda m: self.scores[m][0])  # best first
        if len(ranked) < 2:
            return CONTINUE
        cut = max(1, int(math.ceil(len(ranked) * self.quantile)))
        if trial.number not in ranked[-cut:]:
            return CONTINUE
        top = [m for m in ranked[:cut] if m != trial.number]
        if not top:
            return CONTINUE
        rng = self._rng(1, trial.number, step)
        parent = top[int(rng.integers(len(top)))]
        by_number = {t.number: t for t in history.trials}
        params = self.explore(dict(by_number[parent].params), rng)
        # A member restarts from the parent's checkpoint: readiness counts from there.
        self.last_ready[trial.number] = self.scores[parent][1]
        return Decision("exploit", f"bottom {self.quantile:.0%}: copy member {parent}",
                        extra={"parent": parent, "params": params})

    def explore(self, params: dict[str, Any], rng) -> dict[str, Any]:
        out = dict(params)
        for p in self.space:
            if p.name not in out:
                continue
            resample = rng.random() < self.resample_probability
            if isinstance(p, CategoricalParam):
                if resample:
                    out[p.name] = p.sample(rng)
            elif isinstance(p, (FloatParam, IntParam)):
                if resample:
                    out[p.name] = p.sample(rng)
                else:
                    factor = self.factors[int(rng.integers(len(self.factors)))]
                    v = out[p.name] * factor
                    if isinstance(p, IntParam) and round(v) == out[p.name]:
                        v = out[p.name] + (1 if factor > 1 else -1)  # a small int must still move
                    out[p.name] = p.snap(v)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"scores": {str(k): list(v) for k, v in self.scores.items()},
                "last_ready": {str(k): v for k, v in self.last_ready.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.scores = {int(k): (float(v[0]), int(v[1])) for k, v in state.get("scores", {}).items()}
        self.last_ready = {int(k): int(v) for k, v in state.get("last_ready", {}).items()}
