"""Names and payloads shared by the dashboard tests (a plain module: several test folders have
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
XSS = "xss-study"

# Each payload would set window.__xss (or open a dialog) if it ever ran as markup.
P_SCRIPT = "<script>window.__xss=1</script>"
P_IMG = '<img src=x onerror="window.__xss=1;alert(1)">'
P_SVG = '"><svg onload="window.__xss=1;alert(2)">'
