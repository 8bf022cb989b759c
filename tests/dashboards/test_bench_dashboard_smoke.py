"""Smoke test of bench/bench_dashboard.py at a tiny size (SQLite only): the bulk-copied study reads
back the same in our storage and in Optuna's, and one end-to-end run prints its table and JSON line."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_dashboard", ROOT / "bench" / "bench_dashboard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bulk_copies_read_back_alike(tmp_path):
    optuna = pytest.importorskip("optuna")
    from storage.read_api import open_read_api

    b = _bench()
    plan = b.make_plan(90, 6, seed=3)
    states: dict[str, int] = {}
    for t in plan["trials"]:
        states[t["state"]] = states.get(t["state"], 0) + 1
    assert states["PRUNED"] > states["COMPLETE"] > 0 and states["RUNNING"] == b.N_RUNNING
    ours, theirs = f"sqlite:///{tmp_path}/ours.db", f"sqlite:///{tmp_path}/optuna.db"
    b.build_ours(ours, plan, 90)
    b.build_optuna(theirs, plan)

    with open_read_api(ours) as api:
        study = api.study(b.STUDY)
        assert {k: v for k, v in study["counts"].items() if v} == states
        pruned = next(t for t in plan["trials"] if t["state"] == "PRUNED")
        trial = api.trial(b.STUDY, pruned["number"])
        assert [r["step"] for r in trial["reports"]] == list(range(1, pruned["steps"] + 1))
        assert trial["reports"][-1]["metrics"][b.METRIC] == pytest.approx(pruned["last"])
        best = api.best_trial(b.STUDY)
        assert best.value == min(t["value"] for t in plan["trials"] if t["value"] is not None)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    frozen = optuna.load_study(study_name=b.STUDY, storage=theirs).trials
    assert len(frozen) == 90
    by_number = {t.number: t for t in frozen}
    for t in plan["trials"]:
        f = by_number[t["number"]]
        assert f.state.name == b._OPTUNA_STATE[t["state"]]
        assert len(f.intermediate_values) == t["steps"]
        assert f.params["optimizer"] == t["params"]["optimizer"] and f.params["width"] == t["params"]["width"]
        assert f.params["lr"] == pytest.approx(t["params"]["lr"])
    assert by_number[pruned["number"]].value == pytest.approx(pruned["last"])  # as Optuna's tell records it


def test_bench_runs_end_to_end(tmp_path):
    pytest.importorskip("optuna_dashboard")
    cmd = [sys.executable, str(ROOT / "bench" / "bench_dashboard.py"), "--trials", "60", "--reports", "3",
           "--repeat", "0", "--storage", "sqlite", "--no-browser", "--cache-dir", str(tmp_path),
           "--cli", "best", "--cli-repeat", "1", "--their-timeout", "60"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["trials"] == 60 and summary["optuna_dashboard"] is True
    rows = summary["results"]["sqlite"]["rows"]
    for name in ("studies page", "study page, first screen", "table: first page", "api: history"):
        assert rows[name]["ours_median_ms"] > 0, (name, rows[name], p.stdout[-3000:])
    for name in ("studies page", "study page, first screen", "api: params"):
        assert rows[name]["theirs_median_ms"] > 0 and rows[name]["ratio"] > 0, (name, rows[name])
    assert summary["results"]["sqlite"]["cli_median_s"]["best"] > 0
    assert "theirs/ours" in p.stdout and "table: slowest median" in p.stdout
    # the databases are cached: a second build finds them
    again = subprocess.run(cmd + ["--build-only"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.count("cached") == 2, again.stdout
