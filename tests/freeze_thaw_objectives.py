"""Objectives for the freeze-thaw tests: scripted learning curves that checkpoint and resume.
Plain functions, importable by the simulated backend's trial threads and by CLI subprocesses."""
from __future__ import annotations

import json
import os
import time


def curve_ckpt(config, reporter):
    """``search_test_objectives.curve`` (loss = q + 1/step) with a checkpoint at every step, resumed
    from the checkpoint it is given, ``sleep`` seconds a step; a stop request is met as
    ``stop_requested`` says (``die_on_stop``, ``linger_on_stop``). ``log`` (optional) gets one JSON
    line per attempt: the trial, the attempt and the step it started from."""
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
            stop_requested(config, reporter, step)
            break
    return {"loss": loss}


def stop_requested(config, reporter, step: int) -> None:
    """What a test trainer does when its report at ``step`` is answered with a stop request: with
    ``linger_on_stop`` (a file) the first trial to see one writes its number and step there and
    takes two minutes to stop; with ``die_on_stop`` its first attempt dies (a lost worker)."""
    if config.get("linger_on_stop") and not os.path.exists(config["linger_on_stop"]):
        # The first trial asked to stop tells the test which it is, then is slow to stop.
        with open(config["linger_on_stop"] + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"number": reporter.spec.number, "step": step}, f)
        os.replace(config["linger_on_stop"] + ".tmp", config["linger_on_stop"])
        time.sleep(120)
    if config.get("die_on_stop") and reporter.spec.attempt == 0:
        raise WorkerDied(f"trial {reporter.spec.number} died when asked to stop at step {step}")


class WorkerDied(SystemExit):
    """As a worker process exiting: the backend sees a lost worker, not a failed trial."""
