"""``builtin:lm``: a byte-level decoder-only language model, possibly with heterogeneous layers.

The budget is ``steps``, ``tokens`` or ``epochs`` (at most one; ``steps`` by default). Every
``eval_every`` steps it reports ``val_loss`` (nats per byte), ``val_bpb`` (bits per byte) and
``val_accuracy`` (next-byte accuracy) on a fixed validation subset, with the parameter counts,
tokens seen and training FLOPs so far. The loop is ``trials._train.fit``; this module holds the
params, the data and the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from trials._train import (
    RunningLoss, Task, TrainConfig, autocast_for, fit, float_param, int_param, seed_everything,
)
from trials.api import Reporter
from trials.device import pick_device

__all__ = ["LMConfig", "DEFAULTS", "train"]

DEFAULT_STEPS = 300
# Without an explicit 'corpus_bytes', read this much training text at least (or twice what the
# budget consumes, if more): enough variety for short runs, without reading all of a large corpus.
MIN_TRAIN_BYTES = 4 << 20
VAL_BYTES = 1 << 20
BUDGETS = ("steps", "tokens", "epochs")


@dataclass(frozen=True)
class LMConfig(TrainConfig):
    """The params of ``builtin:lm``: these and ``TrainConfig``'s, with nanoGPT-like optimiser
    defaults (AdamW, cosine decay with warmup, clipping at 1)."""

    TRAINER: ClassVar[str] = "builtin:lm"

    # architecture: 'layers' is a count (a homogeneous model of the defaults below) or a list of
    # per-layer dicts {op, width, heads, ffn, kernel}; missing keys come from these defaults.
    # After parse, 'layers' is the normalized list.
    layers: Any = 2
    op: str = "attention"
    width: int = 64
    heads: int | None = None
    ffn: int | None = None
    kernel: int = 7
    context: int = 64
    dropout: float = 0.0
    # data
    corpus: str | None = None  # a file or folder of text; None: Python's standard library
    corpus_pattern: str | None = None
    corpus_bytes: int | None = None  # training text to read; 0: all of it
    val_fraction: float = 0.1
    eval_tokens: int = 16384
    # budget: one of these
    steps: int | None = None
    tokens: int | None = None
    epochs: float | None = None
    # optimisation and cadence, overriding TrainConfig's defaults
    batch_size: int = 32
    optimizer: str = "adamw"
    weight_decay: float = 0.1
    beta2: float = 0.95
    schedule: str = "cosine"
    warmup: float = 0.05
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50
    checkpoint_every: int = 100

    @classmethod
    def _checked(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        from trials.models import normalize_layers

        cfg = super()._checked(cfg)
        cfg["context"] = int_param(cfg, "context")
        cfg["dropout"] = float_param(cfg, "dropout", 0.0, 1.0)
        cfg["layers"] = normalize_layers(cfg["layers"], cfg)
        given = [k for k in BUDGETS if cfg[k] is not None]
        if len(given) > 1:
            raise ValueError(f"give one budget of 'steps', 'tokens' or 'epochs', got {given}; remove all but one")
        for key in given:
            cfg[key] = float_param(cfg, key, 0.0, low_open=True) if key == "epochs" else int_param(cfg, key)
        if cfg["corpus_bytes"] is not None:
            cfg["corpus_bytes"] = int_param(cfg, "corpus_bytes", 0)
        cfg["eval_tokens"] = int_param(cfg, "eval_tokens")
        return cfg

    @property
    def budget(self) -> tuple[str, float]:
        """(the budget's param, its value): ``steps``, ``tokens`` or ``epochs``."""
        for key in BUDGETS:
            if getattr(self, key) is not None:
                return key, getattr(self, key)
        return "steps", DEFAULT_STEPS


DEFAULTS: dict[str, Any] = LMConfig.defaults()


def train(config: dict[str, Any], reporter: Reporter) -> dict[str, float]:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from trials.data import WindowSampler, load_corpus
    from trials.models import ByteLM, count_params, lm_flops_per_token

    cfg = LMConfig.parse(config)
    seed, data_seed = cfg.seeds(reporter)
    budget_key, budget = cfg.budget
    context, bs = cfg.context, cfg.batch_size
    tokens_per_step = bs * context
    device = pick_device(cfg.device)

    # ---- data: training and validation text from disjoint files (or blocks of one file)
    corpus = load_corpus(cfg.corpus, cfg.corpus_pattern, data_seed, cfg.val_fraction)
    if cfg.corpus_bytes is not None:
        want = cfg.corpus_bytes or None  # 0: all of it
    elif budget_key == "epochs":
        want = None
    else:
        budget_tokens = budget if budget_key == "tokens" else budget * tokens_per_step
        want = max(MIN_TRAIN_BYTES, 2 * int(budget_tokens))
    train_text = corpus.text("train", want)
    val_text = corpus.text("val", max(VAL_BYTES, 2 * cfg.eval_tokens))
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
    n_val = max(1, min(cfg.eval_tokens // context, (len(val_text) - 1) // context))
    val_starts = np.linspace(0, len(val_text) - context - 1, n_val).astype(np.int64)
    val_windows = np.stack([np.frombuffer(val_text, dtype=np.uint8, count=context + 1, offset=int(s))
                            for s in val_starts])
    val_windows = torch.from_numpy(val_windows.astype(np.int64)).to(device)
    offsets = torch.arange(context + 1, device=device)

    # ---- model
    seed_everything(seed)
    model = ByteLM(cfg.layers, context, cfg.dropout).to(device)
    n_params, n_non_embedding = count_params(model)
    flops_per_token = lm_flops_per_token(cfg.layers, context, n_non_embedding)

    def batches(step: int) -> list[Any]:
        # The sampler's position is in the checkpoint: a resumed run draws the same windows.
        starts = torch.from_numpy(sampler.next_starts()).to(device)
        return [train_bytes[starts[:, None] + offsets].long()]

    def loss(fwd, batch):
        logits = fwd(batch[:, :-1])
        return F.cross_entropy(logits.float().reshape(-1, 256), batch[:, 1:].reshape(-1))

    def evaluate(fwd) -> dict[str, float]:
        loss_sum, correct = 0.0, 0.0
        with torch.no_grad(), autocast_for(device, cfg.precision):
            for i in range(0, len(val_windows), bs):
                w = val_windows[i:i + bs]
                logits = fwd(w[:, :-1]).float()
                loss_sum += float(F.cross_entropy(logits.reshape(-1, 256), w[:, 1:].reshape(-1), reduction="sum"))
                correct += float((logits.argmax(-1) == w[:, 1:]).sum())
        n = len(val_windows) * context
        return {"val_loss": loss_sum / n, "val_bpb": loss_sum / n / math.log(2), "val_accuracy": correct / n}

    def counts(step: int) -> dict[str, float]:
        tokens = step * tokens_per_step
        return {"params": n_params, "params_non_embedding": n_non_embedding, "tokens": tokens,
                "flops": flops_per_token * tokens}

    task = Task(model=model, device=device, steps=total_steps, updates_per_step=1, batches=batches, loss=loss,
                evaluate=evaluate, counts=counts, meter=RunningLoss(device), sampler=sampler,
                info={"layers": cfg.layers})
    return fit(task, cfg, config, reporter)
