"""Helpers shared by test modules (importable as `testlib`: tests/ is on sys.path). Kept out of
conftest.py because several folders have their own conftest and the name would be ambiguous."""
from __future__ import annotations

import os

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS_DIR)
# Public benchmark data shipped beside the repository (../shared/data), or where SEARCH_SHARED_DATA says.
SHARED_DATA = os.environ.get("SEARCH_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
PG_ADMIN = os.environ.get("SEARCH_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for ``search`` subprocesses: test objectives importable, no inherited storage."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEARCH_")}
    env["PYTHONPATH"] = os.pathsep.join([TESTS_DIR, REPO, os.environ.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def interrupt_after(n: int):
    """An ``on_progress`` callback that raises KeyboardInterrupt (as Ctrl-C would) at its n-th call."""
    calls = {"n": 0}

    def interrupt(progress) -> None:
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt

    return interrupt


def start_run(study: dict, folder, url: str):
    """``search run`` of ``study`` (written to FOLDER/study.yaml) as a subprocess in its own
    session, so a test can ``kill -9`` its whole process group: returns (process, its env)."""
    import subprocess

    import yaml

    path = os.path.join(str(folder), "study.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(study, f)
    env = cli_env()
    proc = subprocess.Popen(["search", "run", path, "--storage", url, "--quiet"], env=env, cwd=str(folder),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, env


def kill9_at_first_stop(study: dict, folder, url: str, marker) -> tuple[dict, dict]:
    """``search run`` of ``study`` (``start_run``), whose trainer writes ``marker`` when the first
    trial is asked to stop and then lingers (``linger_on_stop``), killed with SIGKILL once that
    trial's report and checkpoint at the step it saw the request are stored. Fails if the run
    exits first or two minutes pass. Returns (what the trial wrote: its number and step, the
    subprocess env)."""
    import json
    import signal
    import time

    from storage import open_storage

    proc, env = start_run(study, folder, url)
    deadline = time.time() + 120.0
    while not os.path.exists(marker):
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline, "no trial was asked to stop"
        time.sleep(0.02)
    with open(marker, encoding="utf-8") as f:
        stopping = json.load(f)
    with open_storage(url) as st:
        sid = st.get_study(study["name"]).id
        while True:
            t = st.get_trial(sid, stopping["number"])
            if t.last_step == stopping["step"] and any(c.step == t.last_step for c in st.get_checkpoints(t.id)):
                break
            assert time.time() < deadline, "the stopping trial's last report or checkpoint never arrived"
            time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return stopping, env


def stored_decisions(st, study_id: int) -> dict[str, dict]:
    """The study's pending decisions as plain data, trial id (a string) -> {action, attempt, step}
    and, for an exploit, "extra": {parent, params, parent_step}."""
    out = {}
    for trial_id, r in st.get_decisions(study_id).items():
        d = {"action": r.kind.value, "attempt": r.attempt, "step": r.step}
        if r.parent is not None:
            d["extra"] = {"parent": r.parent, "params": dict(r.params or {}), "parent_step": r.parent_step}
        out[str(trial_id)] = d
    return out


def restore_decisions(st, study_id: int, decisions: dict[str, dict]) -> None:
    """Store ``decisions`` (as ``stored_decisions`` gives them) again as pending."""
    from storage.records import DecisionRecord

    for trial_id, d in decisions.items():
        extra = d.get("extra") or {}
        st.put_decision(study_id, DecisionRecord(int(trial_id), d["attempt"], d["step"], d["action"],
                                                 parent=extra.get("parent"), parent_step=extra.get("parent_step"),
                                                 params=extra.get("params")))
