"""Objectives for the dashboard tests (importable by the in-process backend by module name)."""
from __future__ import annotations


def two_objectives(config, reporter):
    """Two objectives in tension along x; any y > 0 makes a trial dominated by its y = 0 twin."""
    x, y = float(config["x"]), float(config["y"])
    loss, cost = x * x + y, (1.0 - x) ** 2 + y
    for step in (1, 2, 3):
        reporter.report(step, loss=loss + 1.0 / step, cost=cost)
    return {"loss": loss, "cost": cost}
