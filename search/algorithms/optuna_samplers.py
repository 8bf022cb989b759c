"""Optuna's samplers behind the Algorithm contract, driven through ask/tell on the controller.

Workers never call back for parameters: the controller asks, runs, and the history tells. The
Optuna study lives in memory and is rebuilt from ``History`` (so a resumed study continues from
everything it has seen). Proposals are consumed in order as the next trial numbers (the
controller's contract), which is how asked Optuna trials are matched to our trials.
"""
from __future__ import annotations

from collections import deque
from typing import Any

from search.algorithms.base import Algorithm, History, Proposal
from search.arch_spaces import is_arch_param
from storage.records import TrialRecord, TrialState

# Asks in a row whose architecture breaks its space's constraints before giving up.
MAX_ASKS = 1000

__all__ = ["TPE", "CmaEs", "OptunaGP", "NSGA2"]


def _distribution(param):
    """One Optuna distribution per parameter; an architecture parameter gives a dict of them, one
    categorical per part (``name.part``), which ``_flat`` matches."""
    import optuna.distributions as d

    from search.space import CategoricalParam, FloatParam

    if hasattr(param, "parts"):
        return {f"{param.name}.{k}": d.CategoricalDistribution(list(c)) for k, c in param.parts()}
    if isinstance(param, CategoricalParam):
        return d.CategoricalDistribution(list(param.choices))
    if isinstance(param, FloatParam):
        return d.FloatDistribution(param.low, param.high, log=param.log, step=param.step)
    return d.IntDistribution(param.low, param.high, log=param.log, step=param.step)


def _flat(space, params):
    """A configuration as Optuna sees it: architectures split into their categorical parts."""
    out = {}
    for p in space:
        if p.name in params:
            out.update({f"{p.name}.{k}": v for k, v in p.split(params[p.name]).items()}
                       if hasattr(p, "parts") else {p.name: params[p.name]})
    return out


def _suggest(trial, param):
    from search.space import CategoricalParam, FloatParam

    if hasattr(param, "parts"):
        return param.join({k: trial.suggest_categorical(f"{param.name}.{k}", list(c)) for k, c in param.parts()})
    if isinstance(param, CategoricalParam):
        return trial.suggest_categorical(param.name, list(param.choices))
    if isinstance(param, FloatParam):
        return trial.suggest_float(param.name, param.low, param.high, log=param.log, step=param.step)
    return trial.suggest_int(param.name, param.low, param.high, log=param.log, step=param.step)


class _OptunaAlgorithm(Algorithm):
    def __init__(self, space, metrics, directions, seed=None, **options: Any) -> None:
        super().__init__(space, metrics, directions, seed)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            sampler = self._make_sampler(seed, **options)
        except TypeError as exc:
            raise ValueError(f"algorithm {self.name!r}: bad option: {exc}") from None
        self._study = optuna.create_study(directions=list(directions), sampler=sampler)
        self._dists = {}
        for p in space:
            dist = _distribution(p)
            self._dists.update(dist if isinstance(dist, dict) else {p.name: dist})
        self._asked: deque = deque()  # asked, not yet matched to a trial number
        self._by_number: dict[int, Any] = {}  # our trial number -> optuna trial (still open)
        self._told: set[int] = set()
        self._max_number = -1

    def _make_sampler(self, seed, **options):
        raise NotImplementedError

    def _sync(self, history: History) -> None:
        import optuna

        for t in history.trials:
            if t.number > self._max_number:
                self._max_number = t.number
                if self._asked:
                    self._by_number[t.number] = self._asked.popleft()
            if t.number in self._told or not t.is_finished:
                continue
            self._told.add(t.number)
            ot = self._by_number.pop(t.number, None)
            state, values = self._outcome(t)
            stopped_at = history.stopped_at(t)  # Optuna ranks pruned trials by (step, value)
            if ot is not None:
                if stopped_at is not None:
                    ot.report(stopped_at[1], stopped_at[0])
                self._study.tell(ot, values, state=state)
            else:
                params = {k: v for k, v in _flat(self.space, t.params).items() if k in self._dists}
                self._study.add_trial(optuna.trial.create_trial(
                    params=params, distributions={k: self._dists[k] for k in params},
                    values=values, state=state,
                    intermediate_values=None if stopped_at is None else {stopped_at[0]: stopped_at[1]}))

    @staticmethod
    def _outcome(t: TrialRecord):
        from optuna.trial import TrialState as OS

        if t.state == TrialState.COMPLETE and t.values is not None:
            return OS.COMPLETE, list(t.values)
        if t.state == TrialState.PRUNED:
            return OS.PRUNED, None
        return OS.FAIL, None

    def propose(self, history: History, n: int) -> list[Proposal]:
        import optuna

        self._sync(history)
        out, asked = [], []
        for _ in range(n):
            for _ in range(MAX_ASKS):
                ot = self._study.ask()
                config: dict[str, Any] = {}
                for p in self.space:
                    if self.space.is_active(p, config):
                        config[p.name] = _suggest(ot, p)
                # Optuna samples an architecture's parts independently, so the whole may break a
                # constraint of its space (an LM space's max_params): such an ask is told FAIL, as
                # an infeasible point, and asked again.
                bad = [p.name for p in self.space if p.name in config and is_arch_param(p)
                       and not p.contains(config[p.name])]
                if not bad:
                    break
                self._study.tell(ot, state=optuna.trial.TrialState.FAIL)
            else:
                raise ValueError(f"algorithm {self.name!r}: {MAX_ASKS} proposals in a row broke the constraints of "
                                 f"space {bad[0]!r}; loosen them (e.g. raise max_params) or use random/regevo/boshnas")
            asked.append(ot)
            out.append(Proposal(config))
        self._asked.extend(asked)  # only a whole batch: trial numbers are matched to asks in order
        return out


class TPE(_OptunaAlgorithm):
    """Optuna's TPE; multivariate with constant liar by default, which handles parallel pending
    trials. Options are passed to ``optuna.samplers.TPESampler``."""

    name = "tpe"

    def _make_sampler(self, seed, **options):
        import optuna

        kw = {"multivariate": True, "constant_liar": True, **options}
        return optuna.samplers.TPESampler(seed=seed, **kw)


class CmaEs(_OptunaAlgorithm):
    name = "cmaes"

    def _make_sampler(self, seed, **options):
        import optuna

        return optuna.samplers.CmaEsSampler(seed=seed, **options)


class OptunaGP(_OptunaAlgorithm):
    name = "gp"

    def _make_sampler(self, seed, **options):
        import optuna

        return optuna.samplers.GPSampler(seed=seed, **options)


class NSGA2(_OptunaAlgorithm):
    name = "nsga2"

    def _make_sampler(self, seed, **options):
        import optuna

        return optuna.samplers.NSGAIISampler(seed=seed, **options)
