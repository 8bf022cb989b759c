"""The training loop on two workers without Ray: two processes in a torch.distributed process group
(gloo on CPU; NCCL with a GPU each where a machine has two), each running ``run_trial`` as a Ray
Train worker would, beside one-worker runs in this process. The LM on DDP and on FSDP follows the
one-worker curve with the same global batch; an interrupted two-worker trial resumes exactly; a
sharded (DCP) checkpoint resumes on one worker and a one-worker checkpoint on two.

Every run happens once, in a module fixture (one spawn of two processes for all the two-worker
runs, about a minute on 2 loaded cores); the tests read its results."""
from __future__ import annotations

import datetime
import os
import pickle

import pytest

WORLD = 2
STEPS, CUT = 6, 3  # the interrupted runs stop after step CUT and resume from its checkpoint
LM = {
    "context": 16, "batch_size": 8, "eval_tokens": 256, "steps": STEPS,
    "layers": [{"op": "attention", "width": 16, "heads": 2, "ffn": 32},
               {"op": "conv", "width": 24, "ffn": 48, "kernel": 3}],
    "lr": 3e-3, "eval_every": 1, "checkpoint_every": CUT, "precision": "fp32",
}


def _corpus(folder) -> str:
    """A small text file (this project's sources): quicker to split than the standard library."""
    import glob

    path = os.path.join(folder, "corpus.txt")
    here = os.path.dirname(os.path.abspath(__file__))
    with open(path, "wb") as out:
        for src in sorted(glob.glob(os.path.join(here, "..", "..", "trials", "*.py"))):
            with open(src, "rb") as f:
                out.write(f.read())
    return path


CLASSIFIER = {"model": "mlp", "data": "digits", "epochs": 2, "batch_size": 64, "hidden": 16, "lr": 0.01,
              "precision": "fp32"}


def _placement():
    """(process group backend, the trainer's device param): NCCL with a GPU per rank where the
    machine has enough, else gloo on CPU (one GPU cannot hold two NCCL ranks)."""
    import torch

    return ("nccl", "auto") if torch.cuda.device_count() >= WORLD else ("gloo", "cpu")


def _spec(config, checkpoint_dir, rank=0, workers=1, resume=None, entrypoint="builtin:lm"):
    from trials import TrialSpec

    return TrialSpec("t", 1, 0, 0 if resume is None else 1, entrypoint, config, 0, ("val_loss",),
                     str(checkpoint_dir), resume_from=resume, workers=workers, rank=rank)


def _run(spec, stop_at=None):
    """``run_trial`` of ``spec``, asked to stop at its report of ``stop_at``: (done, reports)."""
    from trials import run_trial

    events, stop = [], {"now": False}

    def emit(ev):
        events.append(ev)
        if ev.kind == "report" and ev.step == stop_at:
            stop["now"] = True

    done = run_trial(spec, emit, lambda: stop["now"])
    return done, [(e.step, dict(e.metrics)) for e in events if e.kind == "report"]


def _ckpt(folder, step):
    return os.path.join(folder, f"step-{step:08d}.pt")


def _rank_main(rank, init_file, root, one_dir, corpus):
    """One rank: every two-worker run in turn, in one process group; rank 0 pickles the results."""
    if _placement()[0] == "nccl":
        os.environ["CUDA_VISIBLE_DEVICES"] = str(rank)  # as Ray Train gives each worker its GPU
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    backend, device = _placement()
    # A rank that fails leaves its peer in a collective: the timeout ends the wait.
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=120))
    out = {}

    def run(name, parallel, resume=None, stop_at=None):
        config = {**LM, "corpus": corpus, "device": device, "parallel": parallel}
        out[name] = _run(_spec(config, os.path.join(root, name), rank, WORLD, resume), stop_at)
        if out[name][0].error is not None:
            raise RuntimeError(f"rank {rank}, run {name}: {out[name][0].error}")
        dist.barrier()  # rank 0's checkpoints are durable (flushed before its done): the next run may load them

    run("ddp", "ddp")
    run("fsdp", "fsdp")
    run("ddp_cut", "ddp", stop_at=CUT)
    run("ddp_resumed", "ddp", resume=_ckpt(os.path.join(root, "ddp_cut"), CUT))
    run("fsdp_cut", "fsdp", stop_at=CUT)
    run("fsdp_resumed", "fsdp", resume=_ckpt(os.path.join(root, "fsdp_cut"), CUT))
    run("fsdp_from_one", "fsdp", resume=_ckpt(one_dir, CUT))  # 1 -> 2 workers, whole -> sharded
    run("ddp_from_fsdp", "ddp", resume=_ckpt(os.path.join(root, "fsdp_cut"), CUT))  # sharded -> whole
    config = {**CLASSIFIER, "device": device, "parallel": "fsdp"}  # the classifier: one FSDP unit
    out["classifier_fsdp"] = _run(_spec(config, os.path.join(root, "classifier_fsdp"), rank, WORLD,
                                        entrypoint="builtin:classifier"))
    dist.destroy_process_group()
    if rank == 0:
        with open(os.path.join(root, "results.pkl"), "wb") as f:
            pickle.dump(out, f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import torch
    import torch.multiprocessing as mp

    root = tmp_path_factory.mktemp("distributed")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        corpus = _corpus(root)
        config = {**LM, "corpus": corpus, "device": _placement()[1]}
        out = {"one": _run(_spec(config, root / "one")),
               "classifier": _run(_spec({**CLASSIFIER, "device": _placement()[1]}, root / "classifier",
                                        entrypoint="builtin:classifier"))}
        mp.spawn(_rank_main, args=(str(root / "init"), str(root), str(root / "one"), corpus), nprocs=WORLD, join=True)
        with open(root / "results.pkl", "rb") as f:
            out.update(pickle.load(f))
        # 2 -> 1 worker: the sharded checkpoint of the interrupted FSDP run, resumed here
        out["one_from_fsdp"] = _run(_spec(config, root / "one_from_fsdp", resume=_ckpt(root / "fsdp_cut", CUT)))
    finally:
        torch.set_num_threads(before)
    for name, (done, _) in out.items():
        assert done.error is None, (name, done.error)
    return root, {name: reports for name, (_, reports) in out.items()}


def _assert_close(got, want, rel=1e-4):
    assert got and [s for s, _ in got] == [s for s, _ in want]
    for (step, g), (_, w) in zip(got, want):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert g[key] == pytest.approx(w[key], rel=rel, abs=1e-6), (step, key)


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_the_lm_on_two_workers_follows_the_one_worker_curve(runs, parallel):
    """Each rank trains on half of the same batch (DDP: a replica each; FSDP: half the weights
    each): the updates are one worker's on the whole batch, up to float summation order."""
    _, r = runs
    assert [s for s, _ in r["one"]] == list(range(1, STEPS + 1))
    _assert_close(r[parallel], r["one"])
    # The loss moved: a curve that matches because nothing trained would prove nothing.
    assert r["one"][-1][1]["train_loss"] < r["one"][0][1]["train_loss"] - 0.1


@pytest.mark.slow
def test_the_classifier_on_fsdp_follows_the_one_worker_curve(runs):
    _, r = runs
    _assert_close(r["classifier_fsdp"], r["classifier"])


@pytest.mark.slow
def test_an_fsdp_checkpoint_holds_dcp_shards_of_both_ranks(runs):
    import torch

    root, _ = runs
    state = torch.load(_ckpt(root / "fsdp_cut", CUT), weights_only=False)
    assert "model" not in state and "optimizer" not in state
    sharded = state["sharded"]
    assert sharded["format"] == "torch.distributed.checkpoint" and sharded["world_size"] == WORLD
    assert ".metadata" in sharded["files"]
    assert len([n for n in sharded["files"] if n.endswith(".distcp")]) == WORLD
    assert state["step"] == CUT and {"rng", "data", "loss_sum", "config"} <= set(state)


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_an_interrupted_two_worker_trial_resumes_exactly(runs, parallel):
    _, r = runs
    cut, resumed = r[f"{parallel}_cut"], r[f"{parallel}_resumed"]
    assert [s for s, _ in cut] == list(range(1, CUT + 1))
    assert [s for s, _ in resumed] == list(range(CUT + 1, STEPS + 1))  # continued, not started over
    assert cut + resumed == r[parallel]  # bit for bit: same batches, same weights, same reductions


@pytest.mark.slow
def test_a_two_worker_checkpoint_resumes_on_one_worker(runs):
    """FSDP's shards (DCP) are resharded into one whole model: the one-worker curve goes on."""
    _, r = runs
    _assert_close(r["one_from_fsdp"], r["one"][CUT:])
    _assert_close(r["ddp_from_fsdp"], r["one"][CUT:])  # and into a DDP replica on each of two ranks


@pytest.mark.slow
def test_a_one_worker_checkpoint_resumes_sharded_on_two_workers(runs):
    _, r = runs
    _assert_close(r["fsdp_from_one"], r["one"][CUT:])


def test_parallel_is_a_checked_trainer_param():
    from trials.builtin.classifier import ClassifierConfig
    from trials.builtin.lm import LMConfig

    assert LMConfig.parse({}).parallel == "ddp" and LMConfig.parse({"parallel": "fsdp"}).parallel == "fsdp"
    with pytest.raises(ValueError, match=r"param 'parallel' must be one of \['ddp', 'fsdp'\], got 'zero'"):
        ClassifierConfig.parse({"parallel": "zero"})


@pytest.mark.slow
def test_a_sharded_checkpoint_of_another_architecture_is_refused_in_one_line(runs):
    import torch

    from trials._train import load_into, make_optimizer
    from trials.builtin.lm import LMConfig
    from trials.models import ByteLM

    root, _ = runs
    state = torch.load(_ckpt(root / "fsdp_cut", CUT), weights_only=False)
    cfg = LMConfig.parse({**LM, "layers": [{"op": "attention", "width": 32, "heads": 2, "ffn": 32}]})
    model = ByteLM(cfg.layers, cfg.context)
    with pytest.raises(ValueError, match=r"checkpoint does not fit this builtin:lm model \(Size mismatch .*tok\.weight"):
        load_into(model, make_optimizer(model, cfg), state, cfg.TRAINER)
