"""SpaceEncoder: duck-typed parameters, mixed and conditional layouts, decode (trial records are
encoded by search.encoding, tested in tests/search/test_encoding.py)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from search.space import CategoricalParam, FloatParam, IntParam, Space
from surrogates.encoders import SpaceEncoder

SPACE = Space.of([
    CategoricalParam("opt", ("sgd", "adam", "rmsprop")),
    FloatParam("lr", 1e-5, 1e-1, log=True),
    IntParam("layers", 1, 6),
    FloatParam("momentum", 0.0, 0.99, when={"opt": ("sgd", "rmsprop")}),
    IntParam("batch", 16, 256, log=True, step=16),
    FloatParam("dropout", 0.0, 0.5, step=0.1),
])


def _valid(config):
    for p in SPACE:
        active = Space.is_active(p, config)
        assert (p.name in config) == active, (p.name, config)
        if active:
            assert p.contains(config[p.name]), (p.name, config[p.name])
            if isinstance(p, IntParam):
                assert (config[p.name] - p.low) % p.step == 0


def test_layout_and_groups():
    enc = SpaceEncoder(SPACE.params)
    # opt: 3 one-hot, lr 1, layers 1, momentum 1 + activity, batch 1, dropout 1
    assert enc.n_features == 9
    assert enc.groups == {"opt": [0, 1, 2], "lr": [3], "layers": [4], "momentum": [5, 6],
                          "batch": [7], "dropout": [8]}
    assert enc.categorical_blocks == ((0, 3),)


def test_encode_values_and_inactive_default():
    enc = SpaceEncoder(SPACE.params)
    X = enc.encode([
        {"opt": "adam", "lr": 1e-3, "layers": 1, "batch": 16, "dropout": 0.5},
        {"opt": "sgd", "lr": 1e-5, "layers": 6, "momentum": 0.99, "batch": 256, "dropout": 0.0},
    ])
    np.testing.assert_allclose(X[0, :3], [0, 1, 0])
    assert X[0, 3] == pytest.approx(0.5)          # log midpoint of [1e-5, 1e-1]
    assert X[0, 5] == 0.5 and X[0, 6] == 0.0       # inactive momentum: fixed default, flag off
    assert X[1, 5] == pytest.approx(1.0) and X[1, 6] == 1.0
    assert 0 < X[0, 4] < X[1, 4] < 1               # ints map to cell centres
    assert np.all((X >= 0) & (X <= 1))


def test_inactive_values_do_not_change_the_encoding():
    enc = SpaceEncoder(SPACE.params)
    a = {"opt": "adam", "lr": 1e-3, "layers": 2, "batch": 32, "dropout": 0.1}
    b = dict(a, momentum=0.5)  # present only on b, but inactive for adam...
    # ...the encoder counts presence as active, so decode(encode) is where conditions apply
    Xa = enc.canonical(enc.encode([a]))
    Xb = enc.canonical(enc.encode([b]))
    np.testing.assert_array_equal(Xa, Xb)


def test_decode_random_rows_gives_valid_configs():
    enc = SpaceEncoder(SPACE.params)
    U = np.random.default_rng(0).random((500, enc.n_features))
    configs = enc.decode(U)
    for c in configs:
        _valid(c)
    layers = [c["layers"] for c in configs]
    counts = np.bincount(layers)[1:]
    assert len(counts) == 6 and counts.min() > 50   # each integer about equally likely
    assert {c["opt"] for c in configs} == {"sgd", "adam", "rmsprop"}


def test_roundtrip_and_canonical():
    enc = SpaceEncoder(SPACE.params)
    rng = np.random.default_rng(1)
    configs = [SPACE.sample(rng) for _ in range(200)]
    back = enc.decode(enc.encode(configs))
    for c, b in zip(configs, back):
        assert c.keys() == b.keys()
        for k in c:
            if isinstance(c[k], float):
                assert b[k] == pytest.approx(c[k], rel=1e-9, abs=1e-12)
            else:
                assert b[k] == c[k]
    U = rng.random((300, enc.n_features)) * 1.4 - 0.2  # also outside the cube: clipped
    np.testing.assert_allclose(enc.canonical(U), enc.encode(enc.decode(U)), atol=1e-12)


def test_duck_typed_parameters():
    params = [SimpleNamespace(name="kind", choices=("a", "b")),
              SimpleNamespace(name="x", low=0.5, high=2.0, log=False, step=None, when={"kind": ("b",)}),
              SimpleNamespace(name="n", low=2, high=64, log=True, step=1)]
    enc = SpaceEncoder(params)
    configs = enc.decode(np.random.default_rng(0).random((100, enc.n_features)))
    assert all(("x" in c) == (c["kind"] == "b") for c in configs)
    assert all(isinstance(c["n"], int) and 2 <= c["n"] <= 64 for c in configs)
    # log scale: the middle of the unit interval is the geometric middle
    # (integers own the cells [1.5, 64.5], so the middle is sqrt(1.5 * 64.5) ~ 9.8)
    assert enc.decode(np.array([[1, 0, 0.5, 0, 0.5]]))[0]["n"] == 10


@pytest.mark.parametrize("params, message", [
    ([SimpleNamespace(name="x", low=1.0, high=0.0)], "low <= high must hold for 'x', got low=1.0, high=0.0"),
    ([SimpleNamespace(name="x", low=0.0, high=1.0, log=True)], "log scale needs low > 0 for 'x'"),
    ([SimpleNamespace(name="c", choices=())], "at least one choice"),
    ([SimpleNamespace(name="x", low=0.0, high=1.0, when={"y": (1,)}),
      SimpleNamespace(name="y", choices=(1, 2))], "declared before it"),
    ([SimpleNamespace(name="x", low=0, high=1), SimpleNamespace(name="x", low=0, high=1)], "unique"),
    ([], "at least one parameter"),
])
def test_invalid_definitions(params, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        SpaceEncoder(params)


def test_encode_errors_name_the_problem():
    enc = SpaceEncoder(SPACE.params)
    with pytest.raises(ValueError, match="lacks unconditional parameter 'lr'"):
        enc.encode([{"opt": "adam", "layers": 1, "batch": 16, "dropout": 0.0}])
    with pytest.raises(ValueError, match="'nadam' of 'opt' is not one of its choices"):
        enc.encode([{"opt": "nadam", "lr": 1e-3, "layers": 1, "batch": 16, "dropout": 0.0}])
    with pytest.raises(ValueError, match="expected rows with 9 columns"):
        enc.decode(np.zeros((2, 4)))
