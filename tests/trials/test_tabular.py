"""builtin:tabular: table lookups as trials, and a NAS study over NAS-Bench-201 end to end."""
from __future__ import annotations

import csv
import os

import pytest

from trials.builtin.tabular import run
from testlib import SHARED_DATA

NB201_CSV = os.path.join(SHARED_DATA, "nas", "nas-bench-201-cifar10.csv")
CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('arch,acc,params\nA,91.5,10\nB,88.0,20\n"[{""width"":8}]",70.25,3\n')
    return str(path)


def test_tabular_returns_the_looked_up_metrics(table):
    assert run({"table": table, "key_column": "arch", "metric_column": "acc", "arch": "B"}) == {"acc": 88.0}
    assert run({"table": table, "key_column": "arch", "metric_column": ["acc", "params"], "arch": "A"}) == {
        "acc": 91.5, "params": 10.0}
    # Non-string keys (layer lists) match their canonical JSON; key_param picks another config entry.
    assert run({"table": table, "key_column": "arch", "metric_column": "acc", "key_param": "net",
                "net": [{"width": 8}]}) == {"acc": 70.25}


def test_tabular_caches_the_table_per_process_until_it_changes(table):
    from trials.builtin import tabular

    cfg = {"table": table, "key_column": "arch", "metric_column": "acc", "arch": "A"}
    run(cfg)
    _, rows = tabular.load_table(table, "arch")
    assert tabular.load_table(table, "arch")[1] is rows
    with open(table, "a") as f:
        f.write("C,50.0,1\n")
    os.utime(table, ns=(0, 10**9))
    assert run({**cfg, "arch": "C"}) == {"acc": 50.0}


@pytest.mark.parametrize("change, message", [
    ({"arch": "Z"}, "architecture 'Z' is not in column 'arch'"),
    ({"metric_column": "loss"}, "param 'metric_column' 'loss' is not a column"),
    ({"key_column": "name", "key_param": "arch"}, "param 'key_column' 'name' is not a column"),
    ({"table": "/nonexistent.csv"}, "no such file"),
])
def test_tabular_errors_name_the_problem(table, run_spec, change, message):
    cfg = {"table": table, "key_column": "arch", "metric_column": "acc", "arch": "A", **change}
    done, _ = run_spec("builtin:tabular", cfg, objective_metrics=("acc",))
    assert done.error is not None and message in done.error and "\n" not in done.error


def test_tabular_needs_its_params(run_spec):
    done, _ = run_spec("builtin:tabular", {"arch": "A"}, objective_metrics=("acc",))
    assert "needs param 'table'" in done.error


@pytest.mark.skipif(not os.path.exists(NB201_CSV), reason="NAS-Bench-201 table not present")
def test_tabular_reads_nas_bench_201():
    out = run({"table": NB201_CSV, "key_column": "arch", "metric_column": "cifar10_test_acc", "arch": CELL})
    with open(NB201_CSV, newline="") as f:
        expected = next(float(r["cifar10_test_acc"]) for r in csv.DictReader(f) if r["arch"] == CELL)
    assert out == {"cifar10_test_acc": expected}


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(NB201_CSV), reason="NAS-Bench-201 table not present")
def test_boshnas_study_over_nas_bench_201_end_to_end(sqlite_url, tmp_path):
    import search
    from storage import open_storage
    from trials.builtin.tabular import load_table

    study = {
        "name": "nb201-boshnas",
        "objective": {"metric": "cifar10_test_acc", "direction": "maximize"},
        "trial": {"entrypoint": "builtin:tabular",
                  "params": {"table": NB201_CSV, "key_column": "arch", "metric_column": "cifar10_test_acc"}},
        "space": {"arch": {"type": "nas-bench-201"}},
        "algorithm": {"name": "boshnas", "seed": 0},
        "budget": {"trials": 14, "parallel": 2},
        "artifacts": str(tmp_path),
    }
    summary = search.run(study, storage=sqlite_url, backend="inprocess")
    assert summary.complete == 14 and summary.failed == 0
    _, rows = load_table(NB201_CSV, "arch")
    st = open_storage(sqlite_url)
    try:
        trials = st.get_trials(st.get_study("nb201-boshnas").id)
    finally:
        st.close()
    archs = [t.params["arch"] for t in trials]
    assert len(set(archs)) == 14
    for t in trials:
        assert t.values == (float(rows[t.params["arch"]]["cifar10_test_acc"]),)
    assert summary.best.values[0] == max(t.values[0] for t in trials)
