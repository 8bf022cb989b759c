"""Layer-list spaces list their homogeneous architectures: the baseline of a heterogeneous search."""
from __future__ import annotations

import json

import numpy as np

from search.config import parse_study


def arch_of(spec: dict):
    study = {"name": "s", "objective": {"metric": "loss", "direction": "minimize"},
             "trial": {"entrypoint": "builtin:tabular"}, "space": {"arch": spec}}
    [param] = list(parse_study(study).space)
    return param


def test_lm_homogeneous_is_every_all_alike_model_of_the_space():
    param = arch_of({"type": "lm-layers", "layers": [2, 3], "ops": ["attention", "conv"], "widths": [32, 48],
                     "heads": [2, 3], "ffn_mult": [2, 4]})
    homo = param.homogeneous()
    # per layer: attention 32 (heads 2) + attention 48 (heads 2 or 3) = 3 head/width combinations,
    # conv 2 widths; times 2 FFN sizes = 10 layers; at 2 depths
    assert len(homo) == 20
    assert len({json.dumps(a, sort_keys=True) for a in homo}) == 20
    for arch in homo:
        assert param.contains(arch)
        assert len({json.dumps(layer, sort_keys=True) for layer in arch}) == 1
    assert sorted({len(a) for a in homo}) == [2, 3]
    # and every sample that happens to be all alike is one of them
    keys = {json.dumps(a, sort_keys=True) for a in homo}
    rng = np.random.default_rng(0)
    for _ in range(2000):
        a = param.sample(rng)
        if len({json.dumps(layer, sort_keys=True) for layer in a}) == 1:
            assert json.dumps(a, sort_keys=True) in keys


def test_cnn_homogeneous_layers_are_copies():
    param = arch_of({"type": "cnn", "depth": [1, 2], "widths": [8, 16], "kernels": [3], "skip": False})
    homo = param.homogeneous()
    assert homo == [[{"width": 8, "kernel": 3, "skip": False}], [{"width": 16, "kernel": 3, "skip": False}],
                    [{"width": 8, "kernel": 3, "skip": False}] * 2, [{"width": 16, "kernel": 3, "skip": False}] * 2]
    homo[2][0]["width"] = 99  # each layer is its own dict
    assert homo[2][1]["width"] == 8
