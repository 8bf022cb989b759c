"""``builtin:classifier``: an MLP or a small CNN on a scikit-learn data set or a user array.

``layers`` is the MLP's hidden layer count, or the CNN's: a count of 3x3 layers of ``channels``
channels, or a list of per-layer dicts ``{width, kernel, skip}`` (``search.arch_spaces``' cnn space).

One config dict in, one loop top to bottom, a checkpoint dict that resumes it exactly. A step of
this trainer is an epoch: reports, checkpoints and the stop check happen at epoch ends.
"""
from __future__ import annotations

import math
from typing import Any

from trials._train import (
    PRECISIONS, autocast_for, check_choice, check_known, float_param, int_param, load_into,
    make_optimizer, maybe_compile, non_finite, rng_state, schedule_from, seed_everything, set_lr,
    set_rng_state,
)
from trials.api import Reporter
from trials.device import pick_device

DEFAULTS: dict[str, Any] = {
    "model": "mlp",
    "data": "digits",
    "target": None,
    "epochs": 10,
    "lr": 1e-3,
    "hidden": 64,
    "layers": 2,
    "channels": 16,
    "optimizer": "adam",
    "batch_size": 64,
    "weight_decay": 0.0,
    "momentum": 0.9,
    "beta1": 0.9,
    "beta2": 0.999,
    "schedule": "constant",
    "warmup": 0,
    "decay_fraction": 0.2,
    "min_lr_ratio": 0.0,
    "grad_clip": 0.0,
    "val_fraction": 0.2,
    "eval_every": 1,
    "checkpoint_every": 1,
    "checkpoint_final": True,
    "precision": "auto",
    "compile": False,
    "device": "auto",
    "seed": None,
    "data_seed": None,
}

MODELS = ("mlp", "cnn")


def train(config: dict[str, Any], reporter: Reporter) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from trials.data import load_classification
    from trials.models import build_cnn, build_mlp, count_params, forward_macs, normalize_cnn_layers

    cfg = {**DEFAULTS, **config}
    check_known(cfg, DEFAULTS, "builtin:classifier")
    model_name = check_choice(cfg, "model", MODELS)
    precision = check_choice(cfg, "precision", PRECISIONS)
    epochs, bs = int_param(cfg, "epochs"), int_param(cfg, "batch_size")
    eval_every, ckpt_every = int_param(cfg, "eval_every"), int_param(cfg, "checkpoint_every", 0)
    grad_clip = float_param(cfg, "grad_clip")
    if not isinstance(cfg["checkpoint_final"], bool):
        raise ValueError(f"param 'checkpoint_final' must be true or false, got {cfg['checkpoint_final']!r}")
    seed = int(reporter.seed if cfg["seed"] is None else cfg["seed"])
    data_seed = int(reporter.data_seed if cfg["data_seed"] is None else cfg["data_seed"])
    device = pick_device(cfg["device"])

    data = load_classification(str(cfg["data"]), data_seed, float_param(cfg, "val_fraction", 0.0, 1.0, low_open=True),
                               cfg["target"])
    if model_name == "cnn" and len(data.sample_shape) not in (2, 3):
        raise ValueError(
            f"param 'model': cnn needs images shaped N x H x W or N x C x H x W, but data "
            f"{cfg['data']!r} has samples of shape {data.sample_shape}; use model: mlp or give image arrays"
        )
    Xtr, ytr = torch.tensor(data.X_train, device=device), torch.tensor(data.y_train, device=device)
    Xva, yva = torch.tensor(data.X_val, device=device), torch.tensor(data.y_val, device=device)

    seed_everything(seed)
    if model_name == "cnn":
        layers = normalize_cnn_layers(cfg["layers"], int_param(cfg, "channels"))
        model = build_cnn(data.sample_shape, data.n_classes, layers, int_param(cfg, "hidden"))
    else:
        if isinstance(cfg["layers"], (list, tuple)):
            raise ValueError("param 'layers': a list of layer dicts applies to model: cnn; give model: mlp a count")
        model = build_mlp(data.sample_shape, data.n_classes, int_param(cfg, "hidden"), int_param(cfg, "layers", 0))
    model = model.to(device)
    opt = make_optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(Xtr) / bs)
    schedule = schedule_from(cfg, epochs * steps_per_epoch)
    n_params, n_non_embedding = count_params(model)
    flops_per_sample = 6.0 * forward_macs(model, Xtr[:1])
    fwd = maybe_compile(model, cfg["compile"])

    def static_metrics(epoch: int) -> dict[str, float]:
        samples = epoch * len(Xtr)
        return {"params": n_params, "params_non_embedding": n_non_embedding, "samples": samples,
                "flops": flops_per_sample * samples}

    def evaluate() -> dict[str, float]:
        model.eval()
        with torch.no_grad(), autocast_for(device, precision):
            # In chunks, so a large user array does not need one activation tensor for all of it.
            logits = torch.cat([fwd(Xva[i:i + 4096]).float() for i in range(0, len(Xva), 4096)])
        model.train()
        return {"val_loss": float(F.cross_entropy(logits, yva)),
                "val_accuracy": float((logits.argmax(1) == yva).float().mean())}

    def checkpoint(epoch: int, metrics: dict[str, float]) -> None:
        reporter.save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                                  "rng": rng_state(), "metrics": metrics, "config": dict(config)}, epoch)

    start_epoch = 0
    state = reporter.load_checkpoint()
    if state is not None:
        load_into(model, opt, state, "builtin:classifier")
        set_rng_state(state["rng"])
        start_epoch = int(state["epoch"])
    if start_epoch >= epochs:
        # Resumed from a checkpoint at (or past) the budget: nothing to train, report where it is.
        metrics = {**evaluate(), **static_metrics(start_epoch)}
        reporter.report(start_epoch, **metrics)
        return metrics

    metrics: dict[str, float] = {}
    lr = math.nan  # set before the first step
    model.train()
    for epoch in range(start_epoch, epochs):
        # Shuffle from (seed, epoch) alone so a resumed run sees exactly the same batches.
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(Xtr), generator=gen).to(device)
        losses = []  # summed once per epoch: one tensor op per step less on tiny models
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            if schedule(step) != lr:
                lr = schedule(step)
                set_lr(opt, lr)
            idx = order[i * bs:(i + 1) * bs]
            with autocast_for(device, precision):
                loss = F.cross_entropy(fwd(Xtr[idx]).float(), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            losses.append(loss.detach())
        done = epoch + 1
        # Every batch is full but the last, which holds the remainder.
        weights = torch.full((steps_per_epoch,), float(bs), device=device)
        weights[-1] = len(Xtr) - bs * (steps_per_epoch - 1)
        train_loss = float((torch.stack(losses) * weights).sum()) / len(Xtr)
        if not math.isfinite(train_loss):
            raise non_finite(train_loss, "training loss", done, lr)
        last = done == epochs
        if done % eval_every == 0 or last:
            metrics = {**evaluate(), "train_loss": train_loss, "lr": lr, **static_metrics(done)}
            if not math.isfinite(metrics["val_loss"]):
                raise non_finite(metrics["val_loss"], "val_loss", done, lr)
        if (ckpt_every and done % ckpt_every == 0 and not last) or (last and cfg["checkpoint_final"]):
            checkpoint(done, metrics)
        if (done % eval_every == 0 or last) and reporter.report(done, **metrics):
            break
    return metrics
