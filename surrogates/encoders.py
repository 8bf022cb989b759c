"""Turn configurations into arrays for surrogates, and arrays back into configurations for the
acquisition optimiser. Trial records never reach this package: ``search.encoding`` turns them into
configurations and losses first.

Parameters are duck-typed so this package never imports ``search``: anything with ``name`` and
either ``choices`` (categorical) or ``low``/``high`` (numeric, with optional ``log`` and ``step``)
works, plus an optional ``when`` mapping ``{parent_name: allowed_values}`` for conditional
parameters. A numeric parameter whose ``low``, ``high`` and ``step`` are all ints is an integer.

Layout, one block per parameter in declaration order:
- numeric: one column in [0, 1] (log-scaled when ``log``; integers map each value to the centre
  of an equal-width cell, so a uniform draw in [0, 1] decodes to a uniform integer);
- categorical: one-hot columns, one per choice;
- conditional: the block plus an activity column (1 active, 0 inactive). An inactive parameter's
  value columns hold a fixed default (0.5 numeric, all zeros one-hot), so two configurations that
  differ only in an inactive parameter encode identically.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["SpaceEncoder"]

_INACTIVE_NUMERIC = 0.5


@dataclass(frozen=True)
class _Block:
    name: str
    kind: str  # "float", "int" or "cat"
    start: int
    width: int  # value columns
    active_col: int | None
    param: Any


def _is_int(p: Any) -> bool:
    step = getattr(p, "step", None)
    return all(isinstance(v, int) and not isinstance(v, bool) for v in (p.low, p.high, step))


class SpaceEncoder:
    """Encode/decode configurations of a mixed, possibly conditional space (see module doc)."""

    def __init__(self, params: Sequence[Any]) -> None:
        self.params = tuple(params)
        if not self.params:
            raise ValueError("a space needs at least one parameter, got none")
        blocks: list[_Block] = []
        names: list[str] = []
        col = 0
        for p in self.params:
            name = getattr(p, "name", None)
            if not isinstance(name, str) or not name:
                raise ValueError(f"every parameter needs a non-empty string 'name', got {name!r}")
            if name in names:
                raise ValueError(f"parameter names must be unique, got {name!r} twice")
            when = dict(getattr(p, "when", None) or {})
            for parent in when:
                if parent not in names:
                    raise ValueError(
                        f"condition of {name!r} names {parent!r}, which must be a parameter "
                        f"declared before it; declared so far: {names}"
                    )
            if hasattr(p, "choices"):
                if len(p.choices) == 0:
                    raise ValueError(f"categorical {name!r} needs at least one choice, got none")
                kind, width = "cat", len(p.choices)
            else:
                if not (hasattr(p, "low") and hasattr(p, "high")):
                    raise ValueError(f"parameter {name!r} needs 'choices' or both 'low' and 'high'")
                if not p.low <= p.high:
                    raise ValueError(f"low <= high must hold for {name!r}, got low={p.low}, high={p.high}")
                if getattr(p, "log", False) and p.low <= 0:
                    raise ValueError(f"log scale needs low > 0 for {name!r}, got low={p.low}")
                kind, width = ("int" if _is_int(p) else "float"), 1
            active_col = col + width if when else None
            blocks.append(_Block(name, kind, col, width, active_col, p))
            col += width + (1 if when else 0)
            names.append(name)
        self._blocks = tuple(blocks)
        self.n_features = col
        self.names = tuple(names)
        self.groups: dict[str, list[int]] = {
            b.name: list(range(b.start, b.start + b.width)) + ([b.active_col] if b.active_col is not None else [])
            for b in blocks
        }
        # Columns that carry a decision: the acquisition optimiser moves these, activity columns
        # follow from the conditions.
        self.value_columns = np.array(
            [c for b in blocks for c in range(b.start, b.start + b.width)], dtype=int)
        self.categorical_blocks = tuple(
            (b.start, b.width) for b in blocks if b.kind == "cat")
        self.numeric_columns = np.array([b.start for b in blocks if b.kind != "cat"], dtype=int)

    # numeric maps --------------------------------------------------------------------------
    @staticmethod
    def _range(b: _Block) -> tuple[float, float, bool]:
        p = b.param
        log = bool(getattr(p, "log", False))
        lo, hi = float(p.low), float(p.high)
        if b.kind == "int":
            step = int(p.step)
            top = p.high - (p.high - p.low) % step
            lo, hi = p.low - step / 2, top + step / 2
        if log:
            return math.log(lo), math.log(hi), True
        return lo, hi, False

    def _to_unit_vec(self, b: _Block, v: np.ndarray) -> np.ndarray:
        lo, hi, log = self._range(b)
        if hi == lo:
            return np.full(v.shape, 0.5)
        x = np.log(np.maximum(v, 1e-300)) if log else v
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0)

    def _from_unit_vec(self, b: _Block, u: np.ndarray) -> np.ndarray:
        p = b.param
        lo, hi, log = self._range(b)
        x = lo + np.clip(u, 0.0, 1.0) * (hi - lo)
        v = np.exp(x) if log else x
        if b.kind == "int":
            step = int(p.step)
            top = p.high - (p.high - p.low) % step
            return np.clip(p.low + np.round((v - p.low) / step) * step, p.low, top)
        v = np.clip(v, float(p.low), float(p.high))
        step = getattr(p, "step", None)
        if step:
            v = np.minimum(float(p.low) + np.round((v - p.low) / step) * step, float(p.high))
        return v

    def _from_unit(self, b: _Block, u: float) -> Any:
        v = self._from_unit_vec(b, np.array([u]))[0]
        return int(v) if b.kind == "int" else float(v)

    # public API ----------------------------------------------------------------------------
    @staticmethod
    def is_active(param: Any, config: Mapping[str, Any]) -> bool:
        when = getattr(param, "when", None) or {}
        return all(n in config and config[n] in allowed for n, allowed in when.items())

    def encode(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """One row per configuration. A parameter counts as active when it is present."""
        n = len(configs)
        X = np.zeros((n, self.n_features))
        for b in self._blocks:
            present = np.array([b.name in config for config in configs], dtype=bool)
            if b.active_col is None and not present.all():
                i = int(np.argmin(present))
                raise ValueError(
                    f"configuration {i} lacks unconditional parameter {b.name!r}; "
                    f"got keys {sorted(configs[i])}"
                )
            if b.active_col is not None:
                X[:, b.active_col] = present
            rows = np.flatnonzero(present)
            if b.kind == "cat":
                choices = list(b.param.choices)
                for i in rows:
                    v = configs[i][b.name]
                    try:
                        j = choices.index(v)
                    except ValueError:
                        raise ValueError(
                            f"value {v!r} of {b.name!r} is not one of its choices "
                            f"{choices}") from None
                    X[i, b.start + j] = 1.0
            else:
                vals = [configs[i][b.name] for i in rows]
                for v in vals:
                    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                        raise ValueError(f"parameter {b.name!r} is numeric, got {v!r}")
                col = np.full(n, _INACTIVE_NUMERIC)
                if len(rows):
                    col[rows] = self._to_unit_vec(b, np.array(vals, dtype=float))
                X[:, b.start] = col
        return X

    def decode(self, U: np.ndarray) -> list[dict[str, Any]]:
        """Configurations from rows in (or clipped to) [0, 1]^n_features: numeric columns are
        scaled back and snapped to ``step``, each one-hot block becomes its argmax, and a
        conditional parameter is kept only if its condition holds on the decoded values (activity
        columns are ignored, they follow from the conditions)."""
        U = np.asarray(U, dtype=float)
        if U.ndim != 2 or U.shape[1] != self.n_features:
            raise ValueError(f"expected rows with {self.n_features} columns, got shape {U.shape}")
        U = np.clip(U, 0.0, 1.0)
        out: list[dict[str, Any]] = []
        for row in U:
            config: dict[str, Any] = {}
            for b in self._blocks:
                if not self.is_active(b.param, config):
                    continue
                if b.kind == "cat":
                    config[b.name] = b.param.choices[int(np.argmax(row[b.start:b.start + b.width]))]
                else:
                    config[b.name] = self._from_unit(b, float(row[b.start]))
            out.append(config)
        return out

    def canonical(self, U: np.ndarray) -> np.ndarray:
        """``encode(decode(U))`` computed on whole arrays: the encoding of what would actually be
        run (values snapped, one-hot blocks made exact, conditions applied)."""
        U = np.clip(np.array(U, dtype=float), 0.0, 1.0)
        if U.ndim != 2 or U.shape[1] != self.n_features:
            raise ValueError(f"expected rows with {self.n_features} columns, got shape {U.shape}")
        n = len(U)
        by_name = {b.name: b for b in self._blocks}
        values: dict[str, np.ndarray] = {}
        active: dict[str, np.ndarray] = {}
        for b in self._blocks:
            act = np.ones(n, dtype=bool)
            for parent, allowed in (getattr(b.param, "when", None) or {}).items():
                pb = by_name[parent]
                if pb.kind == "cat":
                    idx = [i for i, c in enumerate(pb.param.choices) if c in allowed]
                    ok = np.isin(values[parent], idx)
                else:
                    ok = np.isin(values[parent], np.array([float(a) for a in allowed]))
                act &= active[parent] & ok
            if b.kind == "cat":
                j = np.argmax(U[:, b.start:b.start + b.width], axis=1)
                block = np.zeros((n, b.width))
                block[np.arange(n), j] = 1.0
                U[:, b.start:b.start + b.width] = np.where(act[:, None], block, 0.0)
                values[b.name] = j
            else:
                v = self._from_unit_vec(b, U[:, b.start])
                U[:, b.start] = np.where(act, self._to_unit_vec(b, v), _INACTIVE_NUMERIC)
                values[b.name] = v
            if b.active_col is not None:
                U[:, b.active_col] = act
            active[b.name] = act
        return U
