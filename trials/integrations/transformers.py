"""``SearchCallback`` for a Hugging Face ``Trainer``: a Transformers training script as a trial.

User code imports it as ``search.integrations.transformers.SearchCallback`` (a lazy re-export of
this module), passes it in the ``Trainer``'s ``callbacks`` and resumes with
``trainer.train(resume_from_checkpoint=callback.resume_from_checkpoint())``; a whole objective is in
``examples/hf_gpt2.py``.

Each evaluation during training asks the Trainer to save a checkpoint (every ``checkpoint_every``
evaluations, and whenever the trial is asked to stop); the callback stores each checkpoint folder
the Trainer writes, as one dict of its files, through the trial's ``save_checkpoint``, then reports
the evaluation's scalar metrics (``eval_loss``...) at ``state.global_step``; when the answer is stop
it sets ``control.should_training_stop``. ``resume_from_checkpoint()`` writes the checkpoint the
trial continues from (a retry's, a thaw's, a PBT parent's) back as ``OUTPUT_DIR/checkpoint-STEP``
and returns that path (None on a fresh start): the Trainer restores model, optimizer, scheduler,
RNG and data position from it and counts steps on from there. A trial that has a checkpoint but
trains from step 0 (``resume_from_checkpoint`` not passed) fails at once instead of silently
starting over. After an exploit, the learning rate and weight decay are this trial's arguments
(the schedule keeps its position), the optimizer's moments the parent's.
"""
from __future__ import annotations

import os
import shutil
from typing import Any

try:
    import transformers
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError("search.integrations.transformers needs Transformers: "
                      "pip install 'search-service[transformers]'") from exc

from trials.integrations._common import SEARCH_KEY, TrialHandle, apply_hyperparams, resolve, scalar_metrics, written_by

__all__ = ["SearchCallback"]

_FILES = "files"  # the checkpoint dict: {"files": {relative path: bytes}, "search": {...}}


def pack(folder: str) -> dict[str, bytes]:
    """Every file under ``folder``, by its path relative to it (``/``-separated)."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder).replace(os.sep, "/")] = f.read()
    return files


def unpack(files: dict[str, bytes], folder: str) -> None:
    """Write ``files`` (from ``pack``) as ``folder``, replacing what was there."""
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    for rel, data in files.items():
        path = os.path.join(folder, *rel.split("/"))
        if os.path.isabs(rel) or ".." in rel.split("/"):
            raise ValueError(f"checkpoint file name {rel!r} leaves its folder")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


class SearchCallback(transformers.TrainerCallback):
    """Report each evaluation, checkpoint through the artifact store, resume, stop when told.

    ``checkpoint_every``: ask for a checkpoint every this many evaluations (1: each, which PBT's
    exploits and freeze-thaw's thaws need to continue from the step they decided at; 0: only when
    asked to stop). Checkpoints the Trainer saves on its own (``save_strategy``) are stored too.
    ``trial``: an ask/tell trial (``study.ask()``); by default the trial the service runs here.
    """

    def __init__(self, checkpoint_every: int = 1, trial: Any | None = None) -> None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be an int >= 0, got {checkpoint_every!r}")
        self.checkpoint_every = checkpoint_every
        self.trial = trial
        self._output_dir: str | None = None
        self._handle: TrialHandle | None = None
        self._restored: tuple[int, int | None] | None = None  # (step, writer) given to the Trainer
        self._training = False
        self._evaluations = 0
        self._pending: tuple[int, dict[str, float]] | None = None  # a report that waits for its checkpoint
        self._stop_seen = False

    def _trial(self) -> TrialHandle:
        if self._handle is None:
            self._handle = resolve(self.trial)
        return self._handle

    def on_init_end(self, args, state, control, **kwargs):
        self._output_dir = args.output_dir

    # -- resume ------------------------------------------------------------------------------------

    def resume_from_checkpoint(self) -> str | None:
        """The checkpoint folder to pass as ``trainer.train(resume_from_checkpoint=...)``: the
        trial's checkpoint written back under the Trainer's ``output_dir``; None on a fresh start.
        Call it after building the Trainer with this callback."""
        if self._output_dir is None:
            raise RuntimeError("SearchCallback.resume_from_checkpoint(): build the Trainer with "
                               "callbacks=[this callback] first; the checkpoint goes to its output_dir")
        self._handle = None  # the trial running now, even if this callback served another before
        checkpoint = self._trial().load_checkpoint()
        if checkpoint is None:
            self._restored = None
            return None
        if _FILES not in checkpoint:
            raise ValueError(f"the checkpoint this trial resumes from has no {_FILES!r}: it was not stored by "
                             "search.integrations.transformers.SearchCallback")
        step = int(checkpoint[SEARCH_KEY]["step"])
        folder = os.path.join(self._output_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}")
        unpack(checkpoint[_FILES], folder)
        self._restored = (step, written_by(checkpoint))
        return folder

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        if self._restored is None:
            self._handle = None
            if state.global_step == 0 and self._trial().load_checkpoint() is not None:
                raise RuntimeError("this trial has a checkpoint to continue from (a retry, a thaw or a PBT exploit) "
                                   "but the Trainer starts at step 0: train with "
                                   "trainer.train(resume_from_checkpoint=callback.resume_from_checkpoint())")
        else:
            step, writer = self._restored
            if state.global_step != step:
                raise RuntimeError(f"the Trainer starts at step {state.global_step}, not at step {step} of the "
                                   "checkpoint this trial resumes from: pass resume_from_checkpoint="
                                   "callback.resume_from_checkpoint() to trainer.train")
            if writer is not None and writer != self._trial().number and optimizer is not None:
                configured = [{"lr": args.learning_rate, **({"weight_decay": args.weight_decay}
                                                          if g.get("weight_decay") else {})}
                              for g in optimizer.param_groups]
                apply_hyperparams(optimizer, configured, [lr_scheduler] if lr_scheduler is not None else [])
        self._training = True
        self._evaluations = 0
        self._pending = None
        self._stop_seen = False

    # -- evaluate: checkpoint, then report ---------------------------------------------------------

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self._training:
            return  # trainer.evaluate() outside training: the caller has the metrics
        step = int(state.global_step)
        values = scalar_metrics(metrics or {})
        self._evaluations += 1
        if (self.checkpoint_every and self._evaluations % self.checkpoint_every == 0
                and args.save_strategy != "best"):  # "best" decides should_save after this hook
            control.should_save = True
            self._pending = (step, values)
        else:
            self._report(step, values, control)

    def on_save(self, args, state, control, **kwargs):
        step = int(state.global_step)
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}")
        if args.should_save and os.path.isdir(folder):
            trial = self._trial()
            trial.save_checkpoint({_FILES: pack(folder), SEARCH_KEY: {"number": trial.number, "step": step}}, step)
        self._flush(control, saved=True)

    def on_step_begin(self, args, state, control, **kwargs):
        self._flush(control)

    def on_train_end(self, args, state, control, **kwargs):
        self._flush(control)
        self._training = False

    def _flush(self, control, saved: bool = False) -> None:
        if self._pending is not None:
            step, values = self._pending
            self._pending = None
            self._report(step, values, control, saved)

    def _report(self, step: int, values: dict[str, float], control, saved: bool = False) -> None:
        if self._trial().report(step, **values):
            control.should_training_stop = True
            if not saved and not self._stop_seen:  # a pause resumes where it paused: checkpoint this step
                control.should_save = True
            self._stop_seen = True
