"""Pick the device a trial trains on: the GPU Ray (or CUDA_VISIBLE_DEVICES) gives it, else CPU."""
from __future__ import annotations

__all__ = ["pick_device"]


def pick_device(prefer: str | None = None):
    """``auto`` (or None): the first visible GPU, else CPU. Anything else is a torch device name,
    checked here so a trial asking for a GPU it does not have fails with the reason."""
    import torch

    if prefer not in (None, "auto"):
        try:
            device = torch.device(prefer)
        except (RuntimeError, TypeError):
            raise ValueError(f"param 'device' must be 'auto', 'cpu' or 'cuda[:N]', got {prefer!r}") from None
        if device.type == "cuda":
            visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if (device.index or 0) >= visible:
                raise ValueError(
                    f"param 'device' is {prefer!r} but this worker sees {visible} GPU(s); request GPUs "
                    f"for the trial (resources) or use device: auto"
                )
        return device
    if torch.cuda.is_available():
        # Ray restricts CUDA_VISIBLE_DEVICES to the trial's GPUs, so index 0 is always ours.
        return torch.device("cuda", 0)
    return torch.device("cpu")
