"""Names, payloads and study files shared by the dashboard tests (a plain module: several test folders have
a conftest.py, so importing from "conftest" would be ambiguous)."""
from __future__ import annotations

import os

CHROMIUM = os.environ.get("SEARCH_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
POLL_SECONDS = 0.3

STEPPER = "dash-stepper"
PARETO = "dash-pareto"
SCALING = "dash-scaling"
PBT = "dash-pbt"
ASHA = "dash-asha"
LIVE = "dash-live"
XSS = "xss-study"

# Each payload would set window.__xss (or open a dialog) if it ever ran as markup.
P_SCRIPT = "<script>window.__xss=1</script>"
P_IMG = '<img src=x onerror="window.__xss=1;alert(1)">'
P_SVG = '"><svg onload="window.__xss=1;alert(2)">'

# The ASHA study: trial 0 is the best configuration, the seven after it worse, so each is stopped
# at a rung: 1 COMPLETE and 7 PRUNED (parallel 1 keeps the order).
ASHA_XS = [0.5, 0.0, 1.0, 0.05, 0.95, 0.1, 0.9, 0.15]


def asha_study(name: str, artifacts: str, *, xs=ASHA_XS, steps: int = 9, sleep: float = 0.2) -> dict:
    """An ASHA study of the stepper objective over enqueued configurations, run one at a time:
    with the best first, every later one is stopped at a rung (``sleep`` seconds a step give the
    stop decision time to arrive before the trial reaches its last step)."""
    return {"name": name, "objective": {"metric": "loss", "direction": "minimize"},
            "trial": {"entrypoint": "search_test_objectives:stepper", "params": {"steps": steps, "sleep": sleep}},
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0},
                      "width": {"type": "int", "low": 8, "high": 512, "log": True}},
            "enqueue": [{"x": x, "width": 8 * (i + 1)} for i, x in enumerate(xs)],
            "algorithm": {"name": "random", "seed": 0},
            "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3, "max_resource": steps},
            "budget": {"trials": len(xs), "parallel": 1}, "backend": {"name": "inprocess"}, "artifacts": artifacts}
