from __future__ import annotations

from typing import Any, Callable

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_spec(tmp_path):
    """``run_spec(entrypoint, config, **spec_fields) -> (done_event, events)`` through ``run_trial``."""
    from trials import TrialSpec, run_trial

    def run(entrypoint: str, config: dict[str, Any], stop_requested: Callable[[], bool] | None = None,
            **fields: Any):
        events: list = []
        spec_fields = dict(study="t", trial_id=1, number=0, attempt=0, entrypoint=entrypoint, config=config,
                           seed=0, objective_metrics=("val_loss",), checkpoint_dir=str(tmp_path / "ckpt"))
        spec_fields.update(fields)
        spec = TrialSpec(**spec_fields)
        done = run_trial(spec, events.append, stop_requested or (lambda: False))
        return done, events

    return run


def reports(events):
    return [(e.step, dict(e.metrics)) for e in events if e.kind == "report"]


@pytest.fixture
def resume_pair(run_spec, tmp_path):
    """``resume_pair(entrypoint, config, k) -> (a, b)``, each ``(reports, final metrics)``."""

    def run(entrypoint, config, k):
        """Run A uninterrupted; run B asked to stop at its report of step ``k`` (a checkpoint step),
        then resumed from that checkpoint by a fresh ``run_trial``. Returns A's and B's (both parts')
        reports and final metrics."""
        done_a, ev_a = run_spec(entrypoint, config, checkpoint_dir=str(tmp_path / "a"))
        stop = {"now": False}
        ev_b1: list = []

        def emit(e):
            ev_b1.append(e)
            if e.kind == "report" and e.step == k:
                stop["now"] = True

        from trials import TrialSpec, run_trial

        spec = TrialSpec("t", 1, 0, 0, entrypoint, config, 0, ("val_loss",), str(tmp_path / "b"))
        done_b1 = run_trial(spec, emit, lambda: stop["now"])
        assert done_b1.stopped and done_b1.error is None and done_b1.step == k
        ckpt = [e for e in ev_b1 if e.kind == "checkpoint" and e.step == k]
        assert ckpt, "run B wrote no checkpoint at the stop step"
        done_b2, ev_b2 = run_spec(entrypoint, config, checkpoint_dir=str(tmp_path / "b2"),
                                  resume_from=ckpt[0].path, resume_checksum=ckpt[0].checksum, attempt=1)
        assert done_a.error is None and done_b2.error is None
        assert reports(ev_b2)[0][0] > k  # B2 continued; it did not start over
        return (reports(ev_a), done_a.metrics), (reports(ev_b1) + reports(ev_b2), done_b2.metrics)

    return run
