"""Time limits and hung trials (budget.trial_timeout, budget.hang_timeout, budget.on_timeout),
SIGTERM, and trials that kill their own process: every backend ends the attempt, the study goes on,
and nothing is left RUNNING."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

import search
from search.config import ConfigError, parse_study
from storage import TrialState, open_storage
from testlib import start_run


def _study(name, backend="inprocess", trials=4, parallel=2, **budget):
    return {
        "name": name,
        "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:sleepy", "params": {"hang_below": 0.5}},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 3},
        "budget": {"trials": trials, "parallel": parallel, **budget},
        "backend": {"name": backend},
    }


def _check(url, name, trials):
    with open_storage(url) as st:
        out = st.get_trials(st.get_study(name).id)
    assert len(out) == trials and all(t.state in (TrialState.COMPLETE, TrialState.FAILED) for t in out)
    hung = [t for t in out if t.params["x"] < 0.5]
    assert hung, "the seed must draw at least one hanging trial"
    return out, hung


def test_time_limit_options_are_checked():
    with pytest.raises(ConfigError, match=r"budget\.trial_timeout: must be > 0"):
        parse_study(_study("t", trial_timeout=0))
    with pytest.raises(ConfigError, match=r"budget\.on_timeout: must be 'fail'"):
        parse_study(_study("t", on_timeout="kill"))
    with pytest.raises(ConfigError, match=r"budget\.hang_timeout: expected a number"):
        parse_study(_study("t", hang_timeout="5s"))
    assert parse_study(_study("t", trial_timeout=2.5)).trial_timeout == 2.5


def test_a_trial_past_its_time_limit_fails_and_the_study_goes_on_inprocess(sqlite_url):
    t0 = time.monotonic()
    summary = search.run(_study("tl", trial_timeout=1.5), storage=sqlite_url)
    assert time.monotonic() - t0 < 60
    out, hung = _check(sqlite_url, "tl", 4)
    assert summary.failed == len(hung) and summary.complete == 4 - len(hung)
    assert all(t.state == TrialState.FAILED and t.error == "timed out after 1.5 s (budget.trial_timeout)"
               and t.metrics == {"loss": t.params["x"]} for t in hung)  # its last report is kept


def test_a_hung_trial_is_retried_then_failed_with_on_timeout_retry(sqlite_url):
    summary = search.run(_study("hang", hang_timeout=1.0, on_timeout="retry", max_failures=1, trials=3),
                         storage=sqlite_url)
    out, hung = _check(sqlite_url, "hang", 3)
    assert summary.failed == len(hung)
    for t in hung:
        assert t.state == TrialState.FAILED and t.attempt == 1 and t.failures == 1
        assert "without a report or checkpoint (budget.hang_timeout)" in t.error and "gave up after 2" in t.error


@pytest.mark.ray
@pytest.mark.slow
def test_a_trial_past_its_time_limit_fails_on_ray(ray_session, sqlite_url):
    summary = search.run(_study("tl-ray", backend="ray", trial_timeout=3), storage=sqlite_url)
    out, hung = _check(sqlite_url, "tl-ray", 4)
    assert summary.failed == len(hung)
    assert all(t.error == "timed out after 3 s (budget.trial_timeout)" for t in hung)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inprocess", pytest.param("ray", marks=pytest.mark.ray)])
def test_sigterm_ends_a_run_within_seconds_with_trials_requeued(backend, tmp_path):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    study = _study(f"term-{backend}", backend=backend, trials=4, parallel=2)
    study["trial"]["params"]["hang_below"] = 2.0  # every trial hangs
    proc, env = start_run(study, tmp_path, url)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until both trials run
            if os.path.exists(tmp_path / "search.db"):
                with open_storage(url) as st:
                    try:
                        running = st.get_trials(st.get_study(study["name"]).id, states=[TrialState.RUNNING])
                    except Exception:  # noqa: BLE001 - not created yet
                        running = []
                if len(running) == 2:
                    break
            time.sleep(0.3)
        else:
            pytest.fail("the run never had two trials running")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = out.decode()
    assert proc.returncode == 130, text
    assert took < 5, took
    assert f"search resume {study['name']}" in text
    with open_storage(url) as st:
        trials = st.get_trials(st.get_study(study["name"]).id)
        assert st.get_study(study["name"]).state == "INTERRUPTED"
    assert {t.state for t in trials} == {TrialState.WAITING} and len(trials) == 2


@pytest.mark.slow
def test_a_trial_that_kills_the_inprocess_controller_fails_after_max_failures(tmp_path):
    """os._exit in an in-process trial takes the controller with it. Each resume re-runs it; from
    the second death in a row each counts as a failure, so after max_failures it ends FAILED
    instead of being re-run forever."""
    url = f"sqlite:///{tmp_path / 'search.db'}"
    study = _study("exits", trials=1, parallel=1, max_failures=2)
    study["trial"] = {"entrypoint": "search_test_objectives:exits"}
    proc, env = start_run(study, tmp_path, url)
    proc.communicate(timeout=120)
    assert proc.returncode == 1  # the process died with the trial
    codes = []
    for _ in range(6):
        with open_storage(url) as st:
            (t,) = st.get_trials(st.get_study("exits").id)
        if t.state == TrialState.FAILED:
            break
        r = subprocess.run(["search", "resume", "exits", "--storage", url, "--quiet", "--json"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
        codes.append(r.returncode)
    assert t.state == TrialState.FAILED and t.failures == 2, (t, codes)
    assert "gave up after 3 failed attempts" in t.error
    assert len(codes) == 4  # death 1 is not held against it; deaths 2, 3 are retried; 4 gives up


@pytest.mark.ray
@pytest.mark.slow
def test_a_trial_that_kills_its_ray_worker_fails_after_max_failures(ray_session, sqlite_url):
    study = _study("exits-ray", backend="ray", trials=1, parallel=1, max_failures=2)
    study["trial"] = {"entrypoint": "search_test_objectives:exits"}
    summary = search.run(study, storage=sqlite_url)
    assert summary.failed == 1
    with open_storage(sqlite_url) as st:
        (t,) = st.get_trials(st.get_study("exits-ray").id)
    assert t.state == TrialState.FAILED and t.failures == 2 and "gave up after 3 failed attempts" in t.error
