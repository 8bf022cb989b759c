"""The training loop of the built-in trainers, read top to bottom like nanoGPT's ``train.py``.

A trainer (``builtin:classifier``, ``builtin:lm``) parses its params into its dataclass config (a
``TrainConfig`` with the trainer's own fields), loads its data, builds its model and hands
``fit`` a ``Task``: the model, the batches of each step, the loss of one batch and the validation
metrics. ``fit`` owns everything else: optimiser, learning-rate schedule, precision, clipping,
resume, the report and checkpoint cadence, and the checkpoint dict.

A *step* is what a report counts: an epoch for the classifier, an optimiser update for the LM.
Each step runs ``Task.updates_per_step`` optimiser updates; the learning rate is a function of the
update number.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Iterable, Mapping, Self, Sequence

from trials.api import Reporter

__all__ = ["TrainConfig", "Task", "EpochLoss", "RunningLoss", "fit"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "wsd")
PRECISIONS = ("auto", "fp32", "bf16")
PARALLEL = ("ddp", "fsdp")


# ---- params

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


def check_bool(cfg: Mapping[str, Any], key: str) -> bool:
    if not isinstance(cfg[key], bool):
        raise ValueError(f"param {key!r} must be true or false, got {cfg[key]!r}")
    return cfg[key]


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


@dataclass(frozen=True)
class TrainConfig:
    """The params every built-in trainer shares, with the defaults of a small model trained for a
    few epochs. A trainer's config subclasses it, adds its own params and overrides defaults; its
    field names are the trainer's param names. Build one with ``parse``."""

    TRAINER: ClassVar[str] = "training"

    batch_size: int = 64
    val_fraction: float = 0.2  # held out for validation
    # optimisation
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    beta1: float = 0.9  # adam and adamw only
    beta2: float = 0.999
    schedule: str = "constant"
    warmup: float = 0  # a fraction of the updates when < 1, else a count
    decay_fraction: float = 0.2  # wsd: the decaying part
    min_lr_ratio: float = 0.0  # cosine and wsd: the final lr over 'lr'
    grad_clip: float = 0.0  # max gradient norm; 0: no clipping
    precision: str = "auto"
    compile: bool = False
    # reporting and checkpoints, in steps
    eval_every: int = 1
    checkpoint_every: int = 1  # 0: only the final one
    checkpoint_final: bool = True
    device: str = "auto"
    # a trial on several workers (resources.workers): ddp replicates the model on every rank,
    # fsdp shards parameters, gradients and optimiser state over the ranks (ZeRO-3)
    parallel: str = "ddp"
    # None: the trial's seeds
    seed: int | None = None
    data_seed: int | None = None

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in fields(cls)}

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Self:
        """``params`` over the defaults, every name known and every value checked and converted;
        errors name the param, what it must be and what it got."""
        defaults = cls.defaults()
        cfg = {**defaults, **params}
        check_known(cfg, defaults, cls.TRAINER)
        return cls(**cls._checked(cfg))

    @classmethod
    def _checked(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        """``cfg`` with the shared params checked and converted; a trainer's config extends it."""
        check_choice(cfg, "precision", PRECISIONS)
        for key in ("batch_size", "eval_every"):
            cfg[key] = int_param(cfg, key)
        cfg["checkpoint_every"] = int_param(cfg, "checkpoint_every", 0)
        cfg["grad_clip"] = float_param(cfg, "grad_clip")
        check_bool(cfg, "checkpoint_final")
        cfg["val_fraction"] = float_param(cfg, "val_fraction", 0.0, 1.0, low_open=True)
        check_choice(cfg, "optimizer", OPTIMIZERS)
        cfg["lr"] = float_param(cfg, "lr", 0.0, low_open=True)
        cfg["weight_decay"] = float_param(cfg, "weight_decay")
        # Only the chosen optimiser's params are checked: a study may fix momentum and vary the
        # optimiser, and an adam trial ignores momentum.
        if cfg["optimizer"] == "sgd":
            cfg["momentum"] = float_param(cfg, "momentum", 0.0, 1.0)
        else:
            cfg["beta1"], cfg["beta2"] = (float_param(cfg, "beta1", 0.0, 1.0), float_param(cfg, "beta2", 0.0, 1.0))
        check_choice(cfg, "schedule", SCHEDULES)
        cfg["warmup"] = float_param(cfg, "warmup")
        cfg["decay_fraction"] = float_param(cfg, "decay_fraction", 0.0, 1.0)
        cfg["min_lr_ratio"] = float_param(cfg, "min_lr_ratio", 0.0, 1.0)
        check_bool(cfg, "compile")
        check_choice(cfg, "parallel", PARALLEL)
        return cfg

    def seeds(self, reporter: Reporter) -> tuple[int, int]:
        """(seed, data_seed): the params where given, else the trial's. ``seed`` drives weights and
        batch order, ``data_seed`` the train/validation split every trial of a study shares."""
        return (int(reporter.seed if self.seed is None else self.seed),
                int(reporter.data_seed if self.data_seed is None else self.data_seed))


# ---- optimiser and learning rate

def make_optimizer(model, cfg: TrainConfig):
    """AdamW/Adam/SGD. As in nanoGPT, weight decay applies only to matrices (dim >= 2), never to
    biases and norm gains."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas)
    # Adam's weight decay is L2 added to the gradient (not decoupled): that is what "adam" means.
    return torch.optim.Adam(groups, lr=cfg.lr, betas=betas)


def schedule_from(cfg: TrainConfig, total_steps: int) -> "Schedule":
    warmup_steps = int(round(cfg.warmup * total_steps)) if cfg.warmup < 1 else int(cfg.warmup)
    if warmup_steps >= total_steps and total_steps > 1:
        raise ValueError(
            f"param 'warmup' must leave steps to train: {warmup_steps} warmup steps >= {total_steps} "
            f"total; lower 'warmup' or raise the budget"
        )
    return Schedule(name=cfg.schedule, base_lr=cfg.lr, total=total_steps, warmup=warmup_steps,
                    decay_fraction=cfg.decay_fraction, min_lr_ratio=cfg.min_lr_ratio)


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


# ---- randomness and precision

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


# ---- failures and resume

def non_finite(value: float, what: str, step: int, lr: float) -> FloatingPointError:
    return FloatingPointError(
        f"{what} became {value} at step {step}; lower 'lr' (now {lr:g}) or set 'grad_clip' (e.g. 1.0)"
    )


def _misfit(exc: Exception, trainer: str) -> ValueError:
    first = str(exc).strip().splitlines() or [type(exc).__name__]
    detail = first[1].strip() if len(first) > 1 else first[0]
    return ValueError(
        f"checkpoint does not fit this {trainer} model ({detail[:300]}); resume only from a checkpoint "
        f"of a trial with the same architecture params"
    )


def load_into(model, optimizer, state: Mapping[str, Any], trainer: str, sharded: bool = False) -> None:
    """Restore model and optimizer from a checkpoint, with a one-line reason when the checkpoint
    belongs to a different architecture (a PBT exploit across shapes). Either side may be sharded:
    a checkpoint with ``sharded`` state (FSDP's, see ``save_sharded``) loads on any worker count,
    and a whole one (one worker's, DDP's) into an FSDP model (``sharded``) as well."""
    if "sharded" in state:
        load_sharded(model, optimizer, state["sharded"], trainer)
        return
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        try:
            set_state_dict(model, optimizer, model_state_dict=state["model"],
                           optim_state_dict=_named_optim_state(state["optimizer"], model, optimizer),
                           options=StateDictOptions(full_state_dict=True))
        except (RuntimeError, KeyError, ValueError) as exc:
            raise _misfit(exc, trainer) from None
        return
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise _misfit(exc, trainer) from None
    optimizer.load_state_dict(state["optimizer"])


def _named_optim_state(state: Mapping[str, Any], model, optimizer) -> dict[str, Any]:
    """A plain ``optimizer.state_dict()`` (parameters numbered in group order) keyed by parameter
    name instead, as ``torch.distributed.checkpoint.state_dict`` wants it. The numbering follows
    ``make_optimizer``'s groups, which are the same for the same architecture on any worker count."""
    names = {id(p): n for n, p in model.named_parameters()}
    groups, states = [], {}
    for saved, live in zip(state["param_groups"], optimizer.param_groups, strict=True):
        fqns = [names[id(p)] for p in live["params"]]
        for number, fqn in zip(saved["params"], fqns, strict=True):
            if number in state["state"]:
                states[fqn] = state["state"][number]
        groups.append({**saved, "params": fqns})
    return {"state": states, "param_groups": groups}


# A sharded checkpoint: torch.distributed.checkpoint (DCP) writes each rank's shards and the
# metadata that maps them to whole tensors; the files travel to rank 0 and into the checkpoint
# file, which stays one file with one checksum (what the controller records, copies for a PBT
# exploit and deletes). Loading reads them back with DCP, which reshards to the loading model:
# any worker count, FSDP or not.
DCP_FORMAT = "torch.distributed.checkpoint"


def save_sharded(model, optimizer) -> dict[str, Any] | None:
    """Every rank's shards of model and optimizer state, saved with DCP: the ``sharded`` entry of
    a checkpoint on rank 0, None on the others. A collective: every rank calls it."""
    import os
    import tempfile

    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    with tempfile.TemporaryDirectory(prefix="search-dcp-") as tmp:
        dcp.save({"model": model_state, "optimizer": optim_state},
                 storage_writer=dcp.FileSystemWriter(tmp, sync_files=False))
        mine = {}
        for name in sorted(os.listdir(tmp)):
            with open(os.path.join(tmp, name), "rb") as f:
                mine[name] = f.read()
    rank, world = dist.get_rank(), dist.get_world_size()
    parts: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(mine, parts, dst=0)
    if parts is None:
        return None
    files: dict[str, bytes] = {}
    for part in parts:
        files.update(part)
    return {"format": DCP_FORMAT, "world_size": world, "files": files}


def load_sharded(model, optimizer, sharded: Mapping[str, Any], trainer: str) -> None:
    """Load a ``save_sharded`` entry into ``model`` and ``optimizer``, sharded (FSDP) or not, on
    any worker count (a collective when torch.distributed is set up: every rank calls it)."""
    import os
    import tempfile
    import warnings

    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    if sharded.get("format") != DCP_FORMAT:
        raise ValueError(f"checkpoint holds sharded state in an unknown format {sharded.get('format')!r}")
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    with tempfile.TemporaryDirectory(prefix="search-dcp-") as tmp:
        for name, blob in sharded["files"].items():
            with open(os.path.join(tmp, os.path.basename(name)), "wb") as f:
                f.write(blob)
        single = not (dist.is_available() and dist.is_initialized())
        try:
            with warnings.catch_warnings():
                # DCP warns that it loads in one process whenever it does: here that is the point.
                warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
                dcp.load(state, storage_reader=dcp.FileSystemReader(tmp), no_dist=single)
        except CheckpointException as exc:  # a BaseException holding each rank's error
            causes = [error for error, _ in exc.failures.values()]
            raise _misfit(causes[0] if causes else RuntimeError(str(exc)), trainer) from None
        except (RuntimeError, ValueError, KeyError) as exc:
            raise _misfit(exc, trainer) from None
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


# ---- what a trainer hands the loop

class EpochLoss:
    """The training loss as the classifier reports it: the per-sample mean over the last step's
    updates (every batch full but the last, which holds the remainder), read after every step, so
    a diverging run stops at the epoch it diverged in. Empty between steps: nothing to checkpoint."""

    read_every_step = True

    def __init__(self, n_samples: int, batch_size: int, device) -> None:
        import torch

        updates = math.ceil(n_samples / batch_size)
        self.n_samples = n_samples
        self.weights = torch.full((updates,), float(batch_size), device=device)
        self.weights[-1] = n_samples - batch_size * (updates - 1)
        self.losses: list[Any] = []

    def add(self, loss) -> None:
        # Kept on the device and summed once per step: no sync per update.
        self.losses.append(loss)

    def read(self) -> float:
        import torch

        value = float((torch.stack(self.losses) * self.weights).sum()) / self.n_samples
        self.losses = []
        return value

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class RunningLoss:
    """The training loss as the LM reports it: the mean update loss since the last report, summed
    in float64 on the device (no sync per update) and read only at reports. The sum and count go
    into checkpoints as ``loss_sum`` and ``loss_count``, so a resumed run reports the same mean."""

    read_every_step = False

    def __init__(self, device) -> None:
        import torch

        self.device = device
        self.sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = 0

    def add(self, loss) -> None:
        self.sum += loss
        self.count += 1

    def read(self) -> float:
        value = float(self.sum) / self.count
        self.sum.zero_()
        self.count = 0
        return value

    def state_dict(self) -> dict[str, Any]:
        return {"loss_sum": self.sum, "loss_count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sum = state["loss_sum"].to(self.device)
        self.count = int(state["loss_count"])


@dataclass(frozen=True)
class Task:
    """What a trainer hands ``fit``: its model on ``device`` and its data, as functions of the step.

    ``batches(step)`` gives the step's ``updates_per_step`` batches in order. It must depend only
    on the seed, the step and ``sampler``'s state (saved in checkpoints as ``data``), so a resumed
    run trains on the same batches. ``loss(fwd, batch)`` is the mean loss of one batch (``fwd`` is
    the model, compiled when asked) and runs under autocast. ``evaluate(fwd)`` gives the validation
    metrics, ``val_loss`` first, with the model in eval mode. ``counts(step)`` gives what does not
    depend on the weights: parameter counts, data seen and training FLOPs after ``step`` steps.
    ``info`` goes into every checkpoint as it is; ``step_key`` names the step count there.
    """

    model: Any
    device: Any
    steps: int
    updates_per_step: int
    batches: Callable[[int], Sequence[Any]]
    loss: Callable[[Any, Any], Any]
    evaluate: Callable[[Any], dict[str, float]]
    counts: Callable[[int], dict[str, float]]
    meter: EpochLoss | RunningLoss
    step_key: str = "step"
    sampler: Any = None
    info: Mapping[str, Any] = field(default_factory=dict)


# ---- the loop

class _Shard:
    """This rank's part of a trial on several workers over torch.distributed (gloo on CPU, NCCL on
    GPUs, as Ray Train set it up). ``ddp`` keeps a whole replica of the model on every rank and
    averages gradients; ``fsdp`` (FSDP2's ``fully_shard``, ZeRO-3) keeps 1/world of every
    parameter, gradient and optimiser state per rank, gathering each unit's weights just before it
    runs. Either way every rank draws the same batches (they depend only on the seed and the step)
    and trains on its slice of each, so the update equals one worker's on the whole batch, up to
    float summation order."""

    def __init__(self, rank: int, world: int, parallel: str = "ddp") -> None:
        self.rank, self.world, self.parallel = rank, world, parallel

    @classmethod
    def of(cls, reporter: Reporter, parallel: str = "ddp") -> "_Shard | None":
        import torch.distributed as dist

        world = reporter.spec.workers
        if world <= 1:
            return None
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(f"resources.workers={world} but torch.distributed is not set up in this worker; "
                               "multi-worker trials run on the ray backend (Ray Train)")
        return cls(dist.get_rank(), dist.get_world_size(), parallel)

    @property
    def sharded(self) -> bool:
        return self.parallel == "fsdp"

    def wrap(self, model, device):
        """The module to train with: DDP's wrapper, or ``model`` itself sharded in place."""
        if self.sharded:
            from torch.distributed.fsdp import fully_shard

            from trials.models import fsdp_units

            for unit in fsdp_units(model):
                fully_shard(unit)
            fully_shard(model)
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    def part(self, batch):
        """(this rank's rows of ``batch``, their share of the batch)."""
        import torch

        rows = torch.tensor_split(batch, self.world)[self.rank]
        if len(rows) == 0:
            raise ValueError(f"a batch of {len(batch)} rows cannot be split over {self.world} workers; "
                             "raise batch_size to at least resources.workers")
        return rows, len(rows) / len(batch)

    def batch_mean(self, weighted):
        """The whole batch's mean loss from each rank's share-weighted mean."""
        import torch.distributed as dist

        total = weighted.clone().float()
        dist.all_reduce(total)
        return total


def fit(task: Task, cfg: TrainConfig, params: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
    """Train ``task`` for ``task.steps`` steps; report every ``eval_every`` steps and at the last,
    checkpoint every ``checkpoint_every`` steps and (with ``checkpoint_final``) at the last, stop
    early when a report says to. Resumes from the reporter's checkpoint; ``params`` (the trial's
    config as given) goes into every checkpoint. Returns the last reported metrics."""
    import torch

    model, device, meter = task.model, task.device, task.meter
    shard = _Shard.of(reporter, cfg.parallel)
    sharded = shard is not None and shard.sharded
    if shard is not None and device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's collectives (and DCP's) run on the current device
    # Checkpoints keep the eager, unwrapped module's weights (FSDP shards ``model`` in place, so
    # the optimiser is made after the wrap, over the sharded parameters).
    fwd = model if shard is None else shard.wrap(model, device)
    fwd = torch.compile(fwd) if cfg.compile else fwd
    opt = make_optimizer(model, cfg)
    schedule = schedule_from(cfg, task.steps * task.updates_per_step)

    def evaluate() -> dict[str, float]:
        model.eval()
        metrics = task.evaluate(fwd)
        model.train()
        return metrics

    def checkpoint(step: int, metrics: dict[str, float]) -> None:
        data = {} if task.sampler is None else {"data": task.sampler.state_dict()}
        # Sharded weights go through DCP (every rank takes part); whole ones rank 0 writes as they are.
        weights = ({"sharded": save_sharded(model, opt)} if sharded
                   else {"model": model.state_dict(), "optimizer": opt.state_dict()})
        reporter.save_checkpoint({
            **weights, task.step_key: step, "rng": rng_state(),
            **data, **meter.state_dict(), "metrics": metrics, **task.info, "config": dict(params),
        }, step)

    # ---- resume: the checkpoint holds everything the next update depends on
    start = 0
    state = reporter.load_checkpoint()
    if state is not None:
        load_into(model, opt, state, cfg.TRAINER, sharded=sharded)
        set_rng_state(state["rng"])
        if task.sampler is not None:
            task.sampler.load_state_dict(state["data"])
        meter.load_state_dict(state)
        start = int(state[task.step_key])
    if start >= task.steps:
        # Resumed from a checkpoint at (or past) the budget: nothing to train, report where it is.
        metrics = {**evaluate(), **task.counts(start)}
        reporter.report(start, **metrics)
        return metrics

    metrics: dict[str, float] = {}
    model.train()
    for step in range(start, task.steps):
        for i, batch in enumerate(task.batches(step)):
            lr = schedule(step * task.updates_per_step + i)
            set_lr(opt, lr)
            if shard is not None:
                batch, share = shard.part(batch)
            with autocast_for(device, cfg.precision):
                loss = task.loss(fwd, batch)
            opt.zero_grad(set_to_none=True)
            if shard is None:
                loss.backward()
            else:
                # DDP averages gradients over the ranks: weighted by each shard's share of the
                # batch, that is the gradient of the whole batch's mean loss, as on one worker.
                (loss * (share * shard.world)).backward()
                loss = shard.batch_mean(loss.detach() * share)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            meter.add(loss.detach())
        done = step + 1
        last = done == task.steps
        at_eval = done % cfg.eval_every == 0 or last
        if at_eval or meter.read_every_step:
            train_loss = meter.read()
            if not math.isfinite(train_loss):
                raise non_finite(train_loss, "training loss", done, lr)
        if at_eval:
            metrics = {**evaluate(), "train_loss": train_loss, "lr": lr, **task.counts(done)}
            if not math.isfinite(metrics["val_loss"]):
                raise non_finite(metrics["val_loss"], "val_loss", done, lr)
        if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and not last) or (last and cfg.checkpoint_final):
            checkpoint(done, metrics)
        if at_eval and reporter.report(done, **metrics):
            break
    return metrics
