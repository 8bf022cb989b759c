"""A Lightning training script as the objective, tuned by Population Based Training.

    pip install 'search-service[lightning]'
    python examples/lightning_pbt.py
    search lineage lightning-pbt            # who exploited whom, and each member's lr schedule

The script is an ordinary ``LightningModule`` and ``Trainer``; ``SearchCallback`` connects it: at
each validation it stores a Lightning checkpoint through the study's artifact store and reports
``val_loss``. Four members train at once (PBT exploits only members still training); a member in
the bottom quarter restarts from a top member's checkpoint (weights, optimizer, loop position) with
a perturbed learning rate, which the callback puts into the restored optimizer. A member whose
worker dies resumes the same way, from its own newest checkpoint.
SEARCH_EXAMPLE_SMALL=1 shortens training (the examples' test runs it so).
"""
from __future__ import annotations

import logging
import os

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

import search
from search.integrations.lightning import SearchCallback

SMALL = os.environ.get("SEARCH_EXAMPLE_SMALL") == "1"
STEPS, EVERY = (60, 10) if SMALL else (600, 25)


class DigitsMLP(pl.LightningModule):
    def __init__(self, lr: float, hidden: int = 64) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_accuracy", (logits.argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


def loaders(seed: int):
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # one split for all
    train, val = order[:1400], order[1400:]
    shuffle = torch.Generator().manual_seed(seed)
    return (DataLoader(TensorDataset(x[train], y[train]), batch_size=32, shuffle=True, generator=shuffle),
            DataLoader(TensorDataset(x[val], y[val]), batch_size=512))


def objective(config):
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banner per trial
    torch.set_num_threads(1)
    seed = search.get_trial().seed
    torch.manual_seed(seed)
    trainer = pl.Trainer(max_steps=STEPS, val_check_interval=EVERY, check_val_every_n_epoch=None,
                         num_sanity_val_steps=0, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[SearchCallback(monitor="val_loss")])
    trainer.fit(DigitsMLP(lr=config["lr"]), *loaders(seed))
    # Nothing to return: the last report's metrics are the trial's.


def main() -> None:
    study = search.create_study({
        "name": "lightning-pbt",
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 0.5, "log": True}},
        "algorithm": {"name": "pbt", "seed": 0, "interval": 2 * EVERY, "quantile": 0.25},
        "budget": {"trials": 4, "parallel": 4},  # the population, all training at once
        "resources": {"cpus": 0.5},
    }, load_if_exists=True)
    study.optimize(objective)
    best = study.best_trial
    print(f"best member: {best.number}, val_loss {best.values[0]:.4f}")
    for e in study.lineage():
        print(f"step {e.step}: member {e.number} <- member {e.parent_number} (step {e.parent_step}), "
              f"lr {e.params_before['lr']:.4g} -> {e.params_after['lr']:.4g}")


if __name__ == "__main__":
    main()
