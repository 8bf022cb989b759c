"""Every file in examples/ runs, at a small budget, so none can rot: study files through `search run`
with their `budget` overridden (in-process), Python scripts as written with SEARCH_EXAMPLE_SMALL=1
(on the backend they choose). A new example without an entry here fails the first test."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from storage import TrialState, open_storage
from testlib import REPO, SHARED_DATA, cli_env

EXAMPLES = os.path.join(REPO, "examples")

# Study files and the budget each runs at here (PBT's population is its budget: four, all at once).
YAML = {
    "quickstart.yaml": {"trials": 2, "parallel": 2},
    "lm.yaml": {"trials": 1, "parallel": 1},
    "scaling_ladder.yaml": {"trials": 2, "parallel": 2},
    "pbt.yaml": {"trials": 4, "parallel": 4},
    "asha.yaml": {"trials": 4, "parallel": 2},
    "hyperband.yaml": {"trials": 4, "parallel": 2},
    "freeze_thaw.yaml": {"trials": 6, "parallel": 2},
    "nas_bench_201.yaml": {"trials": 12, "parallel": 1},
    "nas_lm.yaml": {"trials": 2, "parallel": 2},
    "multi_objective.yaml": {"trials": 6, "parallel": 2},
}
# Fixed trainer params shrunk here too, where one trial would otherwise take minutes on 2 cores
# (the file's own values are what a user runs).
TRIAL_PARAMS = {
    "quickstart.yaml": {"epochs": 3},
    "lm.yaml": {"steps": 30},
}
# Python examples: the study each one makes, the extra it needs, and whether it runs on Ray (the
# default backend of study.optimize; ask/tell runs in the script's own threads).
PYTHON = {
    "python_api.py": ("python-api", None, True),
    "ask_tell.py": ("ask-tell", None, False),
    "lightning_pbt.py": ("lightning-pbt", "lightning", True),
    "hf_gpt2.py": ("hf-gpt2", "transformers", True),
}


def test_every_example_is_run_here():
    files = {f for f in os.listdir(EXAMPLES) if not f.startswith((".", "_")) and f != "README.md"}
    assert files == set(YAML) | set(PYTHON), "add the new example to tests/test_examples.py"


def _summary(url, name):
    with open_storage(url) as st:
        study = st.get_study(name)
        return st.get_trials(study.id), st.get_exploits(study.id)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(YAML))
def test_study_file_example(name, tmp_path):
    with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
        study = yaml.safe_load(f)
    study["budget"] = {**study.get("budget", {}), **YAML[name]}
    study["trial"]["params"] = {**study["trial"].get("params", {}), **TRIAL_PARAMS.get(name, {})}
    study["artifacts"] = str(tmp_path / "artifacts")
    table = study["trial"].get("params", {}).get("table")
    if table:
        # The example names the table as a clone finds it from the repository root (../shared/...);
        # SEARCH_SHARED_DATA moves that folder, as for the other tests.
        prefix = os.path.join("..", "shared", "data")
        path = os.path.join(SHARED_DATA, os.path.relpath(table, prefix)) if table.startswith(prefix) else table
        path = os.path.normpath(os.path.join(REPO, path))
        if not os.path.exists(path):
            pytest.skip(f"{name}: the table {path} is not on this machine")
        study["trial"]["params"]["table"] = path
    small = tmp_path / name
    small.write_text(yaml.safe_dump(study))
    url = f"sqlite:///{tmp_path / 'search.db'}"
    run = subprocess.run(["search", "run", str(small), "--storage", url, "--backend", "inprocess", "--quiet", "--json"],
                         cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    trials, exploits = _summary(url, study["name"])
    assert summary["failed"] == 0 and all(t.state != TrialState.FAILED for t in trials), [t.error for t in trials]
    assert summary["complete"] >= 1
    if name == "scaling_ladder.yaml":
        return  # the ladder plans its own trials; the budget only cuts it short
    assert len(trials) == YAML[name]["trials"]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    if name == "pbt.yaml":
        assert exploits, "the PBT example's population never exploited"


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.ray] if PYTHON[n][2] else []) for n in sorted(PYTHON)])
def test_python_example(name, tmp_path):
    study_name, extra, _ = PYTHON[name]
    if extra:
        pytest.importorskip(extra, reason=f"search-service[{extra}] is not installed")
    url = f"sqlite:///{tmp_path / 'search.db'}"
    env = cli_env(SEARCH_EXAMPLE_SMALL="1", SEARCH_STORAGE=url)
    run = subprocess.run([sys.executable, os.path.join(EXAMPLES, name)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-3000:])
    assert "best" in run.stdout
    trials, _ = _summary(url, study_name)
    assert trials and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), \
        [(t.number, t.state, t.error) for t in trials]
