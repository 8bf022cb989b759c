"""Architecture spaces usable as study-file parameters (``space: {arch: {type: ...}}``).

``ARCH_TYPES`` maps a ``type`` name to a factory ``(name, spec, when, path) -> Param``; the
returned object follows the parameter protocol of ``search.space`` (``name``, ``when``,
``sample(rng)``, ``grid(n)``, ``contains(value)``) and adds what architecture search needs:

- ``mutate(value, rng)``: one local change (one edge's operation, one layer field, one layer added
  or removed), always different from ``value``;
- ``parts()`` / ``join(parts)`` / ``split(value)``: the architecture as a fixed set of
  categorical choices, so samplers that only know categoricals (Optuna's TPE) can search it;
- ``schema()``: the space's options as plain data, which ``surrogates.arch_encoding`` turns into
  feature vectors without importing ``search``.
- ``homogeneous()`` (layer-list spaces): every architecture whose layers are all alike, the
  baseline of a heterogeneous search.

Values are JSON data (a string, or a list of per-layer dicts) so they round-trip through storage
unchanged. Spaces compose the DeepArchitect way: each is declared with its own options, and a study
may hold several of them next to ordinary parameters (and under ``when`` conditions).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

__all__ = ["ARCH_TYPES", "NB201_OPS", "NasBench201Param", "CnnParam", "LmLayersParam",
           "is_arch_param", "GRID_LIMIT"]

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Edge k of the cell runs from node NB201_EDGES[k][1] into node NB201_EDGES[k][0], in the order
# of the standard string: |1<-0|+|2<-0|2<-1|+|3<-0|3<-1|3<-2|.
NB201_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
LM_OPS = ("attention", "linear", "conv")
# Enumerating more architectures than this for grid search is refused with a pointer to the
# sampling strategies.
GRID_LIMIT = 100_000


def _err(path: str, msg: str):
    from search.config import ConfigError

    return ConfigError(f"{path}: {msg}")


# Draws (or mutation tries) before giving up on finding an architecture within a space's constraints.
MAX_DRAWS = 10_000


def is_arch_param(param: Any) -> bool:
    return hasattr(param, "mutate") and hasattr(param, "parts")


def _pick_other(choices: Sequence[Any], current: Any, rng) -> Any:
    others = [c for c in choices if c != current]
    return others[int(rng.integers(len(others)))]


# Past these a space describes no model this service can build, and sizing it would take time
# proportional to the numbers.
MAX_DEPTH, MAX_SIZE = 1024, 1 << 20


def _check_options(spec: Mapping[str, Any], key: str, path: str, default: Sequence[Any],
                   allowed: Sequence[Any] | None = None, positive_int: bool = False) -> tuple[Any, ...]:
    raw = spec.get(key, list(default))
    if not isinstance(raw, list) or not raw:
        raise _err(f"{path}.{key}", f"must be a non-empty list, e.g. {key}: {list(default)}, got {raw!r}")
    for v in raw:
        if positive_int and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise _err(f"{path}.{key}", f"entries must be integers >= 1, got {v!r}")
        if positive_int and v > MAX_SIZE:
            raise _err(f"{path}.{key}", f"entries must be at most {MAX_SIZE}, got {v!r}")
        if allowed is not None and v not in allowed:
            raise _err(f"{path}.{key}", f"unknown entry {v!r}; choose from {', '.join(map(str, allowed))}")
    if len(set(raw)) != len(raw):
        raise _err(f"{path}.{key}", f"entries must be distinct, got {raw!r}")
    return tuple(raw)


def _check_range(spec: Mapping[str, Any], key: str, path: str, default: tuple[int, int]) -> tuple[int, int]:
    raw = spec.get(key, list(default))
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw, raw]
    if (not isinstance(raw, list) or len(raw) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in raw)):
        raise _err(f"{path}.{key}", f"must be [min, max] integers (or one integer), e.g. {key}: {list(default)}, "
                                    f"got {raw!r}")
    lo, hi = raw
    if not 1 <= lo <= hi:
        raise _err(f"{path}.{key}", f"1 <= min <= max must hold, got min={lo}, max={hi}")
    if hi > MAX_DEPTH:
        raise _err(f"{path}.{key}", f"max must be at most {MAX_DEPTH} layers, got {hi}")
    return lo, hi


def _no_unknown(spec: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in spec:
        if key not in allowed:
            shown = key if isinstance(key, str) and key.isidentifier() else repr(key)  # one line, always
            raise _err(f"{path}.{shown}", f"unknown key; allowed keys are {', '.join(sorted(allowed))}")


# --------------------------------------------------------------------------------------------
# NAS-Bench-201 cell


@dataclass(frozen=True)
class NasBench201Param:
    """The NAS-Bench-201 cell: 6 edges of a 4-node DAG, each one of ``ops`` (all 5 by default:
    15,625 cells). The value is the benchmark's standard string."""

    name: str
    ops: tuple[str, ...] = NB201_OPS
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    kind = "nas-bench-201"

    @staticmethod
    def to_string(edge_ops: Sequence[str]) -> str:
        e = list(edge_ops)
        return (f"|{e[0]}~0|+|{e[1]}~0|{e[2]}~1|+|{e[3]}~0|{e[4]}~1|{e[5]}~2|")

    @staticmethod
    def edge_ops(value: str) -> list[str]:
        """The 6 operations of a cell string, in edge order; ValueError for a malformed string."""
        if not isinstance(value, str):
            raise ValueError(f"a NAS-Bench-201 cell is a string like {NasBench201Param.to_string(['skip_connect'] * 6)!r}, "
                             f"got {value!r}")
        ops: list[str] = []
        nodes = value.split("+")
        if len(nodes) != 3:
            raise ValueError(f"a NAS-Bench-201 cell string has 3 '+'-separated nodes, got {value!r}")
        for j, node in enumerate(nodes, start=1):
            items = [s for s in node.strip("|").split("|")]
            if len(items) != j:
                raise ValueError(f"node {j} of a NAS-Bench-201 cell has {j} inputs, got {len(items)} in {value!r}")
            for i, item in enumerate(items):
                op, _, src = item.partition("~")
                if src != str(i) or op not in NB201_OPS:
                    raise ValueError(f"bad edge {item!r} in NAS-Bench-201 cell {value!r}; expected OP~{i} with "
                                     f"OP one of {', '.join(NB201_OPS)}")
                ops.append(op)
        return ops

    def sample(self, rng) -> str:
        return self.to_string([self.ops[int(rng.integers(len(self.ops)))] for _ in range(6)])

    def mutate(self, value: str, rng) -> str:
        ops = self.edge_ops(value)
        k = int(rng.integers(6))
        ops[k] = _pick_other(self.ops, ops[k], rng)
        return self.to_string(ops)

    def size(self) -> int:
        return len(self.ops) ** 6

    def grid(self, n: int) -> list[str]:
        return [self.to_string(c) for c in itertools.product(self.ops, repeat=6)]

    def contains(self, v: Any) -> bool:
        try:
            return all(op in self.ops for op in self.edge_ops(v))
        except ValueError:
            return False

    def parts(self) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        return tuple((f"edge{j}<-{i}", self.ops) for j, i in NB201_EDGES)

    def join(self, parts: Mapping[str, Any]) -> str:
        return self.to_string([parts[p] for p, _ in self.parts()])

    def split(self, value: str) -> dict[str, Any]:
        return {p: op for (p, _), op in zip(self.parts(), self.edge_ops(value))}

    def schema(self) -> dict[str, Any]:
        return {"kind": self.kind, "ops": list(self.ops)}


def _make_nb201(name: str, spec: Mapping[str, Any], when: Mapping[str, tuple[Any, ...]], path: str):
    _no_unknown(spec, {"type", "ops", "when"}, path)
    ops = _check_options(spec, "ops", path, NB201_OPS, allowed=NB201_OPS)
    if len(ops) < 2:
        raise _err(f"{path}.ops", f"needs at least 2 operations to search over, got {list(ops)}")
    return NasBench201Param(name, tuple(o for o in NB201_OPS if o in ops), when=when)


# --------------------------------------------------------------------------------------------
# Layer-list spaces (CNN, heterogeneous LM): a value is a list of per-layer dicts


class _LayerListParam:
    """Shared machinery: a depth range and, per layer, a "slot" of independent categorical fields
    (``_slot_parts``). Subclasses map slots to layer dicts (``_from_slot``, which also repairs
    combinations a slot can express but the space forbids) and back (``_to_slot``)."""

    name: str
    depth: tuple[int, int]
    when: Mapping[str, tuple[Any, ...]]

    def _sample_layer(self, rng) -> dict[str, Any]:
        return self._from_slot({k: choices[int(rng.integers(len(choices)))] for k, choices in self._slot_parts()})

    def _layer_ok(self, layer: Any) -> bool:
        raise NotImplementedError

    def _fits(self, layers: list[dict[str, Any]]) -> bool:
        """Whether a well-formed architecture meets the space's constraints beyond its choices
        (none here; the LM space's max_params)."""
        return True

    def sample(self, rng) -> list[dict[str, Any]]:
        lo, hi = self.depth
        for _ in range(MAX_DRAWS):
            n = lo + int(rng.integers(hi - lo + 1))
            out = [self._sample_layer(rng) for _ in range(n)]
            if self._fits(out):
                return out
        raise ValueError(f"space {self.name!r}: no architecture within its constraints in {MAX_DRAWS} draws; "
                         "loosen them (e.g. raise max_params)")

    def _move(self, layers: list[dict[str, Any]], rng) -> list[dict[str, Any]]:
        lo, hi = self.depth
        options = [(k, c) for k, c in self._slot_parts() if len(c) > 1]
        moves = ((["field"] if options else []) + (["add"] if len(layers) < hi else [])
                 + (["remove"] if len(layers) > lo else []))
        move = moves[int(rng.integers(len(moves)))]
        if move == "add":
            layers.insert(int(rng.integers(len(layers) + 1)), self._sample_layer(rng))
        elif move == "remove":
            del layers[int(rng.integers(len(layers)))]
        else:
            i = int(rng.integers(len(layers)))
            key, choices = options[int(rng.integers(len(options)))]
            slot = self._to_slot(layers[i])
            slot[key] = _pick_other(choices, slot[key], rng)
            layers[i] = self._from_slot(slot)
        return layers

    def mutate(self, value: Sequence[Mapping[str, Any]], rng) -> list[dict[str, Any]]:
        """One add, remove or single-field change. Some slot changes are no-ops (the heads of a
        non-attention layer), so moves repeat until the architecture differs; the space validation
        guarantees that it can."""
        for _ in range(MAX_DRAWS):
            out = self._move([dict(layer) for layer in value], rng)
            if out != list(value) and self._fits(out):
                return out
        raise ValueError(f"space {self.name!r}: no mutation of {value!r} within its constraints in {MAX_DRAWS} "
                         "tries; loosen them (e.g. raise max_params)")

    def contains(self, v: Any) -> bool:
        lo, hi = self.depth
        return (isinstance(v, list) and lo <= len(v) <= hi and all(self._layer_ok(layer) for layer in v)
                and self._fits(v))

    def size(self) -> int:
        raise NotImplementedError

    def grid(self, n: int) -> list[list[dict[str, Any]]]:
        size = self.size()
        if size > GRID_LIMIT:
            raise ValueError(f"space {self.name!r} has {size} architectures, more than grid search enumerates "
                             f"({GRID_LIMIT}); use random, regevo or boshnas, or narrow the space")
        out: list[list[dict[str, Any]]] = []
        layer_grid = self._all_layers()
        lo, hi = self.depth
        for depth in range(lo, hi + 1):
            for combo in itertools.product(layer_grid, repeat=depth):
                arch = [dict(layer) for layer in combo]
                if self._fits(arch):
                    out.append(arch)
        return out

    def homogeneous(self) -> list[list[dict[str, Any]]]:
        """Every architecture of the space whose layers are all the same layer, shallowest first:
        the baseline a heterogeneous search has to beat."""
        lo, hi = self.depth
        out = [[dict(layer) for _ in range(depth)] for depth in range(lo, hi + 1) for layer in self._all_layers()]
        return [arch for arch in out if self._fits(arch)]

    def _all_layers(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _slot_parts(self) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        raise NotImplementedError

    def parts(self) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        lo, hi = self.depth
        out: list[tuple[str, tuple[Any, ...]]] = [("depth", tuple(range(lo, hi + 1)))]
        for i in range(hi):
            out += [(f"layer{i}.{k}", choices) for k, choices in self._slot_parts()]
        return tuple(out)

    def join(self, parts: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [self._from_slot({k: parts[f"layer{i}.{k}"] for k, _ in self._slot_parts()})
                for i in range(int(parts["depth"]))]

    def split(self, value: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"depth": len(value)}
        for i, layer in enumerate(value):
            out.update({f"layer{i}.{k}": v for k, v in self._to_slot(layer).items()})
        return out

    def _from_slot(self, slot: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _to_slot(self, layer: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class CnnParam(_LayerListParam):
    """A plain CNN for image classification: ``depth`` conv layers, each with its own width and
    kernel size and (when ``skip`` is on) an optional residual connection around it. The value is a
    list like ``[{width: 32, kernel: 3, skip: false}, {width: 64, kernel: 5, skip: true}]``."""

    name: str
    depth: tuple[int, int] = (1, 4)
    widths: tuple[int, ...] = (16, 32, 64)
    kernels: tuple[int, ...] = (3, 5)
    skips: tuple[bool, ...] = (False, True)
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    kind = "cnn"

    def _layer_ok(self, layer: Any) -> bool:
        return (isinstance(layer, dict) and set(layer) == {"width", "kernel", "skip"}
                and not isinstance(layer["width"], bool) and layer["width"] in self.widths
                and not isinstance(layer["kernel"], bool) and layer["kernel"] in self.kernels
                and isinstance(layer["skip"], bool) and layer["skip"] in self.skips)

    def size(self) -> int:
        per = len(self.widths) * len(self.kernels) * len(self.skips)
        return sum(per ** d for d in range(self.depth[0], self.depth[1] + 1))

    def _all_layers(self):
        return [{"width": w, "kernel": k, "skip": s}
                for w, k, s in itertools.product(self.widths, self.kernels, self.skips)]

    def _slot_parts(self):
        return (("width", self.widths), ("kernel", self.kernels), ("skip", self.skips))

    def _from_slot(self, slot):
        return {"width": slot["width"], "kernel": slot["kernel"], "skip": slot["skip"]}

    def _to_slot(self, layer):
        return dict(layer)

    def schema(self) -> dict[str, Any]:
        return {"kind": self.kind, "depth": list(self.depth), "widths": list(self.widths),
                "kernels": list(self.kernels), "skips": list(self.skips)}


def _make_cnn(name: str, spec: Mapping[str, Any], when: Mapping[str, tuple[Any, ...]], path: str):
    _no_unknown(spec, {"type", "depth", "widths", "kernels", "skip", "when"}, path)
    depth = _check_range(spec, "depth", path, (1, 4))
    widths = _check_options(spec, "widths", path, (16, 32, 64), positive_int=True)
    kernels = _check_options(spec, "kernels", path, (3, 5), positive_int=True)
    for k in kernels:
        if k % 2 == 0:
            raise _err(f"{path}.kernels", f"kernel sizes must be odd (same padding), got {k}; use e.g. [3, 5, 7]")
    skip = spec.get("skip", True)
    if not isinstance(skip, bool):
        raise _err(f"{path}.skip", f"must be true (layers may have a residual connection) or false, got {skip!r}")
    param = CnnParam(name, depth, widths, kernels, (False, True) if skip else (False,), when=when)
    if param.size() == 1:
        raise _err(path, "has a single architecture; give more depths, widths, kernels or skip: true")
    return param


@dataclass(frozen=True)
class LmLayersParam(_LayerListParam):
    """The heterogeneous transformer space of ``builtin:lm`` (FlexiBERT-style): each layer picks
    its operation, width, attention heads (attention layers only; always a divisor of the width) and
    feed-forward width (``ffn_mult`` times the width) and, when ``kernels`` is given, the kernel
    size of each conv layer (FlexiBERT's convolutions come in several kernel sizes; without
    ``kernels`` conv layers carry no ``kernel`` and the trainer's default applies). The value is
    ``builtin:lm``'s ``layers``:
    ``[{op: attention, width: 64, heads: 2, ffn: 128}, {op: conv, width: 96, ffn: 192, kernel: 15}]``.

    ``max_params`` (optional) caps the model size: only architectures with at most that many
    non-embedding parameters (what ``builtin:lm`` reports as ``params_non_embedding``: blocks,
    final norm and head; Kaplan et al.'s N) are in the space, for sampling, mutation, grids,
    ``homogeneous()`` and ``contains``. ``size()`` still counts the architectures without the cap."""

    name: str
    depth: tuple[int, int] = (1, 4)
    ops: tuple[str, ...] = LM_OPS
    widths: tuple[int, ...] = (32, 64, 96)
    heads: tuple[int, ...] = (1, 2, 4)
    ffn_mult: tuple[int, ...] = (2, 4)
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    kernels: tuple[int, ...] = ()  # conv kernel sizes; () = conv layers carry no kernel
    max_params: int | None = None  # cap on non-embedding parameters; None = no cap
    kind = "lm-layers"

    def params_of(self, layers: Sequence[Mapping[str, Any]]) -> int:
        """Non-embedding parameters ``builtin:lm`` builds for these layers."""
        from trials.models import lm_non_embedding_params, normalize_layers

        return lm_non_embedding_params(normalize_layers(list(layers), {}))

    def _fits(self, layers):
        return self.max_params is None or self.params_of(layers) <= self.max_params

    def _heads_for(self, width: int) -> tuple[int, ...]:
        return tuple(h for h in self.heads if width % h == 0)

    def _layer_ok(self, layer: Any) -> bool:
        if not isinstance(layer, dict):
            return False
        op, width, ffn = layer.get("op"), layer.get("width"), layer.get("ffn")
        want = ({"op", "width", "ffn"} | ({"heads"} if op == "attention" else set())
                | ({"kernel"} if op == "conv" and self.kernels else set()))
        if set(layer) != want or op not in self.ops or isinstance(width, bool) or width not in self.widths:
            return False
        if op == "attention" and (isinstance(layer["heads"], bool) or layer["heads"] not in self._heads_for(width)):
            return False
        if "kernel" in want and (isinstance(layer["kernel"], bool) or layer["kernel"] not in self.kernels):
            return False
        return (isinstance(ffn, int) and not isinstance(ffn, bool) and ffn % width == 0
                and ffn // width in self.ffn_mult)

    def _all_layers(self):
        out = []
        for op, w, m in itertools.product(self.ops, self.widths, self.ffn_mult):
            if op == "attention":
                out += [{"op": op, "width": w, "heads": h, "ffn": w * m} for h in self._heads_for(w)]
            elif op == "conv" and self.kernels:
                out += [{"op": op, "width": w, "ffn": w * m, "kernel": k} for k in self.kernels]
            else:
                out.append({"op": op, "width": w, "ffn": w * m})
        return out

    def size(self) -> int:
        per = len(self._all_layers())
        return sum(per ** d for d in range(self.depth[0], self.depth[1] + 1))

    def _slot_parts(self):
        parts = (("op", self.ops), ("width", self.widths), ("heads", self.heads), ("ffn_mult", self.ffn_mult))
        return parts + ((("kernel", self.kernels),) if self.kernels else ())

    def _from_slot(self, slot):
        layer: dict[str, Any] = {"op": slot["op"], "width": slot["width"]}
        if slot["op"] == "attention":
            hs = self._heads_for(slot["width"])
            # A sampler that knows nothing of divisibility may pick heads that do not divide the
            # width; the nearest valid count below it (or the smallest valid one) stands in.
            below = [h for h in hs if h <= slot["heads"]]
            layer["heads"] = max(below) if below else min(hs)
        layer["ffn"] = slot["width"] * slot["ffn_mult"]
        if slot["op"] == "conv" and self.kernels:
            layer["kernel"] = slot["kernel"]
        return layer

    def _to_slot(self, layer):
        # A non-attention layer has no heads and a non-conv layer no kernel; the slot carries
        # fillers that _from_slot ignores.
        slot = {"op": layer["op"], "width": layer["width"], "heads": layer.get("heads", self.heads[0]),
                "ffn_mult": layer["ffn"] // layer["width"]}
        if self.kernels:
            slot["kernel"] = layer.get("kernel", self.kernels[0])
        return slot

    def schema(self) -> dict[str, Any]:
        out = {"kind": self.kind, "depth": list(self.depth), "ops": list(self.ops), "widths": list(self.widths),
               "heads": list(self.heads), "ffn_mult": list(self.ffn_mult)}
        if self.kernels:  # absent otherwise, so the schema of a space without kernels is unchanged
            out["kernels"] = list(self.kernels)
        if self.max_params is not None:
            out["max_params"] = self.max_params
        return out


def _make_lm(name: str, spec: Mapping[str, Any], when: Mapping[str, tuple[Any, ...]], path: str):
    _no_unknown(spec, {"type", "layers", "ops", "widths", "heads", "ffn_mult", "kernels", "max_params", "when"}, path)
    depth = _check_range(spec, "layers", path, (1, 4))
    ops = _check_options(spec, "ops", path, LM_OPS, allowed=LM_OPS)
    widths = _check_options(spec, "widths", path, (32, 64, 96), positive_int=True)
    heads = _check_options(spec, "heads", path, (1, 2, 4), positive_int=True)
    ffn_mult = _check_options(spec, "ffn_mult", path, (2, 4), positive_int=True)
    if "attention" in ops:
        for w in widths:
            if not any(w % h == 0 for h in heads):
                raise _err(f"{path}.heads", f"no head count in {list(heads)} divides width {w}; "
                                            "add 1 to heads or change the widths")
    kernels: tuple[int, ...] = ()
    if "kernels" in spec:
        kernels = _check_options(spec, "kernels", path, (3, 7, 15), positive_int=True)
        if "conv" not in ops:
            raise _err(f"{path}.kernels", "apply to conv layers, but ops has no conv; add conv to ops or "
                                          "remove kernels")
    max_params = spec.get("max_params")
    if max_params is not None and (isinstance(max_params, bool) or not isinstance(max_params, int) or max_params < 1):
        raise _err(f"{path}.max_params", f"must be a positive integer (non-embedding parameters), got {max_params!r}")
    param = LmLayersParam(name, depth, ops, widths, heads, ffn_mult, when=when, kernels=kernels,
                          max_params=max_params)
    if param.size() == 1:
        raise _err(path, "has a single architecture; give more layers, ops, widths, heads or ffn_mult")
    if max_params is not None:
        # Every layer after the first only adds parameters, and a width change adds a projection:
        # the smallest model is the cheapest layer repeated at the smallest depth.
        smallest = min(param.params_of([layer] * depth[0]) for layer in param._all_layers())
        if smallest > max_params:
            raise _err(f"{path}.max_params", f"{max_params} is below the smallest architecture of the space "
                                             f"({smallest} non-embedding parameters); raise it to at least {smallest}")
    return param


ARCH_TYPES: dict[str, Callable[..., Any]] = {
    "nas-bench-201": _make_nb201,
    "cnn": _make_cnn,
    "lm-layers": _make_lm,
}
