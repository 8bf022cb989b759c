"""What both built-in trainers share: config checks, optimisers, learning-rate schedules, RNG state,
mixed precision. Kept free of model and data code so each trainer reads top to bottom."""
from __future__ import annotations

import math
import random
from typing import Any, Iterable, Mapping

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "wsd")
PRECISIONS = ("auto", "fp32", "bf16")


def check_known(cfg: Mapping[str, Any], known: Iterable[str], trainer: str) -> None:
    known = set(known)
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown {trainer} param {unknown[0]!r}; known params: {sorted(known)}")


def check_choice(cfg: Mapping[str, Any], key: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if cfg[key] not in allowed:
        raise ValueError(f"param {key!r} must be one of {list(allowed)}, got {cfg[key]!r}")
    return str(cfg[key])


def int_param(cfg: Mapping[str, Any], key: str, low: int = 1) -> int:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"param {key!r} must be an integer >= {low}, got {value!r}")
    if int(value) < low:
        raise ValueError(f"param {key!r} must be >= {low}, got {value!r}")
    return int(value)


def float_param(cfg: Mapping[str, Any], key: str, low: float = 0.0, high: float = math.inf,
                low_open: bool = False) -> float:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"param {key!r} must be a finite number, got {value!r}")
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = ">" if low_open else ">="
        raise ValueError(f"param {key!r} must be {bound} {low} and <= {high}, got {value!r}")
    return float(value)


def make_optimizer(model, cfg: Mapping[str, Any]):
    """AdamW/Adam/SGD. As in nanoGPT, weight decay applies only to matrices (dim >= 2), never to
    biases and norm gains."""
    import torch

    name = check_choice(cfg, "optimizer", OPTIMIZERS)
    lr = float_param(cfg, "lr", 0.0, low_open=True)
    wd = float_param(cfg, "weight_decay")
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": wd},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float_param(cfg, "momentum", 0.0, 1.0))
    betas = (float_param(cfg, "beta1", 0.0, 1.0), float_param(cfg, "beta2", 0.0, 1.0))
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
    # Adam's weight decay is L2 added to the gradient (not decoupled): that is what "adam" means.
    return torch.optim.Adam(groups, lr=lr, betas=betas)


def schedule_from(cfg: Mapping[str, Any], total_steps: int) -> "Schedule":
    name = check_choice(cfg, "schedule", SCHEDULES)
    warmup = float_param(cfg, "warmup")
    warmup_steps = int(round(warmup * total_steps)) if warmup < 1 else int(warmup)
    if warmup_steps >= total_steps and total_steps > 1:
        raise ValueError(
            f"param 'warmup' must leave steps to train: {warmup_steps} warmup steps >= {total_steps} "
            f"total; lower 'warmup' or raise the budget"
        )
    return Schedule(
        name=name, base_lr=float_param(cfg, "lr", 0.0, low_open=True), total=total_steps,
        warmup=warmup_steps, decay_fraction=float_param(cfg, "decay_fraction", 0.0, 1.0),
        min_lr_ratio=float_param(cfg, "min_lr_ratio", 0.0, 1.0),
    )


class Schedule:
    """Learning rate as a pure function of the optimizer step, so a checkpoint needs only the step.

    ``constant``; ``cosine`` from ``base_lr`` to ``min_lr_ratio * base_lr``; ``wsd``
    (warmup-stable-decay): flat, then linear decay over the last ``decay_fraction`` of the steps.
    All three start with ``warmup`` linear warmup steps.
    """

    def __init__(self, name: str, base_lr: float, total: int, warmup: int, decay_fraction: float,
                 min_lr_ratio: float) -> None:
        self.name, self.base_lr, self.total, self.warmup = name, base_lr, total, warmup
        self.decay_fraction, self.min_lr_ratio = decay_fraction, min_lr_ratio

    def __call__(self, step: int) -> float:
        """The learning rate for optimizer step ``step`` (0-based)."""
        if step < self.warmup:
            return self.base_lr * (step + 1) / self.warmup
        low = self.base_lr * self.min_lr_ratio
        if self.name == "cosine":
            span = max(1, self.total - self.warmup)
            t = min(1.0, (step - self.warmup) / span)
            return low + (self.base_lr - low) * 0.5 * (1.0 + math.cos(math.pi * t))
        if self.name == "wsd":
            decay = max(1, int(round(self.decay_fraction * self.total)))
            start = self.total - decay
            if step < start:
                return self.base_lr
            t = min(1.0, (step - start + 1) / decay)
            return self.base_lr + (low - self.base_lr) * t
        return self.base_lr


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch and (when present) every CUDA device's generator state."""
    import numpy as np
    import torch

    state: dict[str, Any] = {
        "python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def autocast_for(device, precision: str):
    """bf16 autocast on CUDA when ``precision`` is ``auto`` (and the GPU supports it) or ``bf16``;
    full precision otherwise. CPU autocast is used only when asked for explicitly."""
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda":
        if precision == "bf16" or torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def maybe_compile(model, enabled: Any):
    """``torch.compile`` the model for training when asked; checkpoints keep using the eager module."""
    if isinstance(enabled, str) or not isinstance(enabled, bool):
        raise ValueError(f"param 'compile' must be true or false, got {enabled!r}")
    if not enabled:
        return model
    import torch

    return torch.compile(model)


def non_finite(value: float, what: str, step: int, lr: float) -> FloatingPointError:
    return FloatingPointError(
        f"{what} became {value} at step {step}; lower 'lr' (now {lr:g}) or set 'grad_clip' (e.g. 1.0)"
    )


def load_into(model, optimizer, state: Mapping[str, Any], trainer: str) -> None:
    """Restore model and optimizer from a checkpoint, with a one-line reason when the checkpoint
    belongs to a different architecture (a PBT exploit across shapes)."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise ValueError(
            f"checkpoint does not fit this {trainer} model ({detail}); resume only from a checkpoint "
            f"of a trial with the same architecture params"
        ) from None
    optimizer.load_state_dict(state["optimizer"])
