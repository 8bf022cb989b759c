"""Many processes writing one study at once: every trial terminal, numbers unique and dense."""
from __future__ import annotations

import multiprocessing as mp

import pytest

from storage import TrialState, open_storage


def _writer(url: str, study_id: int, n: int, seed: int) -> int:
    st = open_storage(url)
    done = 0
    for i in range(n):
        t = st.create_trial(study_id, {"writer": seed, "i": i})
        state = TrialState.COMPLETE if i % 5 else TrialState.FAILED
        st.add_reports([(t.id, 0, 1, {"loss": float(i)})])
        if st.finish_trial(t.id, 0, state=state, values=[float(i)] if state == TrialState.COMPLETE else None,
                           error=None if state == TrialState.COMPLETE else "scripted failure"):
            done += 1
    st.close()
    return done


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_16_writers_x_50_trials(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    with open_storage(url) as st:
        study = st.create_study("conc", metrics=["loss"], directions=["minimize"], spec={})
    ctx = mp.get_context("spawn")
    with ctx.Pool(16) as pool:
        done = pool.starmap(_writer, [(url, study.id, 50, w) for w in range(16)])
    assert sum(done) == 800
    with open_storage(url) as st:
        trials = st.get_trials(study.id)
        counts = st.count_trials(study.id)[study.id]
    assert [t.number for t in trials] == list(range(800))  # dense and unique (UNIQUE constraint)
    assert counts == {"COMPLETE": 640, "FAILED": 160}
    assert {(t.params["writer"], t.params["i"]) for t in trials} == {(w, i) for w in range(16) for i in range(50)}


def test_six_processes_creating_one_new_database_at_once(storage_url):
    """Creating the schema is safe under concurrency: six processes open one new database at the
    same moment and each creates a study (before, on SQLite, some failed with 'table studies
    already exists' or 'has search tables but no version table')."""
    import subprocess
    import sys

    from testlib import cli_env

    code = ("import os, sys\nfrom storage import open_storage\nst = open_storage(sys.argv[1])\n"
            "st.create_study(f's{os.getpid()}', metrics=['loss'], directions=['minimize'], spec={})\n"
            "print(st.schema_revision())\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, storage_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=cli_env()) for _ in range(6)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err.strip().splitlines()[-1:] for _, err in results]
    from storage import open_storage
    from storage._rdb import HEAD_REVISION

    with open_storage(storage_url) as st:
        assert len(st.list_studies()) == 6 and st.schema_revision() == HEAD_REVISION
