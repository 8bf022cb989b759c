from __future__ import annotations

import os
import sysconfig

import numpy as np

from trials.data import Corpus, WindowSampler, load_classification, load_corpus


def make_folder(tmp_path, n=40):
    root = tmp_path / "src"
    (root / "pkg").mkdir(parents=True)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.py").write_text("cached\n")
    for i in range(n):
        (root / ("pkg" if i % 2 else "") / f"m{i}.py").write_text(f"# module {i}\n" + f"x{i} = {i}\n" * (i + 1))
    (root / "notes.txt").write_text("not python\n")
    return root


def test_folder_corpus_splits_by_file_deterministically(tmp_path):
    root = make_folder(tmp_path)
    a = Corpus(str(root), "*.py", seed=3, val_fraction=0.25)
    b = Corpus(str(root), "*.py", seed=3, val_fraction=0.25)
    other = Corpus(str(root), "*.py", seed=4, val_fraction=0.25)
    names = lambda c, part: [u[0] for u in (c._train if part == "train" else c._val)]  # noqa: E731
    assert names(a, "train") == names(b, "train") and names(a, "val") == names(b, "val")
    assert names(a, "val") != names(other, "val") or names(a, "train") != names(other, "train")
    assert not set(names(a, "train")) & set(names(a, "val"))
    assert len(names(a, "train")) + len(names(a, "val")) == 40  # no __pycache__, no .txt
    assert 0 < len(names(a, "val")) < 20
    train, val = a.text("train", None), a.text("val", None)
    assert b"cached" not in train + val and b"not python" not in train + val
    # Whole files only: no validation file's text appears in training text.
    for name in names(a, "val"):
        assert (root / name).read_bytes() not in train


def test_partial_reads_are_the_same_whichever_run_reads_first(tmp_path):
    root = make_folder(tmp_path)
    first = Corpus(str(root), "*.py", seed=0, val_fraction=0.2)
    big = first.text("train", 2000)
    small_after_big = first.text("train", 300)
    fresh = Corpus(str(root), "*.py", seed=0, val_fraction=0.2)
    assert fresh.text("train", 300) == small_after_big
    assert big.startswith(small_after_big) and len(small_after_big) >= 300


def test_single_file_splits_into_disjoint_contiguous_blocks(tmp_path):
    path = tmp_path / "book.txt"
    data = bytes(np.random.default_rng(0).integers(32, 127, 50_000, dtype=np.uint8))
    path.write_bytes(data)
    c = Corpus(str(path), "*", seed=1, val_fraction=0.1)
    blocks = sorted(c._train + c._val, key=lambda u: u[2])
    assert b"".join(data[u[2]:u[2] + u[3]] for u in blocks) == data
    assert len(c.text("train", None)) + len(c.text("val", None)) == len(data)
    assert {u[2] for u in c._train}.isdisjoint({u[2] for u in c._val}) and c._val


def test_default_corpus_is_the_stdlib_sources():
    corpus = load_corpus(None, None, 0, 0.1)
    assert corpus.root == os.path.abspath(sysconfig.get_paths()["stdlib"])
    text = corpus.text("val", 10_000)
    assert len(text) >= 10_000 and b"def " in text
    assert not any("site-packages" in u[1] for u in corpus._train + corpus._val)
    assert load_corpus(None, None, 0, 0.1) is corpus


def test_window_sampler_resumes_at_its_position():
    a = WindowSampler(10_000, context=16, batch_size=8, seed=5)
    seq = [a.next_starts().tolist() for _ in range(200)]  # several epochs
    assert a.epoch > 1
    b = WindowSampler(10_000, context=16, batch_size=8, seed=5)
    for _ in range(77):
        b.next_starts()
    c = WindowSampler(10_000, context=16, batch_size=8, seed=5)
    c.load_state_dict(b.state_dict())
    assert [c.next_starts().tolist() for _ in range(123)] == seq[77:]
    starts = np.concatenate(seq)
    assert starts.min() >= 0 and starts.max() + 17 <= 10_000


def test_classification_split_depends_only_on_the_seed():
    a, b = load_classification("iris", 7, 0.2), load_classification("iris", 7, 0.2)
    assert np.array_equal(a.X_val, b.X_val) and np.array_equal(a.y_train, b.y_train)
    c = load_classification("iris", 8, 0.2)
    assert not np.array_equal(a.y_val, c.y_val)
    assert len(a.y_val) == 30 and a.n_classes == 3
    digits = load_classification("digits", 0, 0.2)
    assert digits.sample_shape == (8, 8)


def test_features_constant_in_training_part_are_not_blown_up():
    # digits with data seed 5: some pixel is 0 in every training image but not in one validation
    # image; dividing by its zero spread once made that pixel ~1e6 and the sample's loss thousands
    d = load_classification("digits", 5, 0.2)
    assert np.isfinite(d.X_val).all()
    assert np.abs(d.X_val).max() < 100
    assert np.abs(d.X_train).max() < 100
    # features that do vary in the training part are still standardised there
    varying = d.X_train.std(0) > 0
    assert np.allclose(d.X_train[:, varying].mean(0), 0.0, atol=1e-5)
    assert np.allclose(d.X_train[:, varying].std(0), 1.0, atol=1e-4)
