from __future__ import annotations

import math
import re

import numpy as np
import pytest


def reports(events):
    return [(e.step, dict(e.metrics)) for e in events if e.kind == "report"]


def test_mlp_on_digits_reports_every_epoch_with_params_and_flops(run_spec):
    done, events = run_spec("builtin:classifier", {"model": "mlp", "data": "digits", "epochs": 3, "lr": 3e-3,
                                                   "hidden": 32, "optimizer": "adam"})
    assert done.error is None
    rs = reports(events)
    assert [s for s, _ in rs] == [1, 2, 3]
    for _, m in rs:
        for key in ("val_loss", "val_accuracy", "params", "params_non_embedding", "flops", "samples"):
            assert key in m and math.isfinite(m[key]), key
    # 64 -> 32 -> 32 -> 10, no embeddings; FLOPs are 6 per weight per sample for an MLP.
    n = 64 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    assert rs[-1][1]["params"] == rs[-1][1]["params_non_embedding"] == n
    weights = 64 * 32 + 32 * 32 + 32 * 10
    assert rs[-1][1]["flops"] == 6 * weights * rs[-1][1]["samples"]
    assert rs[-1][1]["val_loss"] < rs[0][1]["val_loss"]
    assert done.metrics["val_accuracy"] > 0.85
    assert [e.step for e in events if e.kind == "checkpoint"] == [1, 2, 3]


def test_cnn_on_digit_images_learns(run_spec):
    done, _ = run_spec("builtin:classifier", {"model": "cnn", "epochs": 4, "lr": 3e-3, "channels": 8,
                                              "hidden": 32, "checkpoint_every": 0})
    assert done.error is None, done.error
    assert done.metrics["val_accuracy"] > 0.8
    # A conv weight is reused at every pixel, so FLOPs per sample exceed 6 * params.
    assert done.metrics["flops"] > 6 * done.metrics["params"] * done.metrics["samples"]


def test_cnn_from_a_per_layer_list_with_skips(run_spec):
    layers = [{"width": 8, "kernel": 3, "skip": False}, {"width": 12, "kernel": 5, "skip": True},
              {"width": 12, "kernel": 3, "skip": True}]
    done, _ = run_spec("builtin:classifier", {"model": "cnn", "layers": layers, "epochs": 1, "hidden": 16})
    assert done.error is None, done.error
    # convs 1->8 (3x3), 8->12 (5x5) with a 1x1 skip projection, 12->12 (3x3) with an identity skip;
    # 8x8 pools to 4x4 then 2x2; dense 48 -> 16 -> 10.
    convs = (9 * 8 + 8) + (8 * 25 * 12 + 12) + (8 * 12 + 12) + (12 * 9 * 12 + 12)
    assert done.metrics["params"] == convs + (48 * 16 + 16) + (16 * 10 + 10)


def test_classifier_resume_is_bit_for_bit(resume_pair):
    config = {"model": "mlp", "epochs": 5, "lr": 2e-3, "hidden": 16, "optimizer": "sgd", "schedule": "cosine",
              "warmup": 0.1, "checkpoint_every": 2, "grad_clip": 1.0}
    a, b = resume_pair("builtin:classifier", config, k=2)
    assert [s for s, _ in a[0]] == [1, 2, 3, 4, 5]
    assert b == a


def test_user_arrays_npz_images_and_csv_with_target(run_spec, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6, 6)).astype(np.float32)
    y = (X[:, :3].mean((1, 2)) > 0).astype(np.int64)
    X[y == 1, :3] += 1.0
    np.savez(tmp_path / "imgs.npz", X=X, y=y)
    done, _ = run_spec("builtin:classifier", {"model": "cnn", "data": str(tmp_path / "imgs.npz"), "epochs": 3,
                                              "channels": 4, "hidden": 8, "lr": 1e-2, "batch_size": 16})
    assert done.error is None, done.error
    assert done.metrics["val_accuracy"] > 0.7
    np.savez(tmp_path / "chw.npz", X=X[:, None].repeat(2, axis=1), y=y)  # N x C x H x W
    done, _ = run_spec("builtin:classifier", {"model": "cnn", "data": str(tmp_path / "chw.npz"), "epochs": 1,
                                              "channels": 4, "hidden": 8}, checkpoint_dir=str(tmp_path / "chw"))
    assert done.error is None, done.error
    # Two 3x3 conv blocks (2 -> 4 -> 4 channels; 6x6 pools once to 3x3), dense 36 -> 8 -> 2.
    assert done.metrics["params"] == (2 * 9 * 4 + 4) + (4 * 9 * 4 + 4) + (36 * 8 + 8) + (8 * 2 + 2)

    rows = ["a,label,b"] + [f"{v:.3f},{'yes' if v > 0 else 'no'},{w:.3f}"
                            for v, w in rng.normal(size=(80, 2))]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    done, _ = run_spec("builtin:classifier", {"data": str(tmp_path / "t.csv"), "target": "label", "epochs": 4,
                                              "lr": 1e-2, "batch_size": 16}, checkpoint_dir=str(tmp_path / "c"))
    assert done.error is None, done.error
    assert done.metrics["params"] == 2 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2


@pytest.mark.parametrize("config, match", [
    ({"model": "resnet"}, r"'model' must be one of \['mlp', 'cnn'\]"),
    ({"data": "mnist"}, r"'data' must be one of"),
    ({"data": "diabetes"}, r"regression set"),
    ({"optimizer": "lion"}, r"'optimizer' must be one of"),
    ({"model": "cnn", "data": "wine"}, r"cnn needs images .* use model: mlp"),
    ({"epochs": 0}, r"'epochs' must be >= 1"),
    ({"model": "cnn", "layers": [{"width": 8, "kernel": 4}]}, r"'layers\[0\]\.kernel' must be odd"),
    ({"model": "mlp", "layers": [{"width": 8}]}, r"applies to model: cnn"),
])
def test_bad_classifier_params(run_spec, config, match):
    done, _ = run_spec("builtin:classifier", {"epochs": 1, **config})
    assert done.error is not None and "\n" not in done.error
    assert re.search(match, done.error), done.error


def test_mismatched_arrays_fail_then_a_second_trial_works(run_spec, tmp_path):
    np.savez(tmp_path / "bad.npz", X=np.zeros((10, 4), np.float32), y=np.zeros(9))
    done, _ = run_spec("builtin:classifier", {"data": str(tmp_path / "bad.npz"), "epochs": 1})
    assert done.error is not None and "10 samples" in done.error and "one label per sample" in done.error
    np.savez(tmp_path / "nokeys.npz", features=np.zeros((10, 4)))
    done, _ = run_spec("builtin:classifier", {"data": str(tmp_path / "nokeys.npz"), "epochs": 1})
    assert done.error is not None and "'X'" in done.error and "features" in done.error
    ok, _ = run_spec("builtin:classifier", {"epochs": 1}, checkpoint_dir=str(tmp_path / "ok"))
    assert ok.error is None and math.isfinite(ok.metrics["val_loss"])


def test_diverging_classifier_fails_naming_lr(run_spec):
    done, _ = run_spec("builtin:classifier", {"epochs": 2, "optimizer": "sgd", "momentum": 0.0, "lr": 1e12})
    assert done.error is not None and "'lr'" in done.error


def test_classifier_checkpoint_dict_keeps_its_format(run_spec):
    # Old checkpoints must keep resuming: these keys are the format.
    import torch

    config = {"epochs": 1, "hidden": 8}
    done, events = run_spec("builtin:classifier", config)
    assert done.error is None, done.error
    ckpt = [e for e in events if e.kind == "checkpoint"][-1]
    state = torch.load(ckpt.path, weights_only=False)
    assert list(state) == ["model", "optimizer", "epoch", "rng", "metrics", "config"]
    assert state["epoch"] == 1 and state["config"] == config and state["metrics"] == done.metrics


def test_classifier_config_parses_checks_and_converts():
    import dataclasses

    from trials.builtin.classifier import DEFAULTS, ClassifierConfig

    cfg = ClassifierConfig.parse({"epochs": 3.0, "lr": 1, "model": "cnn", "layers": 2, "channels": 4})
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int) and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.layers == [{"width": 4, "kernel": 3, "skip": False}] * 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 2.0  # type: ignore[misc]
    assert DEFAULTS == {f.name: f.default for f in dataclasses.fields(ClassifierConfig)}
    # Params the chosen model or optimiser does not use are not checked, as before the dataclass.
    assert ClassifierConfig.parse({"channels": 0, "momentum": "x"}).layers == 2
    with pytest.raises(ValueError, match=r"param 'momentum' must be a finite number"):
        ClassifierConfig.parse({"optimizer": "sgd", "momentum": "x"})
