"""A Hugging Face ``Trainer`` script as the objective: a 2-layer GPT-2 tuned with TPE and ASHA.

    pip install 'search-service[transformers]'
    python examples/hf_gpt2.py

The model is built from a ``GPT2Config`` (nothing is downloaded) and trained on the bytes of the
Python standard library's sources, which every machine has. ``SearchCallback`` connects the
Trainer: each evaluation saves a Trainer checkpoint, which the callback stores in the study's
artifact store, then reports ``eval_loss``; ASHA's stop ends training. A trial that is retried
(its worker died) continues from its stored checkpoint: ``callback.resume_from_checkpoint()``
writes it back under ``output_dir`` for ``trainer.train``. SEARCH_EXAMPLE_SMALL=1 shortens it.
"""
from __future__ import annotations

import glob
import os
import sysconfig
import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

import search
from search.integrations.transformers import SearchCallback

SMALL = os.environ.get("SEARCH_EXAMPLE_SMALL") == "1"
STEPS, EVERY = (12, 4) if SMALL else (270, 10)
CONTEXT = 64


def byte_blocks(limit: int = 1 << 20):
    """Training and validation blocks of CONTEXT bytes from the standard library's .py files."""
    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    text = b"".join(open(f, "rb").read() for f in files)[:limit]
    data = torch.frombuffer(bytearray(text[: len(text) // CONTEXT * CONTEXT]), dtype=torch.uint8)
    blocks = data.long().view(-1, CONTEXT)
    split = len(blocks) * 9 // 10
    return ([{"input_ids": b, "labels": b} for b in blocks[:split]],
            [{"input_ids": b, "labels": b} for b in blocks[split:][:64]])


def objective(config):
    torch.set_num_threads(1)
    info = search.get_trial()
    torch.manual_seed(info.seed)
    train, val = byte_blocks(1 << 16 if SMALL else 1 << 20)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=CONTEXT, n_embd=config["width"], n_layer=2,
                                       n_head=4, bos_token_id=0, eos_token_id=0))
    args = TrainingArguments(
        output_dir=os.path.join(tempfile.gettempdir(), "hf-gpt2", f"{info.study}-{info.number}"),
        max_steps=STEPS, per_device_train_batch_size=16, per_device_eval_batch_size=32,
        learning_rate=config["lr"], warmup_steps=config["warmup"], weight_decay=0.01,
        eval_strategy="steps", eval_steps=EVERY, save_strategy="no", save_total_limit=1,
        logging_strategy="no", report_to=[], use_cpu=True, seed=info.seed, disable_tqdm=True)
    callback = SearchCallback()
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val, callbacks=[callback])
    trainer.train(resume_from_checkpoint=callback.resume_from_checkpoint())


def main() -> None:
    study = search.create_study({
        "name": "hf-gpt2",
        "objective": {"metric": "eval_loss", "direction": "minimize"},
        "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                  "width": {"type": "categorical", "choices": [32, 64]},
                  "warmup": {"type": "int", "low": 0, "high": 20}},
        "algorithm": {"name": "tpe", "seed": 0},
        "scheduler": {"name": "asha", "min_resource": EVERY, "reduction_factor": 3, "max_resource": STEPS},
        "budget": {"trials": 3 if SMALL else 16, "parallel": 2},
    }, load_if_exists=True)
    study.optimize(objective)
    best = study.best_trial
    print(f"best: trial {best.number}, eval_loss {best.values[0]:.3f} nats/byte, params {dict(best.params)}")


if __name__ == "__main__":
    main()
