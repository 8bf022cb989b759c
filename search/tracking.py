"""Experiment tracking: each finished trial logged as an MLflow run of the study's experiment.

As Optuna's ``MLflowCallback`` and Ray Tune's ``MLflowLoggerCallback`` do: one run per trial, named
``trial-NNNNN``, with the trial's params, every reported step of every metric, its final metrics,
and tags for the study, number, state, attempts and error. A study file turns it on with
``tracking: {mlflow: URI}``; from Python, ``study.optimize(objective, callbacks=[MLflowCallback(URI)])``.
Logging happens in the controller's process when a trial ends; a tracking server that fails is
logged as a warning and never stops the study.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Sequence

from storage.records import ReportRecord, TrialRecord

if TYPE_CHECKING:
    from storage import Storage

__all__ = ["MLflowCallback"]

log = logging.getLogger("search.tracking")
_BATCH = 1000  # MLflow's limit of metrics per log_batch call


class MLflowCallback:
    """An ``optimize`` callback, called as ``callback(study, trial)`` when a trial finishes (as
    Optuna's callbacks are): logs the trial as one MLflow run. ``study`` needs ``name`` and
    ``reports(trial)``, as ``search.Study`` has. ``experiment`` defaults to the study's name."""

    def __init__(self, tracking_uri: str, experiment: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment

    def __call__(self, study, trial: TrialRecord) -> None:
        try:
            self._log(study.name, trial, study.reports(trial))
        except Exception as exc:  # noqa: BLE001 - tracking must never stop the study
            log.warning("MLflow tracking of trial %d failed: %s", trial.number, exc)

    def _log(self, study: str, trial: TrialRecord, reports: Sequence[ReportRecord]) -> None:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri)
        name = self.experiment or study
        exp = client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
        run = client.create_run(exp_id, run_name=f"trial-{trial.number:05d}", tags={
            "search.study": study, "search.number": str(trial.number), "search.state": trial.state.value,
            "search.attempts": str(trial.attempt + 1)})
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(r.step)) for r in reports for k, v in r.metrics.items() if v is not None]
        final = [Metric(k, float(v), now, int(trial.last_step or 0)) for k, v in trial.metrics.items()
                 if v is not None and not any(r.metrics.get(k) is not None and r.step == trial.last_step for r in reports)]
        params = [Param(k, str(v)[:6000]) for k, v in trial.params.items()]
        tags = [RunTag("search.error", trial.error[:5000])] if trial.error else []
        everything = metrics + final
        for i in range(0, max(len(everything), 1), _BATCH):
            client.log_batch(run.info.run_id, metrics=everything[i:i + _BATCH], params=params if i == 0 else [],
                             tags=tags if i == 0 else [])
        status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(trial.state.value, "FAILED")
        client.set_terminated(run.info.run_id, status=status)


class StudyReader:
    """What a callback reads of a study while it runs: its name and a trial's reports."""

    def __init__(self, name: str, storage: Storage) -> None:
        self.name = name
        self._storage = storage

    def reports(self, trial: TrialRecord) -> list[ReportRecord]:
        return self._storage.get_reports(trial.id)


def study_callbacks(config) -> list:
    """The callbacks the study file's ``tracking:`` asks for."""
    uri = (config.tracking or {}).get("mlflow")
    return [MLflowCallback(uri)] if uri else []
