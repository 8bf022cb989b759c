"""PostgreSQL stops for 30 s in the middle of a study and comes back: the controller backs off,
the study completes, nothing is lost."""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import yaml

from testlib import cli_env
from storage import TrialState, open_storage


def _pg(action: str) -> None:
    subprocess.run(["pg_ctlcluster", "15", "main", action, *(["-m", "fast"] if action == "stop" else [])],
                   check=True, capture_output=True, timeout=60)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(shutil.which("pg_ctlcluster") is None, reason="needs Debian's pg_ctlcluster to stop the server")
def test_study_survives_a_postgres_restart(tmp_path, pg_url):
    study = {
        "name": "outage", "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:stepper", "params": {"steps": 3, "sleep": 0.1}},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 0}, "budget": {"trials": 20, "parallel": 2},
        "backend": {"name": "inprocess"}, "artifacts": str(tmp_path / "artifacts"),
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    proc = subprocess.Popen(["search", "run", str(path), "--storage", pg_url, "--quiet"], env=cli_env(),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with open_storage(pg_url, create=False) as st:
                    n = len(st.get_trials(st.get_study("outage").id, states=[TrialState.COMPLETE]))
            except Exception:  # noqa: BLE001 - not created yet
                n = 0
            if n >= 3:
                break
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.1)
        _pg("stop")
        time.sleep(30)
    finally:
        _pg("start")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "retrying" in err  # it noticed, and said so
    with open_storage(pg_url) as st:
        trials = st.get_trials(st.get_study("outage").id)
    assert [t.number for t in trials] == list(range(20))
    assert all(t.state == TrialState.COMPLETE and t.last_step == 3 for t in trials)
