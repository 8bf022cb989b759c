"""Objectives for the freeze-thaw tests: scripted learning curves that checkpoint and resume.
Plain functions, importable by the simulated backend's trial threads and by CLI subprocesses."""
from __future__ import annotations

import json
import time


def curve_ckpt(config, reporter):
    """``search_test_objectives.curve`` (loss = q + 1/step) with a checkpoint at every step, resumed
    from the checkpoint it is given, ``sleep`` seconds a step. ``log`` (optional) gets one JSON line per attempt: the trial,
    the attempt and the step it started from."""
    steps = int(config.get("steps", 27))
    state = reporter.load_checkpoint()
    start = 0 if state is None else int(state["step"])
    if config.get("log"):
        with open(config["log"], "a", encoding="utf-8") as f:
            f.write(json.dumps({"number": reporter.spec.number, "attempt": reporter.spec.attempt,
                                "start": start}) + "\n")
    loss = float("inf")
    for step in range(start + 1, steps + 1):
        time.sleep(float(config.get("sleep", 0.0)))
        loss = config["q"] + config.get("slope", 1.0) / step
        reporter.save_checkpoint({"step": step}, step)
        if reporter.report(step, loss=loss):
            break
    return {"loss": loss}
