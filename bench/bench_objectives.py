"""Objectives for the benchmarks (importable by Ray workers through PYTHONPATH)."""
from __future__ import annotations


def noop(config):
    return 0.0
