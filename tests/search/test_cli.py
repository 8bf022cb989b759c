"""The `search` CLI: verbs, JSON output, exit codes, and bad input that writes nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from search.cli import main

STUDY = {
    "name": "cli",
    "objective": {"metric": "loss", "direction": "minimize"},
    "trial": {"entrypoint": "search_test_objectives:quadratic"},
    "space": {"x": {"type": "float", "low": 0.0, "high": 1.0},
              "kind": {"type": "categorical", "choices": ["a", "b"]}},
    "algorithm": {"name": "random", "seed": 3},
    "budget": {"trials": 6, "parallel": 2},
    "backend": {"name": "inprocess"},
}


def write(tmp_path, data, name="study.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return str(p)


def run_json(capsys, argv):
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_run_then_read_verbs(tmp_path, capsys, storage_url):
    path = write(tmp_path, STUDY)
    assert main(["run", path, "--storage", storage_url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "study cli: 6 complete, 0 pruned, 0 failed" in out

    code, trials = run_json(capsys, ["trials", "cli", "--storage", storage_url, "--json"])
    assert code == 0 and [t["number"] for t in trials] == list(range(6))
    for t in trials:
        assert t["state"] == "COMPLETE" and set(t["params"]) == {"x", "kind"}
        assert t["metrics"]["loss"] == pytest.approx(t["value"])
    code, best = run_json(capsys, ["best", "cli", "--storage", storage_url, "--json"])
    assert code == 0 and best["value"] == min(t["value"] for t in trials)

    code, studies = run_json(capsys, ["studies", "--storage", storage_url, "--json"])
    assert studies[0]["name"] == "cli" and studies[0]["complete"] == 6 and studies[0]["state"] == "COMPLETE"
    assert studies[0]["best"] == pytest.approx(best["value"])

    for fmt in ("csv", "json", "parquet"):
        out_path = tmp_path / f"t.{fmt}"
        assert main(["export", "cli", "--storage", storage_url, "--format", fmt, "-o", str(out_path)]) == 0
        import pandas as pd

        df = {"csv": pd.read_csv, "parquet": pd.read_parquet, "json": pd.read_json}[fmt](out_path)
        assert len(df) == 6
    capsys.readouterr()

    # Running the same study again is an input error that points at resume.
    assert main(["run", path, "--storage", storage_url, "--quiet"]) == 2
    assert "search resume cli" in capsys.readouterr().err


BAD = [
    ("malformed", "name: [oops\n", "malformed YAML"),
    ("unknown key", {**STUDY, "colour": 1}, "colour: unknown key"),
    ("low > high", {**STUDY, "space": {"x": {"type": "float", "low": 2, "high": 1}}}, "low <= high must hold"),
    ("log low<=0", {**STUDY, "space": {"x": {"type": "float", "low": 0, "high": 1, "log": True}}}, "needs low > 0"),
    ("empty choices", {**STUDY, "space": {"x": {"type": "categorical", "choices": []}}}, "non-empty list"),
    ("unknown algorithm", {**STUDY, "algorithm": {"name": "nope"}}, "unknown algorithm"),
    ("unknown entrypoint", {**STUDY, "trial": {"entrypoint": "builtin:nope"}}, "unknown built-in trainer"),
    ("empty name", {**STUDY, "name": ""}, "name:"),
    ("long name", {**STUDY, "name": "n" * 200}, "at most 128 characters"),
]


@pytest.mark.parametrize("label, content, expected", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exit_2_one_line_nothing_written(tmp_path, capsys, label, content, expected):
    p = tmp_path / "bad.yaml"
    p.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    db = tmp_path / "search.db"
    assert main(["run", str(p), "--storage", f"sqlite:///{db}", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and "\n" not in err, err
    assert not db.exists()


def test_unreachable_storage_exit_2_without_password(tmp_path, capsys):
    path = write(tmp_path, STUDY)
    assert main(["run", path, "--storage", "postgresql://u:hunter2@127.0.0.1:1/x", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to storage" in err and "hunter2" not in err and "***" in err


def test_unknown_study_exit_2(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["studies", "--storage", url]) == 2
    assert "no database file at" in capsys.readouterr().err and not (tmp_path / "s.db").exists()
    from storage import open_storage

    open_storage(url).close()
    for verb in (["best", "nope"], ["trials", "nope"], ["resume", "nope"]):
        assert main(verb + ["--storage", url]) == 2
        assert "no study named 'nope'" in capsys.readouterr().err


def test_failing_objective_is_data_not_a_crash(tmp_path, capsys, sqlite_url):
    data = {**STUDY, "name": "flaky", "trial": {"entrypoint": "search_test_objectives:flaky"},
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}, "budget": {"trials": 12, "parallel": 2}}
    assert main(["run", write(tmp_path, data), "--storage", sqlite_url, "--quiet"]) == 0
    capsys.readouterr()
    code, trials = run_json(capsys, ["trials", "flaky", "--storage", sqlite_url, "--json"])
    assert len(trials) == 12
    for t in trials:
        x = t["params"]["x"]
        if x > 0.8:
            assert t["state"] == "FAILED" and "RuntimeError: boom" in t["error"]
        elif x > 0.6:
            assert t["state"] == "FAILED" and "'loss'" in t["error"] and "finite" in t["error"]
        else:
            assert t["state"] == "COMPLETE" and t["value"] == pytest.approx(x)
    assert {t["state"] for t in trials} == {"FAILED", "COMPLETE"}  # seed 3 draws both kinds


def test_all_failed_is_exit_1(tmp_path, capsys, sqlite_url):
    data = {**STUDY, "name": "allfail", "trial": {"entrypoint": "search_test_objectives:flaky"},
            "space": {"x": {"type": "float", "low": 0.9, "high": 1.0}}, "budget": {"trials": 2, "parallel": 1}}
    assert main(["run", write(tmp_path, data), "--storage", sqlite_url, "--quiet"]) == 1
    assert "no trial completed" in capsys.readouterr().err


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys, search.cli\n"
            "try:\n    search.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'ray', 'sqlalchemy', 'optuna', 'pandas', 'sklearn') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out and "usage: search" in out


def test_console_script_installed():
    out = subprocess.run(["search", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "run" in out.stdout and "resume" in out.stdout
    assert os.path.basename(sys.executable)  # same interpreter family as the tests


def test_pareto_and_importance_verbs(tmp_path, capsys, sqlite_url):
    data = {**STUDY, "name": "mo", "trial": {"entrypoint": "search_test_objectives:metrics_dict"},
            "objective": [{"metric": "loss", "direction": "minimize"}, {"metric": "size", "direction": "maximize"}],
            "space": {"x": {"type": "float", "low": -1.0, "high": 1.0}}, "budget": {"trials": 12, "parallel": 2}}
    assert main(["run", write(tmp_path, data), "--storage", sqlite_url, "--quiet"]) == 0
    capsys.readouterr()
    code, out = run_json(capsys, ["pareto", "mo", "--storage", sqlite_url, "--json"])
    assert code == 0 and out["metrics"] == ["loss", "size"]
    _, trials = run_json(capsys, ["trials", "mo", "--storage", sqlite_url, "--json"])
    # loss = x^2 (min), size = 10x (max): a trial is dominated exactly when another has
    # x < x' <= |x| (no larger loss and a larger size), which never happens for x >= 0.
    xs = [t["params"]["x"] for t in trials]
    expected = sorted(t["number"] for t in trials
                      if not any(t["params"]["x"] < x <= abs(t["params"]["x"]) for x in xs))
    assert sorted(p["number"] for p in out["front"]) == expected and expected
    assert main(["run", write(tmp_path, {**STUDY, "name": "imp", "budget": {"trials": 16, "parallel": 2}}),
                 "--storage", sqlite_url, "--quiet"]) == 0
    capsys.readouterr()
    code, imp = run_json(capsys, ["importance", "imp", "--storage", sqlite_url, "--json"])
    assert code == 0 and set(imp["importance"]) == {"x", "kind"}
    # quadratic(): 'kind' b adds 1.0, x moves the loss by at most 0.49 -> kind matters more.
    assert imp["importance"]["kind"] > imp["importance"]["x"]
    assert main(["pareto", "imp", "--storage", sqlite_url]) == 2


# -- issue #21: read verbs, db verbs and export, as a careless user meets them -----------------------

def _mixed_study(url: str) -> None:
    """Trials 0 COMPLETE, 1 PRUNED at step 4 (its final metrics hold the loss), 2 PRUNED whose
    final metrics lack it (only its reports have it), 3 PAUSED at step 2, 4 FAILED."""
    from storage import open_storage

    with open_storage(url) as st:
        sid = st.create_study("mixed", metrics=["loss"], directions=["minimize"], spec={"name": "mixed"}).id
        t = [st.create_trial(sid, {"x": i / 10}) for i in range(5)]
        st.add_reports([(t[i].id, 0, step, {"loss": 1.0 / step + i}) for i in range(5) for step in (1, 2, 3, 4)])
        st.finish_trial(t[0].id, 0, state="COMPLETE", values=[0.5], metrics={"loss": 0.5}, last_step=4)
        st.finish_trial(t[1].id, 0, state="PRUNED", metrics={"loss": 0.123}, last_step=4)
        st.finish_trial(t[2].id, 0, state="PRUNED", metrics={}, last_step=4)
        st.pause_trial(t[3].id, 0, metrics={"loss": 3.5}, last_step=2)
        st.finish_trial(t[4].id, 0, state="FAILED", error="RuntimeError: boom")
        st.set_study_state(sid, "INTERRUPTED")


def test_trials_state_paused_is_accepted(sqlite_url, capsys):
    _mixed_study(sqlite_url)
    code, trials = run_json(capsys, ["trials", "mixed", "--storage", sqlite_url, "--state", "paused", "--json"])
    assert code == 0 and [t["number"] for t in trials] == [3] and trials[0]["state"] == "PAUSED"
    for state in ("waiting", "running", "paused", "complete", "pruned", "failed", "PRUNED"):
        assert main(["trials", "mixed", "--storage", sqlite_url, "--state", state]) == 0
    capsys.readouterr()


def test_trials_show_the_last_reported_value_of_pruned_and_paused_trials(sqlite_url, capsys):
    _mixed_study(sqlite_url)
    assert main(["trials", "mixed", "--storage", sqlite_url]) == 0
    lines = {int(line.split()[0]): line for line in capsys.readouterr().out.splitlines()[1:]}
    assert " 0.5 " in lines[0] and "(" not in lines[0].split("{")[0]
    assert "0.123 (pruned at step 4)" in lines[1]
    assert "2.25 (pruned at step 4)" in lines[2]  # from its last report: 1/4 + 2
    assert "3.5 (paused at step 2)" in lines[3]
    assert " - " in lines[4] and "error: RuntimeError: boom" in lines[4]
    assert main(["trials", "mixed", "--storage", sqlite_url, "--state", "pruned"]) == 0
    out = capsys.readouterr().out
    assert "0.123 (pruned at step 4)" in out and "COMPLETE" not in out


OLD_DB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "schema-0001.sqlite")


def test_db_current_prints_an_old_databases_revision(tmp_path, capsys):
    import hashlib
    import shutil

    db = tmp_path / "old.sqlite"
    shutil.copy(OLD_DB, db)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    assert main(["db", "current", "--storage", f"sqlite:///{db}"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "0001"
    assert "search db upgrade" in err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # read, not migrated
    assert main(["db", "upgrade", "--storage", f"sqlite:///{db}"]) == 0
    capsys.readouterr()
    assert main(["db", "current", "--storage", f"sqlite:///{db}"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() != "0001" and err == ""


def test_db_upgrade_refuses_a_missing_file_unless_asked_to_create(tmp_path, capsys):
    typo = tmp_path / "serach.db"
    assert main(["db", "upgrade", "--storage", f"sqlite:///{typo}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no database file at") and "--create" in err and "\n" not in err
    assert not typo.exists()
    assert main(["db", "current", "--storage", f"sqlite:///{typo}"]) == 2
    capsys.readouterr()
    assert not typo.exists()
    assert main(["db", "upgrade", "--create", "--storage", f"sqlite:///{typo}"]) == 0
    assert typo.exists() and "schema revision" in capsys.readouterr().out


@pytest.fixture
def exported_study(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["run", write(tmp_path, {**STUDY, "budget": {"trials": 2}}), "--storage", url, "--quiet"]) == 0
    capsys.readouterr()
    return url


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_to_a_path_it_cannot_write_is_one_line_exit_2(tmp_path, capsys, exported_study, fmt):
    (tmp_path / "afile").write_text("x")
    cases = [(str(tmp_path), "it is a folder"), (str(tmp_path / "no" / "t.out"), "its folder does not exist"),
             (str(tmp_path / "afile" / "t.out"), "a part of its folder is not a folder")]
    if os.path.exists("/dev/full"):
        cases.append(("/dev/full", "the disk is full"))
    for path, why in cases:
        assert main(["export", "cli", "--storage", exported_study, "--format", fmt, "-o", path]) == 2, path
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: cannot write -o {path!r}: {why}") and "\n" not in err, err
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".search-export-")]


def test_export_on_a_full_disk_leaves_the_old_file_whole(tmp_path, capsys, exported_study, monkeypatch):
    import errno

    import pandas as pd

    target = tmp_path / "t.csv"
    target.write_text("old contents\n")

    def full(self, path, *a, **k):
        with open(path, "w") as f:
            f.write("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    assert main(["export", "cli", "--storage", exported_study, "--format", "csv", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert "the disk is full; free some space" in err
    assert target.read_text() == "old contents\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".search-export-")]


def test_export_replaces_a_file_and_keeps_its_mode(tmp_path, capsys, exported_study):
    target = tmp_path / "t.csv"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    assert main(["export", "cli", "--storage", exported_study, "--format", "csv", "-o", str(target)]) == 0
    assert target.read_text().startswith("number,") and (target.stat().st_mode & 0o777) == 0o640
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert main(["export", "cli", "--storage", exported_study, "--format", "csv", "-o", str(link)]) == 0
    assert link.is_symlink() and link.read_text() == target.read_text()
    fresh = tmp_path / "new.json"
    assert main(["export", "cli", "--storage", exported_study, "--format", "json", "-o", str(fresh)]) == 0
    assert len(json.loads(fresh.read_text())) == 2 and (fresh.stat().st_mode & 0o777) == 0o666 & ~_umask()
    capsys.readouterr()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_importance_of_an_objective_the_study_lacks_is_exit_2(sqlite_url, capsys):
    _mixed_study(sqlite_url)
    for objective in ("1", "-1", "99999999999999999999"):
        assert main(["importance", "mixed", "--storage", sqlite_url, "--objective", objective]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --objective: objective must be in [0, 1)") and "\n" not in err


def test_studies_says_when_a_running_study_has_no_live_controller(sqlite_url, capsys):
    from datetime import timedelta

    from sqlalchemy import create_engine, update

    from storage import open_storage
    from storage._schema import TrialRow

    with open_storage(sqlite_url) as st:
        sid = st.create_study("killed", metrics=["loss"], directions=["minimize"], spec={"name": "killed"}).id
        st.create_trial(sid, {"x": 1})
        st.create_study("live", metrics=["loss"], directions=["minimize"], spec={"name": "live"})
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        t = TrialRow.__table__
        old = conn.execute(t.select()).one().heartbeat_at - timedelta(minutes=5)
        conn.execute(update(t).values(heartbeat_at=old))
    engine.dispose()
    code, rows = run_json(capsys, ["studies", "--storage", sqlite_url, "--json"])
    assert code == 0 and {r["name"]: r["stale"] for r in rows} == {"killed": True, "live": False}
    assert main(["studies", "--storage", sqlite_url]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "killed is RUNNING" in notes[0] and "search resume killed" in notes[0]


def test_db_verbs_refuse_a_folder_or_a_file_that_is_not_a_database(tmp_path, capsys):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00not a database" * 400)
    before = junk.read_bytes()
    for verb in ("current", "upgrade"):
        for target, why in ((tmp_path, "is a folder, not a database file"), (junk, "not a")):  # "is not a SQLite database" / "file is not a database"
            assert main(["db", verb, "--storage", f"sqlite:///{target}"]) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith("error: ") and why in err and "\n" not in err, err
    assert junk.read_bytes() == before
