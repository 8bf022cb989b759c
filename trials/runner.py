"""Run one trial attempt: resolve the entrypoint, call it, turn the outcome into a ``done`` event."""
from __future__ import annotations

import importlib
import inspect
import math
import socket
import traceback
from typing import Any, Callable

from trials.api import Reporter, TrialEvent, TrialSpec
from trials.context import running

__all__ = ["run_trial", "resolve_entrypoint", "EntrypointError", "CALLABLE_PREFIX"]

BUILTINS = {
    "classifier": "trials.builtin.classifier:train",
    "lm": "trials.builtin.lm:train",
    "tabular": "trials.builtin.tabular:run",
}


class EntrypointError(ValueError):
    pass


# The entrypoint a study records when its objective is a Python callable handed to
# ``study.optimize``: there is nothing to import, the callable comes with each spec.
CALLABLE_PREFIX = "python:"


def resolve_entrypoint(entrypoint: str | Callable[..., Any]) -> Callable[..., Any]:
    """``builtin:NAME``, ``package.module:function`` or a callable itself to a callable; raises
    EntrypointError."""
    if callable(entrypoint):
        return entrypoint
    if not isinstance(entrypoint, str):
        raise EntrypointError(f"entrypoint must be a 'package.module:function' string or a callable, "
                              f"got {type(entrypoint).__name__}")
    if entrypoint.startswith(CALLABLE_PREFIX):
        raise EntrypointError(
            f"this study's objective is the Python callable {entrypoint[len(CALLABLE_PREFIX):]!r}: run it from Python "
            "with search.load_study(NAME).optimize(objective), or give trial.entrypoint as 'package.module:function'")
    if entrypoint.startswith("builtin:"):
        name = entrypoint.split(":", 1)[1]
        if name not in BUILTINS:
            raise EntrypointError(
                f"unknown built-in trainer {name!r}; choose one of {sorted(BUILTINS)}"
            )
        entrypoint = BUILTINS[name]
    module_name, sep, attr = entrypoint.partition(":")
    if not sep or not module_name or not attr:
        raise EntrypointError(
            f"entrypoint must look like 'package.module:function' or 'builtin:NAME', got {entrypoint!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EntrypointError(f"cannot import module {module_name!r} of entrypoint {entrypoint!r}: {exc}") from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise EntrypointError(f"module {module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise EntrypointError(f"entrypoint {entrypoint!r} is not callable")
    return fn


def _wants_reporter(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.name == "reporter" for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _metrics_from_result(result: Any, spec: TrialSpec, reporter: Reporter) -> dict[str, float]:
    metrics = dict(reporter.last_metrics)
    if isinstance(result, bool) or isinstance(result, dict) and any(isinstance(v, bool) for v in result.values()):
        # True is an int to Python: it would count as 1.0
        raise TypeError(f"objective returned a boolean ({result!r}); return a float or a dict of metric floats")
    if result is None:
        pass
    elif isinstance(result, dict):
        metrics.update({str(k): float(v) for k, v in result.items()})
    elif isinstance(result, (int, float)) and not isinstance(result, bool):
        metrics[spec.objective_metrics[0]] = float(result)
    elif hasattr(result, "__float__"):
        metrics[spec.objective_metrics[0]] = float(result)
    else:
        raise TypeError(
            f"objective returned {type(result).__name__}; return a float or a dict of metric floats"
        )
    return metrics


def _one_line(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def run_trial(
    spec: TrialSpec,
    emit: Callable[[TrialEvent], None],
    stop_requested: Callable[[], bool] = lambda: False,
) -> TrialEvent:
    """Run ``spec`` to the end and return its ``done`` event (also emitted). Never raises for a
    failing objective: the error becomes the event's one-line ``error``."""
    node = socket.gethostname()
    reporter = Reporter(spec, emit, stop_requested)
    try:
        fn = resolve_entrypoint(spec.entrypoint)
        config = dict(spec.config)
        with running(reporter):
            result = fn(config, reporter) if _wants_reporter(fn) else fn(config)
        reporter.flush()
        metrics = _metrics_from_result(result, spec, reporter)
        bad = [m for m in spec.objective_metrics if m not in metrics or not math.isfinite(metrics[m])]
        if bad:
            m = bad[0]
            got = "nothing" if m not in metrics else repr(metrics[m])
            raise ValueError(f"objective metric {m!r} must be a finite number, got {got}")
        done = TrialEvent(
            "done", spec.trial_id, spec.attempt, step=reporter.last_step, metrics=metrics,
            stopped=reporter.stop_seen, node=node,
        )
    except BaseException as exc:  # noqa: BLE001 - a trial's failure is data, not a worker crash
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        try:
            # Checkpoints already snapshotted are still worth keeping: a retry resumes from them.
            reporter.flush()
        except Exception:  # noqa: BLE001 - the objective's own error is the one to report
            pass
        done = TrialEvent(
            "done", spec.trial_id, spec.attempt, step=reporter.last_step,
            metrics=dict(reporter.last_metrics), error=_one_line(exc), stopped=reporter.stop_seen, node=node,
        )
    emit(done)
    return done
