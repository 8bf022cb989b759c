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
