"""Search algorithms by name. Each implements ``search.algorithms.base.Algorithm``.

The registry maps names to import paths so ``search --help`` never imports optuna or torch.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Iterator

from search.algorithms.base import CONTINUE, Algorithm, Decision, History, Proposal

__all__ = ["ALGORITHMS", "Algorithm", "Decision", "History", "Proposal", "CONTINUE", "make_algorithm"]

_PATHS = {
    "random": "search.algorithms.basic:RandomSearch",
    "grid": "search.algorithms.basic:GridSearch",
    "tpe": "search.algorithms.optuna_samplers:TPE",
    "cmaes": "search.algorithms.optuna_samplers:CmaEs",
    "gp": "search.algorithms.optuna_samplers:OptunaGP",
    "nsga2": "search.algorithms.optuna_samplers:NSGA2",
    "bo": "search.algorithms.bo:BayesOpt",
    "pbt": "search.algorithms.pbt:PBT",
    "regevo": "search.algorithms.nas:RegularizedEvolution",
    "boshnas": "search.algorithms.nas:Boshnas",
    "scaling": "search.algorithms.scaling_ladder:ScalingLadder",
}


class _Registry(Mapping):
    def __getitem__(self, name: str) -> type[Algorithm]:
        module, _, attr = _PATHS[name].partition(":")
        return getattr(importlib.import_module(module), attr)

    def __iter__(self) -> Iterator[str]:
        return iter(_PATHS)

    def __len__(self) -> int:
        return len(_PATHS)


ALGORITHMS: Mapping[str, type[Algorithm]] = _Registry()


def make_algorithm(name: str, space, metrics, directions, seed=None, **options) -> Algorithm:
    return ALGORITHMS[name](space, tuple(metrics), tuple(directions), seed=seed, **options)
