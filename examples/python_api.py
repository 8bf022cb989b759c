"""The Python API: your own training loop as the objective, a closure over data loaded once.

    python examples/python_api.py        # run it again: the study continues where it stopped

A scikit-learn SGD classifier on digits, one epoch per report: ``search.report`` records the curve
and answers True once the median-stopping rule says this trial is behind (return then). The
objective is a closure: on Ray it travels to the workers with the data it captured.
SEARCH_EXAMPLE_SMALL=1 shrinks it to a few trials (the examples' test runs it so).
"""
from __future__ import annotations

import os

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

import search

SMALL = os.environ.get("SEARCH_EXAMPLE_SMALL") == "1"


def main() -> None:
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)
    epochs = 4 if SMALL else 20

    def objective(config):
        model = SGDClassifier(loss="log_loss", alpha=config["alpha"], learning_rate="constant",
                              eta0=config["eta0"], random_state=search.get_trial().seed)
        for epoch in range(1, epochs + 1):
            model.partial_fit(x_train, y_train, classes=np.arange(10))
            accuracy = model.score(x_val, y_val)
            if search.report(epoch, val_accuracy=accuracy):
                break
        return {"val_accuracy": accuracy}

    study = search.create_study({
        "name": "python-api",
        "objective": {"metric": "val_accuracy", "direction": "maximize"},
        "space": {"alpha": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True},
                  "eta0": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}},
        "algorithm": {"name": "tpe", "seed": 0},
        "scheduler": {"name": "median", "grace_period": 2},
        "budget": {"trials": 4 if SMALL else 40, "parallel": 2},
    }, load_if_exists=True)
    study.optimize(objective)
    best = study.best_trial
    print(f"best: trial {best.number}, val_accuracy {best.values[0]:.3f}, params {dict(best.params)}")
    frame = study.trials_dataframe()
    print(frame[["number", "state", "value", "params_alpha", "params_eta0", "last_step"]].to_string(index=False))


if __name__ == "__main__":
    main()
