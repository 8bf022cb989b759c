"""`search scaling fit STUDY`: the runs come from a study's trials in storage."""
from __future__ import annotations

import json

import pytest

import search
from search.cli import main


def test_fit_from_a_study(sqlite_url, tmp_path, capsys):
    search.run({
        "name": "ladder", "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:chinchilla_toy"},
        "space": {"n": {"type": "categorical", "choices": [1e7, 3e7, 1e8, 3e8, 1e9]},
                  "d": {"type": "categorical", "choices": [1e9, 3e9, 1e10, 3e10]}},
        "algorithm": {"name": "grid"}, "budget": {"trials": 20, "parallel": 2},
        "backend": {"name": "inprocess"}, "artifacts": str(tmp_path),
    }, storage=sqlite_url)
    capsys.readouterr()
    assert main(["scaling", "fit", "ladder", "--storage", sqlite_url, "--bootstrap", "0", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    p = fit["params"]
    assert p["E"] == pytest.approx(1.8, rel=0.02)
    assert p["alpha"] == pytest.approx(0.34, rel=0.05) and p["beta"] == pytest.approx(0.37, rel=0.05)


def test_unknown_study_source_is_exit_2(sqlite_url, capsys):
    from storage import open_storage

    open_storage(sqlite_url).close()
    assert main(["scaling", "fit", "nope", "--storage", sqlite_url, "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope" in err
