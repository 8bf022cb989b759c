"""Trials on several workers (resources.workers): Ray Train runs each on N processes with
torch.distributed (gloo here); rank 0's reports are the trial's; a lost worker retries the whole
trial from its newest checkpoint, counted once; PBT exploits between 2-worker FSDP members (a
sharded checkpoint copied and resumed). The training loop's parts (DDP/FSDP curves, exact resume,
resumes across worker counts) are tested without Ray in tests/trials/test_distributed.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import search
from search.config import ConfigError, parse_study
from storage import TrialState, open_storage


def _spec(name, log, **params):
    return {"name": name, "objective": {"metric": "loss", "direction": "minimize"},
            "trial": {"entrypoint": "search_test_objectives:distributed", "params": {"log": str(log), **params}},
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "algorithm": {"name": "random", "seed": 0}, "budget": {"trials": 2, "parallel": 1, "max_failures": 1},
            "resources": {"workers": 2, "cpus": 1}, "backend": {"name": "ray"}}


def test_workers_need_the_ray_backend(tmp_path):
    spec = _spec("w", tmp_path / "log")
    with pytest.raises(ConfigError, match=r"resources\.workers: a trial on 2 workers runs on Ray Train"):
        parse_study({**spec, "backend": {"name": "inprocess"}})
    with pytest.raises(ConfigError, match=r"resources\.workers: must be >= 1"):
        parse_study({**spec, "resources": {"workers": 0}})
    assert parse_study(spec).workers == 2


@pytest.mark.ray
@pytest.mark.slow
def test_a_trial_runs_on_two_workers_and_rank_zero_reports(ray_session, sqlite_url, tmp_path):
    log = tmp_path / "ranks.jsonl"
    summary = search.run(_spec("two", log), storage=sqlite_url)
    assert summary.complete == 2
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert {(r["number"], r["rank"]) for r in rows} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(r["world"] == 2 and r["sum"] == 3.0 and r["backend"] == "gloo" for r in rows)
    with open_storage(sqlite_url) as st:
        for t in st.get_trials(st.get_study("two").id):
            assert [r.step for r in st.get_reports(t.id)] == [1, 2, 3]  # rank 0's, once each
            assert [c.step for c in st.get_checkpoints(t.id)] == [1, 2, 3]


@pytest.mark.ray
@pytest.mark.slow
def test_losing_one_worker_retries_the_trial_from_its_checkpoint(ray_session, sqlite_url, tmp_path):
    log = tmp_path / "ranks.jsonl"
    spec = _spec("lose", log, die_once=True)
    spec["budget"]["trials"] = 1
    summary = search.run(spec, storage=sqlite_url)
    assert summary.complete == 1
    with open_storage(sqlite_url) as st:
        (t,) = st.get_trials(st.get_study("lose").id)
    assert t.state == TrialState.COMPLETE and t.attempt == 1 and t.failures == 1  # counted once
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    retry = sorted({r["step"] for r in rows if r["attempt"] == 1})
    assert retry == [2, 3]  # resumed after step 1's checkpoint, on both workers again


def _classifier(name, workers):
    return {"name": name, "objective": {"metric": "val_loss", "direction": "minimize"},
            "trial": {"entrypoint": "builtin:classifier",
                      "params": {"model": "mlp", "data": "digits", "epochs": 3, "batch_size": 64, "hidden": 32}},
            "space": {"lr": {"type": "categorical", "choices": [0.01]}},
            "algorithm": {"name": "random", "seed": 0}, "budget": {"trials": 1},
            "resources": {"workers": workers, "cpus": 1}, "backend": {"name": "ray"}}


@pytest.mark.ray
@pytest.mark.slow
def test_the_builtin_classifier_on_two_workers_follows_the_one_worker_curve(ray_session, sqlite_url):
    """DDP with the batch split over two ranks: the same updates as one worker on the whole batch."""
    search.run(_classifier("one", 1), storage=sqlite_url)
    search.run(_classifier("two-ddp", 2), storage=sqlite_url)
    with open_storage(sqlite_url) as st:
        curves = {}
        for name in ("one", "two-ddp"):
            (t,) = st.get_trials(st.get_study(name).id)
            assert t.state == TrialState.COMPLETE, t.error
            curves[name] = [(r.step, r.metrics["train_loss"], r.metrics["val_loss"]) for r in st.get_reports(t.id)]
    assert [s for s, _, _ in curves["one"]] == [s for s, _, _ in curves["two-ddp"]] == [1, 2, 3]
    for (_, tr1, va1), (_, tr2, va2) in zip(curves["one"], curves["two-ddp"]):
        assert tr2 == pytest.approx(tr1, rel=1e-4) and va2 == pytest.approx(va1, rel=1e-4)


def _lm_pbt(name, tmp_path):
    """Two LM members on 2 workers each (FSDP, half a CPU per worker: both fit the session's 2
    CPUs at once), PBT between them: the worse one exploits the better one's sharded checkpoint."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"".join(p.read_bytes() for p in sorted((Path(search.__file__).parent).glob("*.py"))))
    params = {"corpus": str(corpus), "context": 16, "batch_size": 8, "eval_tokens": 256, "precision": "fp32",
              "layers": [{"op": "attention", "width": 16, "heads": 2, "ffn": 32}],
              "steps": 100, "eval_every": 10, "checkpoint_every": 10, "parallel": "fsdp"}
    return {"name": name, "objective": {"metric": "val_loss", "direction": "minimize"},
            "trial": {"entrypoint": "builtin:lm", "params": params},
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True}},
            # seed 4 draws lr 0.022 and 0.00038: member 1 is clearly the worse, and exploits at its
            # first report after member 0's first (Ray Train starts the two some seconds apart: 100
            # steps leave room; the copy restarts slower than member 0 finishes, so one exploit)
            "algorithm": {"name": "pbt", "seed": 4, "interval": 10, "quantile": 0.5},
            "budget": {"trials": 2, "parallel": 2}, "artifacts": str(tmp_path / "artifacts"),
            "resources": {"workers": 2, "cpus": 0.5}, "backend": {"name": "ray"}}


@pytest.mark.ray
@pytest.mark.slow
def test_pbt_exploits_between_two_worker_fsdp_members(ray_session, sqlite_url, tmp_path):
    import torch

    search.run(_lm_pbt("pbt-fsdp", tmp_path), storage=sqlite_url)
    with open_storage(sqlite_url) as st:
        study = st.get_study("pbt-fsdp")
        trials = {t.number: t for t in st.get_trials(study.id)}
        exploits = st.get_exploits(study.id)
        reports = {n: st.get_reports(t.id) for n, t in trials.items()}
        checkpoints = {n: st.get_checkpoints(t.id) for n, t in trials.items()}
    assert all(t.state == TrialState.COMPLETE and t.last_step == 100 for t in trials.values()), \
        [(t.state, t.error) for t in trials.values()]
    # Two Ray Train fits started at once in one driver, neither lost (Ray Tune's registry race)
    assert [t.failures for t in trials.values()] == [0, 0]
    assert exploits, "no exploit happened"
    ex = exploits[0]
    child, parent = trials[ex.number], trials[ex.parent_number]
    # The child's next attempt started from the parent's checkpoint: a copy of the parent's file
    # (the parent's metrics at that step in it) holding DCP shards of both ranks ...
    (given,) = [c for c in checkpoints[ex.number] if "from-trial" in c.path and c.step == ex.parent_step]
    state = torch.load(given.path, weights_only=False)
    assert state["sharded"]["world_size"] == 2 and state["step"] == ex.parent_step
    parent_at = {r.step: r.metrics for r in reports[parent.number] if r.step == ex.parent_step}
    assert state["metrics"]["val_loss"] == pytest.approx(parent_at[ex.parent_step]["val_loss"])
    # ... and went on from there, not from the start.
    after = [r.step for r in reports[child.number] if r.attempt == given.attempt]
    assert after and min(after) == ex.parent_step + 10
