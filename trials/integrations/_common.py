"""What both callbacks share: the trial they talk to, the metrics they report, and PBT's new
optimizer hyperparameters applied over a parent's restored optimizer state."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

# The key both callbacks add to the checkpoint dicts they store: which trial wrote it, at which step.
# A checkpoint written by another trial is a PBT parent's: this trial's hyperparameters then win.
SEARCH_KEY = "search"


@dataclass(frozen=True)
class TrialHandle:
    """The calls a callback makes, bound to one trial: the one the service runs here, or an
    ask/tell trial handed to the callback as ``trial=``."""

    number: int
    report: Callable[..., bool]
    save_checkpoint: Callable[[Mapping[str, Any], int], str]
    load_checkpoint: Callable[[], "dict[str, Any] | None"]


def resolve(trial: Any | None) -> TrialHandle:
    """``trial`` (an ask/tell trial) or the trial running in this thread; raises the context's
    RuntimeError, which says where these calls work, when there is neither."""
    if trial is None:
        from trials import context

        reporter = context.current()
        return TrialHandle(reporter.spec.number, reporter.report, reporter.save_checkpoint, reporter.load_checkpoint)
    missing = [m for m in ("number", "report", "save_checkpoint", "load_checkpoint") if not hasattr(trial, m)]
    if missing:
        raise TypeError(f"trial= must be an ask/tell trial (study.ask()), with number, report, save_checkpoint "
                        f"and load_checkpoint; got {type(trial).__name__} without {', '.join(missing)}")
    return TrialHandle(int(trial.number), trial.report, trial.save_checkpoint, trial.load_checkpoint)


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The entries of ``metrics`` that are one number (Python numbers, 0-d or 1-element tensors
    and arrays), as floats; booleans, strings and larger tensors are left out."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, numbers.Number):
            out[str(key)] = float(value)  # type: ignore[arg-type]
            continue
        item = getattr(value, "item", None)  # a torch tensor or a numpy array/scalar
        count = value.numel() if hasattr(value, "numel") else getattr(value, "size", None)
        if callable(item) and count == 1:
            try:
                out[str(key)] = float(item())
            except (TypeError, ValueError):
                pass
    return out


def written_by(checkpoint: Mapping[str, Any] | None) -> int | None:
    """The number of the trial that stored ``checkpoint``, when one of these callbacks stored it."""
    if not checkpoint:
        return None
    mark = checkpoint.get(SEARCH_KEY)
    return int(mark["number"]) if isinstance(mark, Mapping) and "number" in mark else None


def _settable(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, numbers.Number):
        return math.isfinite(float(value))  # type: ignore[arg-type]
    return isinstance(value, tuple) and all(isinstance(v, numbers.Number) for v in value)


def group_hyperparams(optimizer: Any) -> list[dict[str, Any]]:
    """Each param group's hyperparameters as configured (numbers, flags, tuples like ``betas``),
    with the lr the group started at (``initial_lr`` once a scheduler has set it)."""
    groups = []
    for g in optimizer.param_groups:
        hp = {k: v for k, v in g.items() if k not in ("params", "initial_lr") and _settable(v)}
        hp["lr"] = float(g.get("initial_lr", g["lr"]))
        groups.append(hp)
    return groups


def apply_hyperparams(optimizer: Any, configured: Sequence[Mapping[str, Any]], schedulers: Iterable[Any]) -> None:
    """Make ``configured`` (``group_hyperparams`` of this trial's freshly built optimizer) the
    optimizer's hyperparameters again after a parent's optimizer state was loaded over them: PBT's
    explored values take effect, the parent's moments stay. The lr is rescaled, not overwritten, so
    a schedule keeps its position: the group's current lr, its ``initial_lr`` and the base lr of each
    scheduler of this optimizer are multiplied by (this trial's initial lr / the parent's)."""
    groups = optimizer.param_groups
    if len(groups) != len(configured):
        raise ValueError(f"the restored optimizer has {len(groups)} param groups but this trial's configure step "
                         f"built {len(configured)}: a PBT parent's optimizer state fits only the same optimizer")
    factors = []
    for group, hp in zip(groups, configured):
        parent_initial = float(group.get("initial_lr", group["lr"]))
        factor = float(hp["lr"]) / parent_initial if parent_initial else 1.0
        factors.append(factor)
        group["lr"] = float(hp["lr"]) if not parent_initial else group["lr"] * factor
        if "initial_lr" in group:
            group["initial_lr"] = float(hp["lr"])
        for key, value in hp.items():
            if key != "lr" and key in group:
                group[key] = value
    for sched in schedulers:
        base = getattr(sched, "base_lrs", None)
        if getattr(sched, "optimizer", None) is optimizer and base is not None and len(base) == len(factors):
            sched.base_lrs = [b * f for b, f in zip(base, factors)]
