"""The README's quickstart, as a user runs it: `search run` on local Ray + SQLite, then
`search best --json`."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from testlib import REPO, cli_env


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


@pytest.mark.slow
def test_lm_example_trains_below_3_8_bits_per_byte(tmp_path):
    """examples/lm.yaml's heterogeneous 2-layer model, 300 steps on the standard library's sources."""
    import yaml

    study = yaml.safe_load(open(os.path.join(REPO, "examples", "lm.yaml")))
    study["budget"] = {"trials": 2, "parallel": 1}
    path = tmp_path / "lm.yaml"
    path.write_text(yaml.safe_dump(study))
    env = cli_env()
    run = subprocess.run(["search", "run", str(path), "--backend", "inprocess", "--quiet"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    trials = json.loads(subprocess.run(["search", "trials", "lm-stdlib", "--json"], cwd=tmp_path, env=env,
                                       capture_output=True, text=True, check=True).stdout)
    assert len(trials) == 2
    for t in trials:
        m = t["metrics"]
        assert t["state"] == "COMPLETE" and t["last_step"] == 300
        assert m["val_bpb"] < 3.8  # a unigram byte model sits near 4.5
        assert m["params"] > m["params_non_embedding"] > 0 and m["flops"] > 0 and m["tokens"] == 300 * 32 * 64
