"""``builtin:tabular``: a trial that looks its architecture up in a table instead of training it.

Tabular benchmarks (NAS-Bench-201 and the like) record every architecture's trained metrics, so a
search strategy can be measured in seconds. Params:

- ``table``: path of a CSV file with a header row;
- ``key_column``: the column holding architecture keys; the trial's key is the config entry of
  the same name (``key_param`` names another entry). A key that is not a string (a list of layer
  dicts) is matched by its canonical JSON;
- ``metric_column``: the column (or list of columns) to return; the trial's metrics are those
  columns under their own names.

Tables are read once per process and cached by path, size and modification time.
"""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Any

__all__ = ["run", "load_table"]

_CACHE: dict[tuple[str, int, int, str], tuple[list[str], dict[str, dict[str, str]]]] = {}


def load_table(path: str, key_column: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(header, rows by key) of a CSV file, cached per process."""
    path = os.path.abspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"param 'table': no such file {path!r}") from None
    cache_key = (path, st.st_size, st.st_mtime_ns, key_column)
    if cache_key not in _CACHE:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            if key_column not in header:
                raise ValueError(f"param 'key_column' {key_column!r} is not a column of {path}; "
                                 f"its columns are {header}")
            rows: dict[str, dict[str, str]] = {}
            for row in reader:
                rows[row[key_column]] = row
        _CACHE[cache_key] = (header, rows)
    return _CACHE[cache_key]


def run(config: dict[str, Any]) -> dict[str, float]:
    for key in ("table", "key_column", "metric_column"):
        if key not in config:
            raise ValueError(f"builtin:tabular needs param {key!r} (table, key_column and metric_column); "
                             f"got params {sorted(config)}")
    table, key_column = config["table"], config["key_column"]
    columns = config["metric_column"]
    columns = [columns] if isinstance(columns, str) else list(columns)
    key_param = config.get("key_param", key_column)
    if key_param not in config:
        raise ValueError(f"builtin:tabular looks up config entry {key_param!r} in column {key_column!r}, but the "
                         f"trial has no {key_param!r}; name the space parameter {key_param!r} or set key_param")
    key = config[key_param]
    if not isinstance(key, str):
        key = json.dumps(key, sort_keys=True, separators=(",", ":"))
    header, rows = load_table(table, key_column)
    for col in columns:
        if col not in header:
            raise ValueError(f"param 'metric_column' {col!r} is not a column of {table}; its columns are {header}")
    row = rows.get(key)
    if row is None:
        raise ValueError(f"architecture {key!r} is not in column {key_column!r} of {table} ({len(rows)} rows); "
                       "check that the space matches the table")
    out: dict[str, float] = {}
    for col in columns:
        try:
            out[col] = float(row[col])
        except ValueError:
            raise ValueError(f"column {col!r} of {table} holds {row[col]!r} for {key!r}, not a number") from None
        if not math.isfinite(out[col]):
            raise ValueError(f"column {col!r} of {table} holds {row[col]!r} for {key!r}, not a finite number")
    return out
