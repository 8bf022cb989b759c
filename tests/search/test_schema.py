"""`search schema` (issue #18): a JSON Schema of the study file that every example validates
against and that editors' YAML support can use; the loader stays the validator of record."""
from __future__ import annotations

import json
import os

import jsonschema
import pytest
import yaml

from search.cli import main
from testlib import REPO

EXAMPLES = sorted(os.path.join(REPO, "examples", f) for f in os.listdir(os.path.join(REPO, "examples"))
                  if f.endswith((".yaml", ".yml")))


@pytest.fixture(scope="module")
def schema():
    from search.schema import study_schema

    s = study_schema()
    jsonschema.Draft202012Validator.check_schema(s)
    return s


def test_search_schema_prints_the_schema(capsys, schema):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_every_example_validates(schema, path):
    with open(path, encoding="utf-8") as f:
        jsonschema.validate(yaml.safe_load(f), schema, cls=jsonschema.Draft202012Validator)


def test_registries_are_in_the_schema(schema):
    from search.algorithms import ALGORITHMS
    from search.arch_spaces import ARCH_TYPES
    from search.schedulers import SCHEDULERS

    text = json.dumps(schema)
    assert all(f'"{name}"' in text for name in [*ALGORITHMS, *SCHEDULERS, *ARCH_TYPES])


@pytest.mark.parametrize("change, where", [
    ({"colour": "red"}, "colour"),
    ({"objective": {"metric": "loss", "direction": "up"}}, "up"),
    ({"space": {"lr": {"type": "double", "low": 0, "high": 1}}}, "double"),
    ({"space": {"lr": {"type": "float", "low": 0, "hgh": 1}}}, "hgh"),
    ({"space": {"bad name": {"type": "float", "low": 0, "high": 1}}}, "bad name"),
    ({"budget": {"trials": 0}}, "0"),
    ({"algorithm": {"name": "magic"}}, "magic"),
    ({"scheduler": {"name": "ashaa"}}, "ashaa"),
    ({"backend": {"name": "k8s"}}, "k8s"),
])
def test_the_schema_flags_what_an_editor_should(schema, change, where):
    with open(EXAMPLES[0], encoding="utf-8") as f:
        doc = {**yaml.safe_load(f), **change}
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    assert errors and any(where in e.message or where in json.dumps(list(e.path)) for e in errors), errors
