"""Checkpoints behind an fsspec URL (here `file://`, the same code path as s3:// or gs://): they
are staged, uploaded once durable, recorded by URL, resumed from, copied by PBT, and retained."""
from __future__ import annotations

import json
import os

import search
from storage import TrialState, open_storage
from testlib import interrupt_after
from trials import artifacts


def _stepper_study(name, store, log, trials=6):
    return {
        "name": name, "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:stepper",
                  "params": {"steps": 5, "sleep": 0.02, "log": str(log)}},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 0}, "budget": {"trials": trials, "parallel": 2},
        "backend": {"name": "inprocess"}, "artifacts": store,
    }


def test_interrupted_study_resumes_from_checkpoints_in_an_object_store(tmp_path, sqlite_url):
    store = f"file://{tmp_path}/store"
    log = tmp_path / "starts.jsonl"
    assert search.run(_stepper_study("urls", store, log), storage=sqlite_url,
                      on_progress=interrupt_after(25)).interrupted
    search.resume("urls", storage=sqlite_url)
    with open_storage(sqlite_url) as st:
        trials = st.get_trials(st.get_study("urls").id)
        cks = {t.number: st.get_checkpoints(t.id) for t in trials}
    assert all(t.state == TrialState.COMPLETE and t.last_step == 5 for t in trials)
    for records in cks.values():
        for c in records:
            assert c.path.startswith(store + "/urls/") and artifacts.exists(c.path)
            assert artifacts.checksum(c.path) == c.checksum
    starts = [json.loads(line) for line in log.read_text().splitlines()]
    resumed = [s for s in starts if s["attempt"] > 0]
    assert resumed and any(s["start"] > 0 for s in resumed)  # continued from an uploaded checkpoint
    staged = os.path.join(artifacts.staging_dir(), "urls")
    assert not any(files for _d, _s, files in os.walk(staged))  # nothing left on local disk


def test_pbt_copies_and_retention_work_through_urls(tmp_path, sqlite_url):
    store = f"file://{tmp_path}/store"
    study = {
        "name": "pbt-urls", "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:pbt_toy", "params": {"steps": 12}},
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}},
        "algorithm": {"name": "pbt", "seed": 3, "interval": 3, "quantile": 0.25},
        "budget": {"trials": 4, "parallel": 4}, "backend": {"name": "simulated"},
        "artifacts": store, "checkpoints": {"keep_last": 2},
    }
    search.run(study, storage=sqlite_url)
    with open_storage(sqlite_url) as st:
        s = st.get_study("pbt-urls")
        exploits = st.get_exploits(s.id)
        trials = st.get_trials(s.id)
        assert exploits and all(t.state == TrialState.COMPLETE for t in trials)
        for t in trials:
            alive = [c for c in st.get_checkpoints(t.id) if artifacts.exists(c.path)]
            assert 1 <= len(alive) <= 2
            copied = [c for c in st.get_checkpoints(t.id) if "/from-trial-" in c.path]
            assert all(c.path.startswith(store) for c in copied)
