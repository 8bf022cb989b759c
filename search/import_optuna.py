"""Copy an Optuna study into a new study of ours: its space, objectives and finished trials (params,
values, intermediate values as reports), so an Optuna user can browse what they ran and warm-start
``bo`` from it (``warm_start: [NEW]`` in a study file)."""
from __future__ import annotations

import math
from typing import Any

from search.config import ConfigError, parse_study
from storage.records import StudyRecord, TrialState

__all__ = ["import_optuna"]

# The entrypoint an imported study records: it ran in Optuna, there is nothing here to resume.
IMPORTED = "python:imported-from-optuna"


def _space(study) -> dict[str, dict[str, Any]]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, dict[str, Any]] = {}
    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            if isinstance(dist, FloatDistribution):
                spec: dict[str, Any] = {"type": "float", "low": dist.low, "high": dist.high, "log": dist.log}
                if dist.step is not None:
                    spec["step"] = dist.step
            elif isinstance(dist, IntDistribution):
                spec = {"type": "int", "low": dist.low, "high": dist.high, "log": dist.log}
                if dist.step != 1:
                    spec["step"] = dist.step
            elif isinstance(dist, CategoricalDistribution):
                spec = {"type": "categorical", "choices": list(dist.choices)}
            else:
                raise ConfigError(f"optuna study {study.study_name!r}: parameter {name!r} has a distribution this "
                                  f"service does not model ({type(dist).__name__})")
            if space.setdefault(name, spec) != spec:
                raise ConfigError(f"optuna study {study.study_name!r}: parameter {name!r} has two distributions "
                                  f"({space[name]} and {spec}); import studies with one space")
    return space


def import_optuna(optuna_storage: str, study_name: str, new_name: str, storage: str | None = None) -> StudyRecord:
    """Copy Optuna's ``study_name`` (from ``optuna_storage``, e.g. ``sqlite:///optuna.db``) into
    ``storage`` as ``new_name``. Complete, pruned and failed trials are copied, in their order;
    running and waiting ones are not. Timestamps are the import's."""
    import optuna

    from search._book import TrialBook, TrialWriter
    from storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        src = optuna.load_study(study_name=study_name, storage=optuna_storage)
    except KeyError:
        raise ConfigError(f"--study: no Optuna study {study_name!r} in {optuna_storage}") from None
    directions = [d.name.lower() for d in src.directions]
    names = src.metric_names or (["value"] if len(directions) == 1 else [f"value_{i}" for i in range(len(directions))])
    trials = [t for t in src.get_trials(deepcopy=False)
              if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                             optuna.trial.TrialState.FAIL)]
    spec = {
        "name": new_name,
        "description": f"imported from Optuna study {study_name!r}",
        "objective": [{"metric": m, "direction": d} for m, d in zip(names, directions)],
        "trial": {"entrypoint": IMPORTED},
        "space": _space(src),
        "algorithm": {"name": "random", "seed": 0},
        "budget": {"trials": max(1, len(trials))},
    }
    config = parse_study(spec)
    st = open_storage(storage)
    try:
        record = st.create_study(new_name, metrics=config.metrics, directions=config.directions, spec=dict(config.raw))
        writer = TrialWriter(st, record.id, TrialBook(config.metrics, config.directions), on_finished=lambda r: None)
        for t in trials:
            rec = writer.create(dict(t.params), worker="optuna-import")
            steps = sorted(t.intermediate_values.items())
            writer.add_reports([(rec.id, 0, int(s), {names[0]: float(v)}) for s, v in steps if math.isfinite(v)])
            metrics = {names[0]: float(steps[-1][1])} if steps and math.isfinite(steps[-1][1]) else {}
            if t.state == optuna.trial.TrialState.COMPLETE:
                metrics.update({m: float(v) for m, v in zip(names, t.values)})
                writer.finish(rec, state=TrialState.COMPLETE, values=[float(v) for v in t.values], metrics=metrics,
                              last_step=steps[-1][0] if steps else None)
            elif t.state == optuna.trial.TrialState.PRUNED:
                writer.finish(rec, state=TrialState.PRUNED, metrics=metrics, last_step=steps[-1][0] if steps else None)
            else:
                writer.finish(rec, state=TrialState.FAILED, metrics=metrics, error="failed in Optuna")
        st.set_study_state(record.id, "COMPLETE")
        return st.get_study(new_name)
    finally:
        st.close()


def add_parser(sub, storage_arg) -> None:
    p = sub.add_parser("import-optuna", help="copy an Optuna study's finished trials into a new study")
    p.add_argument("optuna_storage", metavar="STORAGE_URL", help="the Optuna storage, e.g. sqlite:///optuna.db")
    p.add_argument("--study", required=True, help="the Optuna study's name")
    p.add_argument("--as", dest="new_name", required=True, metavar="NEW", help="the new study's name here")
    storage_arg(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    record = import_optuna(args.optuna_storage, args.study, args.new_name, storage=args.storage)
    from storage import open_storage

    with open_storage(args.storage) as st:
        n = len(st.get_trials(record.id))
    print(f"imported {n} trial(s) of Optuna study {args.study!r} as {record.name!r}; "
          f"warm-start bo from it with `warm_start: [{record.name}]`")
    return 0
