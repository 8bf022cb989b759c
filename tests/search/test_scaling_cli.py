from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search import scaling_cli
from testlib import SHARED_DATA

EPOCH_CSV = Path(SHARED_DATA) / "scaling" / "epoch_chinchilla" / "svg_extracted_data.csv"
EPOCH_COLS = ["--params-col", "Model Size", "--flops-col", "Training FLOP"]
needs_epoch = pytest.mark.skipif(not EPOCH_CSV.exists(), reason="Epoch AI's digitised Chinchilla data is not on this machine")
TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="search")
    scaling_cli.add_parser(root.add_subparsers(dest="command", required=True))
    return root


def call(argv: list[str], capsys) -> tuple[int, str, str]:
    code = scaling_cli.run(parser().parse_args(["scaling", *map(str, argv)]))
    out, err = capsys.readouterr()
    return code, out, err


def call_json(argv: list[str], capsys) -> dict:
    code, out, err = call([*argv, "--json"], capsys)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture()
def chinchilla_csv(tmp_path) -> Path:
    n, d = np.meshgrid(np.geomspace(1e7, 1e10, 6), np.geomspace(1e8, 1e12, 6))
    n, d = n.ravel(), d.ravel()
    rng = np.random.default_rng(0)
    loss = (TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]) * np.exp(0.002 * rng.standard_normal(n.size))
    path = tmp_path / "runs.csv"
    pd.DataFrame({"params": n, "tokens": d, "loss": loss}).to_csv(path, index=False)
    return path


@pytest.fixture()
def sweep_csv(tmp_path) -> Path:
    rows = []
    for n, d in itertools.product([1e8, 4e8, 1.6e9], [2e9, 8e9, 3.2e10]):
        lr0, bs0 = 1.79 * n**-0.713 * d**0.307, 0.58 * d**0.571
        for i, j in itertools.product(range(-2, 3), range(-2, 3)):
            u, v = (i + 0.3) * np.log(2), (j - 0.2) * np.log(2)
            rows.append({"N": n, "tok": d, "LR": lr0 * np.exp(u), "bsz": bs0 * np.exp(v), "loss": 3.0 + 0.02 * u * u + 0.01 * v * v})
    path = tmp_path / "sweeps.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@needs_epoch
def test_fit_epoch_json(capsys):
    out = call_json(["fit", EPOCH_CSV, *EPOCH_COLS, "--drop-highest-loss", "5", "--bootstrap", "20"], capsys)
    assert out["form"] == "chinchilla"
    assert set(out["params"]) == set(out["intervals"]) == {"E", "A", "B", "alpha", "beta"}
    assert 1.77 <= out["params"]["E"] <= 1.87
    assert 0.32 <= out["params"]["alpha"] <= 0.37 and 0.33 <= out["params"]["beta"] <= 0.42
    assert out["n_points"] == 240 and out["n_dropped"] == {"highest_loss": 5}
    assert "L-BFGS-B" in out["optimizer"] and "Huber" in out["fitting_loss"]
    assert 10 <= out["compute_optimal_at_max_compute"]["tokens_per_param"] <= 40


@needs_epoch
def test_fit_validate_above_reports_held_out_errors(capsys):
    out = call_json(["fit", EPOCH_CSV, *EPOCH_COLS, "--drop-highest-loss", "5", "--bootstrap", "0", "--starts", "20", "--validate-above", "1e20"], capsys)
    check = out["leave_largest_out"]
    assert check["train_max_compute"] <= 1e20 < check["held_out_compute"][0]
    assert check["n_train"] + check["n_held_out"] == 240
    assert check["mean_abs_rel_error"] < 0.015
    assert "20 starts" in out["optimizer"]


def test_fit_kaplan_and_summary(chinchilla_csv, capsys):
    out = call_json(["fit", chinchilla_csv, "--form", "kaplan-c", "--bootstrap", "10"], capsys)
    assert out["form"] == "kaplan-c" and set(out["params"]) == {"Cc", "alpha_C"}
    assert out["n_dropped"]["off_frontier"] + out["n_points"] == 36
    every = call_json(["fit", chinchilla_csv, "--form", "kaplan-n", "--all-points", "--bootstrap", "0"], capsys)
    assert every["n_points"] == 36 and every["intervals"]["Nc"] == [None, None]
    code, text, _ = call(["fit", chinchilla_csv, "--form", "kaplan-n", "--bootstrap", "5"], capsys)
    assert code == 0 and "alpha_N" in text and "95%" in text


def test_predict_json(chinchilla_csv, capsys):
    out = call_json(["predict", chinchilla_csv, "--params", "1e9", "--tokens", "2e10", "--bootstrap", "10"], capsys)
    assert out["low"] <= out["loss"] <= out["high"]
    p = out["params"]
    assert out["loss"] == pytest.approx(p["E"] + p["A"] / 1e9 ** p["alpha"] + p["B"] / 2e10 ** p["beta"])
    assert out["loss"] == pytest.approx(TRUE["E"] + TRUE["A"] / 1e9**0.34 + TRUE["B"] / 2e10**0.28, rel=0.01)
    by_compute = call_json(["predict", chinchilla_csv, "--params", "1e9", "--compute", str(6 * 1e9 * 2e10), "--bootstrap", "0"], capsys)
    assert by_compute["loss"] == pytest.approx(out["loss"])


def test_optimal_json(chinchilla_csv, capsys):
    out = call_json(["optimal", chinchilla_csv, "--compute", "1e21", "--bootstrap", "10"], capsys)
    assert 6 * out["N"] * out["D"] == pytest.approx(1e21)
    assert out["intervals"]["N"][0] <= out["N"] <= out["intervals"]["N"][1]
    assert out["fit"]["form"] == "chinchilla"
    aware = call_json(["optimal", chinchilla_csv, "--compute", "1e21", "--inference-tokens", "1e12", "--bootstrap", "0"], capsys)
    assert aware["N"] < out["N"] and aware["loss"] == pytest.approx(out["loss"])
    assert aware["total_flops"] <= aware["chinchilla_total_flops"]


def test_hparams_json(sweep_csv, capsys):
    cols = ["--params-col", "N", "--tokens-col", "tok", "--lr-col", "LR", "--bs-col", "bsz"]
    out = call_json(["hparams", sweep_csv, *cols, "--params", "1e9", "--tokens", "1e11"], capsys)
    assert out["lr"] == pytest.approx(1.79 * 1e9**-0.713 * 1e11**0.307, rel=1e-6)
    assert out["batch_size"] == pytest.approx(0.58 * 1e11**0.571, rel=1e-6)
    assert len(out["fit"]["cells"]) == 9
    code, text, _ = call(["hparams", sweep_csv, *cols, "--params", "1e9", "--tokens", "1e11"], capsys)
    assert code == 0 and "lr=" in text and "9 (N, D) cells" in text


@needs_epoch
def test_missing_column_is_one_error_line(capsys):
    code, out, err = call(["fit", EPOCH_CSV, "--bootstrap", "0"], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "--params-col" in err and "'Model Size'" in err


def test_bad_tables_exit_2(tmp_path, chinchilla_csv, capsys):
    frame = pd.read_csv(chinchilla_csv)
    frame.loc[[2, 5], "loss"] = np.nan
    nan_csv = tmp_path / "nan.csv"
    frame.to_csv(nan_csv, index=False)
    code, _, err = call(["fit", nan_csv], capsys)
    assert code == 2 and "NaN in 2 of 36 rows" in err

    few_csv = tmp_path / "few.csv"
    pd.read_csv(chinchilla_csv).iloc[:3].to_csv(few_csv, index=False)
    code, _, err = call(["fit", few_csv], capsys)
    assert code == 2 and "at least 5 runs, got 3" in err

    code, _, err = call(["predict", chinchilla_csv, "--form", "kaplan-n"], capsys)
    assert code == 2 and "needs --params" in err
    code, _, err = call(["optimal", chinchilla_csv, "--target-loss", "2.0"], capsys)
    assert code == 2 and "--inference-tokens" in err
    code, _, err = call(["hparams", chinchilla_csv, "--params", "1e9", "--tokens", "1e10"], capsys)
    assert code == 2 and "--lr-col" in err


def test_usage_errors_exit_2(chinchilla_csv):
    for argv in (["scaling"], ["scaling", "fit"], ["scaling", "hparams", str(chinchilla_csv)], ["scaling", "fit", str(chinchilla_csv), "--form", "cubic"],
                 ["scaling", "fit", str(chinchilla_csv), "--starts", "0"]):
        with pytest.raises(SystemExit) as exc:
            parser().parse_args(argv)
        assert exc.value.code == 2


def test_plot_writes_png(chinchilla_csv, tmp_path, capsys):
    for form in ("chinchilla", "kaplan-d"):
        png = tmp_path / f"{form}.png"
        out = call_json(["fit", chinchilla_csv, "--form", form, "--bootstrap", "5", "--plot", png], capsys)
        assert out["plot"] == str(png)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_module_import_stays_light():
    code = "import sys, search.scaling_cli; print(sorted(m for m in ('scipy', 'pandas', 'matplotlib', 'surrogates.scaling') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], check=True)
    assert result.stdout.strip() == "[]"


# -- issue #21, defect 15: `scaling fit STUDY` on a study it does not suit ---------------------------

def _scaling_study(url: str, name: str, metric: str, direction: str, grid, *, loss_metric: str | None = None) -> None:
    """A finished study whose trials record params, tokens and ``metric`` (an accuracy when
    maximised), plus ``loss_metric`` when given, on the (N, D) ``grid``."""
    from storage import open_storage

    with open_storage(url) as st:
        study = st.create_study(name, metrics=[metric], directions=[direction], spec={"name": name})
        for i, (n, d) in enumerate(grid):
            loss = TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]
            value = 1.0 - loss / 10 if direction == "maximize" else loss
            metrics = {metric: value, "params": n, "tokens": d, **({loss_metric: loss} if loss_metric else {})}
            t = st.create_trial(study.id, {"i": i})
            st.finish_trial(t.id, 0, state="COMPLETE", values=[value], metrics=metrics)
        st.set_study_state(study.id, "COMPLETE")


GRID = list(itertools.product([1e6, 3e6, 1e7, 3e7, 1e8], [1e8, 1e9, 1e10]))


def test_fit_refuses_a_maximised_objective(sqlite_url, capsys):
    _scaling_study(sqlite_url, "acc", "val_accuracy", "maximize", GRID)
    for extra in ([], ["--loss-col", "val_accuracy"]):
        code, out, err = call(["fit", "acc", "--storage", sqlite_url, "--bootstrap", "5", *extra], capsys)
        assert code == 2 and out == "", err
        assert len(err.strip().splitlines()) == 1 and "maximises 'val_accuracy'" in err and "--loss-col" in err
    # the same study with a recorded loss fits that loss
    _scaling_study(sqlite_url, "acc-with-loss", "val_accuracy", "maximize", GRID, loss_metric="val_loss")
    out = call_json(["fit", "acc-with-loss", "--storage", sqlite_url, "--bootstrap", "5"], capsys)
    assert out["params"]["alpha"] == pytest.approx(TRUE["alpha"], rel=0.05) and out["warnings"] == []


def test_fit_warns_when_a_budget_never_varies(sqlite_url, capsys):
    _scaling_study(sqlite_url, "one-budget", "loss", "minimize", [(n, 1e9) for n in (1e6, 3e6, 1e7, 3e7, 1e8)])
    code, out, err = call(["fit", "one-budget", "--storage", sqlite_url, "--bootstrap", "5"], capsys)
    assert code == 0
    assert "warning: every trial has the same D (tokens)" in out
    code, out, err = call(["fit", "one-budget", "--storage", sqlite_url, "--bootstrap", "5", "--json"], capsys)
    assert code == 0 and "warning: every trial has the same D (tokens)" in err
    assert any("same D" in w for w in json.loads(out)["warnings"])
    # kaplan-n needs only N to vary: no warning
    assert call_json(["fit", "one-budget", "--storage", sqlite_url, "--form", "kaplan-n", "--bootstrap", "0",
                      "--all-points"], capsys)["warnings"] == []


def test_fit_warns_about_a_degenerate_fit():
    from analysis.scaling import fit_warnings

    n, d = np.array([1e6, 1e7, 1e8]), np.array([1e9, 1e10, 1e11])
    good = {"E": 1.7, "A": 406.0, "B": 411.0, "alpha": 0.34, "beta": 0.28}
    assert fit_warnings("chinchilla", n, d, 6 * n * d, good) == []
    bad = fit_warnings("chinchilla", n, d, 6 * n * d, {**good, "alpha": 47.0, "A": 2e175})
    assert len(bad) == 1 and "degenerate fit (alpha=47, A=2e+175)" in bad[0]
    assert fit_warnings("kaplan-n", n, d, n, {"Nc": 8.8e13, "alpha_N": 0.076}) == []


def test_good_fit_has_no_warnings(chinchilla_csv, capsys):
    assert call_json(["fit", chinchilla_csv, "--bootstrap", "5"], capsys)["warnings"] == []


def test_option_bounds_are_usage_errors(chinchilla_csv, capsys):
    for flag, value in (("--bootstrap", "99999999999"), ("--bootstrap", "-1"), ("--seed", "-1"),
                        ("--drop-highest-loss", "-3")):
        with pytest.raises(SystemExit) as exc:
            parser().parse_args(["scaling", "fit", str(chinchilla_csv), flag, value])
        assert exc.value.code == 2
        assert f"argument {flag}: expected an integer in [0, " in capsys.readouterr().err


def test_validate_above_must_split_the_runs(chinchilla_csv, capsys):
    for value in ("-1", "1e30"):
        code, out, err = call(["fit", chinchilla_csv, "--bootstrap", "0", "--validate-above", value], capsys)
        assert code == 2 and out == "" and "must split the runs" in err and err.count("\n") == 1


def test_plot_to_a_path_it_cannot_write_is_one_line(chinchilla_csv, tmp_path, capsys):
    for path, why in ((tmp_path, "it is a folder"), (tmp_path / "no" / "f.png", "its folder does not exist"),
                      (tmp_path / "f.xyz", "'xyz' is not supported")):
        code, out, err = call(["fit", chinchilla_csv, "--bootstrap", "0", "--plot", path], capsys)
        assert code == 2 and out == "" and err.startswith(f"error: cannot write --plot '{path}'") and why in err, err
        assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.csv"]
    svg = tmp_path / "fit.svg"
    assert call(["fit", chinchilla_csv, "--bootstrap", "0", "--plot", svg], capsys)[0] == 0
    assert svg.read_text().lstrip().startswith("<?xml")
