"""Architectures as feature vectors for surrogates.

An encoder is built from a space's ``schema()`` (plain data such as ``{"kind": "nas-bench-201",
"ops": [...]}``; this module never imports ``search``) and turns architecture values (the JSON data a
study stores) into a 2-D float array. Three encodings:

- ``onehot``: the adjacency one-hot. For a NAS-Bench-201 cell, edge x operation (6 x 5 = 30
  features; the cell's labelled adjacency tensor, flattened). For a layer list, one block per layer
  slot up to the maximum depth (a "present" bit plus a one-hot per field) and a one-hot of the depth.
- ``path``: BANANAS-style path encoding (White et al. 2021). For a cell, one indicator per sequence
  of operations along a path from the input node to the output node (paths through ``none`` carry
  nothing, so 4 + 4^2 + 4^3 = 84 features with all five operations). For a layer list, the same idea
  on a chain: indicators of every layer token and every pair of consecutive layer tokens.
- ``wl``: a graph-similarity embedding in the spirit of FlexiBERT's. Each architecture is a labelled
  DAG (cells: feature-map nodes and one node per operation; layer lists: a chain with residual edges
  where a CNN layer has ``skip``). Weisfeiler-Lehman subtree relabelling (``wl_iterations`` rounds,
  in- and out-neighbours kept apart) gives label counts, hashed with a stable signed hash into
  ``wl_dim`` buckets and L2-normalised. Then ||phi(a) - phi(b)||^2 = 2 - 2 k(a, b), with k the
  normalised WL subtree kernel (up to hash collisions): Euclidean distance in the embedding
  decreases exactly as the graphs' WL similarity grows, so no reference set or MDS fit is needed and
  new architectures embed consistently.
- ``onehot+path``: both side by side. The one-hot blocks say where each choice sits (which edge,
  which layer); the path features say what follows what, wherever it sits. BOSHNAS's default:
  on layer lists the bag of tokens and pairs alone cannot tell the last layer from the first.
"""
from __future__ import annotations

import hashlib
import itertools
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["ArchEncoder", "ENCODINGS", "nb201_edge_ops", "arch_graph", "wl_features"]

ENCODINGS = ("onehot", "path", "wl", "onehot+path")
_NB201_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
_NB201_ALL_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
_LAYER_FIELDS = {"lm-layers": ("op", "width", "heads", "ffn_mult", "kernel"), "cnn": ("width", "kernel", "skip")}


def nb201_edge_ops(value: str) -> list[str]:
    """The 6 edge operations of a NAS-Bench-201 string, in the standard edge order."""
    ops = []
    for node in value.split("+"):
        for item in node.strip("|").split("|"):
            ops.append(item.partition("~")[0])
    if len(ops) != 6 or any(op not in _NB201_ALL_OPS for op in ops):
        raise ValueError(f"expected a NAS-Bench-201 cell string with 6 edges, got {value!r}")
    return ops


def _layer_slot(kind: str, layer: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "lm-layers":
        return {"op": layer["op"], "width": layer["width"], "heads": layer.get("heads"),
                "ffn_mult": layer["ffn"] // layer["width"], "kernel": layer.get("kernel")}
    return {"width": layer["width"], "kernel": layer["kernel"], "skip": layer["skip"]}


def _layer_token(kind: str, layer: Mapping[str, Any]) -> str:
    slot = _layer_slot(kind, layer)
    return "/".join(f"{k}={slot[k]}" for k in _LAYER_FIELDS[kind] if slot[k] is not None)


def arch_graph(schema: Mapping[str, Any], value: Any) -> tuple[list[str], list[tuple[int, int]]]:
    """A labelled DAG (node labels, directed edges) for ``value``; node 0 is the input."""
    kind = schema["kind"]
    if kind == "nas-bench-201":
        labels = ["input", "node", "node", "output"]
        edges: list[tuple[int, int]] = []
        for (dst, src), op in zip(_NB201_EDGES, nb201_edge_ops(value)):
            if op == "none":
                continue
            labels.append(op)
            k = len(labels) - 1
            edges += [(src, k), (k, dst)]
        return labels, edges
    if kind in _LAYER_FIELDS:
        labels = ["input"] + [_layer_token(kind, layer) for layer in value] + ["output"]
        edges = [(i, i + 1) for i in range(len(labels) - 1)]
        for i, layer in enumerate(value, start=1):
            if layer.get("skip"):
                edges.append((i - 1, i + 1))
        return labels, edges
    raise ValueError(f"no graph for architecture kind {kind!r}; known kinds: nas-bench-201, cnn, lm-layers")


def wl_features(labels: Sequence[str], edges: Sequence[tuple[int, int]], iterations: int) -> dict[str, int]:
    """Counts of Weisfeiler-Lehman subtree labels over ``iterations`` rounds (round 0: node labels)."""
    preds: list[list[int]] = [[] for _ in labels]
    succs: list[list[int]] = [[] for _ in labels]
    for a, b in edges:
        succs[a].append(b)
        preds[b].append(a)
    counts: dict[str, int] = {}
    current = list(labels)
    for it in range(iterations + 1):
        for lab in current:
            key = f"{it}:{lab}"
            counts[key] = counts.get(key, 0) + 1
        # Compressing to a digest keeps labels short; identical subtrees still get identical digests.
        current = [hashlib.md5(f"{current[v]}<{sorted(current[u] for u in preds[v])}>"
                               f"{sorted(current[u] for u in succs[v])}".encode()).hexdigest()[:16]
                   for v in range(len(labels))]
    return counts


def _signed_bucket(key: str, dim: int) -> tuple[int, float]:
    h = int.from_bytes(hashlib.md5(key.encode()).digest()[:8], "little")
    return h % dim, (1.0 if (h >> 63) & 1 else -1.0)


class ArchEncoder:
    """``transform(values) -> (n, n_features)`` float array for architectures of one space.

    Parameters
    ----------
    schema: the space's ``schema()`` (``kind`` plus its options).
    method: ``onehot``, ``path``, ``wl`` or ``onehot+path``.
    wl_iterations, wl_dim: WL rounds and hashed dimension of the ``wl`` embedding.
    """

    def __init__(self, schema: Mapping[str, Any], method: str = "onehot", *, wl_iterations: int = 2,
                 wl_dim: int = 256) -> None:
        self.schema = dict(schema)
        self.method = method
        self.wl_iterations = wl_iterations
        self.wl_dim = wl_dim
        kind = self.schema.get("kind")
        if method not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {method!r}")
        if kind not in ("nas-bench-201", *_LAYER_FIELDS):
            raise ValueError(f"schema kind must be nas-bench-201, cnn or lm-layers, got {kind!r}")
        self._parts = ([ArchEncoder(schema, m, wl_iterations=wl_iterations, wl_dim=wl_dim) for m in method.split("+")]
                       if "+" in method else [])
        self._vocab = {} if self._parts else self._build_vocab()

    @property
    def n_features(self) -> int:
        if self._parts:
            return sum(p.n_features for p in self._parts)
        return self.wl_dim if self.method == "wl" else len(self._vocab)

    def _field_choices(self) -> dict[str, list[Any]]:
        s = self.schema
        if s["kind"] == "lm-layers":
            # A space without ``kernels`` has conv layers without a kernel field: one None choice.
            return {"op": s["ops"], "width": s["widths"], "heads": s["heads"], "ffn_mult": s["ffn_mult"],
                    "kernel": s.get("kernels") or [None]}
        return {"width": s["widths"], "kernel": s["kernels"], "skip": s["skips"]}

    def _build_vocab(self) -> dict[Any, int]:
        s, kind, keys = self.schema, self.schema["kind"], []
        if self.method == "wl":
            return {}
        if kind == "nas-bench-201":
            if self.method == "onehot":
                keys = [(e, op) for e in range(6) for op in s["ops"]]
            else:
                live = [op for op in s["ops"] if op != "none"]
                keys = [seq for n in (1, 2, 3) for seq in itertools.product(live, repeat=n)]
        else:
            choices = self._field_choices()
            lo, hi = s["depth"]
            if self.method == "onehot":
                keys = [("depth", d) for d in range(lo, hi + 1)]
                for i in range(hi):
                    keys.append((i, "present"))
                    keys += [(i, f, c) for f, cs in choices.items() for c in cs if c is not None]
            else:
                tokens = [self._token_of(combo) for combo in itertools.product(*choices.values())]
                tokens = list(dict.fromkeys(tokens))
                keys = tokens + list(itertools.product(tokens, repeat=2))
        return {k: i for i, k in enumerate(keys)}

    def _token_of(self, combo: Sequence[Any]) -> str:
        kind = self.schema["kind"]
        slot = dict(zip(_LAYER_FIELDS[kind], combo))
        if kind == "lm-layers" and slot["op"] != "attention":
            slot["heads"] = None
        if kind == "lm-layers" and slot["op"] != "conv":
            slot["kernel"] = None
        return "/".join(f"{k}={slot[k]}" for k in _LAYER_FIELDS[kind] if slot[k] is not None)

    def _nb201_paths(self, ops: list[str]) -> list[tuple[str, ...]]:
        by_edge = {e: op for e, op in zip(_NB201_EDGES, ops)}
        out = []
        for route in ((0, 3), (0, 1, 3), (0, 2, 3), (0, 1, 2, 3)):
            seq = tuple(by_edge[(b, a)] for a, b in zip(route, route[1:]))
            if "none" not in seq:
                out.append(seq)
        return out

    def _one(self, value: Any) -> np.ndarray:
        kind = self.schema["kind"]
        if self.method == "wl":
            x = np.zeros(self.wl_dim)
            labels, edges = arch_graph(self.schema, value)
            for key, count in wl_features(labels, edges, self.wl_iterations).items():
                b, sign = _signed_bucket(key, self.wl_dim)
                x[b] += sign * count
            norm = np.linalg.norm(x)
            return x / norm if norm > 0 else x
        x = np.zeros(len(self._vocab))
        if kind == "nas-bench-201":
            ops = nb201_edge_ops(value)
            if self.method == "onehot":
                keys = [(e, op) for e, op in enumerate(ops)]
            else:
                keys = self._nb201_paths(ops)
        elif self.method == "onehot":
            keys = [("depth", len(value))]
            for i, layer in enumerate(value):
                slot = _layer_slot(kind, layer)
                keys.append((i, "present"))
                keys += [(i, f, slot[f]) for f in _LAYER_FIELDS[kind] if slot[f] is not None]
        else:
            tokens = [_layer_token(kind, layer) for layer in value]
            keys = tokens + list(zip(tokens, tokens[1:]))
        for k in keys:
            if k not in self._vocab:
                raise ValueError(f"architecture {value!r} is outside the encoder's space: unknown feature {k!r}")
            x[self._vocab[k]] = 1.0
        return x

    def transform(self, values: Sequence[Any]) -> np.ndarray:
        if len(values) == 0:
            return np.zeros((0, self.n_features))
        if self._parts:
            return np.hstack([p.transform(values) for p in self._parts])
        return np.stack([self._one(v) for v in values])
