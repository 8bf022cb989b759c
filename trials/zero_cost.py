"""Zero-cost proxies: score an untrained network from one minibatch (or no data) at initialisation.

Higher is better for every proxy here (so ranking networks by score ranks them by predicted
accuracy). Each takes ``(model, x, y)`` and leaves the model as it found it (scores that change
weights work on a copy):

- ``grad_norm``: sum over conv/linear weights of the L2 norm of the cross-entropy gradient.
- ``synflow`` (Tanaka et al. 2020): data-free. On a copy with absolute weights, in double
  precision and with BatchNorm in inference mode (an identity at initialisation), R = sum of the
  output for an all-ones input; score = sum over conv/linear weights of |theta * dR/dtheta|.
- ``naswot`` (Mellor et al. 2021): log-determinant of the kernel K = C C^T + (1-C)(1-C)^T of the
  binary ReLU activation codes C of the batch (train-mode BatchNorm).
- ``gradsign`` (Zhang & Jia 2022): per-sample gradients at initialisation, one backward pass per
  example; score = sum over conv/linear weight entries of |sum over samples of sign(gradient)|,
  large when the samples' loss landscapes agree on which way to go.
"""
from __future__ import annotations

import copy
import functools
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["PROXIES", "grad_norm", "synflow", "naswot", "gradsign", "digits_batch", "score_nb201"]


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model = copy.deepcopy(model).train()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return float(sum(w.grad.norm() for w in _weights(model) if w.grad is not None))


def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    model = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad()
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64)
    model(ones).sum().backward()
    with torch.no_grad():
        return float(sum((w * w.grad).abs().sum() for w in _weights(model) if w.grad is not None))


def naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    model = copy.deepcopy(model).train()
    n = x.shape[0]
    K = torch.zeros((n, n), dtype=torch.float64)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal K
        codes = (inputs[0].reshape(n, -1) > 0).double()
        K = K + codes @ codes.T + (1 - codes) @ (1 - codes).T

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return float(torch.linalg.slogdet(K)[1])


def gradsign(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model = copy.deepcopy(model).train()
    weights = _weights(model)
    sign_sums = [torch.zeros_like(w) for w in weights]
    for i in range(x.shape[0]):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        for acc, w in zip(sign_sums, weights):
            if w.grad is not None:
                acc += torch.sign(w.grad)
    return float(sum(acc.abs().sum() for acc in sign_sums))


PROXIES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "grad_norm": grad_norm, "synflow": synflow, "naswot": naswot, "gradsign": gradsign,
}


@functools.lru_cache(maxsize=4)
def digits_batch(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` scikit-learn digits (8x8 grey, 10 classes) upscaled to 32x32 with 3 identical channels
    and standardised: a CIFAR-shaped batch that needs no download. Cached; do not modify."""
    import numpy as np
    from sklearn.datasets import load_digits

    data = load_digits()
    idx = np.random.default_rng(seed).choice(len(data.target), size=n, replace=False)
    img = torch.tensor(data.images[idx], dtype=torch.float32).unsqueeze(1) / 16.0
    img = F.interpolate(img, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    img = (img - img.mean()) / img.std()
    return img, torch.tensor(data.target[idx], dtype=torch.long)


def score_nb201(arch: str, proxy: str, *, C: int = 8, cells_per_stage: int = 1, batch: int = 64,
                seed: int = 0) -> float:
    """``proxy`` of a freshly initialised NAS-Bench-201 network for cell ``arch`` (weights from
    ``seed``) on a digits batch; narrow and shallow by default so a score costs well under a second
    on a CPU."""
    from trials.nas201 import build_nb201

    if proxy not in PROXIES:
        raise ValueError(f"unknown zero-cost proxy {proxy!r}; choose one of {', '.join(PROXIES)}")
    x, y = digits_batch(batch, seed)
    model = build_nb201(arch, C=C, cells_per_stage=cells_per_stage, num_classes=10, seed=seed)
    return PROXIES[proxy](model, x, y)
