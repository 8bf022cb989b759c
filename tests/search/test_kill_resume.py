"""`kill -9` of `search run` mid-study, then `search resume`: exactly the budget, nothing lost,
nothing duplicated, nothing left RUNNING. On SQLite and PostgreSQL; in-process and on Ray."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from testlib import cli_env
from storage import TrialState, open_storage


def _study(tmp_path, backend, log):
    return {
        "name": "killme",
        "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:stepper",
                  "params": {"steps": 4, "sleep": 0.08, "log": str(log)}},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "tpe", "seed": 0},
        "budget": {"trials": 30, "parallel": 2},
        "backend": {"name": backend},
        "resources": {"cpus": 0.5},
        "artifacts": str(tmp_path / "artifacts"),
    }


def _counts(url):
    try:
        with open_storage(url, create=False) as st:
            trials = st.get_trials(st.get_study("killme").id)
    except Exception:  # noqa: BLE001 - not created yet
        return {}
    out: dict[str, int] = {}
    for t in trials:
        out[t.state] = out.get(t.state, 0) + 1
        if t.state == TrialState.RUNNING and (t.last_step or 0) >= 2:
            out["running_past_step_2"] = out.get("running_past_step_2", 0) + 1
    return out


def _kill_then_resume(tmp_path, url, backend):
    log = tmp_path / "starts.jsonl"
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_study(tmp_path, backend, log)))
    env = cli_env()
    proc = subprocess.Popen(["search", "run", str(path), "--storage", url, "--quiet"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        c = _counts(url)
        if c.get("COMPLETE", 0) >= 8 and c.get("running_past_step_2", 0) >= 1:
            break
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.05)
    else:
        pytest.fail(f"study did not get going: {_counts(url)}")
    os.killpg(proc.pid, signal.SIGKILL)  # the controller and everything it started
    proc.wait()
    before = _counts(url)
    before.pop("running_past_step_2", None)
    assert before.get("RUNNING", 0) >= 1 and sum(before.values()) < 30, before

    out = subprocess.run(["search", "resume", "killme", "--storage", url, "--quiet", "--json"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["complete"] == 30 and summary["failed"] == 0

    with open_storage(url) as st:
        study = st.get_study("killme")
        trials = st.get_trials(study.id)
        assert study.state == "COMPLETE"
        assert len(trials) == 30 and [t.number for t in trials] == list(range(30))
        assert all(t.state == TrialState.COMPLETE for t in trials)
        retried = [t for t in trials if t.attempt > 0]
        assert len(retried) == before["RUNNING"]
        for t in trials:
            steps = [r.step for r in st.get_reports(t.id)]
            assert steps[-1] == 4 and t.last_step == 4
        # Where the killed attempt had recorded a checkpoint, the retry started from the newest one.
        expected_start = {}
        for t in retried:
            earlier = [c.step for c in st.get_checkpoints(t.id) if c.attempt < t.attempt]
            expected_start[t.number] = max(earlier, default=0)
    starts = {(s["number"], s["attempt"]): s["start"]
              for s in map(json.loads, log.read_text().splitlines())}
    for t in retried:
        assert starts[(t.number, t.attempt)] == expected_start[t.number]
    assert any(v > 0 for v in expected_start.values()), expected_start
    return before


@pytest.mark.slow
def test_kill9_resume_sqlite(tmp_path):
    _kill_then_resume(tmp_path, f"sqlite:///{tmp_path / 'search.db'}", "inprocess")


@pytest.mark.slow
@pytest.mark.postgres
def test_kill9_resume_postgres(tmp_path, pg_url):
    _kill_then_resume(tmp_path, pg_url, "inprocess")


@pytest.mark.slow
@pytest.mark.ray
def test_kill9_resume_on_ray(tmp_path):
    _kill_then_resume(tmp_path, f"sqlite:///{tmp_path / 'search.db'}", "ray")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_requeues_running_trials(tmp_path, sig):
    """Ctrl-C (or SIGTERM) stops the run cleanly: exit 130, no trial left RUNNING, and resume
    finishes the budget."""
    url = f"sqlite:///{tmp_path / 'search.db'}"
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_study(tmp_path, "inprocess", tmp_path / "log.jsonl")))
    env = cli_env()
    proc = subprocess.Popen(["search", "run", str(path), "--storage", url, "--quiet"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while _counts(url).get("COMPLETE", 0) < 4:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "search resume killme" in err
    c = _counts(url)
    assert c.get("RUNNING", 0) == 0 and c.get("WAITING", 0) >= 1, c
    with open_storage(url) as st:
        assert st.get_study("killme").state == "INTERRUPTED"
    out = subprocess.run(["search", "resume", "killme", "--storage", url, "--quiet"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert _counts(url) == {"COMPLETE": 30}


@pytest.mark.slow
def test_controller_killed_five_times_at_random_points(tmp_path):
    """`kill -9` of the controller at five random points of a 40-trial study, resuming each time:
    no trial lost or renumbered, and every retry restarts from the newest checkpoint its killed
    attempt recorded (at most one checkpoint interval of work lost per trial)."""
    import random

    url = f"sqlite:///{tmp_path / 'search.db'}"
    log = tmp_path / "starts.jsonl"
    study = _study(tmp_path, "inprocess", log)
    study["budget"] = {"trials": 40, "parallel": 2}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    env = cli_env()
    rng = random.Random(1234)
    targets = sorted(rng.sample(range(3, 36), 5))
    for i, target in enumerate(targets):
        cmd = ["search", "run", str(path)] if i == 0 else ["search", "resume", "killme"]
        proc = subprocess.Popen(cmd + ["--storage", url, "--quiet"], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 180
        while _counts(url).get("COMPLETE", 0) < target:
            assert time.time() < deadline and proc.poll() is None, (i, target, _counts(url))
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))  # land anywhere inside a trial's steps
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    out = subprocess.run(["search", "resume", "killme", "--storage", url, "--quiet", "--json"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    with open_storage(url) as st:
        trials = st.get_trials(st.get_study("killme").id)
        expected = {}
        for t in trials:
            cks = st.get_checkpoints(t.id)
            for a in range(1, t.attempt + 1):
                expected[(t.number, a)] = max((c.step for c in cks if c.attempt < a), default=0)
    assert [t.number for t in trials] == list(range(40))
    assert all(t.state == TrialState.COMPLETE and t.last_step == 4 for t in trials)
    assert sum(t.attempt for t in trials) >= 5  # every kill interrupted at least one trial
    starts = {(s["number"], s["attempt"]): s["start"] for s in map(json.loads, log.read_text().splitlines())}
    for key, step in expected.items():
        if key in starts:  # an attempt killed before its first line was written never started
            assert starts[key] == step, key
