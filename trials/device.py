"""Pick the device a trial trains on: the GPU Ray (or CUDA_VISIBLE_DEVICES) gives it, else CPU."""
from __future__ import annotations

__all__ = ["pick_device"]


def pick_device(prefer: str | None = None):
    import torch

    if prefer not in (None, "auto"):
        return torch.device(prefer)
    if torch.cuda.is_available():
        # Ray restricts CUDA_VISIBLE_DEVICES to the trial's GPUs, so index 0 is always ours.
        return torch.device("cuda", 0)
    return torch.device("cpu")
