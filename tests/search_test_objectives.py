"""Objectives used by the tests. Plain functions: importable by Ray workers and CLI subprocesses."""
from __future__ import annotations

import json
import math
import os
import time


def quadratic(config):
    """Minimum 0 at x=0.3, y=-1 (y optional); categorical 'kind' adds 0 for 'a', 1 for 'b'."""
    y = config.get("y", -1.0)
    return (config["x"] - 0.3) ** 2 + (y + 1.0) ** 2 + (1.0 if config.get("kind") == "b" else 0.0)


def noop(config):
    return 0.0


def metrics_dict(config):
    return {"loss": config["x"] ** 2, "size": 10.0 * config["x"]}


def flaky(config):
    """Raises for x > 0.8, returns NaN for 0.6 < x <= 0.8, else x."""
    if config["x"] > 0.8:
        raise RuntimeError(f"boom at x={config['x']:.3f}")
    if config["x"] > 0.6:
        return float("nan")
    return config["x"]


def stepper(config, reporter):
    """Reports ``steps`` steps, ``sleep`` seconds each, writing a small checkpoint every step.
    Resumes from the checkpoint it is given; the result depends only on the config."""
    steps = int(config.get("steps", 5))
    start = 0
    state = reporter.load_checkpoint()
    if state is not None:
        start = int(state["step"])
    log = config.get("log")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"number": reporter.spec.number, "attempt": reporter.spec.attempt, "start": start}) + "\n")
    loss = 0.0
    for step in range(start + 1, steps + 1):
        time.sleep(float(config.get("sleep", 0.0)))
        loss = (config["x"] - 0.5) ** 2 + 1.0 / step
        reporter.save_checkpoint({"step": step}, step)
        if reporter.report(step, loss=loss):
            break
    return {"loss": loss}


def crash_once(config, reporter):
    """Kills its own worker process on attempt 0 after a checkpoint (Ray backend tests).

    With ``db`` (the study's storage URL) in the params, it dies only once the controller has
    recorded that checkpoint, so the test does not race the event's trip to the controller.
    """
    state = reporter.load_checkpoint()
    if reporter.spec.attempt == 0:
        reporter.save_checkpoint({"step": 1}, 1)
        reporter.report(1, loss=1.0)
        if config.get("db"):
            from storage import open_storage

            st = open_storage(config["db"])
            deadline = time.monotonic() + 60.0
            while not st.get_checkpoints(reporter.spec.trial_id):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"trial id {reporter.spec.trial_id}: no checkpoint recorded in {config['db']}")
                time.sleep(0.05)
        else:
            time.sleep(0.5)
        os._exit(1)
    return {"loss": 0.5, "resumed_from": float(state["step"]) if state else -1.0}


def finite_check(config):
    return math.sqrt(config["x"])


def pid(config):
    """Reports the worker's process id, to check that actors are reused across trials."""
    return {"loss": config["x"], "pid": float(os.getpid())}


def chinchilla_toy(config):
    """A run whose loss follows L = 1.8 + 400/N^0.34 + 2000/D^0.37 exactly (for scaling tests)."""
    n, d = float(config["n"]), float(config["d"])
    return {"loss": 1.8 + 400.0 / n**0.34 + 2000.0 / d**0.37, "params": n, "tokens": d, "flops": 6 * n * d}


def curve(config, reporter):
    """A scripted learning curve: loss = q + 1/step, so a lower q is better at every step."""
    steps = int(config.get("steps", 27))
    loss = float("inf")
    for step in range(1, steps + 1):
        loss = config["q"] + 1.0 / step
        if reporter.report(step, loss=loss):
            break
    return {"loss": loss}


def pbt_toy(config, reporter):
    """A member whose best learning rate changes over training (0.1 for steps <= 10, then 0.01).
    Its checkpoint carries the learning rate used at every step so far, so the final checkpoint's
    history is the schedule the weights really saw. ``sleep`` seconds a step (default 0). A stop
    request (an exploit) is met as ``freeze_thaw_objectives.stop_requested`` says (``die_on_stop``,
    ``linger_on_stop``)."""
    steps = int(config.get("steps", 20))
    state = reporter.load_checkpoint() or {"step": 0, "loss": 10.0, "history": []}
    step, loss, history = int(state["step"]), float(state["loss"]), [list(h) for h in state["history"]]
    lr = float(config["lr"])
    while step < steps:
        step += 1
        time.sleep(float(config.get("sleep", 0.0)))
        target = 0.1 if step <= 10 else 0.01
        loss -= 0.5 * math.exp(-(math.log10(lr / target)) ** 2)
        history.append([step, lr])
        reporter.save_checkpoint({"step": step, "loss": loss, "history": history}, step)
        if reporter.report(step, loss=loss):
            from freeze_thaw_objectives import stop_requested

            stop_requested(config, reporter, step)
            return {"loss": loss}
    log = config.get("log")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"number": reporter.spec.number, "history": history}) + "\n")
    return {"loss": loss}


# The ladder toy's truth: loss law, lr law (lr* = c*N^a*D^b) and batch-size law (tokens per step).
LADDER_TOY = {"E": 1.2, "A": 40.0, "alpha": 0.34, "B": 200.0, "beta": 0.37,
              "lr_coef": 0.5, "lr_N_exp": -0.3, "lr_D_exp": 0.1, "bs_coef": 4.0, "bs_D_exp": 0.35}


def ladder_toy(config):
    """A builtin:lm stand-in for scaling-ladder tests: N from the layers as ByteLM counts them, D
    from steps x batch_size x context, and a loss that is Chinchilla's at the optimal lr and batch
    size plus quadratic penalties in log lr and log batch size (so a parabola recovers the optima)."""
    from search.algorithms.scaling_ladder import lm_param_counts

    k = LADDER_TOY
    layers, context = config["layers"], int(config.get("context", 64))
    total, non_emb = lm_param_counts(layers, context)
    d = float(config["steps"] * config["batch_size"] * context)
    n = float(non_emb)
    lr_opt = k["lr_coef"] * n ** k["lr_N_exp"] * d ** k["lr_D_exp"]
    bs_opt = k["bs_coef"] * d ** k["bs_D_exp"]
    loss = (k["E"] + k["A"] / n ** k["alpha"] + k["B"] / d ** k["beta"]
            + 0.05 * math.log(config["lr"] / lr_opt) ** 2
            + 0.02 * math.log(config["batch_size"] * context / bs_opt) ** 2)
    log = config.get("log")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"steps": config["steps"], "lr": config["lr"], "batch_size": config["batch_size"],
                                "width": layers[0]["width"]}) + "\n")
    return {"val_loss": loss, "params": float(total), "params_non_embedding": n, "tokens": d, "flops": 6 * n * d}


def sleepy(config, reporter):
    """Reports step 1, then sleeps ``sleep`` seconds (forever for trials whose x < hang_below) and
    returns x: a trial that hangs."""
    reporter.report(step=1, loss=config["x"])
    if config["x"] < config.get("hang_below", 0.5):
        time.sleep(config.get("sleep", 3600))
    return config["x"]


def exits(config):
    """Kills the process it runs in (as a segfault or the OOM killer would) for x < exit_below."""
    if config["x"] < config.get("exit_below", 2.0):
        os._exit(1)
    return config["x"]


def distributed(config):
    """A trial on several workers: each rank all-reduces a tensor at every step, so the ranks must
    move together; each writes what it saw to ``log``. Rank 1 of attempt 0 dies at step 2 when
    ``die_once`` is set (a lost worker)."""
    import torch
    import torch.distributed as dist

    import search

    info = search.get_trial()
    state = search.load_checkpoint()
    start = int(state["step"]) if state else 0
    for step in range(start + 1, int(config.get("steps", 3)) + 1):
        if config.get("die_once") and info.attempt == 0 and info.rank == 1 and step == 2:
            os._exit(1)
        t = torch.tensor([float(info.rank + 1)])
        dist.all_reduce(t)  # 1 + 2 = 3 with two workers
        loss = config["x"] + t.item() / step
        search.save_checkpoint({"step": step}, step)
        with open(config["log"], "a", encoding="utf-8") as f:
            f.write(json.dumps({"number": info.number, "attempt": info.attempt, "rank": info.rank,
                                "world": info.world_size, "step": step, "sum": t.item(),
                                "backend": dist.get_backend()}) + "\n")
        if search.report(step, loss=loss):
            break
    return {"loss": loss}
