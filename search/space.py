"""Search spaces as data: typed parameters, optional conditions, sampling and grids.

A ``Space`` is an ordered tuple of parameters. A parameter with ``when`` is active only if every
named parameter's value is one of the listed values (conditional spaces); inactive parameters are
absent from a configuration.
"""
from __future__ import annotations

import itertools
import math
from decimal import Decimal
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence, Union

__all__ = ["FloatParam", "IntParam", "CategoricalParam", "Param", "Space", "grid_round"]


def _decimals(x: float) -> int:
    exponent = Decimal(repr(float(x))).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def grid_round(v: float, low: float, step: float) -> float:
    """``v`` (a point low + k * step) without binary rounding noise: 0 + 3 * 0.3 is 0.9, not
    0.8999999999999999. A grid point has no more decimals than ``low`` and ``step`` have."""
    return round(v, max(_decimals(low), _decimals(step)))


@dataclass(frozen=True)
class FloatParam:
    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def sample(self, rng) -> float:
        if self.log:
            v = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            v = rng.uniform(self.low, self.high)
        return self.snap(v)

    def snap(self, v: float) -> float:
        v = min(max(float(v), self.low), self.high)
        if self.step:
            v = grid_round(self.low + round((v - self.low) / self.step) * self.step, self.low, self.step)
            v = min(v, self.high)
        return v

    def grid(self, n: int) -> list[float]:
        if self.step:
            k = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
            return [grid_round(self.low + i * self.step, self.low, self.step) for i in range(k)]
        if n == 1:
            return [self.low]
        if self.log:
            a, b = math.log(self.low), math.log(self.high)
            return [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
        return [self.low + (self.high - self.low) * i / (n - 1) for i in range(n)]

    def contains(self, v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and self.low <= v <= self.high


@dataclass(frozen=True)
class IntParam:
    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def sample(self, rng) -> int:
        if self.log:
            # low >= 1 is validated for log ints, so low - 0.5 > 0.
            v = math.exp(rng.uniform(math.log(self.low - 0.5), math.log(self.high + 0.5)))
        else:
            v = rng.uniform(self.low - 0.5, self.high + 0.5)
        return self.snap(v)

    def snap(self, v: float) -> int:
        k = round((float(v) - self.low) / self.step)
        return int(min(max(self.low + k * self.step, self.low), self.high - (self.high - self.low) % self.step))

    def grid(self, n: int) -> list[int]:
        values = range(self.low, self.high + 1, self.step)
        if len(values) <= n:
            return list(values)
        if self.log:
            a, b = math.log(self.low), math.log(self.high)
            pts = [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
        else:
            pts = [self.low + (self.high - self.low) * i / (n - 1) for i in range(n)]
        return sorted({self.snap(p) for p in pts})

    def contains(self, v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and self.low <= v <= self.high


@dataclass(frozen=True)
class CategoricalParam:
    name: str
    choices: tuple[Any, ...]
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def sample(self, rng) -> Any:
        return self.choices[int(rng.integers(len(self.choices)))]

    def grid(self, n: int) -> list[Any]:
        return list(self.choices)

    def contains(self, v: Any) -> bool:
        return v in self.choices


Param = Union[FloatParam, IntParam, CategoricalParam]


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @staticmethod
    def is_active(param: Param, config: Mapping[str, Any]) -> bool:
        return all(name in config and config[name] in allowed for name, allowed in param.when.items())

    def sample(self, rng) -> dict[str, Any]:
        """One configuration drawn from the prior; parameters are visited in declaration order,
        so a condition may only name parameters declared before it."""
        config: dict[str, Any] = {}
        for p in self.params:
            if self.is_active(p, config):
                config[p.name] = p.sample(rng)
        return config

    def grid(self, points_per_float: int = 5) -> list[dict[str, Any]]:
        """Every combination (conditions applied, duplicates removed), in a stable order."""
        axes = [p.grid(points_per_float) for p in self.params]
        seen: set[tuple] = set()
        out: list[dict[str, Any]] = []
        for combo in itertools.product(*axes):
            config: dict[str, Any] = {}
            for p, v in zip(self.params, combo):
                if self.is_active(p, config):
                    config[p.name] = v
            key = tuple(sorted((k, repr(v)) for k, v in config.items()))
            if key not in seen:
                seen.add(key)
                out.append(config)
        return out

    @classmethod
    def of(cls, params: Sequence[Param]) -> "Space":
        return cls(tuple(params))
