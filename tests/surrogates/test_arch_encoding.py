"""Architecture encodings: one-hot/adjacency, path (BANANAS) and the WL graph-similarity embedding."""
from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from surrogates.arch_encoding import ArchEncoder, arch_graph, wl_features

OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
NB201 = {"kind": "nas-bench-201", "ops": OPS}
LM = {"kind": "lm-layers", "depth": [1, 3], "ops": ["attention", "linear", "conv"], "widths": [32, 64],
      "heads": [1, 2], "ffn_mult": [2, 4]}
CNN = {"kind": "cnn", "depth": [1, 3], "widths": [8, 16], "kernels": [3, 5], "skips": [False, True]}


def cell(*ops: str) -> str:
    e = list(ops)
    return f"|{e[0]}~0|+|{e[1]}~0|{e[2]}~1|+|{e[3]}~0|{e[4]}~1|{e[5]}~2|"


ALL_CELLS = [cell(*c) for c in itertools.product(OPS, repeat=6)]


def test_onehot_is_the_labelled_adjacency_and_injective():
    X = ArchEncoder(NB201, "onehot").transform(ALL_CELLS)
    assert X.shape == (15625, 30)
    assert np.all(X.sum(1) == 6)
    assert len({row.tobytes() for row in X}) == 15625
    x = ArchEncoder(NB201, "onehot").transform([cell("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                                     "avg_pool_3x3", "none")])[0]
    assert list(np.flatnonzero(x)) == [0, 6, 12, 18, 24, 25]


def test_path_encoding_counts_live_operation_sequences():
    enc = ArchEncoder(NB201, "path")
    assert enc.n_features == 4 + 16 + 64
    assert enc.transform([cell(*["none"] * 6)]).sum() == 0
    # Only the direct input->output edge is live: one path of length one.
    assert enc.transform([cell("none", "none", "none", "nor_conv_3x3", "none", "none")]).sum() == 1
    # All skips: paths (skip), (skip, skip) twice (one feature), (skip, skip, skip).
    assert enc.transform([cell(*["skip_connect"] * 6)]).sum() == 3
    # A cell whose output is cut off from the input has no path, whatever else it holds.
    assert enc.transform([cell("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "none", "none", "none")]).sum() == 0


def test_wl_embedding_tracks_graph_similarity():
    enc = ArchEncoder(NB201, "wl")
    rng = np.random.default_rng(0)
    cells = [ALL_CELLS[i] for i in rng.choice(len(ALL_CELLS), 200, replace=False)]
    X = enc.transform(cells)
    assert X.shape == (200, 256)
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0)
    # Isomorphic cells (a conv then a skip, through node 1 or through node 2) embed identically,
    # though their one-hot codes differ.
    a = cell("nor_conv_3x3", "none", "none", "none", "skip_connect", "none")
    b = cell("none", "nor_conv_3x3", "none", "none", "none", "skip_connect")
    assert np.allclose(enc.transform([a]), enc.transform([b]))
    assert not np.allclose(ArchEncoder(NB201, "onehot").transform([a]), ArchEncoder(NB201, "onehot").transform([b]))
    # One-edge changes land closer than unrelated cells.
    def mutate(c: str) -> str:
        ops = [item.partition("~")[0] for node in c.split("+") for item in node.strip("|").split("|")]
        k = int(rng.integers(6))
        ops[k] = [o for o in OPS if o != ops[k]][int(rng.integers(4))]
        return cell(*ops)

    near = np.linalg.norm(X - enc.transform([mutate(c) for c in cells]), axis=1).mean()
    far = np.linalg.norm(X - X[rng.permutation(200)], axis=1).mean()
    assert near < 0.8 * far


def test_wl_features_count_subtree_labels():
    labels, edges = arch_graph(NB201, cell("nor_conv_3x3", "none", "none", "none", "none", "none"))
    assert labels[4] == "nor_conv_3x3" and edges == [(0, 4), (4, 1)]
    feats = wl_features(labels, edges, 1)
    assert sum(v for k, v in feats.items() if k.startswith("0:")) == len(labels)
    assert sum(v for k, v in feats.items() if k.startswith("1:")) == len(labels)


@pytest.mark.parametrize("schema, value", [
    (LM, [{"op": "attention", "width": 64, "heads": 2, "ffn": 128}, {"op": "conv", "width": 32, "ffn": 128}]),
    (CNN, [{"width": 8, "kernel": 3, "skip": False}, {"width": 16, "kernel": 5, "skip": True}]),
])
@pytest.mark.parametrize("method", ["onehot", "path", "wl"])
def test_layer_list_encodings(schema, value, method):
    enc = ArchEncoder(schema, method)
    X = enc.transform([value, value[:1], value[::-1]])
    assert X.shape == (3, enc.n_features)
    assert not np.allclose(X[0], X[1]) and not np.allclose(X[0], X[2])
    assert np.all(np.isfinite(X))


def test_lm_onehot_fields():
    enc = ArchEncoder(LM, "onehot")
    x = enc.transform([[{"op": "linear", "width": 32, "ffn": 128}]])[0]
    # depth 1, slot 0 present, op, width, ffn multiple (no heads for a linear layer).
    assert x.sum() == 5


def test_values_outside_the_schema_are_rejected():
    with pytest.raises(ValueError, match="outside the encoder's space"):
        ArchEncoder(LM, "onehot").transform([[{"op": "linear", "width": 48, "ffn": 96}]])
    with pytest.raises(ValueError, match="NAS-Bench-201 cell string"):
        ArchEncoder(NB201, "path").transform(["|conv~0|"])
    with pytest.raises(ValueError, match="encoding must be one of"):
        ArchEncoder(NB201, "graph2vec")


def test_arch_encoding_does_not_import_search():
    code = ("import sys, surrogates.arch_encoding; "
            "bad = [m for m in sys.modules if m == 'search' or m.startswith('search.') or m.startswith('sqlalchemy')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lm_kernels_are_encoded_and_absent_kernels_change_nothing():
    from search.config import parse_study

    with_k = {**LM, "kernels": [3, 15]}
    # one-hot: depth 3 + per layer (present + 3 ops + 2 widths + 2 heads + 2 ffn [+ 2 kernels])
    assert ArchEncoder(LM, "onehot").n_features == 3 + 3 * 10
    assert ArchEncoder(with_k, "onehot").n_features == 3 + 3 * 12
    study = {"name": "s", "objective": {"metric": "loss", "direction": "minimize"},
             "trial": {"entrypoint": "builtin:tabular"},
             "space": {"arch": {"type": "lm-layers", "layers": [1, 2], "ops": ["linear", "conv"], "widths": [32],
                                "heads": [1], "ffn_mult": [2], "kernels": [3, 15]}}}
    [param] = list(parse_study(study).space)
    archs = param.grid(100)
    for method in ("onehot", "path", "wl"):
        X = ArchEncoder(param.schema(), method).transform(archs)
        assert len({row.tobytes() for row in X}) == len(archs) == 3 + 9, method

