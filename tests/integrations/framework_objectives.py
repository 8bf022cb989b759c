"""Objectives for the integration tests: a Lightning MLP and a Hugging Face 2-layer GPT-2, both tiny,
trained with their framework's own Trainer and the service's SearchCallback. Plain functions,
importable by in-process trial threads and by the subprocesses the kill tests start.

``config["log"]`` (optional) gets one JSON line per attempt: the trial, its attempt, the global step
it started training from and the lr its optimizer used after any restore, which the tests compare
with the trial's stored checkpoints and exploits."""
from __future__ import annotations

import json
import os
import time

# At import, not in the objective: Transformers resolves its names lazily, and two trial threads
# resolving them at once can fail ("cannot import name 'GPT2Config'"); a module import is serialized.
import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

import search
from search.integrations.lightning import SearchCallback as LightningCallback
from search.integrations.transformers import SearchCallback as HFCallback


def _log(config, **record) -> None:
    if config.get("log"):
        with open(config["log"], "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


# -- Lightning: an MLP on scikit-learn's digits ------------------------------------------------------

def _digits_loaders(seed: int, batch_size: int = 64):
    import numpy as np
    from sklearn.datasets import load_digits
    from torch.utils.data import DataLoader, TensorDataset

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x = torch.tensor(x[order] / 16.0, dtype=torch.float32)
    y = torch.tensor(y[order], dtype=torch.long)
    train, val = TensorDataset(x[:1400], y[:1400]), TensorDataset(x[1400:], y[1400:])
    g = torch.Generator().manual_seed(seed)
    return (DataLoader(train, batch_size=batch_size, shuffle=True, generator=g),
            DataLoader(val, batch_size=256))


def lightning_digits(config):
    """``steps`` optimizer steps of an MLP on digits, validating every ``every`` steps; ``sleep``
    seconds per step (so a test can kill it mid-training)."""
    torch.set_num_threads(1)
    torch.manual_seed(search.get_trial().seed)

    class Digits(pl.LightningModule):
        def __init__(self, lr: float, hidden: int):
            super().__init__()
            self.lr = lr
            self.net = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))

        def training_step(self, batch, _):
            time.sleep(float(config.get("sleep", 0.0)))
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            logits = self.net(x)
            self.log("val_loss", F.cross_entropy(logits, y))
            self.log("val_accuracy", (logits.argmax(-1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)

        def on_train_start(self):
            info = search.get_trial()
            _log(config, number=info.number, attempt=info.attempt, start=int(self.trainer.global_step),
                 lr=self.trainer.optimizers[0].param_groups[0]["lr"])

    train, val = _digits_loaders(search.get_trial().seed)
    trainer = pl.Trainer(max_steps=int(config["steps"]), val_check_interval=int(config["every"]),
                         check_val_every_n_epoch=None, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, callbacks=[LightningCallback(monitor="val_loss")])
    trainer.fit(Digits(config["lr"], int(config.get("hidden", 32))), train, val)


# -- Hugging Face: a 2-layer GPT-2 on the standard library's sources ---------------------------------

def _byte_blocks(n: int, context: int, offset: int = 0):
    text = open(os.path.join(os.path.dirname(json.__file__), "decoder.py"), "rb").read()
    data = torch.tensor(list(text[offset: offset + n * context]), dtype=torch.long).view(n, context)
    return [{"input_ids": row, "labels": row} for row in data]


def hf_gpt2(config):
    """A 2-layer GPT-2 (built from a config: nothing downloaded) on bytes of ``json/decoder.py``:
    ``steps`` updates, evaluated every ``every`` steps; ``sleep`` seconds per step."""
    torch.set_num_threads(1)
    info = search.get_trial()
    torch.manual_seed(info.seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                               bos_token_id=0, eos_token_id=0))

    class Slow(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            time.sleep(float(config.get("sleep", 0.0)))

        def on_train_begin(self, args, state, control, optimizer=None, **kw):
            _log(config, number=info.number, attempt=info.attempt, start=int(state.global_step),
                 lr=optimizer.param_groups[0]["lr"])

    args = TrainingArguments(
        output_dir=os.path.join(config["workdir"], f"trial-{info.number}"), max_steps=int(config["steps"]),
        per_device_train_batch_size=8, per_device_eval_batch_size=16, learning_rate=float(config["lr"]),
        eval_strategy="steps", eval_steps=int(config["every"]), save_strategy="no", logging_strategy="no",
        report_to=[], use_cpu=True, seed=info.seed, dataloader_num_workers=0, disable_tqdm=True)
    callback = HFCallback()
    trainer = Trainer(model=model, args=args, train_dataset=_byte_blocks(96, 32), eval_dataset=_byte_blocks(16, 32, 96 * 32),
                      callbacks=[callback, Slow()])
    trainer.train(resume_from_checkpoint=callback.resume_from_checkpoint())
