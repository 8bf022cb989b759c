"""Population Based Training (Jaderberg et al. 2017), asynchronous.

The population is the study's trials (``population`` defaults to ``budget.trials``). A member is
*ready* once it has trained ``interval`` steps since it started or last exploited. A ready member
in the bottom ``quantile`` of the population (ranked by each member's latest reported value)
exploits: it continues from the checkpoint of a member drawn from the top ``quantile`` (one that
has not reached the end of training), with that member's hyperparameters explored — each
continuous one multiplied by a random factor from ``perturbation_factors`` (0.8 or 1.2) or, with
``resample_probability``, drawn afresh from the prior; categorical ones resampled with that
probability. No member waits for the others. No member
exploits at the end of training (``horizon``, or the last step of members already complete).

``explore: pb2`` replaces the random explore with Population-Based Bandits (Parker-Holder et al.
2020). Every time a member is ready it adds one observation: its improvement per step over the
interval it just trained (the signed loss at the interval's start minus now, over the steps), at
time ``step / interval`` rounds, with the hyperparameters it trained with, each scaled to [0, 1]
within its bounds (in log space for log parameters). An exploiting member still copies a top
member's weights, but its new configuration maximises GP-UCB over a time-varying GP fitted to those
observations (``surrogates.time_varying_gp``: older rounds count less, at a fitted forgetting
rate), at the round it will train next, anywhere within the bounds. Improvements are standardised
and clipped to +-2 standard deviations before the fit (early intervals improve far more than late
ones). The exploration weight is beta_t = 0.2 d log(2 n) (d inputs, n observations; the practical
scaling of the GP-UCB rate used by Kandasamy et al. 2015). Members that have exploited but not yet
reported their next interval are pending: as in GP-BUCB, the UCB's variance is conditioned on their
(round, configuration), so two members exploiting at once are pushed apart. With fewer than
``pb2_min_observations`` observations, explore falls back to the random one. PB2 models numeric
parameters only: a categorical or conditional parameter is rejected.

The exploit is a decision carried as data: ``Exploit(parent, params, parent_step)``; the
controller copies the parent's checkpoint through the artifact store, restarts the member from it,
and records the exploit in the lineage table. The result is a hyperparameter schedule per member.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from search.algorithms.base import CONTINUE, Algorithm, Decision, History, Proposal
from search.decisions import Continue, Exploit
from search.space import CategoricalParam, FloatParam, IntParam
from storage.records import TrialRecord

__all__ = ["PBT"]

EXPLORES = ("perturb", "pb2")
# PB2 keeps the newest observations only: the time kernel has forgotten older rounds anyway, and
# the GP's cost grows with the cube of their number.
PB2_MAX_OBSERVATIONS = 256


class PBT(Algorithm):
    name = "pbt"

    def __init__(self, space, metrics, directions, seed=None, *, population: int = 8, interval: int = 4,
                 quantile: float = 0.2, resample_probability: float = 0.25,
                 perturbation_factors: tuple[float, float] | list[float] = (0.8, 1.2),
                 metric: str | None = None, horizon: int | None = None, explore: str = "perturb",
                 pb2_min_observations: int = 3) -> None:
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
        if explore not in EXPLORES:
            raise ValueError(f"pbt option 'explore' must be one of {', '.join(EXPLORES)}, got {explore!r}")
        if explore == "pb2":
            for p in space:
                if not isinstance(p, (FloatParam, IntParam)):
                    raise ValueError(f"pbt option explore: pb2 models numeric parameters only, and {p.name!r} is not a "
                                     f"float or int; fix it in trial.params or use explore: perturb")
                if p.when:
                    raise ValueError(f"pbt option explore: pb2 needs every parameter active, and {p.name!r} is "
                                     f"conditional (when); drop the condition or use explore: perturb")
        if not isinstance(pb2_min_observations, int) or pb2_min_observations < 1:
            raise ValueError(f"pbt option 'pb2_min_observations' must be an integer >= 1, got {pb2_min_observations!r}")
        self.explore_method, self.pb2_min_observations = explore, pb2_min_observations
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
        # PB2: number -> (step, signed loss) where its current interval started; observations
        # (round, unit hyperparameters, improvement per step); number -> (round, unit
        # hyperparameters) of a member that exploited and has not reported that interval yet.
        self.anchor: dict[int, tuple[int, float]] = {}
        self.observations: list[tuple[float, tuple[float, ...], float]] = []
        self.pending: dict[int, tuple[float, tuple[float, ...]]] = {}

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
        self._learnt = False  # set by PB2's _observe: a Continue then says the state changed
        decision = self._decide(history, trial, step, metrics)
        return Continue(state_changed=True) if self._learnt and isinstance(decision, Continue) else decision

    def _decide(self, history: History, trial: TrialRecord, step: int, metrics: Mapping[str, float]) -> Decision:
        v = metrics.get(self.metric)
        if v is None or not math.isfinite(v):
            return CONTINUE
        signed = self.sign * float(v)
        self.scores[trial.number] = (signed, step)
        # Without a value at step 0, a member's first interval is measured from its first report.
        self.anchor.setdefault(trial.number, (step, signed))
        base = self.last_ready.get(trial.number, 0)
        if step - base < self.interval:
            return CONTINUE
        self.last_ready[trial.number] = step
        if self.explore_method == "pb2":
            self._observe(trial, step, signed)
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
        # A parent at the end has nothing left to train from its checkpoint: a copy of it would
        # only repeat its result (members that run after others finished meet this).
        top = [m for m in ranked[:cut] if m != trial.number and (end is None or self.scores[m][1] < end)]
        if not top:
            return CONTINUE
        rng = self._rng(1, trial.number, step)
        parent = top[int(rng.integers(len(top)))]
        by_number = {t.number: t for t in history.trials}
        parent_value, parent_step = self.scores[parent]
        if self.explore_method == "pb2":
            params = self.pb2_explore(dict(by_number[parent].params), rng, trial.number,
                                      (parent_step + self.interval) / self.interval)
        else:
            params = self.explore(dict(by_number[parent].params), rng)
        # A member restarts from the parent's checkpoint: readiness counts from there.
        self.last_ready[trial.number] = parent_step
        self.anchor[trial.number] = (parent_step, parent_value)
        return Exploit(parent=parent, params=params, parent_step=parent_step,
                       reason=f"bottom {self.quantile:.0%}: copy member {parent}")

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

    # -- PB2 --------------------------------------------------------------------------------

    def _to_unit(self, params: Mapping[str, Any]) -> tuple[float, ...]:
        out = []
        for p in self.space:
            lo, hi, v = float(p.low), float(p.high), float(params[p.name])
            if p.log:
                lo, hi, v = math.log(lo), math.log(hi), math.log(v)
            out.append(0.0 if hi == lo else min(max((v - lo) / (hi - lo), 0.0), 1.0))
        return tuple(out)

    def _from_unit(self, u) -> dict[str, Any]:
        out = {}
        for p, x in zip(self.space, u):
            lo, hi = float(p.low), float(p.high)
            if p.log:
                v = math.exp(math.log(lo) + float(x) * (math.log(hi) - math.log(lo)))
            else:
                v = lo + float(x) * (hi - lo)
            out[p.name] = p.snap(v)
        return out

    def _observe(self, trial: TrialRecord, step: int, signed: float) -> None:
        a_step, a_value = self.anchor[trial.number]
        if step > a_step and all(p.name in trial.params for p in self.space):
            self.observations.append((step / self.interval, self._to_unit(trial.params),
                                      (a_value - signed) / (step - a_step)))
            del self.observations[:-PB2_MAX_OBSERVATIONS]
            self._learnt = True
        self.anchor[trial.number] = (step, signed)
        self.pending.pop(trial.number, None)

    def pb2_explore(self, params: dict[str, Any], rng, number: int, at_round: float) -> dict[str, Any]:
        """The configuration member ``number`` trains with from round ``at_round - 1`` on: the
        GP-UCB maximiser within the bounds (the random explore of ``params`` while data is short)."""
        import numpy as np
        from scipy.optimize import minimize

        from surrogates.time_varying_gp import TimeVaryingGP

        if len(self.observations) < self.pb2_min_observations:
            return self.explore(params, rng)
        X = np.array([[t, *u] for t, u, _ in self.observations])
        y = np.array([imp for _, _, imp in self.observations])
        y = np.clip((y - y.mean()) / (y.std() + 1e-12), -2.0, 2.0)
        gp = TimeVaryingGP().fit(X, y)
        pending = np.array([[t, *u] for m, (t, u) in sorted(self.pending.items()) if m != number]).reshape(-1, X.shape[1])
        d = X.shape[1] - 1
        kappa = math.sqrt(0.2 * (d + 1) * math.log(2 * len(y)))

        def ucb(U: np.ndarray) -> np.ndarray:
            mean, var = gp.predict(np.hstack([np.full((len(U), 1), at_round), U]), pending=pending)
            return mean + kappa * np.sqrt(var)

        cand = rng.uniform(size=(512, d))
        scores = ucb(cand)
        best_u, best = cand[int(np.argmax(scores))], float(scores.max())
        for i in np.argsort(-scores)[:3]:
            res = minimize(lambda u: -float(ucb(u[None, :])[0]), cand[i], method="L-BFGS-B",
                           bounds=[(0.0, 1.0)] * d, options={"maxiter": 50})
            if -res.fun > best:
                best_u, best = np.clip(res.x, 0.0, 1.0), -float(res.fun)
        out = dict(params)
        out.update(self._from_unit(best_u))
        self.pending[number] = (at_round, self._to_unit(out))
        return out

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"scores": {str(k): list(v) for k, v in self.scores.items()},
                                 "last_ready": {str(k): v for k, v in self.last_ready.items()}}
        if self.explore_method == "pb2":
            state["anchor"] = {str(k): list(v) for k, v in self.anchor.items()}
            state["observations"] = [[t, list(u), y] for t, u, y in self.observations]
            state["pending"] = {str(k): [t, list(u)] for k, (t, u) in self.pending.items()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.scores = {int(k): (float(v[0]), int(v[1])) for k, v in state.get("scores", {}).items()}
        self.last_ready = {int(k): int(v) for k, v in state.get("last_ready", {}).items()}
        self.anchor = {int(k): (int(v[0]), float(v[1])) for k, v in state.get("anchor", {}).items()}
        self.observations = [(float(t), tuple(float(x) for x in u), float(y))
                             for t, u, y in state.get("observations", [])]
        self.pending = {int(k): (float(v[0]), tuple(float(x) for x in v[1])) for k, v in state.get("pending", {}).items()}
