"""search.encoding: frozen trial records to the arrays the surrogates fit."""
from __future__ import annotations

import math

import numpy as np
import pytest

from search.encoding import TrialEncoder
from search.space import CategoricalParam, FloatParam, IntParam, Space
from storage.records import TrialRecord

SPACE = Space.of([
    CategoricalParam("opt", ("sgd", "adam", "rmsprop")),
    FloatParam("lr", 1e-5, 1e-1, log=True),
    IntParam("layers", 1, 6),
    FloatParam("momentum", 0.0, 0.99, when={"opt": ("sgd", "rmsprop")}),
    IntParam("batch", 16, 256, log=True, step=16),
    FloatParam("dropout", 0.0, 0.5, step=0.1),
])


def _rec(i, state, params, values):
    return TrialRecord(id=i, study_id=1, number=i, state=state, params=params, values=values)


def test_encode_trials_handles_failed_running_and_direction():
    enc = TrialEncoder(SPACE.params)
    rng = np.random.default_rng(2)
    cs = [SPACE.sample(rng) for _ in range(5)]
    trials = [_rec(0, "COMPLETE", cs[0], (0.9, 1.0)), _rec(1, "FAILED", cs[1], None),
              _rec(2, "RUNNING", cs[2], None), _rec(3, "PRUNED", cs[3], (0.1, 0.0)),
              _rec(4, "COMPLETE", cs[4], (math.nan, 2.0))]
    data = enc.encode_trials(trials, index=0, direction="maximize")
    assert list(data.numbers) == [0, 1, 4]
    assert data.y[0] == pytest.approx(-0.9) and math.isnan(data.y[1]) and math.isnan(data.y[2])
    assert list(data.feasible) == [True, False, False]
    assert data.X.shape == (3, enc.n_features)
    second = enc.encode_trials(trials, index=1, direction="minimize")
    assert second.y[2] == 2.0 and second.feasible[2]
    with pytest.raises(ValueError, match="direction"):
        enc.encode_trials(trials, direction="up")


def test_rows_are_the_space_encoders():
    enc = TrialEncoder(SPACE.params)
    cs = [SPACE.sample(np.random.default_rng(i)) for i in range(4)]
    data = enc.encode_trials([_rec(i, "COMPLETE", c, (float(i),)) for i, c in enumerate(cs)])
    assert np.array_equal(data.X, enc.encode(cs)) and list(data.y) == [0.0, 1.0, 2.0, 3.0]
