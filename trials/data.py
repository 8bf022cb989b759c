"""Data for the built-in trainers: scikit-learn's bundled classification sets, user arrays
(``.npz``, ``.csv``), and a byte-level text corpus (default: the Python standard library's sources).

Every split is a pure function of its seed. Loaded data is cached per process, keyed by everything
that determines it, because a worker runs many trials.
"""
from __future__ import annotations

import fnmatch
import functools
import hashlib
import os
import sysconfig
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "SKLEARN_SETS", "load_classification", "Corpus", "load_corpus", "default_corpus_root",
    "WindowSampler",
]

SKLEARN_SETS = ("digits", "iris", "wine", "breast_cancer")
_REGRESSION_SETS = ("diabetes", "linnerud")


@dataclass(frozen=True)
class ClassificationData:
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    n_classes: int

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])


@functools.lru_cache(maxsize=16)
def _raw_arrays(data: str, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    if data in SKLEARN_SETS:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{data}")()
        # Digits keep their 8x8 image shape so a CNN sees pixels as a grid; an MLP flattens.
        X = bunch.images if data == "digits" else bunch.data
        return np.asarray(X, dtype=np.float32), np.asarray(bunch.target)
    if data in _REGRESSION_SETS:
        raise ValueError(
            f"param 'data': {data!r} is a regression set and builtin:classifier needs labels; "
            f"choose one of {list(SKLEARN_SETS)} or a .npz/.csv file"
        )
    if data.endswith(".npz"):
        return _read_npz(data)
    if data.endswith(".csv"):
        return _read_csv(data, target)
    raise ValueError(
        f"param 'data' must be one of {list(SKLEARN_SETS)} or a path to a .npz or .csv file, got {data!r}"
    )


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    if not os.path.isfile(path):
        raise ValueError(f"param 'data': file {path!r} does not exist; give an existing .npz path")
    with np.load(path, allow_pickle=False) as f:
        keys = list(f.keys())
        xk = next((k for k in ("X", "x") if k in keys), None)
        if xk is None or "y" not in keys:
            raise ValueError(
                f"param 'data': {path!r} must hold arrays 'X' (samples first) and 'y' (one label per "
                f"sample), found {keys}"
            )
        X, y = f[xk], f["y"]
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"param 'data': X in {path!r} must be numeric, got dtype {X.dtype}")
    return X.astype(np.float32), y


def _read_csv(path: str, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    if not os.path.isfile(path):
        raise ValueError(f"param 'data': file {path!r} does not exist; give an existing .csv path")
    frame = pd.read_csv(path)
    column = frame.columns[-1] if target is None else target
    if column not in frame.columns:
        raise ValueError(
            f"param 'target': column {column!r} is not in {path!r}; its columns are {list(frame.columns)}"
        )
    features = frame.drop(columns=[column])
    bad = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if bad:
        raise ValueError(
            f"param 'data': column {bad[0]!r} of {path!r} is not numeric; encode it as numbers, or "
            f"name it as the label with 'target'"
        )
    return features.to_numpy(dtype=np.float32), frame[column].to_numpy()


def load_classification(data: str, seed: int, val_fraction: float, target: str | None = None) -> ClassificationData:
    """Standardised features (statistics from the training part), labels 0..C-1, and a split that
    depends only on ``seed``."""
    X, y = _raw_arrays(data, target)
    if X.ndim < 2:
        raise ValueError(f"param 'data': X must have a sample axis and features, got shape {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(
            f"param 'data': X has {len(X)} samples (shape {X.shape}) but y has shape {y.shape}; "
            f"give one label per sample"
        )
    if not np.isfinite(X).all():
        raise ValueError(f"param 'data': X of {data!r} holds NaN or inf; clean or impute the data first")
    classes, labels = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"param 'data': {data!r} has {len(classes)} class; a classifier needs at least 2")
    order = np.random.default_rng(seed).permutation(len(X))
    n_val = max(1, int(round(len(X) * val_fraction)))
    if n_val >= len(X):
        raise ValueError(
            f"param 'val_fraction' leaves no training data: {n_val} of {len(X)} samples; lower it"
        )
    val, train = order[:n_val], order[n_val:]
    # A feature constant in the training part (a digits pixel that is always 0 there) is centred
    # but not scaled, as scikit-learn's StandardScaler does: dividing by its zero spread (plus a
    # tiny epsilon) turned one validation pixel into ~1e6 and its sample's loss into thousands.
    mean, std = X[train].mean(0), X[train].std(0)
    std = np.where(std > 1e-8 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    X = (X - mean) / std
    return ClassificationData(X[train], labels[train].astype(np.int64), X[val], labels[val].astype(np.int64),
                              len(classes))


# ----------------------------------------------------------------------------------------- text


def default_corpus_root() -> str:
    return sysconfig.get_paths()["stdlib"]


def _unit(seed: int, tag: str, name: str) -> float:
    """A uniform number in [0, 1) from (seed, tag, name): stable across processes and machines,
    unlike ``hash``."""
    digest = hashlib.blake2b(f"{seed}\0{tag}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


class Corpus:
    """A byte corpus split into training and validation text that never overlap.

    A folder splits by file: each file goes to validation with probability ``val_fraction``,
    decided by a hash of (seed, relative path). A single file splits into contiguous 64 KiB blocks
    the same way. Text is read lazily in a seed-shuffled order of units, so a run reads only as
    much as it asks for, and the first ``n`` bytes for a seed are the same whoever asks first.
    Thread-safe.
    """

    BLOCK = 1 << 16

    def __init__(self, root: str, pattern: str, seed: int, val_fraction: float) -> None:
        self.root, self.pattern, self.seed, self.val_fraction = root, pattern, seed, val_fraction
        self._lock = threading.Lock()
        units = self._units()
        train = [u for u in units if _unit(seed, "val", u[0]) >= val_fraction]
        val = [u for u in units if _unit(seed, "val", u[0]) < val_fraction]
        if not val and len(units) > 1:
            val = [min(train, key=lambda u: _unit(seed, "val", u[0]))]
            train.remove(val[0])
        self._train = sorted(train, key=lambda u: _unit(seed, "order", u[0]))
        self._val = sorted(val, key=lambda u: _unit(seed, "order", u[0]))
        self._loaded: dict[str, list[bytes]] = {"train": [], "val": []}

    def _units(self) -> list[tuple[str, str, int, int]]:
        """(name, path, offset, length) per unit; length -1 means the whole file."""
        if os.path.isfile(self.root):
            size = os.path.getsize(self.root)
            block = min(self.BLOCK, max(1, size // 20))
            return [(f"{i}", self.root, off, block) for i, off in enumerate(range(0, size, block))]
        if not os.path.isdir(self.root):
            raise ValueError(f"param 'corpus': {self.root!r} is neither a file nor a folder; give a path to text")
        units = []
        for folder, dirs, files in os.walk(self.root):
            # The stdlib path also holds site-packages: third-party code is not the stdlib corpus.
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("site-packages", "__pycache__"))
            for name in sorted(files):
                if fnmatch.fnmatch(name, self.pattern):
                    path = os.path.join(folder, name)
                    units.append((os.path.relpath(path, self.root), path, 0, -1))
        if not units:
            raise ValueError(
                f"param 'corpus': no files matching corpus_pattern {self.pattern!r} under {self.root!r}; "
                f"change 'corpus_pattern' or 'corpus'"
            )
        return units

    @staticmethod
    def _read(unit: tuple[str, str, int, int]) -> bytes:
        _, path, offset, length = unit
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read() if length < 0 else f.read(length)

    def text(self, part: str, min_bytes: int | None) -> bytes:
        """The first whole units of ``part`` (``train`` or ``val``) totalling at least ``min_bytes``
        (all of them for None)."""
        units = self._train if part == "train" else self._val
        with self._lock:
            loaded = self._loaded[part]
            while len(loaded) < len(units) and (min_bytes is None or sum(map(len, loaded)) < min_bytes):
                loaded.append(self._read(units[len(loaded)]))
            out, total = [], 0
            for chunk in loaded:
                if min_bytes is not None and total >= min_bytes:
                    break
                out.append(chunk)
                total += len(chunk)
        return b"".join(out)


# A worker that runs trials with many seeds keeps only the most recent corpora.
_MAX_CORPORA = 4
_CORPORA: OrderedDict[tuple[str, str, int, float], Corpus] = OrderedDict()
_CORPORA_LOCK = threading.Lock()


def load_corpus(root: str | None, pattern: str | None, seed: int, val_fraction: float) -> Corpus:
    """The process-wide cached corpus for these arguments. ``root`` None is the stdlib sources
    (``*.py``); a user folder defaults to every file."""
    if root is None:
        root, pattern = default_corpus_root(), pattern or "*.py"
    root = os.path.abspath(os.path.expanduser(root))
    key = (root, pattern or "*", int(seed), float(val_fraction))
    with _CORPORA_LOCK:
        if key in _CORPORA:
            _CORPORA.move_to_end(key)
            return _CORPORA[key]
        corpus = _CORPORA[key] = Corpus(root, key[1], key[2], key[3])
        while len(_CORPORA) > _MAX_CORPORA:
            _CORPORA.popitem(last=False)
        return corpus


class WindowSampler:
    """Training windows of ``context + 1`` bytes, in epochs: each epoch shifts the window grid by a
    random offset and visits the windows in a random order, both from (seed, epoch) alone, so the
    data position is just (epoch, cursor) and a resumed run draws exactly the same batches."""

    def __init__(self, n_bytes: int, context: int, batch_size: int, seed: int) -> None:
        self.n_bytes, self.context, self.batch_size, self.seed = n_bytes, context, batch_size, seed
        self.epoch, self.cursor = 0, 0
        self._order: np.ndarray | None = None

    def windows_per_epoch(self, offset: int = 0) -> int:
        return (self.n_bytes - 1 - offset) // self.context

    def _epoch_order(self) -> np.ndarray:
        if self._order is None:
            rng = np.random.default_rng([self.seed, self.epoch])
            offset = int(rng.integers(self.context)) if self.windows_per_epoch(self.context) > 0 else 0
            n = self.windows_per_epoch(offset)
            self._order = offset + rng.permutation(n) * self.context
        return self._order

    def next_starts(self) -> np.ndarray:
        """Start offsets of the next batch; an epoch's last partial batch is dropped."""
        order = self._epoch_order()
        if self.cursor + self.batch_size > len(order):
            self.epoch, self.cursor, self._order = self.epoch + 1, 0, None
            order = self._epoch_order()
        starts = order[self.cursor:self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return starts

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.cursor, self._order = int(state["epoch"]), int(state["cursor"]), None
