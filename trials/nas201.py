"""The NAS-Bench-201 network (Dong & Yang 2020) in PyTorch, built from a cell string.

Macro skeleton as in the benchmark: a 3x3 conv stem, three stages of ``cells_per_stage`` identical
cells at ``C``, ``2C`` and ``4C`` channels joined by residual reduction blocks (stride 2), then
BN-ReLU, global average pooling and a linear classifier. The benchmark trains C=16 with 5 cells per
stage; zero-cost scoring uses a narrower, shallower copy so it stays cheap on a CPU.

In a cell, node j sums ``op(node i)`` over its inputs i < j; the operations are ``none`` (zero),
``skip_connect`` (identity), ``nor_conv_1x1`` / ``nor_conv_3x3`` (ReLU-conv-BN) and
``avg_pool_3x3`` (stride 1).
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["NB201_OPS", "parse_cell", "Cell", "NB201Network", "build_nb201"]

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def parse_cell(arch: str) -> list[list[tuple[str, int]]]:
    """``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` to, per node 1..3, its (operation, input node) pairs."""
    nodes = []
    for j, node in enumerate(arch.split("+"), start=1):
        edges = []
        for item in node.strip("|").split("|"):
            op, _, src = item.partition("~")
            if op not in NB201_OPS or not src.isdigit() or int(src) >= j:
                raise ValueError(f"bad edge {item!r} of node {j} in cell {arch!r}; expected OP~i with i < {j} "
                                 f"and OP one of {', '.join(NB201_OPS)}")
            edges.append((op, int(src)))
        nodes.append(edges)
    if len(nodes) != 3 or [len(n) for n in nodes] != [1, 2, 3]:
        raise ValueError(f"a NAS-Bench-201 cell has nodes with 1, 2 and 3 inputs, got {arch!r}")
    return nodes


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def _relu_conv_bn(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out))


def _op(name: str, c: int) -> nn.Module:
    if name == "none":
        return _Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return _relu_conv_bn(c, c, 1)
    if name == "nor_conv_3x3":
        return _relu_conv_bn(c, c, 3)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Cell(nn.Module):
    def __init__(self, arch: str, c: int) -> None:
        super().__init__()
        self.edges = parse_cell(arch)
        self.ops = nn.ModuleList(_op(op, c) for node in self.edges for op, _ in node)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        k = 0
        for node in self.edges:
            total = 0
            for _, src in node:
                total = total + self.ops[k](states[src])
                k += 1
            states.append(total)
        return states[-1]


class _Reduction(nn.Module):
    """The benchmark's residual block between stages: two ReLU-conv-BN (the first with stride 2)
    plus an average-pool + 1x1 conv shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.a = _relu_conv_bn(c_in, c_out, 3, 2)
        self.b = _relu_conv_bn(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + self.shortcut(x)


class NB201Network(nn.Module):
    def __init__(self, arch: str, C: int = 16, cells_per_stage: int = 5, num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        c = C
        for stage in range(3):
            if stage:
                layers.append(_Reduction(c, 2 * c))
                c *= 2
            layers += [Cell(arch, c) for _ in range(cells_per_stage)]
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.cells(self.stem(x)))


def build_nb201(arch: str, C: int = 16, cells_per_stage: int = 5, num_classes: int = 10,
                in_channels: int = 3, seed: int | None = None) -> NB201Network:
    """A freshly initialised network; ``seed`` fixes the initial weights without touching the
    global torch random state."""
    if seed is None:
        return NB201Network(arch, C, cells_per_stage, num_classes, in_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NB201Network(arch, C, cells_per_stage, num_classes, in_channels)

