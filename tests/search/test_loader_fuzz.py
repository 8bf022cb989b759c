"""Property-based test of the study-file loader (issue #21): generated YAML documents (the examples
mutated field by field, wrong types at every path, unknown keys at every level, text spliced in)
either load, or make `search run` exit 2 with one line naming a field or a limit: never a
traceback, never a database write, within a second and 512 MB. A document that loads re-parses from
the JSON stored for it (what resume reads) and validates against `search schema`.

CI runs a bounded number of examples; ``SEARCH_FUZZ_EXAMPLES=5000`` runs a long search.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import tempfile
import time

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.cli import main
from search.config import TOP_KEYS, ConfigError, load_study_file, parse_study
from search.schema import study_schema
from testlib import REPO

EXAMPLES_DIR = os.path.join(REPO, "examples")
EXAMPLES = {name: yaml.safe_load(open(os.path.join(EXAMPLES_DIR, name), encoding="utf-8"))
            for name in sorted(os.listdir(EXAMPLES_DIR)) if name.endswith(".yaml")}
# A study small enough to touch every part of the loader: conditions, steps, a scheduler.
EXAMPLES["inline"] = {
    "name": "fuzz",
    "objective": [{"metric": "loss", "direction": "minimize"}],
    "trial": {"entrypoint": "search_test_objectives:quadratic", "params": {"scale": 1}},
    "space": {"kind": {"type": "categorical", "choices": ["a", "b"]},
              "x": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25, "when": {"kind": "a"}},
              "n": {"type": "int", "low": 1, "high": 9, "step": 2}},
    "algorithm": {"name": "random", "seed": 0},
    "scheduler": {"name": "asha", "metric": "loss", "grace_period": 1, "reduction_factor": 3},
    "budget": {"trials": 4, "parallel": 2, "max_failures": 1},
    "resources": {"cpus": 1, "gpus": 0},
    "backend": {"name": "inprocess"},
    "checkpoints": {"keep_last": 2},
    "artifacts": "fuzz-artifacts",
    "description": "a study to mutate",
    "enqueue": [{"kind": "a", "x": 0.5, "n": 3}],
}
# Architecture spaces, conditional on a categorical, under a NAS algorithm.
EXAMPLES["nas"] = {
    "name": "fuzz-nas",
    "objective": {"metric": "loss", "direction": "minimize"},
    "trial": {"entrypoint": "builtin:tabular"},
    "space": {"model": {"type": "categorical", "choices": ["cell", "lm", "cnn"]},
              "cell": {"type": "nas-bench-201", "ops": ["none", "skip_connect", "nor_conv_3x3"],
                       "when": {"model": "cell"}},
              "layers": {"type": "lm-layers", "layers": [1, 3], "ops": ["attention", "linear", "conv"],
                         "widths": [32, 64], "heads": [1, 2], "ffn_mult": [2, 4], "kernels": [3, 7],
                         "max_params": 200_000, "when": {"model": "lm"}},
              "arch": {"type": "cnn", "depth": [1, 3], "widths": [8, 16], "kernels": [3, 5], "skip": True,
                       "when": {"model": "cnn"}}},
    "algorithm": {"name": "regevo", "seed": 0, "population": 6, "sample": 3},
}
KNOWN_KEYS = ["name", "objective", "trial", "space", "algorithm", "scheduler", "budget", "resources", "backend",
              "artifacts", "checkpoints", "description", "metric", "direction", "entrypoint", "params", "type",
              "low", "high", "log", "step", "when", "choices", "seed", "trials", "parallel", "cpus", "gpus",
              "keep_last", "address", "enqueue", "warm_start", "<<"]
MAX_EXAMPLES = int(os.environ.get("SEARCH_FUZZ_EXAMPLES", "200"))
SCHEMA = jsonschema.Draft202012Validator(study_schema())

# After "error: PATH: ", the line starts with the field (a dotted path, a quoted key), the line of
# the document, or what the file as a whole is not.
FIELD = re.compile(r"^(line \d+: |malformed YAML|the file is|aliases \(\*\) expand|not UTF-8 text|study: |"
                   rf"({'|'.join(sorted(TOP_KEYS))})[.\[:]|'.*'[.\[:]|\".*\"[.\[:]|[^:\s]+: unknown key)", re.S)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["", "builtin:lm", "builtin:classifier", "minimize", "maximize", "float", "int", "categorical",
                     "ray", "inprocess", "tpe", "bo", "pbt", "asha", "1e-3", "-1", "0", "2001-01-01", "~"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8) | st.sampled_from(KNOWN_KEYS), inner, max_size=4),
                      max_leaves=8)
keys = st.text(min_size=1, max_size=10) | st.sampled_from(KNOWN_KEYS) | st.integers(-2, 2)


def same_type(value):
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        edge = sorted((-2, 2 * value + 2))
        return st.integers(-(2**40), 2**40) | st.integers(*edge) | st.sampled_from([0, 1, 2**31, 2**63])
    if isinstance(value, float):
        edge = sorted((-1.0, 2 * value + 1.0))
        return st.floats(allow_nan=False, allow_infinity=False) | st.floats(*edge) | st.just(0.0)
    if isinstance(value, str):
        return st.text(max_size=12) | st.just(value.upper()) | st.just(value + "x")
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return st.lists(st.sampled_from(value), max_size=len(value) + 2) | st.lists(
            st.integers(-2, 2**40) | st.integers(*sorted((-2, 2 * max(value) + 2))), min_size=1,
            max_size=len(value) + 2)
    if isinstance(value, list):
        return st.lists(st.sampled_from(value), max_size=len(value) + 2) if value else st.just([])
    return st.just(value)


def paths(node, prefix=()):
    """Every path to a value in ``node`` (mapping keys and list indices)."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        out.extend(paths(v, prefix + (k,)))
    return out


def containers(node, prefix=()):
    out = [prefix] if isinstance(node, dict) else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.extend(containers(v, prefix + (k,)))
    return out


def at(doc, path):
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def documents(draw) -> str:
    doc = copy.deepcopy(EXAMPLES[draw(st.sampled_from(sorted(EXAMPLES)))])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "same-type", "same-type", "delete", "unknown-key", "rename"]))
        if op == "unknown-key":
            where = draw(st.sampled_from(containers(doc)))
            at(doc, where)[draw(keys)] = draw(values)
            continue
        every = paths(doc)
        if not every:
            break
        path = draw(st.sampled_from(every))
        parent = at(doc, path[:-1])
        if op == "replace":
            parent[path[-1]] = draw(values)
        elif op == "same-type":  # a value of the right type, at the edges of its range
            parent[path[-1]] = draw(same_type(parent[path[-1]]))
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):  # rename a key, e.g. to a known key of another level
            parent[draw(keys)] = parent.pop(path[-1])
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=draw(st.booleans()))
    # edits a mutated mapping cannot make: a line twice (duplicate keys), YAML syntax spliced in
    edit = draw(st.sampled_from(["none", "none", "none", "duplicate-line", "splice"]))
    lines = text.splitlines(keepends=True)
    if edit == "duplicate-line" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
        text = "".join(lines)
    elif edit == "splice":
        i = draw(st.integers(0, len(text)))
        junk = draw(st.text(max_size=6) | st.sampled_from(["&a ", "*a", "<<: *a\n", "!!binary ", "\t", ": ", "- ",
                                                           "{", "]", "? ", "!!python/object:os.system ", "%YAML 1.1\n",
                                                           "---\n", "\x00", "\ufeff", "\udcff"]))
        text = text[:i] + junk + text[i:]
    return text


def _cli_run(path: str, db: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", path, "--storage", f"sqlite:///{db}", "--quiet"])
    return code, err.getvalue()


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as d:
        # the first load imports the trainers and algorithms: not part of any example's second
        for name in EXAMPLES:
            if name.endswith(".yaml"):
                load_study_file(os.path.join(EXAMPLES_DIR, name))
        parse_study(EXAMPLES["inline"])
        _cli_run(os.path.join(d, "missing.yaml"), os.path.join(d, "warm.db"))
        BASELINE_RSS[0] = _peak_rss()
        yield d


def check_document(text: str, folder: str) -> str:
    """Load ``text`` as a study file; returns "loaded" or "refused" and asserts the contract."""
    path = os.path.join(folder, "study.yaml")
    db = os.path.join(folder, "search.db")
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text)
    # "Within a second" is CPU time of this process (the loader and the CLI run in it): wall time
    # also counts whatever else the machine runs, which a test must not depend on.
    start = time.process_time()
    try:
        config = load_study_file(path)
    except ConfigError as exc:
        assert "\n" not in str(exc), str(exc)
        code, err = _cli_run(path, db)
        line = err.strip()
        assert code == 2 and "\n" not in line and "Traceback" not in line, err
        prefix = f"error: {path}: "
        assert line.startswith(prefix) and FIELD.match(line[len(prefix):]), line
        assert not os.path.exists(db), "a refused study wrote the database"
        outcome = "refused"
    else:
        # what study creation stores, and what resume reads back
        spec = json.dumps(config.raw, allow_nan=False)
        again = parse_study(json.loads(spec))
        assert (again.name, again.space, again.objectives) == (config.name, config.space, config.objectives)
        # `search schema` accepts whatever the loader accepts (editors must not flag a valid study)
        SCHEMA.validate(yaml.safe_load(text))
        outcome = "loaded"
    assert time.process_time() - start < 1.0
    # bounded memory: no example may grow the process's peak by more than MAX_GROWTH over warm-up
    assert _peak_rss() - BASELINE_RSS[0] < MAX_GROWTH, f"peak RSS grew {(_peak_rss() - BASELINE_RSS[0]) >> 20} MB"
    return outcome


MAX_GROWTH = 512 << 20
BASELINE_RSS = [0]


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def test_examples_load(folder):
    for name, doc in EXAMPLES.items():
        assert check_document(yaml.safe_dump(doc, sort_keys=False), folder) == "loaded", name


@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          derandomize="SEARCH_FUZZ_EXAMPLES" not in os.environ,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=documents())
def test_generated_study_files_load_or_fail_in_one_line(folder, text):
    check_document(text, folder)
