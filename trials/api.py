"""The contract between the controller and a trial worker: an immutable spec in, events out."""
from __future__ import annotations

import copy
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping

__all__ = ["TrialSpec", "TrialEvent", "EventKind", "Reporter", "file_checksum", "snapshot"]


@dataclass(frozen=True)
class TrialSpec:
    """Everything a worker needs to run one attempt of one trial. Immutable and picklable.

    ``config`` is the study's fixed ``trial.params`` merged with this trial's sampled parameters.
    ``resume_from`` names a checkpoint file (with its ``resume_checksum``) to continue from: the
    trial's own last checkpoint after a crash, or a parent's when PBT exploits.
    ``seed`` is this trial's own seed (weights, batch order); ``data_seed`` seeds what every trial of
    a study must share, the train/validation split, so their validation metrics compare. The
    controller sets it to the study's seed; None falls back to ``seed``.
    """

    study: str
    trial_id: int
    number: int
    attempt: int
    entrypoint: str | Callable[..., Any]  # a callable travels with the spec (cloudpickle on Ray)
    config: Mapping[str, Any]
    seed: int
    objective_metrics: tuple[str, ...]
    checkpoint_dir: str
    resume_from: str | None = None
    resume_checksum: str | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    data_seed: int | None = None
    # A trial on several workers (torch.distributed, set up by Ray Train): this process's rank and
    # the world size. Reports and checkpoints of rank 0 are the trial's.
    workers: int = 1
    rank: int = 0
    # Write checkpoints in the training thread (the simulated backend needs a fixed event order).
    sync_checkpoints: bool = False


class EventKind(str, Enum):
    """What a ``TrialEvent`` says. A string enum: it compares equal to its value."""

    __str__ = str.__str__
    __format__ = str.__format__

    REPORT = "report"
    CHECKPOINT = "checkpoint"
    DONE = "done"
    LOST = "lost"  # sent by a backend, not a worker: the worker running the attempt died


@dataclass(frozen=True)
class TrialEvent:
    """One message from a worker. ``kind`` is ``report``, ``checkpoint`` or ``done``.

    - report: ``step`` and ``metrics``.
    - checkpoint: ``step``, ``path`` and ``checksum`` of a file that is already durable.
    - done: final ``metrics`` (empty on failure), ``error`` (None on success), ``stopped`` when the
      trial ended because the controller asked it to, and ``step`` the last step reported.
    - lost: from the backend when the worker died without a ``done``; ``error`` says how.
    """

    kind: EventKind
    trial_id: int
    attempt: int
    step: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    path: str | None = None
    checksum: str | None = None
    error: str | None = None
    stopped: bool = False
    node: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", EventKind(self.kind))


def _any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (torch.distributed, when it is set up)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def file_checksum(path: str) -> str:
    """``sha256:<hex>`` of a file or of an object behind a URL."""
    from trials import artifacts

    return artifacts.checksum(path)


def snapshot(state: Any) -> Any:
    """A copy of ``state`` that training can no longer change: tensors cloned to CPU, containers
    rebuilt, other leaves deep-copied. This is the only part of a checkpoint the trainer waits for."""
    import torch

    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, Mapping):
        return {k: snapshot(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        items = [snapshot(v) for v in state]
        return items if isinstance(state, list) else tuple(items)
    return copy.deepcopy(state)


def _write_durably(state: Any, path: str) -> None:
    """``torch.save`` to a temporary name, fsync, atomic rename, fsync the folder: after this
    returns, the file survives a crash, and a reader never sees a half-written one."""
    import torch

    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(os.path.dirname(path) or ".", os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Reporter:
    """Handed to an objective: report metrics, save and load checkpoints, learn when to stop.

    ``report`` returns True once the controller has asked this trial to stop; a cooperative
    objective returns then. Not thread-safe: one trial, one thread.

    Checkpoints are written lazily and asynchronously (the DataStates-LLM pattern): ``save_checkpoint``
    only snapshots the state to CPU memory and returns; a background thread writes the file and
    emits the ``checkpoint`` event once it is durable. At most one write is in flight, so memory
    holds at most two snapshots. ``flush`` waits for pending writes; ``run_trial`` calls it before
    the ``done`` event, so every checkpoint event precedes ``done``.
    """

    def __init__(
        self,
        spec: TrialSpec,
        emit: Callable[[TrialEvent], None],
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        self.spec = spec
        self._emit = emit
        self._stop_requested = stop_requested
        self.last_step: int | None = None
        self.last_metrics: dict[str, float] = {}
        # True once the objective has been told to stop: only then does its end count as stopped
        # (a trial that finished all its steps before the request arrived completed normally).
        self.stop_seen = False
        self._writer: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    @property
    def should_stop(self) -> bool:
        asked = self._stop_requested()
        if self.spec.workers > 1:
            # Every rank must stop at the same report, or the others would wait forever in their
            # next collective: the ranks agree (any rank that saw the request stops them all).
            asked = _any_rank(asked)
        if asked:
            self.stop_seen = True
        return self.stop_seen

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def data_seed(self) -> int:
        """The seed of the train/validation split: the study's, shared by all its trials."""
        return self.spec.seed if self.spec.data_seed is None else self.spec.data_seed

    def report(self, step: int, **metrics: float) -> bool:
        for k, v in metrics.items():
            if isinstance(v, bool):  # True is an int to Python: it would count as 1.0
                raise TypeError(f"report({k}={v!r}): metrics must be numbers, got a boolean")
        clean = {str(k): float(v) for k, v in metrics.items()}
        self.last_step = int(step)
        self.last_metrics.update(clean)
        self._emit(TrialEvent("report", self.spec.trial_id, self.spec.attempt, step=int(step), metrics=clean))
        return self.should_stop

    def checkpoint_path(self, step: int) -> str:
        """Where ``save_checkpoint`` writes the file: the checkpoint folder, or a local staging
        folder when the artifact store is a URL (the file is uploaded once durable)."""
        from trials import artifacts

        name = f"step-{int(step):08d}.pt"
        if artifacts.is_url(self.spec.checkpoint_dir):
            spec = self.spec
            return os.path.join(artifacts.staging_dir(spec.study, str(spec.trial_id), str(spec.attempt)), name)
        return os.path.join(self.spec.checkpoint_dir, name)

    def save_checkpoint(self, state: Mapping[str, Any], step: int) -> str:
        """Snapshot ``state`` and write it with ``torch.save`` in the background; returns the path
        the file will have. The ``checkpoint`` event follows once the file is durable. A failed
        write is raised by the next ``save_checkpoint`` or ``flush``."""
        path = self.checkpoint_path(step)
        if self.spec.rank != 0:
            return path  # rank 0 writes the trial's checkpoint (DDP replicas hold the same state)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        frozen = snapshot(dict(state))
        if self.spec.sync_checkpoints:
            self._wait_pending()
            self._write_and_record(frozen, path, int(step))
            return path
        self._wait_pending()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ckpt-{self.spec.trial_id}")
        self._pending = self._writer.submit(self._write_and_record, frozen, path, int(step))
        return path

    def _write_and_record(self, state: dict[str, Any], path: str, step: int) -> None:
        _write_durably(state, path)
        self.record_checkpoint(path, step)

    def _wait_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def flush(self) -> None:
        """Block until every checkpoint handed to ``save_checkpoint`` is durable and recorded;
        re-raise a failed write. Idempotent; a later ``save_checkpoint`` starts a new writer."""
        try:
            self._wait_pending()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None

    def record_checkpoint(self, path: str, step: int) -> None:
        """Tell the controller about a checkpoint file that is already durable on disk; with a URL
        artifact store it is uploaded first (and the local copy removed)."""
        from trials import artifacts

        digest = file_checksum(path)
        where = os.path.abspath(path)
        if artifacts.is_url(self.spec.checkpoint_dir):
            where = artifacts.join(self.spec.checkpoint_dir, os.path.basename(path))
            artifacts.publish(path, where)
            os.remove(path)
        self._emit(TrialEvent("checkpoint", self.spec.trial_id, self.spec.attempt, step=int(step),
                              path=where, checksum=digest))

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The state to resume from, or None for a fresh start. Verifies the recorded checksum."""
        if not self.spec.resume_from:
            return None
        import tempfile

        import torch

        from trials import artifacts

        src = self.spec.resume_from
        if not artifacts.exists(src):
            raise FileNotFoundError(
                f"resume_from {src!r} does not exist; resume from a checkpoint path recorded by a checkpoint event"
            )
        with tempfile.TemporaryDirectory(dir=artifacts.staging_dir()) as tmp:
            local = artifacts.fetch(src, tmp) if artifacts.is_url(src) else src
            if self.spec.resume_checksum is not None:
                got = file_checksum(local)
                if got != self.spec.resume_checksum:
                    raise RuntimeError(
                        f"checkpoint {src} is corrupt: checksum {got} != recorded {self.spec.resume_checksum}"
                    )
            return torch.load(local, map_location="cpu", weights_only=False)
