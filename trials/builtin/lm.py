"""``builtin:lm``: a byte-level decoder-only language model, possibly with heterogeneous layers.

The budget is ``steps``, ``tokens`` or ``epochs`` (at most one; ``steps`` by default). Every
``eval_every`` steps it reports ``val_loss`` (nats per byte), ``val_bpb`` (bits per byte) and
``val_accuracy`` (next-byte accuracy) on a fixed validation subset, with the parameter counts,
tokens seen and training FLOPs so far.
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
    # architecture: 'layers' is a count (a homogeneous model of the defaults below) or a list of
    # per-layer dicts {op, width, heads, ffn, kernel}; missing keys come from these defaults.
    "layers": 2,
    "op": "attention",
    "width": 64,
    "heads": None,
    "ffn": None,
    "kernel": 7,
    "context": 64,
    "dropout": 0.0,
    # data
    "corpus": None,
    "corpus_pattern": None,
    "corpus_bytes": None,
    "val_fraction": 0.1,
    "eval_tokens": 16384,
    # budget: one of these
    "steps": None,
    "tokens": None,
    "epochs": None,
    # optimisation
    "batch_size": 32,
    "lr": 1e-3,
    "optimizer": "adamw",
    "weight_decay": 0.1,
    "momentum": 0.9,
    "beta1": 0.9,
    "beta2": 0.95,
    "schedule": "cosine",
    "warmup": 0.05,
    "decay_fraction": 0.2,
    "min_lr_ratio": 0.1,
    "grad_clip": 1.0,
    "precision": "auto",
    "compile": False,
    # reporting and checkpoints
    "eval_every": 50,
    "checkpoint_every": 100,
    "checkpoint_final": True,
    "device": "auto",
    "seed": None,
    "data_seed": None,
}

DEFAULT_STEPS = 300
# Without an explicit 'corpus_bytes', read this much training text at least (or twice what the
# budget consumes, if more): enough variety for short runs, without reading all of a large corpus.
MIN_TRAIN_BYTES = 4 << 20
VAL_BYTES = 1 << 20


def _budget(cfg: dict[str, Any]) -> tuple[str, float]:
    given = [k for k in ("steps", "tokens", "epochs") if cfg[k] is not None]
    if len(given) > 1:
        raise ValueError(f"give one budget of 'steps', 'tokens' or 'epochs', got {given}; remove all but one")
    if not given:
        return "steps", DEFAULT_STEPS
    key = given[0]
    if key == "epochs":
        return key, float_param(cfg, key, 0.0, low_open=True)
    return key, int_param(cfg, key)


def train(config: dict[str, Any], reporter: Reporter) -> dict[str, float]:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from trials.data import WindowSampler, load_corpus
    from trials.models import ByteLM, count_params, lm_flops_per_token, normalize_layers

    cfg = {**DEFAULTS, **config}
    check_known(cfg, DEFAULTS, "builtin:lm")
    precision = check_choice(cfg, "precision", PRECISIONS)
    context, bs = int_param(cfg, "context"), int_param(cfg, "batch_size")
    eval_every, ckpt_every = int_param(cfg, "eval_every"), int_param(cfg, "checkpoint_every", 0)
    grad_clip = float_param(cfg, "grad_clip")
    dropout = float_param(cfg, "dropout", 0.0, 1.0)
    if not isinstance(cfg["checkpoint_final"], bool):
        raise ValueError(f"param 'checkpoint_final' must be true or false, got {cfg['checkpoint_final']!r}")
    layers = normalize_layers(cfg["layers"], cfg)
    seed = int(reporter.seed if cfg["seed"] is None else cfg["seed"])
    data_seed = int(reporter.data_seed if cfg["data_seed"] is None else cfg["data_seed"])
    budget_key, budget = _budget(cfg)
    tokens_per_step = bs * context
    device = pick_device(cfg["device"])

    # ---- data: training and validation text from disjoint files (or blocks of one file)
    corpus = load_corpus(cfg["corpus"], cfg["corpus_pattern"], data_seed,
                         float_param(cfg, "val_fraction", 0.0, 1.0, low_open=True))
    if cfg["corpus_bytes"] is not None:
        want = int_param(cfg, "corpus_bytes", 0) or None  # 0: all of it
    elif budget_key == "epochs":
        want = None
    else:
        budget_tokens = budget if budget_key == "tokens" else budget * tokens_per_step
        want = max(MIN_TRAIN_BYTES, 2 * int(budget_tokens))
    train_text = corpus.text("train", want)
    eval_tokens = int_param(cfg, "eval_tokens")
    val_text = corpus.text("val", max(VAL_BYTES, 2 * eval_tokens))
    for part, text in (("training", train_text), ("validation", val_text)):
        if len(text) < context + 1:
            raise ValueError(
                f"param 'corpus': the {part} text of {corpus.root!r} has {len(text)} bytes, shorter than "
                f"one context of {context} + 1; give a larger corpus or lower 'context'"
            )
    sampler = WindowSampler(len(train_text), context, bs, seed)
    if sampler.windows_per_epoch(context) < bs:
        raise ValueError(
            f"param 'batch_size': the training text holds {sampler.windows_per_epoch(0)} windows of "
            f"{context + 1} bytes, fewer than batch_size {bs}; lower 'batch_size' or 'context', or give more text"
        )
    if budget_key == "steps":
        total_steps = int(budget)
    elif budget_key == "tokens":
        total_steps = math.ceil(budget / tokens_per_step)
    else:
        total_steps = max(1, math.ceil(budget * sampler.windows_per_epoch(0) / bs))
    train_bytes = torch.from_numpy(np.frombuffer(train_text, dtype=np.uint8).copy()).to(device)
    # A fixed validation subset: evenly spaced windows over the validation text, so every eval of
    # every trial with this corpus, seed and context sees the same bytes, and evals stay cheap.
    n_val = max(1, min(eval_tokens // context, (len(val_text) - 1) // context))
    val_starts = np.linspace(0, len(val_text) - context - 1, n_val).astype(np.int64)
    val_windows = np.stack([np.frombuffer(val_text, dtype=np.uint8, count=context + 1, offset=int(s))
                            for s in val_starts])
    val_windows = torch.from_numpy(val_windows.astype(np.int64)).to(device)
    offsets = torch.arange(context + 1, device=device)

    # ---- model and optimiser
    seed_everything(seed)
    model = ByteLM(layers, context, dropout).to(device)
    opt = make_optimizer(model, cfg)
    schedule = schedule_from(cfg, total_steps)
    n_params, n_non_embedding = count_params(model)
    flops_per_token = lm_flops_per_token(layers, context, n_non_embedding)
    fwd = maybe_compile(model, cfg["compile"])

    def static_metrics(step: int) -> dict[str, float]:
        tokens = step * tokens_per_step
        return {"params": n_params, "params_non_embedding": n_non_embedding, "tokens": tokens,
                "flops": flops_per_token * tokens}

    def evaluate() -> dict[str, float]:
        model.eval()
        loss_sum, correct = 0.0, 0.0
        with torch.no_grad(), autocast_for(device, precision):
            for i in range(0, len(val_windows), bs):
                w = val_windows[i:i + bs]
                logits = fwd(w[:, :-1]).float()
                loss_sum += float(F.cross_entropy(logits.reshape(-1, 256), w[:, 1:].reshape(-1), reduction="sum"))
                correct += float((logits.argmax(-1) == w[:, 1:]).sum())
        model.train()
        n = len(val_windows) * context
        return {"val_loss": loss_sum / n, "val_bpb": loss_sum / n / math.log(2), "val_accuracy": correct / n}

    step = 0
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    loss_count = 0
    state = reporter.load_checkpoint()
    if state is not None:
        load_into(model, opt, state, "builtin:lm")
        set_rng_state(state["rng"])
        sampler.load_state_dict(state["data"])
        step = int(state["step"])
        loss_sum = state["loss_sum"].to(device)
        loss_count = int(state["loss_count"])

    def checkpoint(metrics: dict[str, float]) -> None:
        reporter.save_checkpoint({
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "rng": rng_state(),
            "data": sampler.state_dict(), "loss_sum": loss_sum, "loss_count": loss_count,
            "metrics": metrics, "layers": layers, "config": dict(config),
        }, step)

    if step >= total_steps:
        # Resumed from a checkpoint at (or past) the budget: nothing to train, report where it is.
        metrics = {**evaluate(), **static_metrics(step)}
        reporter.report(step, **metrics)
        return metrics

    metrics: dict[str, float] = {}
    model.train()
    while step < total_steps:
        lr = schedule(step)
        set_lr(opt, lr)
        starts = torch.from_numpy(sampler.next_starts()).to(device)
        batch = train_bytes[starts[:, None] + offsets].long()
        with autocast_for(device, precision):
            logits = fwd(batch[:, :-1])
            loss = F.cross_entropy(logits.float().reshape(-1, 256), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        step += 1
        loss_sum += loss.detach()
        loss_count += 1
        last = step == total_steps
        at_eval = step % eval_every == 0 or last
        if at_eval:
            train_loss = float(loss_sum) / loss_count
            if not math.isfinite(train_loss):
                raise non_finite(train_loss, "training loss", step, lr)
            metrics = {**evaluate(), "train_loss": train_loss, "lr": lr, **static_metrics(step)}
            if not math.isfinite(metrics["val_loss"]):
                raise non_finite(metrics["val_loss"], "val_loss", step, lr)
            loss_sum.zero_()
            loss_count = 0
        if (ckpt_every and step % ckpt_every == 0 and not last) or (last and cfg["checkpoint_final"]):
            checkpoint(metrics)
        if at_eval and reporter.report(step, **metrics):
            break
    return metrics
