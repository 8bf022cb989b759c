"""Throughput of the built-in trainers against a bare hand-written PyTorch loop.

For ``builtin:classifier`` (samples/s) and ``builtin:lm`` (tokens/s): the bare loop trains the
same model on the same data with the same batch size and optimiser; the trainer runs end to end
through ``run_trial`` with a reporter, once without checkpoints and once checkpointing every k
steps (epochs for the classifier). The trainer's time includes its setup, its one validation pass
and, with checkpoints, the wait for the last write; the bare loop's does not. Each measurement is
the median of ``--repeats`` interleaved runs.

The bare loop runs on the device the trainer picks (the first GPU when there is one, with the same
bf16 autocast the trainer uses there; the CPU otherwise), so the ratios compare like with like.

Both wall-clock and process CPU time are measured. On a machine shared with other jobs the wall
clock swings by 2x between identical runs, so the ratios are given on CPU time (all threads of the
process, the checkpoint writer included) as well as on wall time.

    python bench/bench_trainer.py [--threads 1] [--repeats 3] [--lm-steps 200] [--epochs 20] [--k 50]

Prints one line per measurement, the ratios, and a final JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

LM_LAYERS = [{"op": "attention", "width": 64, "heads": 2, "ffn": 128}, {"op": "conv", "width": 96, "ffn": 192}]
LM_CONFIG = {"context": 64, "batch_size": 32, "lr": 1e-3, "layers": LM_LAYERS, "optimizer": "adamw",
             "schedule": "constant", "warmup": 0, "grad_clip": 1.0}
CLS_CONFIG = {"model": "mlp", "data": "digits", "hidden": 64, "layers": 2, "batch_size": 64, "lr": 1e-3,
              "optimizer": "adam"}


class Clock:
    """Wall and process CPU seconds since construction."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def bench_device():
    from trials.device import pick_device

    return pick_device()


def synchronize(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def run_trainer(entrypoint: str, config: dict) -> tuple[float, float]:
    from trials import TrialSpec, run_trial

    with tempfile.TemporaryDirectory() as tmp:
        spec = TrialSpec("bench", 1, 0, 0, entrypoint, config, 0, ("val_loss",), tmp)
        clock = Clock()
        done = run_trial(spec, lambda e: None)
        elapsed = clock.read()
    if done.error:
        raise RuntimeError(done.error)
    return elapsed


def bare_lm(steps: int) -> tuple[float, float]:
    """A hand-written loop: random windows from the same training bytes, forward, backward, clip, step."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from trials._train import autocast_for
    from trials.builtin.lm import MIN_TRAIN_BYTES
    from trials.data import load_corpus
    from trials.models import ByteLM, normalize_layers

    device = bench_device()
    ctx, bs = LM_CONFIG["context"], LM_CONFIG["batch_size"]
    text = load_corpus(None, None, 0, 0.1).text("train", max(MIN_TRAIN_BYTES, 2 * steps * bs * ctx))
    data = torch.from_numpy(np.frombuffer(text, dtype=np.uint8).copy()).to(device)
    torch.manual_seed(0)
    model = ByteLM(normalize_layers(LM_LAYERS, {}), ctx).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95))
    offsets = torch.arange(ctx + 1, device=device)
    clock = Clock()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - ctx - 1, (bs,)).to(device)
        batch = data[starts[:, None] + offsets].long()
        with autocast_for(device, "auto"):
            logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, 256), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    synchronize(device)
    return clock.read()


def bare_classifier(epochs: int) -> tuple[tuple[float, float], int]:
    import torch
    import torch.nn.functional as F

    from trials.data import load_classification
    from trials.models import build_mlp

    from trials._train import autocast_for

    device = bench_device()
    data = load_classification("digits", 0, 0.2)
    X, y = torch.tensor(data.X_train, device=device), torch.tensor(data.y_train, device=device)
    torch.manual_seed(0)
    model = build_mlp(data.sample_shape, data.n_classes, 64, 2).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    bs = CLS_CONFIG["batch_size"]
    clock = Clock()
    for _epoch in range(epochs):
        order = torch.randperm(len(X)).to(device)
        for i in range(0, len(X), bs):
            idx = order[i:i + bs]
            with autocast_for(device, "auto"):
                logits = model(X[idx])
            loss = F.cross_entropy(logits.float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    synchronize(device)
    return clock.read(), len(X)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lm-steps", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=50, help="LM checkpoint interval in steps")
    parser.add_argument("--k-epochs", type=int, default=5, help="classifier checkpoint interval in epochs")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    steps, epochs = args.lm_steps, args.epochs
    lm_base = {**LM_CONFIG, "steps": steps, "eval_every": steps, "eval_tokens": 4096}
    lm_plain = {**lm_base, "checkpoint_every": 0, "checkpoint_final": False}
    lm_ckpt = {**lm_base, "checkpoint_every": args.k, "checkpoint_final": False}
    cls_base = {**CLS_CONFIG, "epochs": epochs, "eval_every": epochs}
    cls_plain = {**cls_base, "checkpoint_every": 0, "checkpoint_final": False}
    cls_ckpt = {**cls_base, "checkpoint_every": args.k_epochs, "checkpoint_final": False}

    # Warm-up: corpus and data caches, lazy torch imports, allocator.
    run_trainer("builtin:lm", {**lm_plain, "steps": 5, "eval_every": 5})
    run_trainer("builtin:classifier", {**cls_plain, "epochs": 1, "eval_every": 1})
    bare_lm(5)
    bare_classifier(1)

    times: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("lm_bare", "lm_trainer", "lm_trainer_ckpt", "cls_bare", "cls_trainer", "cls_trainer_ckpt")
    }
    n_train = 0
    for _ in range(args.repeats):
        times["lm_bare"].append(bare_lm(steps))
        times["lm_trainer"].append(run_trainer("builtin:lm", lm_plain))
        times["lm_trainer_ckpt"].append(run_trainer("builtin:lm", lm_ckpt))
        t, n_train = bare_classifier(epochs)
        times["cls_bare"].append(t)
        times["cls_trainer"].append(run_trainer("builtin:classifier", cls_plain))
        times["cls_trainer_ckpt"].append(run_trainer("builtin:classifier", cls_ckpt))

    tokens = steps * LM_CONFIG["batch_size"] * LM_CONFIG["context"]
    samples = epochs * n_train
    result: dict[str, float | int] = {
        "device": str(bench_device()), "threads": args.threads, "repeats": args.repeats, "lm_steps": steps,
        "classifier_epochs": epochs,
        "lm_checkpoint_every": args.k, "classifier_checkpoint_every": args.k_epochs,
    }
    for clock, i in (("cpu", 1), ("wall", 0)):
        med = {k: statistics.median(t[i] for t in v) for k, v in times.items()}
        for name, unit, amount in (("lm", "tokens", tokens), ("cls", "samples", samples)):
            for run in ("bare", "trainer", "trainer_ckpt"):
                result[f"{name}_{unit}_per_{clock}_s_{run}"] = amount / med[f"{name}_{run}"]
            result[f"{name}_ratio_{clock}"] = med[f"{name}_bare"] / med[f"{name}_trainer"]
            result[f"{name}_ratio_ckpt_{clock}"] = med[f"{name}_bare"] / med[f"{name}_trainer_ckpt"]
            result[f"{name}_ckpt_slowdown_{clock}"] = med[f"{name}_trainer_ckpt"] / med[f"{name}_trainer"] - 1
    for key, value in result.items():
        print(f"{key:38s} {value:,.3f}" if isinstance(value, float) else f"{key:38s} {value}")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
