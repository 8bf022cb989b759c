"""A fast start and a clean end on Ray: `search run` reuses the instance `search ray start` left
running (in a private folder here, so no other run on the machine sees it), prints what it starts
and none of Ray's notices, accepts a job server address in RAY_ADDRESS (the `search jobs` form),
and after a `kill -9` leaves none of its Ray processes behind."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import yaml

from testlib import cli_env

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _study(tmp_path, name, entrypoint="search_test_objectives:quadratic", trials=4, params=None):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": entrypoint, "params": params or {}},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 0}, "budget": {"trials": trials, "parallel": 2},
        "resources": {"cpus": 0.5}, "backend": {"name": "ray"}, "artifacts": str(tmp_path / "artifacts"),
    }))
    return str(path)


def _cwd_objective(tmp_path) -> str:
    """An objective only the run's current folder holds (not on PYTHONPATH): workers must get the
    driver's folder on their path."""
    (tmp_path / "cwd_objective.py").write_text("def f(config):\n    return (config['x'] - 0.5) ** 2\n")
    return "cwd_objective:f"


def _env(tmp_path, **extra):
    env = cli_env(SEARCH_RAY_DIR=str(tmp_path / "ray"), **extra)
    for k in ("RAY_ADDRESS", "RAY_AUTH_MODE"):
        env.pop(k, None)
    env.update(extra)
    return env


def _descendants(pid: int) -> dict[int, str]:
    from search.cluster_cli import _tree

    return {p: t for p, t in _tree(pid).items() if p != pid}


def _alive(procs: dict[int, str]) -> list[int]:
    from search.cluster_cli import _tree

    return [p for p, t in procs.items() if _tree(p).get(p) == t and _state(p) != "Z"]


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_runs_reuse_the_instance_search_ray_start_left(tmp_path):
    env = _env(tmp_path)
    out = subprocess.run(["search", "ray", "start", "--num-cpus", "2"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr + out.stdout
    try:
        status = subprocess.run(["search", "ray", "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "answering" in status.stdout
        url = f"sqlite:///{tmp_path / 'search.db'}"
        # RAY_ADDRESS in the job server's form, as `search jobs` wants it, must not break a run.
        run_env = dict(env, RAY_ADDRESS="http://127.0.0.1:8265")
        t0 = time.monotonic()
        out = subprocess.run(["search", "run", _study(tmp_path, "reuse", _cwd_objective(tmp_path)), "--storage", url],
                             env=run_env,
                             cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
        elapsed = time.monotonic() - t0
        assert out.returncode == 0, out.stderr[-3000:]
        assert "using the local Ray instance `search ray start` left" in out.stderr
        assert "Token authentication" not in out.stderr and "Warning" not in out.stderr
        assert "study reuse: 4 complete" in out.stdout
        assert elapsed < 60
        # and resume goes through the same path
        out = subprocess.run(["search", "resume", "reuse", "--storage", url], env=run_env, cwd=str(tmp_path),
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
    finally:
        head = subprocess.run(["search", "ray", "status"], env=env, capture_output=True, text=True).stdout
        stop = subprocess.run(["search", "ray", "stop"], env=env, capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stderr
    pid = int(head.split("(pid ")[1].split(",")[0])
    assert _state(pid) == "Z"  # the `ray start --block` process is gone, and its processes with it
    out = subprocess.run(["search", "ray", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1


def test_kill_9_of_search_run_leaves_no_ray_process_behind(tmp_path):
    """A fresh local instance: once trials run, `kill -9` the `search run` process alone; every
    process Ray started for it (GCS, raylet, agents, workers) is gone within a few seconds."""
    url = f"sqlite:///{tmp_path / 'search.db'}"
    path = _study(tmp_path, "killed", "search_test_objectives:sleepy", params={"sleep": 600, "hang_below": 2})
    proc = subprocess.Popen(["search", "run", path, "--storage", url], env=_env(tmp_path), cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    from storage import TrialState, open_storage

    deadline = time.monotonic() + 240
    running = []
    while len(running) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-3000:]
        time.sleep(0.5)
        try:
            with open_storage(url, create=False) as st:
                running = st.get_trials(st.get_study("killed").id, states=[TrialState.RUNNING])
        except Exception:  # noqa: BLE001 - not created yet
            running = []
    time.sleep(1.0)
    procs = _descendants(proc.pid)
    assert len(procs) >= 4  # gcs, raylet, agents, two workers, the reaper
    os.kill(proc.pid, signal.SIGKILL)  # only the process we started, never its group
    proc.wait()
    t0 = time.monotonic()
    while _alive(procs) and time.monotonic() - t0 < 10:
        time.sleep(0.2)
    left = _alive(procs)
    for p in left:  # leave the machine clean even when the assertion fails
        os.kill(p, signal.SIGKILL)
    assert not left, f"{len(left)} Ray processes outlived the killed run by 10 s"
    assert time.monotonic() - t0 < 5
    output = proc.stdout.read().decode()
    assert "starting a local Ray instance" in output  # says what is starting...
    assert "Token authentication" not in output  # ...and none of Ray's notices


def test_a_fresh_instance_imports_the_objective_from_the_current_folder(tmp_path):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    out = subprocess.run(["search", "run", _study(tmp_path, "fresh", _cwd_objective(tmp_path)), "--storage", url],
                         env=_env(tmp_path), cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "starting a local Ray instance" in out.stderr and "study fresh: 4 complete" in out.stdout
