"""search.integrations: the Lightning and Hugging Face callbacks with the real packages. Small
studies run to the end in-process; a kill -9 of `search run` and `search resume` continue the trials
from the frameworks' checkpoints; PBT's children start from their parent's Lightning checkpoint with
their own learning rate."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

pytest.importorskip("lightning")
pytest.importorskip("transformers")

import search  # noqa: E402
from storage import TrialState, open_storage  # noqa: E402
from testlib import cli_env  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def _env():
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([HERE, env["PYTHONPATH"]])
    return env


def _lightning_study(name, tmp_path, steps=40, every=10, trials=2, parallel=2, **params):
    return {"name": name, "objective": {"metric": "val_loss", "direction": "minimize"},
            "trial": {"entrypoint": "framework_objectives:lightning_digits",
                      "params": {"steps": steps, "every": every, "log": str(tmp_path / "log.jsonl"), **params}},
            "space": {"lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True}},
            "algorithm": {"name": "random", "seed": 0},
            "budget": {"trials": trials, "parallel": parallel}, "backend": {"name": "inprocess"},
            "artifacts": str(tmp_path / "artifacts")}


def _hf_study(name, tmp_path, steps=20, every=5, trials=2, parallel=1, **params):
    # In-process, one Hugging Face Trainer at a time: accelerate keeps one state per process, which
    # each new TrainingArguments resets under any Trainer running in another thread.
    return {"name": name, "objective": {"metric": "eval_loss", "direction": "minimize"},
            "trial": {"entrypoint": "framework_objectives:hf_gpt2",
                      "params": {"steps": steps, "every": every, "workdir": str(tmp_path / "hf"),
                                 "log": str(tmp_path / "log.jsonl"), **params}},
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True}},
            "algorithm": {"name": "random", "seed": 0},
            "budget": {"trials": trials, "parallel": parallel}, "backend": {"name": "inprocess"},
            "artifacts": str(tmp_path / "artifacts")}


def _starts(tmp_path):
    """What each attempt logged when training began: {(number, attempt): record}."""
    out = {}
    for line in (tmp_path / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[(rec["number"], rec["attempt"])] = rec
    return out


def _stored(url, name):
    with open_storage(url) as st:
        study = st.get_study(name)
        trials = st.get_trials(study.id)
        return (trials, {t.number: st.get_reports(t.id) for t in trials},
                {t.number: st.get_checkpoints(t.id) for t in trials}, st.get_exploits(study.id))


@pytest.fixture(autouse=True)
def _on_path(monkeypatch):
    monkeypatch.syspath_prepend(HERE)


# -- studies that run to the end in-process ---------------------------------------------------------

def test_lightning_study_reports_checkpoints_and_completes(tmp_path, sqlite_url):
    import torch

    study = search.create_study(_lightning_study("lit", tmp_path), storage=sqlite_url)
    summary = study.optimize(show_progress=False)
    assert summary.complete == 2, [t.error for t in study.trials]
    trials, reports, checkpoints, _ = _stored(sqlite_url, "lit")
    for t in trials:
        assert t.state == TrialState.COMPLETE and t.last_step == 40
        assert [r.step for r in reports[t.number]] == [10, 20, 30, 40]  # each validation, at the global step
        assert {"val_loss", "val_accuracy"} <= set(reports[t.number][-1].metrics)
        assert t.metrics["val_loss"] == reports[t.number][-1].metrics["val_loss"]
        assert [c.step for c in checkpoints[t.number]] == [10, 20, 30, 40]  # each validation by default
    saved = torch.load(checkpoints[0][-1].path, weights_only=False)  # Lightning's own checkpoint dict
    assert {"state_dict", "optimizer_states", "loops", "global_step"} <= set(saved)
    assert saved["global_step"] == 40 and saved["search"] == {"number": 0, "step": 40}


def test_hf_study_reports_checkpoints_and_completes(tmp_path, sqlite_url):
    import torch

    study = search.create_study(_hf_study("hf", tmp_path), storage=sqlite_url)
    assert study.optimize(show_progress=False).complete == 2, [t.error for t in study.trials]
    trials, reports, checkpoints, _ = _stored(sqlite_url, "hf")
    for t in trials:
        assert t.state == TrialState.COMPLETE and t.last_step == 20
        assert [r.step for r in reports[t.number]] == [5, 10, 15, 20]
        assert "eval_loss" in reports[t.number][-1].metrics
        assert [c.step for c in checkpoints[t.number]] == [5, 10, 15, 20]
    saved = torch.load(checkpoints[1][-1].path, weights_only=False)  # the Trainer's checkpoint folder
    assert {"trainer_state.json", "optimizer.pt", "scheduler.pt"} <= set(saved["files"])
    assert json.loads(saved["files"]["trainer_state.json"])["global_step"] == 20


def test_asha_stops_a_lightning_trial(tmp_path, sqlite_url):
    spec = _lightning_study("lit-asha", tmp_path, steps=40, trials=4, parallel=1)
    spec["scheduler"] = {"name": "asha", "min_resource": 10, "reduction_factor": 2, "max_resource": 40}
    study = search.create_study(spec, storage=sqlite_url)
    summary = study.optimize(show_progress=False)
    assert summary.failed == 0 and summary.pruned >= 1
    trials, reports, _, _ = _stored(sqlite_url, "lit-asha")
    for t in trials:
        if t.state == TrialState.PRUNED:  # the Trainer stopped at the report that was answered stop
            assert t.last_step < 40 and reports[t.number][-1].step == t.last_step


# -- kill -9 and resume: trials continue from the framework checkpoints ------------------------------

def _kill_when_checkpointed(spec, tmp_path, url, min_step):
    """`search run` of ``spec`` killed with SIGKILL (its whole process group) once a trial that is
    still running has a stored checkpoint at ``min_step`` or later; returns what was stored then."""
    path = tmp_path / "study.yaml"
    import yaml

    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.Popen(["search", "run", str(path), "--storage", url, "--quiet"], env=_env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while True:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint was stored in time"
        try:
            trials, _, checkpoints, _ = _stored(url, spec["name"])
        except Exception:  # noqa: BLE001 - the study is not created yet
            trials, checkpoints = [], {}
        if any(t.state == TrialState.RUNNING and any(c.step >= min_step for c in checkpoints[t.number])
               for t in trials):
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return _stored(url, spec["name"])


def _resume_and_check(spec, tmp_path, url, steps, every):
    killed_trials, _, killed_ckpts, _ = _kill_when_checkpointed(spec, tmp_path, url, min_step=2 * every)
    running = [t.number for t in killed_trials if t.state == TrialState.RUNNING]
    out = subprocess.run(["search", "resume", spec["name"], "--storage", url, "--quiet"], env=_env(), cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    trials, reports, _, _ = _stored(url, spec["name"])
    assert len(trials) == spec["budget"]["trials"]
    assert all(t.state == TrialState.COMPLETE and t.last_step == steps for t in trials), trials
    starts = _starts(tmp_path)
    resumed = 0
    for number in running:
        stored = [c.step for c in killed_ckpts[number]]
        if not stored:
            continue  # killed before its first checkpoint: it starts over, as it must
        resumed += 1
        retry = max(a for (n, a) in starts if n == number)
        assert retry >= 1
        # The retry began at the newest checkpoint stored before the kill (or a later one that
        # landed as the process died), not at step 0, and its reports continue from there.
        start = starts[(number, retry)]["start"]
        assert start >= max(stored) >= 2 * every
        steps_after = [r.step for r in reports[number] if r.attempt == retry]
        assert steps_after == list(range(start + every, steps + 1, every))
    assert resumed >= 1


@pytest.mark.slow
def test_kill9_and_resume_continue_lightning_trials(tmp_path, sqlite_url):
    spec = _lightning_study("lit-kill", tmp_path, steps=60, every=10, trials=2, parallel=2, sleep=0.05)
    _resume_and_check(spec, tmp_path, sqlite_url, steps=60, every=10)


@pytest.mark.slow
def test_kill9_and_resume_continue_hf_trials(tmp_path, sqlite_url):
    spec = _hf_study("hf-kill", tmp_path, steps=40, every=5, trials=2, parallel=1, sleep=0.1)
    _resume_and_check(spec, tmp_path, sqlite_url, steps=40, every=5)


# -- PBT: children start from the parent's Lightning checkpoint, with their own lr ------------------

@pytest.mark.slow
def test_pbt_with_lightning_exploits_from_parent_checkpoints(tmp_path, sqlite_url):
    spec = _lightning_study("lit-pbt", tmp_path, steps=60, every=10, trials=4, parallel=4)
    spec["space"] = {"lr": {"type": "float", "low": 0.001, "high": 0.5, "log": True}}
    spec["algorithm"] = {"name": "pbt", "seed": 0, "interval": 20, "quantile": 0.25}
    study = search.create_study(spec, storage=sqlite_url)
    assert study.optimize(show_progress=False).failed == 0
    trials, reports, _, exploits = _stored(sqlite_url, "lit-pbt")
    assert exploits, "no member exploited"
    starts = _starts(tmp_path)
    for e in exploits:
        # The child's attempt after this exploit trained on from the parent's step, with the
        # explored lr in its optimizer (the parent's optimizer state was restored under it).
        child = [rec for (n, a), rec in sorted(starts.items()) if n == e.number and rec["start"] == e.parent_step
                 and rec["lr"] == pytest.approx(e.params_after["lr"], rel=1e-9)]
        assert child, (e, [r for (n, _), r in starts.items() if n == e.number])
    assert all(t.state == TrialState.COMPLETE and t.last_step == 60 for t in trials)


@pytest.mark.slow
@pytest.mark.ray
def test_pbt_with_hf_keeps_the_schedule_with_the_explored_lr(ray_session, tmp_path, sqlite_url):
    # On Ray: four Trainers at once need four processes (see _hf_study). The session's workers
    # import tests/ modules, so the objective goes by its name from there.
    # A step takes 0.15 s at least, so that members started a few seconds apart train side by side.
    steps = 60
    spec = _hf_study("hf-pbt", tmp_path, steps=steps, every=5, trials=4, parallel=4, sleep=0.15)
    spec["trial"]["entrypoint"] = "integrations.framework_objectives:hf_gpt2"
    spec["backend"] = {"name": "ray"}
    spec["resources"] = {"cpus": 0.5}
    spec["space"] = {"lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}}
    spec["algorithm"] = {"name": "pbt", "seed": 0, "interval": 10, "quantile": 0.25}
    study = search.create_study(spec, storage=sqlite_url)
    assert study.optimize(show_progress=False).failed == 0
    _, _, _, exploits = _stored(sqlite_url, "hf-pbt")
    assert exploits, "no member exploited"
    starts = _starts(tmp_path)
    for e in exploits:
        # The Trainer's linear decay at the parent's step, from the child's own explored lr.
        expected = e.params_after["lr"] * (steps - e.parent_step) / steps
        child = [rec for (n, _), rec in starts.items() if n == e.number and rec["start"] == e.parent_step
                 and rec["lr"] == pytest.approx(expected, rel=1e-6)]
        assert child, (e, expected, [r for (n, _), r in starts.items() if n == e.number])


@pytest.mark.slow
def test_freeze_thaw_thaws_lightning_trials_where_they_paused(tmp_path, sqlite_url):
    spec = _lightning_study("lit-ft", tmp_path, steps=40, every=10, trials=6, parallel=2)
    spec["space"] = {"lr": {"type": "float", "low": 1e-3, "high": 0.5, "log": True}}
    spec["scheduler"] = {"name": "freeze-thaw", "min_resource": 10, "reduction_factor": 2, "max_resource": 40}
    spec["backend"] = {"name": "simulated"}  # the same controller on a fixed event order: thaws every run
    study = search.create_study(spec, storage=sqlite_url)
    assert study.optimize(show_progress=False).failed == 0
    trials, reports, _, _ = _stored(sqlite_url, "lit-ft")
    starts = _starts(tmp_path)
    thawed = [(n, a) for (n, a) in starts if a > 0]
    assert thawed, "no paused trial was thawed"
    for n, a in thawed:
        paused_at = max(r.step for r in reports[n] if r.attempt == a - 1)
        assert starts[(n, a)]["start"] == paused_at  # it trains on from the step it paused at
        assert [r.step for r in reports[n] if r.attempt == a][0] == paused_at + 10


# -- the callbacks' own contracts, without a study -------------------------------------------------

def test_callbacks_outside_a_trial_say_where_they_work():
    import lightning.pytorch as pl

    from framework_objectives import _digits_loaders
    from search.integrations.lightning import SearchCallback

    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[SearchCallback()])
    with pytest.raises(RuntimeError, match="inside an objective run by the service"):
        trainer.fit(_tiny_module(), *_digits_loaders(0))
    with pytest.raises(ValueError, match="checkpoint_every must be an int >= 0"):
        SearchCallback(checkpoint_every=-1)


def _tiny_module(log_name="val_loss"):
    """A linear digits classifier that logs its validation loss as ``log_name``."""
    import lightning.pytorch as pl
    import torch
    import torch.nn.functional as F

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(64, 10)

        def training_step(self, batch, _):
            return F.cross_entropy(self.net(batch[0]), batch[1])

        def validation_step(self, batch, _):
            self.log(log_name, F.cross_entropy(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.01)

    return Tiny()


def test_lightning_callback_with_an_asked_trial_and_a_missing_monitor(tmp_path, sqlite_url):
    import lightning.pytorch as pl

    from framework_objectives import _digits_loaders
    from search.integrations.lightning import SearchCallback

    study = search.create_study(_lightning_study("lit-ask", tmp_path), storage=sqlite_url)
    trial = study.ask()

    def fit(module):
        trainer = pl.Trainer(max_steps=10, val_check_interval=5, check_val_every_n_epoch=None, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0, callbacks=[SearchCallback(monitor="val_loss", trial=trial)])
        trainer.fit(module, *_digits_loaders(0))
        return trainer

    with pytest.raises(ValueError, match=r"logged no 'val_loss'.*\['val_acc'\]"):
        fit(_tiny_module("val_acc"))
    trainer = fit(_tiny_module())
    done = study.tell(trial, float(trainer.callback_metrics["val_loss"]))
    assert done.state == TrialState.COMPLETE
    _, reports, checkpoints, _ = _stored(sqlite_url, "lit-ask")
    assert [r.step for r in reports[0]] == [5, 10] and [c.step for c in checkpoints[0]] == [5, 10]


def test_hf_trial_with_a_checkpoint_refuses_to_start_over(tmp_path):
    """A Trainer that trains from step 0 while its trial has a checkpoint to continue from fails
    with the fix, instead of silently starting over (the Ray Tune pitfall)."""
    from trials.api import Reporter, TrialSpec
    from trials.context import running
    from trials.integrations._common import SEARCH_KEY

    import framework_objectives

    ckpt_dir = tmp_path / "ck"
    spec = TrialSpec(study="s", trial_id=1, number=0, attempt=0, entrypoint="x:y", config={}, seed=0,
                     objective_metrics=("eval_loss",), checkpoint_dir=str(ckpt_dir), sync_checkpoints=True)
    first = Reporter(spec, lambda e: None)
    config = {"lr": 1e-3, "steps": 10, "every": 5, "workdir": str(tmp_path / "hf")}
    with running(first):
        framework_objectives.hf_gpt2(config)
    path = first.checkpoint_path(10)
    import torch

    assert torch.load(path, weights_only=False)[SEARCH_KEY] == {"number": 0, "step": 10}

    from transformers import Trainer, TrainingArguments

    from search.integrations.transformers import SearchCallback

    retry = Reporter(TrialSpec(**{**spec.__dict__, "attempt": 1, "resume_from": path}), lambda e: None)
    with running(retry):
        args = TrainingArguments(output_dir=str(tmp_path / "again"), max_steps=20, eval_strategy="steps",
                                 eval_steps=5, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True)
        model = framework_objectives.GPT2LMHeadModel(framework_objectives.GPT2Config(
            vocab_size=256, n_positions=32, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0))
        data = framework_objectives._byte_blocks(16, 32)
        trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data, callbacks=[SearchCallback()])
        with pytest.raises(RuntimeError, match=r"resume_from_checkpoint=callback\.resume_from_checkpoint\(\)"):
            trainer.train()
