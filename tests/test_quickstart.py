"""The README's quickstart, as a user runs it: `search run` on local Ray + SQLite, then
`search best --json`."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import REPO, cli_env


@pytest.mark.slow
@pytest.mark.ray
def test_quickstart_reaches_95_percent(tmp_path):
    env = cli_env()
    run = subprocess.run(["search", "run", os.path.join(REPO, "examples", "quickstart.yaml")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "study quickstart: 30 complete" in run.stdout
    assert (tmp_path / "search.db").exists()  # the embedded default storage
    best = subprocess.run(["search", "best", "quickstart", "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=True)
    b = json.loads(best.stdout)
    assert b["state"] == "COMPLETE" and b["metrics"]["val_accuracy"] >= 0.95
    assert set(b["params"]) == {"lr", "hidden", "optimizer"}
    trials = json.loads(subprocess.run(["search", "trials", "quickstart", "--json"], cwd=tmp_path, env=env,
                                       capture_output=True, text=True, check=True).stdout)
    assert len(trials) == 30 and all(t["state"] == "COMPLETE" for t in trials)
    # Checkpoints went to the artifact store beside the database.
    assert any((tmp_path / "search-artifacts" / "quickstart").rglob("*.pt"))
