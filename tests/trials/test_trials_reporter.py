from __future__ import annotations

import os
import threading

import pytest

from trials import Reporter, TrialSpec, run_trial
from trials.api import file_checksum


def make_spec(tmp_path, **kw):
    fields = dict(study="t", trial_id=1, number=0, attempt=0, entrypoint="x:y", config={}, seed=0,
                  objective_metrics=("val_loss",), checkpoint_dir=str(tmp_path / "ckpt"))
    fields.update(kw)
    return TrialSpec(**fields)


def test_checkpoint_is_a_snapshot_written_in_the_background(tmp_path):
    import torch

    events = []
    threads = []

    def emit(e):
        events.append(e)
        threads.append(threading.current_thread())

    rep = Reporter(make_spec(tmp_path), emit)
    weights = torch.zeros(3)
    path = rep.save_checkpoint({"w": weights, "step": 1}, 1)
    weights += 5  # training goes on: the file must hold the state at save time
    rep.flush()
    assert [e.kind for e in events] == ["checkpoint"]
    assert threads[0] is not threading.main_thread()
    assert events[0].path == os.path.abspath(path) and events[0].checksum == file_checksum(path)
    assert torch.equal(torch.load(path)["w"], torch.zeros(3))
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["step-00000001.pt"]

    resumed = Reporter(make_spec(tmp_path, resume_from=path, resume_checksum=events[0].checksum), emit)
    assert torch.equal(resumed.load_checkpoint()["w"], torch.zeros(3))


def test_corrupt_or_missing_resume_file_is_refused(tmp_path):
    rep = Reporter(make_spec(tmp_path), lambda e: None)
    path = rep.save_checkpoint({"x": 1}, 3)
    rep.flush()
    with open(path, "ab") as f:
        f.write(b"junk")
    bad = Reporter(make_spec(tmp_path, resume_from=path, resume_checksum="sha256:00"), lambda e: None)
    with pytest.raises(RuntimeError, match="corrupt"):
        bad.load_checkpoint()
    gone = Reporter(make_spec(tmp_path, resume_from=str(tmp_path / "nope.pt")), lambda e: None)
    with pytest.raises(FileNotFoundError, match="resume_from"):
        gone.load_checkpoint()


def failing_save(config, reporter):
    reporter.save_checkpoint({"fn": lambda: None}, 1)  # a lambda cannot be pickled
    return 1.0


def saves_then_fails(config, reporter):
    reporter.save_checkpoint({"x": 1}, 1)
    raise ValueError("param 'x' is wrong")


def test_a_failed_background_write_fails_the_trial(tmp_path):
    events = []
    done = run_trial(make_spec(tmp_path, entrypoint=f"{__name__}:failing_save"), events.append)
    assert done.error is not None and "pickle" in done.error.lower()
    assert [e.kind for e in events] == ["done"]


def test_checkpoints_saved_before_a_failure_are_still_recorded_before_done(tmp_path):
    events = []
    done = run_trial(make_spec(tmp_path, entrypoint=f"{__name__}:saves_then_fails"), events.append)
    assert "param 'x' is wrong" in done.error
    assert [e.kind for e in events] == ["checkpoint", "done"]
