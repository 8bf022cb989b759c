"""Issue #21, the study-file loader: hostile or careless input is one line naming the field or the
limit, exit 2, nothing written (alias bombs, non-text files, duplicate keys, sizes, spaces that
cannot mean what they say, unwritable artifacts, unknown storage schemes, boolean objectives)."""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import yaml

from search.cli import main
from search.config import MAX_BYTES, MAX_DEPTH, ConfigError, load_study_file, parse_study
from search.space import FloatParam

BASE = {
    "name": "h",
    "objective": {"metric": "loss", "direction": "minimize"},
    "trial": {"entrypoint": "search_test_objectives:quadratic"},
    "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
    "algorithm": {"name": "random", "seed": 0},
    "budget": {"trials": 2},
    "backend": {"name": "inprocess"},
}

# The 616-byte document: nested anchors under the free-form `description:` key.
ALIAS_BOMB = """\
name: bomb
objective: {metric: loss}
trial: {entrypoint: search_test_objectives:quadratic}
space: {x: {type: float, low: 0, high: 1}}
backend: {name: inprocess}
description:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def cli_run(tmp_path, capsys, content, name="study.yaml"):
    """`search run` on a file holding ``content`` (bytes or text): (exit code, stderr); asserts
    one line and that no database was written."""
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    db = tmp_path / "search.db"
    code = main(["run", str(path), "--storage", f"sqlite:///{db}", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert not db.exists()
    return code, err


def dump(d) -> str:
    return yaml.safe_dump(d, sort_keys=False)


def with_space(**params):
    d = copy.deepcopy(BASE)
    d["space"] = params
    return d


# -- 1. alias bombs, depth, recursion -------------------------------------------------------------

def test_alias_bomb_is_refused_naming_the_limit_before_anything_is_written(tmp_path, capsys):
    assert len(ALIAS_BOMB.encode()) < 1000
    code, err = cli_run(tmp_path, capsys, ALIAS_BOMB)
    assert code == 2
    assert "aliases" in err and "1 MB" in err and f"{MAX_BYTES:,}" in err, err


def test_modest_aliases_still_load(tmp_path):
    text = dump(BASE) + "description:\n  a: &a [1, 2, 3]\n  b: [*a, *a]\n"
    p = tmp_path / "s.yaml"
    p.write_text(text)
    assert load_study_file(str(p)).name == "h"


def test_deep_nesting_and_recursive_aliases_are_refused(tmp_path, capsys):
    code, err = cli_run(tmp_path, capsys, dump(BASE) + "description: " + "[" * 500 + "]" * 500 + "\n")
    assert code == 2 and f"deeper than {MAX_DEPTH} levels" in err and "line" in err, err
    # aliases may nest deeper than the text does: a chain of anchors
    chain = "".join(f"  k{i}: &k{i} [*k{i - 1}]\n" for i in range(1, 80))
    code, err = cli_run(tmp_path, capsys, dump(BASE) + "description:\n  k0: &k0 [x]\n" + chain)
    assert code == 2 and f"deeper than {MAX_DEPTH} levels" in err, err
    code, err = cli_run(tmp_path, capsys, dump(BASE) + "description: &r [*r]\n")
    assert code == 2 and "recursive" in err, err


# -- 6. files that are not text -------------------------------------------------------------------

def test_a_folder_is_not_a_study_file(tmp_path, capsys):
    db = tmp_path / "search.db"
    assert main(["run", str(tmp_path), "--storage", f"sqlite:///{db}", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a folder; expected a study file" in err and "\n" not in err and not db.exists()


@pytest.mark.parametrize("content", [os.urandom(64) + b"\xff\xfe", "name: café\n".encode("latin-1")],
                         ids=["random-bytes", "latin-1"])
def test_bytes_that_are_not_utf8(tmp_path, capsys, content):
    code, err = cli_run(tmp_path, capsys, content)
    assert code == 2 and "not UTF-8 text" in err and "expected a study file in YAML" in err, err


# -- 7. spaces that cannot mean what they say --------------------------------------------------

@pytest.mark.parametrize("spec, field, hint", [
    ({"type": "float", "low": 0.0, "high": 1.0, "step": 0.3}, "space.x.step", "step must divide high - low"),
    ({"type": "int", "low": 0, "high": 10, "step": 3}, "space.x.step", "step must divide high - low"),
    ({"type": "float", "low": 0.0, "high": 1.0, "step": 2.0}, "space.x.step", "larger than the range"),
    ({"type": "int", "low": 1, "high": 5, "step": 10}, "space.x.step", "every trial would get low=1"),
    ({"type": "categorical", "choices": [1, 1.0]}, "space.x.choices", "1 and 1.0 are the same value"),
    ({"type": "categorical", "choices": [True, 1]}, "space.x.choices", "are the same value"),
    ({"type": "categorical", "choices": [0.5, float("nan")]}, "space.x.choices[1]", "finite"),
])
def test_space_that_cannot_mean_what_it_says(spec, field, hint):
    with pytest.raises(ConfigError) as info:
        parse_study(with_space(x=spec))
    msg = str(info.value)
    assert msg.startswith(field + ":") and hint in msg and "\n" not in msg, msg


def test_step_messages_say_the_fix():
    with pytest.raises(ConfigError, match=r"got step=0.3 for low=0.0, high=1.0 .*set high to 0.9"):
        parse_study(with_space(x={"type": "float", "low": 0.0, "high": 1.0, "step": 0.3}))


def test_steps_that_divide_still_load_and_draw_clean_grid_points():
    c = parse_study(with_space(x={"type": "float", "low": 0.0, "high": 0.9, "step": 0.3},
                               n={"type": "int", "low": 2, "high": 10, "step": 4},
                               k={"type": "int", "low": 3, "high": 3, "step": 5}))
    x = c.space["x"]
    assert x.grid(5) == [0.0, 0.3, 0.6, 0.9]
    # 0 + 3 * 0.3 is 0.8999999999999999 in binary floating point: the draw is the grid point 0.9
    draws = {c.space.sample(np.random.default_rng(i))["x"] for i in range(200)}
    assert draws == {0.0, 0.3, 0.6, 0.9}
    assert x.snap(0.88) == 0.9 and FloatParam("d", 0.0, 0.5, step=0.1).grid(2)[3] == 0.3


@pytest.mark.parametrize("when, hint", [
    ({"opt": "adagrad"}, "'adagrad' is not a value opt can take (its choices are ['adam', 'sgd'])"),
    ({"opt": ["sgd", "sdg"]}, "'sdg' is not a value opt can take"),
    ({"opt": []}, "needs at least one value of opt"),
    ({"layers": 9}, "9 is not a value layers can take (it takes integers in [1, 4])"),
    ({"odd": 4}, "4 is not a value odd can take"),  # off its step's grid
    ({"flag": 1}, "1 is not a value flag can take"),  # true == 1 to Python, not to a reader
    ({"wd": 0.5}, "wd is a continuous float, which never takes one exact value; give wd a step"),
])
def test_condition_on_a_value_the_other_parameter_never_takes(when, hint):
    d = with_space(opt={"type": "categorical", "choices": ["adam", "sgd"]},
                   layers={"type": "int", "low": 1, "high": 4},
                   odd={"type": "int", "low": 1, "high": 9, "step": 2},
                   flag={"type": "categorical", "choices": [True, False]},
                   wd={"type": "float", "low": 0.0, "high": 1.0},
                   momentum={"type": "float", "low": 0.0, "high": 0.99, "when": when})
    with pytest.raises(ConfigError) as info:
        parse_study(d)
    msg = str(info.value)
    field = f"space.momentum.when.{next(iter(when))}"
    assert msg.startswith(field + ":") and hint in msg, msg


def test_conditions_on_values_the_parameter_takes_still_load():
    c = parse_study(with_space(opt={"type": "categorical", "choices": ["adam", "sgd", 1]},
                               layers={"type": "int", "low": 1, "high": 4},
                               drop={"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
                               momentum={"type": "float", "low": 0.0, "high": 0.99,
                                         "when": {"opt": ["sgd", 1.0], "layers": [2, 3], "drop": [0.3]}}))
    assert c.space["momentum"].when == {"opt": ("sgd", 1.0), "layers": (2, 3), "drop": (0.3,)}


@pytest.mark.parametrize("text, hint", [
    ("description: {when: 2001-01-01}\n", "description.when: expected text, a number, true/false, null, a list or a "
                                           "mapping, got date datetime.date(2001, 1, 1); quote it"),
    ("trial: {entrypoint: 'search_test_objectives:quadratic', params: {0: 0.1}}\n",
     "trial.params.0: keys must be strings, got int 0; quote it"),
    ("description: [1, .nan]\n", "description[1]: expected a finite number, got nan"),
    ("description: !!binary aGVsbG8=\n", "description: expected text"),
    ('"bad\\nkey": 1\n', "'bad\\nkey': unknown key"),  # a newline in a key stays on one line
])
def test_what_json_cannot_store_is_refused_naming_the_field(tmp_path, capsys, text, hint):
    """The study is stored as JSON and resume reads it back from there: dates, binary, NaN and
    non-string keys would fail at creation, after the schema was written, or change on resume."""
    base = {k: v for k, v in BASE.items() if k not in ("trial",)} if "trial:" in text else BASE
    code, err = cli_run(tmp_path, capsys, dump(base) + text)
    assert code == 2 and hint in err, err


def test_a_trailing_newline_is_not_part_of_a_name():
    """Found by the fuzz test: NAME_RE ended in "$", which matches before a final newline."""
    with pytest.raises(ConfigError, match=r"^name: 'h\\n' may only use"):
        parse_study(dict(BASE, name="h\n"))
    with pytest.raises(ConfigError, match=r"^space.'x\\n': parameter names use"):
        parse_study(with_space(**{"x\n": {"type": "float", "low": 0.0, "high": 1.0}}))


def test_a_type_or_algorithm_that_is_not_a_name_is_refused_not_a_crash():
    """Found by the fuzz test: `type: []` and `algorithm: {name: {}}` raised TypeError (unhashable)."""
    with pytest.raises(ConfigError, match=r"^space.x.type: must be float, int, categorical"):
        parse_study(with_space(x={"type": []}))
    with pytest.raises(ConfigError, match=r"^algorithm.name: unknown algorithm \{\}"):
        parse_study(dict(BASE, algorithm={"name": {}}))


@pytest.mark.parametrize("scheduler, hint", [
    ({"type": "asha", "grace_period": 2}, "scheduler: needs a name; choose one of none, asha"),
    ({"name": ["asha"]}, "scheduler: unknown scheduler ['asha']"),
    ({"name": "none", "grace_period": 2}, "scheduler: name: none takes no options"),
])
def test_a_scheduler_without_a_usable_name_is_not_ignored(scheduler, hint):
    """Found by the fuzz test: `scheduler: {type: asha}` ran with no scheduler at all, and an
    unhashable name raised TypeError."""
    with pytest.raises(ConfigError) as info:
        parse_study(dict(BASE, scheduler=scheduler))
    assert str(info.value).startswith(hint), str(info.value)


@pytest.mark.parametrize("key, value", [("enqueue", False), ("enqueue", {}), ("warm_start", 0)])
def test_a_falsy_enqueue_or_warm_start_is_not_read_as_none(key, value):
    with pytest.raises(ConfigError, match=rf"^{key}: expected a list"):
        parse_study(dict(BASE, **{key: value}))


# -- 8. duplicate keys ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, line, key", [
    ("name: first\nname: second\n", 2, "'name'"),
    ("space:\n  x: {type: float, low: 0, high: 1, low: 0.5}\n", 2, "'low'"),
    ("budget:\n  1: a\n  1.0: b\n", 3, "1.0"),
])
def test_duplicate_keys_are_refused_with_their_line(tmp_path, capsys, text, line, key):
    code, err = cli_run(tmp_path, capsys, text)
    assert code == 2 and f"line {line}: duplicate key {key}" in err and "first at line" in err, err


def test_merge_keys_may_override_what_they_merge(tmp_path):
    text = dump({k: v for k, v in BASE.items() if k != "budget"})
    text += "defaults: &d {trials: 2, parallel: 1}\n".replace("defaults", "description")
    text += "budget:\n  <<: *d\n  trials: 3\n"
    p = tmp_path / "s.yaml"
    p.write_text(text)
    assert load_study_file(str(p)).trials == 3


# -- 9. the artifacts location, checked up front ---------------------------------------------------

@pytest.mark.parametrize("artifacts, hint", [
    ("/etc/passwd/ckpt", "/etc/passwd is a file, not a folder"),
    ("nosuchfs://b/x", "unknown filesystem 'nosuchfs'"),
    ("{tmp}/file/ckpt", "is a file, not a folder"),
])
def test_artifacts_that_cannot_be_written_fail_before_the_study_exists(tmp_path, capsys, artifacts, hint):
    (tmp_path / "file").write_text("x")
    d = dict(BASE, artifacts=artifacts.format(tmp=tmp_path))
    code, err = cli_run(tmp_path, capsys, dump(d))
    assert code == 2 and err.startswith("error: ") and "artifacts:" in err and hint in err, err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_artifacts_in_a_read_only_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, err = cli_run(tmp_path, capsys, dump(dict(BASE, artifacts=str(ro / "ckpt"))))
    finally:
        ro.chmod(0o700)
    assert code == 2 and "artifacts: cannot write to" in err, err


def test_artifacts_probe_leaves_nothing_behind(tmp_path):
    from search.config import check_artifacts

    check_artifacts(str(tmp_path / "not" / "yet"))
    check_artifacts(f"file://{tmp_path}/store")
    assert sorted(os.listdir(tmp_path)) == ["store"] and os.listdir(tmp_path / "store") == []


# -- 10. size -------------------------------------------------------------------------------------

def test_a_study_file_over_1mb_is_refused_naming_the_limit(tmp_path, capsys):
    big = dump(BASE) + "description: |\n" + ("  " + "x" * 97 + "\n") * (MAX_BYTES // 100 + 1)
    code, err = cli_run(tmp_path, capsys, big)
    assert code == 2 and "over the study-file limit of 1,000,000 bytes (1 MB)" in err, err
    just_under = dump(BASE) + "description: |\n" + ("  " + "x" * 97 + "\n") * (MAX_BYTES // 100 - 20)
    p = tmp_path / "ok.yaml"
    p.write_text(just_under)
    assert len(just_under) <= MAX_BYTES and load_study_file(str(p)).name == "h"


# -- 11. raw errors where a fix belongs ----------------------------------------------------------

def test_entrypoint_that_is_not_a_string_is_not_called_missing():
    d = copy.deepcopy(BASE)
    d["trial"]["entrypoint"] = 5
    with pytest.raises(ConfigError, match=r"^trial.entrypoint: must be a string .*got int 5$"):
        parse_study(d)
    d["trial"].pop("entrypoint")
    with pytest.raises(ConfigError, match=r"^trial.entrypoint: missing"):
        parse_study(d)


@pytest.mark.parametrize("url, hint", [
    ("nosuch://x", "no database or driver is called 'nosuch'; use sqlite:///"),
    ("postgres://u:hunter2@h/db", "write postgresql://"),
    ("postgresql+nodriver://u@h/db", "'postgresql+nodriver'"),
])
def test_unknown_storage_scheme_is_one_line_naming_storage_and_fix(tmp_path, capsys, url, hint):
    p = tmp_path / "s.yaml"
    p.write_text(dump(BASE))
    assert main(["run", str(p), "--storage", url, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: storage ") and hint in err and "\n" not in err, err
    assert "NoSuchModuleError" not in err and "hunter2" not in err


# -- 14. a boolean objective is not 1.0 ------------------------------------------------------------

def returns_true(config):
    return True


def returns_bool_metric(config):
    return {"loss": False}


def reports_bool(config, reporter):
    reporter.report(1, loss=True)
    return 0.5


@pytest.mark.parametrize("fn", ["returns_true", "returns_bool_metric", "reports_bool"])
def test_boolean_objective_values_fail_the_trial(tmp_path, fn):
    from trials import TrialSpec, run_trial

    spec = TrialSpec(study="t", trial_id=1, number=0, attempt=0, entrypoint=f"{__name__}:{fn}", config={},
                     seed=0, objective_metrics=("loss",), checkpoint_dir=str(tmp_path / "ckpt"))
    events = []
    done = run_trial(spec, events.append)
    assert done.error is not None and "boolean" in done.error, done
    assert "loss" not in done.metrics and not [e for e in events if e.kind == "report"]


@pytest.mark.parametrize("arch, message", [
    ({"type": "lm-layers", "layers": [1, 2**40]}, "space.arch.layers: max must be at most 1024 layers"),
    ({"type": "cnn", "depth": [1, 2**40]}, "space.arch.depth: max must be at most 1024 layers"),
    ({"type": "cnn", "widths": [2**40]}, "space.arch.widths: entries must be at most 1048576"),
    ({"type": "lm-layers", "widths": [64], "bad\nkey": 1}, "space.arch.'bad\\nkey': unknown key"),
])
def test_architecture_spaces_too_large_to_size_are_one_line_errors(arch, message):
    """Found by the loader fuzz test: sizing these walked every depth (hours), and a key with a
    newline broke the one-line rule."""
    import time

    spec = {"name": "x", "objective": {"metric": "loss", "direction": "minimize"},
            "trial": {"entrypoint": "builtin:lm"}, "space": {"arch": arch}, "algorithm": {"name": "tpe"}}
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as exc:
        parse_study(spec)
    assert message in str(exc.value) and "\n" not in str(exc.value) and time.monotonic() - t0 < 5


def test_an_lm_space_whose_default_heads_do_not_divide_a_width_loads():
    """widths: [129] with max_params: the default heads of a non-attention layer (width // 64 = 2)
    did not divide 129 and a raw ValueError escaped; the heads rule now lowers it to a divisor."""
    spec = {"name": "x", "objective": {"metric": "loss", "direction": "minimize"},
            "trial": {"entrypoint": "builtin:lm"}, "algorithm": {"name": "tpe"},
            "space": {"arch": {"type": "lm-layers", "widths": [129], "heads": [1, 2], "max_params": 200000}}}
    assert parse_study(spec).space.names == ("arch",)
