"""``SearchCallback`` for a Lightning ``Trainer``: a Lightning training script as a trial.

User code imports it as ``search.integrations.lightning.SearchCallback`` (a lazy re-export of this
module) and passes ``SearchCallback(monitor="val_loss")`` in the ``Trainer``'s ``callbacks``; a whole
objective is in ``examples/lightning_pbt.py``.

At the end of each validation (not the sanity check) the callback stores a Lightning checkpoint,
the dict ``Trainer.save_checkpoint`` writes, through the trial's ``save_checkpoint`` (every
``checkpoint_every`` validations, and whenever the trial is asked to stop, so a pause resumes
where it paused), then reports every scalar in ``trainer.callback_metrics`` at
``trainer.global_step``; when the answer is stop, it sets ``trainer.should_stop``. When the trial
has a checkpoint to continue from (a retry, a thaw, a PBT exploit), ``fit`` restores the model,
optimizers, schedulers, loops and callbacks from it, as ``fit(ckpt_path=...)`` would: steps go on
from the checkpoint's. After an exploit, the optimizer's hyperparameters are this trial's (see
``_common.apply_hyperparams``), its moments the parent's.

The checkpoint goes through the trainer's checkpoint connector (the object behind
``Trainer.save_checkpoint`` and ``fit(ckpt_path=)``): its dict is handed to the artifact store's
asynchronous, durable writer and restored without a file of Lightning's own. One process, one
device: the trial's context lives in the process the service started, so multi-process strategies
(DDP) are refused.
"""
from __future__ import annotations

from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError("search.integrations.lightning needs Lightning: pip install 'search-service[lightning]'") from exc

from trials.integrations._common import (SEARCH_KEY, TrialHandle, apply_hyperparams, group_hyperparams, resolve,
                                         scalar_metrics, written_by)

__all__ = ["SearchCallback"]


class SearchCallback(pl.Callback):
    """Report at each validation end, checkpoint through the artifact store, resume, stop when told.

    ``monitor``: the metric the study optimises, which the module must log in validation (a clear
    error names what it logged instead). ``checkpoint_every``: store a checkpoint every this many
    validations (1: each, which PBT's exploits and freeze-thaw's thaws need to continue from the step
    they decided at; 0: only when asked to stop). ``trial``: an ask/tell trial (``study.ask()``);
    by default the trial the service runs in this thread.
    """

    def __init__(self, monitor: str = "val_loss", checkpoint_every: int = 1, trial: Any | None = None) -> None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be an int >= 0, got {checkpoint_every!r}")
        self.monitor = monitor
        self.checkpoint_every = checkpoint_every
        self.trial = trial
        self._handle: TrialHandle | None = None
        self._validations = 0
        self._saved_step: int | None = None
        self._exploited = False
        self._configured: list[list[dict[str, Any]]] = []

    # -- resume: before the trainer restores from a checkpoint --------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if trainer.world_size > 1:
            raise ValueError(f"SearchCallback runs in the trial's own process, got a Trainer of {trainer.world_size} "
                             "processes; train on one device (devices=1), or report from rank 0 yourself")
        self._handle = resolve(self.trial)
        self._validations = 0
        self._saved_step = None
        checkpoint = self._handle.load_checkpoint()
        parent = written_by(checkpoint)
        self._exploited = parent is not None and parent != self._handle.number
        if checkpoint is not None:
            # What fit(ckpt_path=) loads, handed over directly: the trainer restores the model and
            # callbacks next, then (after configuring optimizers) their states and the loops.
            trainer._checkpoint_connector._loaded_checkpoint = checkpoint

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Optimizers exist now, as this trial's config built them; their restored state comes next.
        self._configured = [group_hyperparams(opt) for opt in trainer.optimizers] if self._exploited else []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._exploited:
            schedulers = [c.scheduler for c in trainer.lr_scheduler_configs]
            for opt, configured in zip(trainer.optimizers, self._configured):
                apply_hyperparams(opt, configured, schedulers)

    # -- each validation: checkpoint, then report -----------------------------------------------

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if self._handle is None:
            raise RuntimeError("SearchCallback was not set up by Trainer.fit; pass it in Trainer(callbacks=[...]) "
                               "and train with trainer.fit")
        step = int(trainer.global_step)
        metrics = scalar_metrics(trainer.callback_metrics)
        if self.monitor not in metrics:
            raise ValueError(f"SearchCallback(monitor={self.monitor!r}): the module logged no {self.monitor!r} by the "
                           f"end of validation (logged: {sorted(metrics)}); call self.log({self.monitor!r}, ...) "
                           "in validation_step, or name the metric it logs")
        self._validations += 1
        if self.checkpoint_every and self._validations % self.checkpoint_every == 0:
            self._save(trainer, step)
        if self._handle.report(step, **metrics):
            self._save(trainer, step)
            trainer.should_stop = True

    def _save(self, trainer: pl.Trainer, step: int) -> None:
        if self._saved_step == step:
            return
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        checkpoint[SEARCH_KEY] = {"number": self._handle.number, "step": step}
        self._handle.save_checkpoint(checkpoint, step)
        self._saved_step = step
