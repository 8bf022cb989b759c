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


def test_lm_kernels_are_a_per_layer_choice_of_conv_layers():
    from trials.models import normalize_layers

    param = arch_of({"type": "lm-layers", "layers": [2, 3], "ops": ["attention", "conv"], "widths": [32],
                     "heads": [2], "ffn_mult": [2], "kernels": [3, 15]})
    # per layer: attention, conv k3, conv k15; at 2 depths
    homo = param.homogeneous()
    assert len(homo) == 6 and param.size() == 3**2 + 3**3
    assert {layer.get("kernel") for arch in homo for layer in arch} == {None, 3, 15}
    assert param.schema()["kernels"] == [3, 15]
    rng = np.random.default_rng(0)
    kernels = []
    for _ in range(300):
        arch = param.sample(rng)
        assert param.contains(arch) and param.contains(param.mutate(arch, rng))
        assert param.join(param.split(arch)) == arch
        for layer in arch:
            assert ("kernel" in layer) == (layer["op"] == "conv")
        kernels += [layer["kernel"] for layer in arch if layer["op"] == "conv"]
        built = normalize_layers(arch, {})
        assert [b.get("kernel") for b in built if b["op"] == "conv"] == [a["kernel"] for a in arch if a["op"] == "conv"]
    assert set(kernels) == {3, 15}
    bad = [{"op": "conv", "width": 32, "ffn": 64, "kernel": 7}, {"op": "conv", "width": 32, "ffn": 64, "kernel": 3}]
    assert not param.contains(bad)  # 7 is not one of the space's kernels
    assert not param.contains([{"op": "conv", "width": 32, "ffn": 64}] * 2)  # the kernel is part of the value
    # without kernels, conv layers carry none and the schema is what it always was
    plain = arch_of({"type": "lm-layers", "layers": [2, 3], "ops": ["attention", "conv"], "widths": [32],
                     "heads": [2], "ffn_mult": [2]})
    assert "kernels" not in plain.schema()
    assert all("kernel" not in layer for arch in plain.homogeneous() for layer in arch)


def test_cnn_homogeneous_layers_are_copies():
    param = arch_of({"type": "cnn", "depth": [1, 2], "widths": [8, 16], "kernels": [3], "skip": False})
    homo = param.homogeneous()
    assert homo == [[{"width": 8, "kernel": 3, "skip": False}], [{"width": 16, "kernel": 3, "skip": False}],
                    [{"width": 8, "kernel": 3, "skip": False}] * 2, [{"width": 16, "kernel": 3, "skip": False}] * 2]
    homo[2][0]["width"] = 99  # each layer is its own dict
    assert homo[2][1]["width"] == 8


def test_lm_max_params_caps_every_architecture_the_space_yields():
    """max_params keeps exactly the architectures whose non-embedding parameter count, as the
    trainer builds them, is within the cap: samples, mutations, homogeneous() and contains."""
    from trials.models import ByteLM, count_params, normalize_layers

    spec = {"type": "lm-layers", "layers": [2, 4], "ops": ["attention", "conv"], "widths": [32, 48],
            "heads": [2], "ffn_mult": [2, 4], "kernels": [3, 31]}
    free, capped = arch_of(spec), arch_of({**spec, "max_params": 60_000})
    assert capped.schema()["max_params"] == 60_000 and "max_params" not in free.schema()
    homo = free.homogeneous()
    assert [a for a in homo if free.params_of(a) <= 60_000] == capped.homogeneous()
    assert 0 < len(capped.homogeneous()) < len(homo)
    rng = np.random.default_rng(0)
    over = 0
    for _ in range(300):
        a = capped.sample(rng)
        assert capped.params_of(a) <= 60_000 and capped.contains(a)
        m = capped.mutate(a, rng)
        assert m != a and capped.params_of(m) <= 60_000
        b = free.sample(rng)
        over += free.params_of(b) > 60_000
        assert capped.contains(b) == (free.params_of(b) <= 60_000)
    assert over > 30  # the cap binds: plenty of the free space is over it
    for arch in capped.homogeneous()[:3] + [capped.sample(rng)]:
        assert capped.params_of(arch) == count_params(ByteLM(normalize_layers(arch, {}), 16))[1]
