"""``builtin:classifier``: an MLP or a small CNN on a scikit-learn data set or a user array.

``layers`` is the MLP's hidden layer count, or the CNN's: a count of 3x3 layers of ``channels``
channels, or a list of per-layer dicts ``{width, kernel, skip}`` (``search.arch_spaces``' cnn space).

A step of this trainer is an epoch: reports, checkpoints and the stop check happen at epoch ends.
The loop is ``trials._train.fit``; this module holds the params, the data and the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from trials._train import (
    EpochLoss, Task, TrainConfig, autocast_for, check_choice, fit, int_param, seed_everything,
)
from trials.api import Reporter
from trials.device import pick_device

__all__ = ["ClassifierConfig", "DEFAULTS", "train"]

MODELS = ("mlp", "cnn")


@dataclass(frozen=True)
class ClassifierConfig(TrainConfig):
    """The params of ``builtin:classifier``: these and ``TrainConfig``'s, with its defaults."""

    TRAINER: ClassVar[str] = "builtin:classifier"

    model: str = "mlp"
    data: str = "digits"  # a scikit-learn data set's name, or a .npz / .csv path
    target: str | None = None  # the label column of a CSV file
    epochs: int = 10
    hidden: int = 64
    layers: Any = 2  # after parse: the MLP's count, or the CNN's normalized layer dicts
    channels: int = 16

    @classmethod
    def _checked(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        from trials.models import normalize_cnn_layers

        check_choice(cfg, "model", MODELS)
        cfg["epochs"] = int_param(cfg, "epochs")
        cfg = super()._checked(cfg)
        if cfg["model"] == "cnn":
            cfg["channels"] = int_param(cfg, "channels")
            cfg["layers"] = normalize_cnn_layers(cfg["layers"], cfg["channels"])
        elif isinstance(cfg["layers"], (list, tuple)):
            raise ValueError("param 'layers': a list of layer dicts applies to model: cnn; give model: mlp a count")
        else:
            cfg["layers"] = int_param(cfg, "layers", 0)
        cfg["hidden"] = int_param(cfg, "hidden")
        return cfg


DEFAULTS: dict[str, Any] = ClassifierConfig.defaults()


def train(config: dict[str, Any], reporter: Reporter) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from trials.data import load_classification
    from trials.models import build_cnn, build_mlp, count_params, forward_macs

    cfg = ClassifierConfig.parse(config)
    seed, data_seed = cfg.seeds(reporter)
    device = pick_device(cfg.device)

    # ---- data: the whole set on the device, split by the study's data seed
    data = load_classification(str(cfg.data), data_seed, cfg.val_fraction, cfg.target)
    if cfg.model == "cnn" and len(data.sample_shape) not in (2, 3):
        raise ValueError(
            f"param 'model': cnn needs images shaped N x H x W or N x C x H x W, but data "
            f"{cfg.data!r} has samples of shape {data.sample_shape}; use model: mlp or give image arrays"
        )
    Xtr, ytr = torch.tensor(data.X_train, device=device), torch.tensor(data.y_train, device=device)
    Xva, yva = torch.tensor(data.X_val, device=device), torch.tensor(data.y_val, device=device)

    # ---- model
    seed_everything(seed)
    if cfg.model == "cnn":
        model = build_cnn(data.sample_shape, data.n_classes, cfg.layers, cfg.hidden)
    else:
        model = build_mlp(data.sample_shape, data.n_classes, cfg.hidden, cfg.layers)
    model = model.to(device)
    n_params, n_non_embedding = count_params(model)
    flops_per_sample = 6.0 * forward_macs(model, Xtr[:1])
    bs = cfg.batch_size
    updates_per_epoch = math.ceil(len(Xtr) / bs)

    def batches(epoch: int) -> list[Any]:
        # Shuffle from (seed, epoch) alone so a resumed run sees exactly the same batches.
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(Xtr), generator=gen).to(device)
        return [order[i * bs:(i + 1) * bs] for i in range(updates_per_epoch)]

    def loss(fwd, idx):
        return F.cross_entropy(fwd(Xtr[idx]).float(), ytr[idx])

    def evaluate(fwd) -> dict[str, float]:
        with torch.no_grad(), autocast_for(device, cfg.precision):
            # In chunks, so a large user array does not need one activation tensor for all of it.
            logits = torch.cat([fwd(Xva[i:i + 4096]).float() for i in range(0, len(Xva), 4096)])
        return {"val_loss": float(F.cross_entropy(logits, yva)),
                "val_accuracy": float((logits.argmax(1) == yva).float().mean())}

    def counts(epoch: int) -> dict[str, float]:
        samples = epoch * len(Xtr)
        return {"params": n_params, "params_non_embedding": n_non_embedding, "samples": samples,
                "flops": flops_per_sample * samples}

    task = Task(model=model, device=device, steps=cfg.epochs, updates_per_step=updates_per_epoch,
                batches=batches, loss=loss, evaluate=evaluate, counts=counts,
                meter=EpochLoss(len(Xtr), bs, device), step_key="epoch")
    return fit(task, cfg, config, reporter)
