"""Ask and tell: a loop the service does not run, here two threads training side by side.

    python examples/ask_tell.py

Each worker asks for a trial, trains a scikit-learn SGD classifier on digits an epoch at a time,
reports each epoch (ASHA answers True when the trial should stop: then stop) and tells the result.
The study's algorithm (TPE) proposes from everything told so far; several trials may be asked
before any is told, from threads or processes sharing the storage. Run it again and it goes on
asking from the same study. SEARCH_EXAMPLE_SMALL=1 shrinks it (the examples' test runs it so).
"""
from __future__ import annotations

import os
import threading

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

import search

SMALL = os.environ.get("SEARCH_EXAMPLE_SMALL") == "1"
TRIALS_PER_WORKER = 3 if SMALL else 20
EPOCHS = 9 if SMALL else 27


def main() -> None:
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)
    study = search.create_study({
        "name": "ask-tell",
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "space": {"alpha": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True},
                  "eta0": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}},
        "algorithm": {"name": "tpe", "seed": 0},
        "scheduler": {"name": "asha", "min_resource": 1, "reduction_factor": 3, "max_resource": EPOCHS},
    }, load_if_exists=True)

    def worker() -> None:
        for _ in range(TRIALS_PER_WORKER):
            trial = study.ask()
            model = SGDClassifier(loss="log_loss", alpha=trial.params["alpha"], learning_rate="constant",
                                  eta0=trial.params["eta0"], random_state=trial.number)
            try:
                for epoch in range(1, EPOCHS + 1):
                    model.partial_fit(x_train, y_train, classes=np.arange(10))
                    proba = np.clip(model.predict_proba(x_val), 1e-12, 1.0)
                    loss = float(-np.log(proba[np.arange(len(y_val)), y_val]).mean())
                    if trial.report(epoch, val_loss=loss):
                        break  # ASHA stopped it: told, it ends PRUNED at this epoch
            except Exception:
                study.tell(trial, state="failed")
                raise
            study.tell(trial, loss)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    states = [t.state for t in study.trials]
    print(f"{len(states)} trials: {states.count('COMPLETE')} complete, {states.count('PRUNED')} stopped by ASHA")
    best = study.best_trial
    print(f"best: trial {best.number}, val_loss {best.values[0]:.4f}, params {dict(best.params)}")


if __name__ == "__main__":
    main()
