"""trials.integrations._common: which metrics are reported, and PBT's hyperparameters put back over a
parent's restored optimizer state with the schedule kept in place."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trials.integrations._common import apply_hyperparams, group_hyperparams, resolve, scalar_metrics, written_by


def test_scalar_metrics_keeps_single_numbers_only():
    got = scalar_metrics({"a": 1, "b": 0.5, "t": torch.tensor(2.0), "t1": torch.tensor([3.0]),
                          "n": np.float32(4.0), "flag": True, "vec": torch.ones(2), "s": "x", "none": None})
    assert got == {"a": 1.0, "b": 0.5, "t": 2.0, "t1": 3.0, "n": 4.0}


def test_written_by_reads_the_mark():
    assert written_by({"search": {"number": 3, "step": 10}}) == 3
    assert written_by({"state_dict": {}}) is None and written_by(None) is None


def test_resolve_checks_an_asked_trial():
    with pytest.raises(TypeError, match="without load_checkpoint"):
        resolve(type("T", (), {"number": 1, "report": None, "save_checkpoint": None})())
    with pytest.raises(RuntimeError, match="inside an objective run by the service"):
        resolve(None)


def _optimizer(lr, momentum):
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=lr, momentum=momentum)
    return w, opt


def test_apply_hyperparams_without_a_scheduler_sets_the_child_values():
    _, child = _optimizer(0.05, 0.5)
    configured = group_hyperparams(child)
    _, parent = _optimizer(0.2, 0.9)
    child.load_state_dict(parent.state_dict())  # what a restore does: the parent's lr and momentum
    assert child.param_groups[0]["lr"] == 0.2
    apply_hyperparams(child, configured, [])
    assert child.param_groups[0]["lr"] == pytest.approx(0.05) and child.param_groups[0]["momentum"] == 0.5


def test_apply_hyperparams_rescales_a_schedule_in_place():
    w, parent = _optimizer(0.2, 0.9)
    parent_sched = torch.optim.lr_scheduler.StepLR(parent, step_size=2, gamma=0.5)
    for _ in range(4):  # the parent is at 0.2 * 0.5^2 after four steps
        parent.step()
        parent_sched.step()
    _, child = _optimizer(0.08, 0.9)
    child_sched = torch.optim.lr_scheduler.StepLR(child, step_size=2, gamma=0.5)
    configured = group_hyperparams(child)
    child.load_state_dict(parent.state_dict())
    child_sched.load_state_dict(parent_sched.state_dict())
    apply_hyperparams(child, configured, [child_sched])
    # The child's own lr at the parent's position in the schedule: 0.08 * 0.5^2, and on from there.
    assert child.param_groups[0]["lr"] == pytest.approx(0.02)
    assert child.param_groups[0]["initial_lr"] == pytest.approx(0.08) and child_sched.base_lrs == [pytest.approx(0.08)]
    child.step()
    child_sched.step()
    child.step()
    child_sched.step()
    assert child.param_groups[0]["lr"] == pytest.approx(0.01)


def test_apply_hyperparams_refuses_another_optimizer_shape():
    _, child = _optimizer(0.1, 0.0)
    with pytest.raises(ValueError, match="has 1 param groups but .* built 2"):
        apply_hyperparams(child, [{"lr": 0.1}, {"lr": 0.1}], [])
