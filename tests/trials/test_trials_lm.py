from __future__ import annotations

import math
import os
import warnings

import pytest

from trials.api import file_checksum

TINY = {
    "context": 16, "batch_size": 4, "corpus_bytes": 100_000, "eval_tokens": 256,
    "layers": [
        {"op": "attention", "width": 16, "heads": 2, "ffn": 32},
        {"op": "conv", "width": 24, "ffn": 48, "kernel": 3},
        {"op": "linear", "width": 16, "heads": 4, "ffn": 16},
    ],
}


def reports(events):
    return [(e.step, dict(e.metrics)) for e in events if e.kind == "report"]


def test_heterogeneous_lm_trains_reports_and_checkpoints(run_spec):
    done, events = run_spec("builtin:lm", {**TINY, "steps": 4, "eval_every": 2, "checkpoint_every": 2})
    assert done.error is None
    assert [s for s, _ in reports(events)] == [2, 4]
    for _, m in reports(events):
        for key in ("val_loss", "val_bpb", "val_accuracy", "train_loss", "params", "params_non_embedding",
                    "tokens", "flops"):
            assert key in m and math.isfinite(m[key]), key
        assert m["val_bpb"] == pytest.approx(m["val_loss"] / math.log(2))
        assert m["params_non_embedding"] < m["params"]
        # About 6 * N * tokens, plus the attention terms.
        assert m["flops"] >= 6 * m["params_non_embedding"] * m["tokens"]
        assert m["flops"] < 12 * m["params"] * m["tokens"]
    assert reports(events)[-1][1]["tokens"] == 4 * 4 * 16
    ckpts = [e for e in events if e.kind == "checkpoint"]
    assert [e.step for e in ckpts] == [2, 4]  # every 2 steps, and the final one
    for e in ckpts:
        assert os.path.isfile(e.path) and file_checksum(e.path) == e.checksum
    assert events[-1].kind == "done"
    assert not [f for f in os.listdir(os.path.dirname(ckpts[0].path)) if ".tmp" in f]
    assert done.metrics == reports(events)[-1][1]


def test_param_counts_match_the_architecture(run_spec):
    import torch

    from trials.models import ByteLM, count_params, normalize_layers

    layers = normalize_layers(TINY["layers"], {})
    model = ByteLM(layers, context=16)
    total, non_emb = count_params(model)
    assert total == sum(p.numel() for p in model.parameters())
    assert total - non_emb == 256 * 16 + 16 * 16  # token and position embeddings at the first width
    # The width change 16 -> 24 -> 16 needs two projections, and the conv stays depthwise by default.
    assert model.blocks[1].proj.weight.shape == (24, 16)
    assert model.blocks[2].proj.weight.shape == (16, 24)
    assert model.blocks[1].mix.weight.shape == (24, 1, 3)
    logits = model(torch.randint(0, 256, (2, 16)))
    assert logits.shape == (2, 16, 256)


def test_homogeneous_layer_count_equals_the_repeated_list():
    from trials.models import normalize_layers

    defaults = {"op": "attention", "width": 32, "heads": 2, "ffn": 64}
    assert normalize_layers(3, defaults) == normalize_layers([{}, {}, {}], defaults)
    assert normalize_layers(2, defaults) == [{"op": "attention", "width": 32, "heads": 2, "ffn": 64}] * 2
    conv = normalize_layers([{"op": "conv", "width": 32}], defaults)[0]
    assert conv == {"op": "conv", "width": 32, "heads": 32, "ffn": 64, "kernel": 7}


def test_linear_attention_is_causal():
    import torch

    from trials.models import ByteLM, normalize_layers

    torch.manual_seed(0)
    for op in ("attention", "linear", "conv"):
        model = ByteLM(normalize_layers([{"op": op, "width": 16, "heads": 2}], {}), context=8).eval()
        x = torch.randint(0, 256, (1, 8))
        y = x.clone()
        y[0, 5:] = (y[0, 5:] + 1) % 256
        with torch.no_grad():
            assert torch.equal(model(x)[0, :5], model(y)[0, :5]), op


def test_lm_resume_is_bit_for_bit(resume_pair):
    # Dropout makes the torch RNG matter; k=4 is mid-schedule (warmup, cosine) and mid-epoch.
    config = {**TINY, "steps": 8, "eval_every": 2, "checkpoint_every": 4, "dropout": 0.1, "warmup": 2}
    a, b = resume_pair("builtin:lm", config, k=4)
    assert len(a[0]) == 4
    assert b == a


def test_lm_resume_from_the_final_checkpoint_reports_without_training(run_spec, tmp_path):
    done, events = run_spec("builtin:lm", {**TINY, "steps": 2, "eval_every": 2})
    final = [e for e in events if e.kind == "checkpoint"][-1]
    assert final.step == 2
    again, ev2 = run_spec("builtin:lm", {**TINY, "steps": 2, "eval_every": 2}, resume_from=final.path,
                          checkpoint_dir=str(tmp_path / "again"))
    assert again.error is None
    assert again.metrics["val_loss"] == done.metrics["val_loss"]
    assert [e.step for e in ev2 if e.kind == "report"] == [2]


def test_study_file_form_from_the_issue(run_spec):
    # The issue's study params, with a short budget (the 300-step run is the slow test below).
    params = {"steps": 3, "context": 64, "batch_size": 32, "lr": 1e-3,
              "layers": [{"op": "attention", "width": 64, "heads": 2, "ffn": 128},
                         {"op": "conv", "width": 96, "ffn": 192}]}
    done, events = run_spec("builtin:lm", params)
    assert done.error is None, done.error
    assert done.metrics["tokens"] == 3 * 32 * 64
    assert done.metrics["val_bpb"] > 0


@pytest.mark.slow
def test_300_steps_on_the_stdlib_beat_a_unigram_byte_model(run_spec):
    params = {"steps": 300, "context": 64, "batch_size": 32, "lr": 1e-3,
              "layers": [{"op": "attention", "width": 64, "heads": 2, "ffn": 128},
                         {"op": "conv", "width": 96, "ffn": 192}]}
    done, _ = run_spec("builtin:lm", params)
    assert done.error is None
    assert done.metrics["val_bpb"] < 3.8


def test_token_and_epoch_budgets(run_spec, tmp_path):
    done, _ = run_spec("builtin:lm", {**TINY, "tokens": 200, "eval_every": 100})
    assert done.step == 4  # ceil(200 / (4 * 16))
    corpus = tmp_path / "tiny.txt"
    corpus.write_bytes(bytes(range(32, 127)) * 40)
    done, _ = run_spec("builtin:lm", {**TINY, "corpus": str(corpus), "epochs": 1, "eval_every": 100,
                                      "checkpoint_final": False}, checkpoint_dir=str(tmp_path / "e"))
    assert done.error is None, done.error
    from trials.data import load_corpus

    train_bytes = len(load_corpus(str(corpus), None, 0, 0.1).text("train", None))
    assert 3000 < train_bytes < 3800
    assert done.step == math.ceil(((train_bytes - 1) // 16) / 4)  # one pass over the windows


def test_schedules():
    from trials._train import TrainConfig, schedule_from

    base = {"lr": 1.0, "warmup": 10, "decay_fraction": 0.2, "min_lr_ratio": 0.1}
    cos = schedule_from(TrainConfig.parse({**base, "schedule": "cosine"}), 110)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(10) == pytest.approx(1.0) and cos(110) == pytest.approx(0.1)
    assert cos(60) == pytest.approx(0.55)
    wsd = schedule_from(TrainConfig.parse({**base, "schedule": "wsd"}), 110)
    assert wsd(50) == wsd(87) == 1.0
    assert wsd(88) < 1.0 and wsd(109) == pytest.approx(0.1)
    const = schedule_from(TrainConfig.parse({**base, "schedule": "constant", "warmup": 0.0}), 110)
    assert const(0) == const(109) == 1.0
    with pytest.raises(ValueError, match="'warmup'"):
        schedule_from(TrainConfig.parse({**base, "schedule": "cosine", "warmup": 200}), 110)


@pytest.mark.parametrize("change, match", [
    ({"layers": [{"op": "mamba", "width": 16}]}, r"'layers\[0\]\.op' must be one of"),
    ({"layers": [{"op": "attention", "width": 30, "heads": 4}]}, r"'layers\[0\]\.heads' must divide"),
    ({"layers": [{"op": "attention", "width": 16, "kernel": 3}]}, r"'layers\[0\]\.kernel' applies to op conv"),
    ({"layers": [{"op": "attention", "wdith": 16}]}, r"unknown key 'wdith'"),
    ({"optimizer": "adagrad"}, r"'optimizer' must be one of"),
    ({"schedule": "step"}, r"'schedule' must be one of"),
    ({"lerning_rate": 0.1}, r"unknown builtin:lm param 'lerning_rate'"),
    ({"steps": 2, "tokens": 100}, r"give one budget"),
    ({"corpus": "/nonexistent/corpus"}, r"'corpus'.*neither a file nor a folder"),
    ({"device": "cuda:7"}, r"'device' is 'cuda:7' but this worker sees"),
    ({"device": "gpu"}, r"'device' must be 'auto', 'cpu' or 'cuda"),
])
def test_bad_params_fail_the_trial_with_a_one_line_reason(run_spec, change, match):
    import re

    done, events = run_spec("builtin:lm", {**TINY, "steps": 2, **change})
    assert done.error is not None and "\n" not in done.error
    assert re.search(match, done.error), done.error
    assert events[-1] is done


def test_corpus_shorter_than_a_context_fails_then_the_next_trial_works(run_spec, tmp_path):
    short = tmp_path / "short.txt"
    short.write_bytes(b"print('hi')\n" * 3)
    done, _ = run_spec("builtin:lm", {**TINY, "steps": 2, "corpus": str(short)})
    assert done.error is not None and "shorter than one context" in done.error and "'context'" in done.error
    ok, _ = run_spec("builtin:lm", {**TINY, "steps": 2, "eval_every": 2})
    assert ok.error is None and math.isfinite(ok.metrics["val_loss"])


def test_a_diverging_loss_fails_the_trial_naming_lr(run_spec):
    done, events = run_spec("builtin:lm", {**TINY, "steps": 4, "eval_every": 2, "optimizer": "sgd",
                                           "momentum": 0.0, "lr": 1e12, "grad_clip": 0.0, "warmup": 0})
    assert done.error is not None and "FloatingPointError" in done.error and "'lr'" in done.error
    assert [e for e in events if e.kind == "done"] == [done]


def test_cpu_training_emits_no_warnings(run_spec):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done, _ = run_spec("builtin:lm", {**TINY, "steps": 2, "eval_every": 1})
    assert done.error is None
    assert [str(w.message) for w in caught] == []


def test_bf16_autocast_when_asked_on_cpu(run_spec):
    done, _ = run_spec("builtin:lm", {**TINY, "steps": 2, "eval_every": 2, "precision": "bf16"})
    assert done.error is None, done.error
    assert math.isfinite(done.metrics["val_loss"])


@pytest.mark.slow
def test_torch_compile_trains_and_checkpoints_the_eager_weights(run_spec, tmp_path):
    layers = [{"op": "attention", "width": 16, "heads": 2, "ffn": 32}]
    done, events = run_spec("builtin:lm", {**TINY, "layers": layers, "steps": 2, "eval_every": 2, "compile": True})
    assert done.error is None, done.error
    ckpt = [e for e in events if e.kind == "checkpoint"][-1]
    import torch

    state = torch.load(ckpt.path, weights_only=False)
    assert not any(k.startswith("_orig_mod") for k in state["model"])


def test_the_split_follows_the_study_data_seed_not_the_trial_seed(run_spec, monkeypatch):
    import trials.data

    seen = []
    real = trials.data.load_corpus

    def spy(root, pattern, seed, val_fraction):
        seen.append(seed)
        return real(root, pattern, seed, val_fraction)

    monkeypatch.setattr(trials.data, "load_corpus", spy)
    for trial_seed in (11, 12):
        done, _ = run_spec("builtin:lm", {**TINY, "steps": 1}, seed=trial_seed, data_seed=7)
        assert done.error is None
    run_spec("builtin:lm", {**TINY, "steps": 1}, seed=13)
    assert seen == [7, 7, 13]


def test_non_embedding_param_count_matches_the_built_model():
    """The closed-form count the LM space's max_params uses equals what the model really holds."""
    import random

    from trials.models import ByteLM, count_params, lm_non_embedding_params, normalize_layers

    rng = random.Random(0)
    for _ in range(60):
        layers = []
        for _ in range(rng.randint(1, 4)):
            op, w = rng.choice(["attention", "linear", "conv"]), rng.choice([16, 32, 48])
            layer = {"op": op, "width": w, "ffn": w * rng.choice([1, 2, 4])}
            if op == "conv":
                layer["kernel"] = rng.choice([3, 7, 15])
                if rng.random() < 0.3:
                    layer["heads"] = rng.choice([1, 2, 4])
            else:
                layer["heads"] = rng.choice([1, 2, 4])
            layers.append(layer)
        spec = normalize_layers(layers, {})
        assert lm_non_embedding_params(spec) == count_params(ByteLM(spec, 8))[1], layers


def test_lm_checkpoint_dict_keeps_its_format(run_spec):
    # Old checkpoints must keep resuming: these keys are the format.
    import torch

    from trials.models import normalize_layers

    config = {**TINY, "steps": 2, "eval_every": 2, "checkpoint_every": 1}
    done, events = run_spec("builtin:lm", config)
    assert done.error is None, done.error
    first = torch.load([e for e in events if e.kind == "checkpoint"][0].path, weights_only=False)
    assert list(first) == ["model", "optimizer", "step", "rng", "data", "loss_sum", "loss_count", "metrics",
                           "layers", "config"]
    # Mid-way between reports: the running training loss is carried over to the resumed run.
    assert first["step"] == 1 and first["loss_count"] == 1 and first["loss_sum"].dtype == torch.float64
    assert first["data"] == {"epoch": 0, "cursor": 4} and first["metrics"] == {}
    assert first["layers"] == normalize_layers(TINY["layers"], {}) and first["config"] == config


def test_lm_config_budget_and_defaults():
    import dataclasses

    from trials.builtin.lm import DEFAULT_STEPS, DEFAULTS, LMConfig

    assert LMConfig.parse({}).budget == ("steps", DEFAULT_STEPS)
    assert LMConfig.parse({"tokens": 1000.0}).budget == ("tokens", 1000)
    assert LMConfig.parse({"epochs": 1}).budget == ("epochs", 1.0)
    assert DEFAULTS == {f.name: f.default for f in dataclasses.fields(LMConfig)}
    assert (DEFAULTS["optimizer"], DEFAULTS["schedule"], DEFAULTS["eval_every"]) == ("adamw", "cosine", 50)
