"""Study-file validation: every bad input is one line naming the field and the fix."""
from __future__ import annotations

import copy

import pytest

from search.config import ConfigError, load_study_file, parse_study
from search.space import CategoricalParam, FloatParam, IntParam

BASE = {
    "name": "q",
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "trial": {"entrypoint": "builtin:classifier", "params": {"epochs": 2}},
    "space": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "hidden": {"type": "int", "low": 16, "high": 256, "log": True},
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    },
    "algorithm": {"name": "tpe", "seed": 0},
    "budget": {"trials": 3, "parallel": 2},
    "resources": {"cpus": 1, "gpus": 0},
}


def study(**changes):
    d = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = d
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[k]
        if value is DELETE:
            node.pop(keys[-1])
        else:
            node[keys[-1]] = value
    return d


DELETE = object()


def test_quickstart_parses():
    c = parse_study(BASE)
    assert c.name == "q" and c.metrics == ("val_accuracy",) and c.directions == ("maximize",)
    assert c.space["lr"] == FloatParam("lr", 1e-4, 1e-1, log=True)
    assert c.space["hidden"] == IntParam("hidden", 16, 256, log=True)
    assert c.space["optimizer"] == CategoricalParam("optimizer", ("adam", "sgd"))
    assert (c.trials, c.parallel, c.cpus, c.gpus, c.seed) == (3, 2, 1.0, 0.0, 0)
    # The normalised spec re-parses to the same study (that is how resume reads it back).
    assert parse_study(c.raw).space == c.space


def test_example_file_parses():
    import os

    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    c = load_study_file(os.path.join(here, "examples", "quickstart.yaml"))
    assert c.trials == 30 and c.parallel == 2 and c.algorithm == "tpe"


def test_missing_seed_is_drawn_and_recorded():
    c = parse_study(study(algorithm={"name": "random"}))
    assert isinstance(c.seed, int) and c.raw["algorithm"]["seed"] == c.seed


@pytest.mark.parametrize("changes, field, hint", [
    ({"color": "red"}, "color", "unknown key"),
    ({"space__lr__low": 0.1, "space__lr__high": 0.01}, "space.lr", "low <= high must hold for"),
    ({"space__lr__low": 0.0}, "space.lr", "log: true needs low > 0"),
    ({"space__hidden__low": -1}, "space.hidden", "log: true needs low > 0"),
    ({"space__optimizer__choices": []}, "space.optimizer.choices", "non-empty list"),
    ({"space__optimizer__choices": ["a", "a"]}, "space.optimizer.choices", "distinct"),
    ({"space__lr__type": "double"}, "space.lr.type", "float, int, categorical"),
    ({"space__lr__lo": 1}, "space.lr.lo", "unknown key"),
    ({"space__hidden__low": 1.5}, "space.hidden.low", "expected an integer"),
    ({"space__lr__high": DELETE}, "space.lr.high", "missing"),
    ({"algorithm__name": "magic"}, "algorithm.name", "unknown algorithm 'magic'"),
    ({"algorithm__points": 3}, "algorithm", "option"),
    ({"trial__entrypoint": "builtin:nothing"}, "trial.entrypoint", "unknown built-in trainer"),
    ({"trial__entrypoint": "no_such_module_xyz:f"}, "trial.entrypoint", "cannot import module"),
    ({"trial__entrypoint": "nocolon"}, "trial.entrypoint", "package.module:function"),
    ({"trial__entrypoint": "json:no_such_fn"}, "trial.entrypoint", "has no attribute"),
    ({"name": ""}, "name", "non-empty"),
    ({"name": "x" * 129}, "name", "at most 128 characters"),
    ({"name": "bad name!"}, "name", "may only use"),
    ({"name": DELETE}, "name", "non-empty"),
    ({"objective__direction": "up"}, "objective.direction", "minimize or maximize"),
    ({"objective": DELETE}, "objective", "missing"),
    ({"budget__trials": 0}, "budget.trials", ">= 1"),
    ({"budget__parallel": 0}, "budget.parallel", ">= 1"),
    ({"budget__trials": "many"}, "budget.trials", "expected a number"),
    ({"resources__cpus": 0}, "resources.cpus", "> 0"),
    ({"resources__gpus": -1}, "resources.gpus", ">= 0"),
    ({"backend": {"name": "k8s"}}, "backend.name", "ray, inprocess or simulated"),
    ({"trial__params__lr": 0.1}, "space.lr", "also fixed in trial.params"),
    ({"space__lr__when": {"later": "x"}}, "space.lr.when.later", "declared earlier"),
])
def test_bad_input_names_field_and_fix(changes, field, hint):
    with pytest.raises(ConfigError) as info:
        parse_study(study(**changes))
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(field + ":") or msg.startswith(field), msg
    assert hint.split(" for")[0] in msg, msg


def test_float_low_gt_high_message_has_values():
    with pytest.raises(ConfigError, match=r"low <= high must hold, got low=0.1, high=0.01"):
        parse_study(study(space__lr__low=0.1, space__lr__high=0.01, space__lr__log=False))


def test_malformed_and_empty_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"malformed YAML at line"):
        load_study_file(str(bad))
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_study_file(str(empty))
    with pytest.raises(ConfigError, match="no such file"):
        load_study_file(str(tmp_path / "missing.yaml"))
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_study_file(str(top))


def test_conditional_space_and_multiobjective():
    c = parse_study(study(
        objective=[{"metric": "loss", "direction": "minimize"}, {"metric": "size", "direction": "minimize"}],
        space={"opt": {"type": "categorical", "choices": ["adam", "sgd"]},
               "momentum": {"type": "float", "low": 0.0, "high": 0.99, "when": {"opt": "sgd"}}},
        algorithm={"name": "nsga2", "seed": 1}))
    assert c.metrics == ("loss", "size")
    assert c.space["momentum"].when == {"opt": ("sgd",)}
    import numpy as np

    for i in range(20):
        cfg = c.space.sample(np.random.default_rng(i))
        assert ("momentum" in cfg) == (cfg["opt"] == "sgd")


def test_default_algorithm_is_bo_and_tpe_for_architecture_spaces():
    assert parse_study(study(algorithm__name=DELETE)).algorithm == "bo"
    d = study(algorithm__name=DELETE)
    d["space"] = {"arch": {"type": "nas-bench-201"}}
    d["trial"] = {"entrypoint": "builtin:tabular",
                  "params": {"table": "t.csv", "key_column": "arch", "metric_column": "acc"}}
    assert parse_study(d, check_entrypoint=False).algorithm == "tpe"
