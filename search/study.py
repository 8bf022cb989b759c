"""Run and resume studies: the one entry point behind both the CLI and the Python API."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
from typing import Any, Callable, Mapping, Sequence

from search.config import StudyConfig, load_study_file, parse_study
from search.controller import Controller, Progress, RunSummary
from storage.records import TrialState
from trials.runner import CALLABLE_PREFIX

__all__ = ["run", "resume", "load_config", "drive"]


def load_config(study: StudyConfig | Mapping[str, Any] | str) -> StudyConfig:
    """A study given as a validated config, plain data (the YAML's content) or a YAML path."""
    if isinstance(study, StudyConfig):
        return study
    if isinstance(study, (str, os.PathLike)):
        return load_study_file(os.fspath(study))
    return parse_study(study)


def _start_backend(config: StudyConfig, backend: str | None):
    from search.backends import make_backend

    backend_obj = make_backend(backend or config.backend, address=config.address)
    backend_obj.start(parallel=config.parallel, cpus=config.cpus, gpus=config.gpus, workers=config.workers)
    return backend_obj


def make_study_algorithm(config: StudyConfig, storage):
    """The study's algorithm, warm-started from the trials of the studies ``warm_start`` names."""
    from search.algorithms import make_algorithm
    from search.config import ConfigError
    from storage import StudyNotFound

    algorithm = make_algorithm(config.algorithm, config.space, config.metrics, config.directions,
                               seed=config.seed, **config.algorithm_options)
    if config.warm_start:
        records = []
        for name in config.warm_start:
            try:
                other = storage.get_study(name)
            except StudyNotFound:
                raise ConfigError(f"warm_start: no study {name!r} in this storage; name a study of the same "
                                  "storage (`search import-optuna` copies one from Optuna)") from None
            records += [t for t in storage.get_trials(other.id) if t.state in (TrialState.COMPLETE, TrialState.FAILED)]
        try:
            algorithm.warm_start(records)
        except ValueError as exc:
            raise ConfigError(f"warm_start: {exc}") from None
    return algorithm


def enqueue_configured(config: StudyConfig, storage, record) -> None:
    """The study file's ``enqueue:`` configurations, queued when the study is created."""
    for params in config.enqueue:
        storage.create_trial(record.id, dict(params), state=TrialState.WAITING)


def _warn_settings(config: StudyConfig) -> None:
    """Settings that run but cannot do what they are for: said before the run, not discovered after."""
    if config.algorithm == "pbt":
        population = int(config.algorithm_options.get("population", config.trials))
        if config.parallel < population:
            logging.getLogger("search").warning(
                "PBT: budget.parallel=%d < population=%d: members train in turns, so a member may find no "
                "other member training to copy and the study can end with no exploit; set budget.parallel "
                "to the population", config.parallel, population)


def _drive(config: StudyConfig, storage, record, backend_obj,
           on_progress: Callable[[Progress], None] | None, deadline: float | None = None,
           callbacks: Sequence[Callable] = ()) -> RunSummary:
    _warn_settings(config)
    try:
        algorithm = make_study_algorithm(config, storage)
    except BaseException:
        backend_obj.shutdown()
        raise
    from search.tracking import study_callbacks

    controller = Controller(config, storage, backend_obj, algorithm, record, on_progress=on_progress,
                            deadline=deadline, callbacks=[*study_callbacks(config), *callbacks])
    with _sigterm_interrupts():
        return controller.run()


def drive(config: StudyConfig, storage, record, backend: str | None = None,
          on_progress: Callable[[Progress], None] | None = None, *, deadline: float | None = None,
          callbacks: Sequence[Callable] = ()) -> RunSummary:
    """Run the stored study ``record`` with ``config`` (the stored one, or with a callable
    objective and overrides) on a backend started for it: what ``search resume`` and
    ``Study.optimize`` do."""
    return _drive(config, storage, record, _start_backend(config, backend), on_progress, deadline, callbacks)


@contextlib.contextmanager
def _sigterm_interrupts():
    """While a study runs, SIGTERM (a job scheduler, `kill`) stops it as Ctrl-C does: running
    trials are requeued and the study can be resumed. Installed after the backend started, since
    Ray's driver installs a SIGTERM handler of its own that exits at once; the previous handler is
    put back after the run. Only the main thread can handle signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(study: StudyConfig | Mapping[str, Any] | str, *, storage: str | None = None,
        backend: str | None = None, on_progress: Callable[[Progress], None] | None = None) -> RunSummary:
    """Create the study in ``storage`` (default: ``$SEARCH_STORAGE`` or ``sqlite:///search.db``)
    and run it to the end of its budget. ``backend`` overrides the study's (``ray``/``inprocess``)."""
    from storage import open_storage

    objective = None
    if isinstance(study, Mapping) and callable((study.get("trial") or {}).get("entrypoint")):
        from search.api import _prepare

        objective, study = study["trial"]["entrypoint"], _prepare(study)
    config = load_config(study)
    raw = dict(config.raw)
    from trials.artifacts import is_url

    raw["artifacts"] = config.artifacts if is_url(config.artifacts) else os.path.abspath(config.artifacts)
    config = parse_study(raw)
    if objective is not None:
        config = dataclasses.replace(config, entrypoint=objective)
    from search.config import check_artifacts

    check_artifacts(config.artifacts)  # a location that cannot be written fails before anything exists
    from storage import StudyNotFound

    st = open_storage(storage)
    try:
        try:
            st.get_study(config.name)
        except StudyNotFound:
            pass
        else:
            from storage import StudyExists

            raise StudyExists(f"study {config.name!r} already exists; run `search resume {config.name}` "
                              "or change name:")
        # The backend starts (and checks its resources) before anything is written.
        try:
            backend_obj = _start_backend(config, backend)
        except BaseException:
            st.discard_if_unused()  # a refused run leaves no new, empty database file behind
            raise
        try:
            record = st.create_study(config.name, metrics=config.metrics, directions=config.directions, spec=raw)
            enqueue_configured(config, st, record)
        except BaseException:
            backend_obj.shutdown()
            raise
        return _drive(config, st, record, backend_obj, on_progress)
    finally:
        st.close()


def resume(name: str, *, storage: str | None = None, backend: str | None = None,
           on_progress: Callable[[Progress], None] | None = None) -> RunSummary:
    """Finish a study that was interrupted: completed trials are kept, interrupted ones re-run
    from their last checkpoint, and the budget is the study's."""
    from storage import open_storage

    st = open_storage(storage, create=False)
    try:
        record = st.get_study(name)
        config = parse_study(record.spec)
        if isinstance(config.entrypoint, str) and config.entrypoint.startswith(CALLABLE_PREFIX):
            from search.config import ConfigError

            raise ConfigError(f"trial.entrypoint: study {name!r} runs the Python callable "
                              f"{config.entrypoint[len(CALLABLE_PREFIX):]!r}; resume it from Python: "
                              f"search.load_study({name!r}).optimize(objective)")
        return drive(config, st, record, backend, on_progress)
    finally:
        st.close()
