"""One trial on several workers: Ray Train's ``TorchTrainer`` runs the attempt on
``spec.workers`` processes with torch.distributed set up (gloo on CPU, NCCL on GPUs), each with
the trial's ``cpus``/``gpus``. Every rank runs the objective; rank 0's reports, checkpoints and
``done`` are the trial's, and a stop request reaches every rank (they agree at each report, see
``trials.api.Reporter.should_stop``). Ray Train does not retry: a worker that dies fails the fit,
the attempt is ``lost``, and the controller retries the whole trial from its newest checkpoint
(``max_failures`` counts it once). The built-in trainers shard the model with FSDP given
``parallel: fsdp``; their checkpoints then hold every rank's shards (``torch.distributed.checkpoint``,
gathered into rank 0's file), so any later attempt may run on another worker count.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import tempfile
import threading
import time
from typing import Callable

from trials.api import TrialEvent, TrialSpec

__all__ = ["run_on_workers", "TrainAttempt"]

log = logging.getLogger(__name__)

# Ray Train's first API runs the loop as a trainer actor plus worker actors; the trainer actor
# is given no CPU so a trial needs exactly workers x cpus.
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")

_channel_cls = None


def _channel():
    """The per-attempt mailbox between the workers and this backend (an actor without CPUs)."""
    global _channel_cls
    if _channel_cls is None:
        import ray

        @ray.remote(num_cpus=0)
        class Channel:
            def __init__(self) -> None:
                self.events: list[TrialEvent] = []
                self.stop = False

            def put(self, ev: TrialEvent) -> None:
                self.events.append(ev)

            def take(self) -> list[TrialEvent]:
                out, self.events = self.events, []
                return out

            def request_stop(self) -> None:
                self.stop = True

            def stopped(self) -> bool:
                return self.stop

        _channel_cls = Channel
    return _channel_cls.remote()


def _worker_loop(cfg: dict) -> None:
    """Runs on each Ray Train worker."""
    import ray
    import ray.train

    from trials.runner import run_trial

    channel = cfg["channel"]
    rank = ray.train.get_context().get_world_rank()
    spec = dataclasses.replace(cfg["spec"], rank=rank)
    seen = {"at": 0.0, "stop": False}

    def stop_requested() -> bool:
        now = time.monotonic()
        if now - seen["at"] > 0.2:  # one round trip at most every 0.2 s
            seen["at"], seen["stop"] = now, bool(ray.get(channel.stopped.remote()))
        return seen["stop"]

    run_trial(spec, channel.put.remote if rank == 0 else (lambda ev: None), stop_requested)


# What a collective says on a rank whose peer process died (gloo over TCP; NCCL's own words).
_PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "remote worker", "NCCL communicator was aborted")


def _worker_died(error: BaseException | None) -> bool:
    """Whether the fit failed because a worker process died (not because the objective raised)."""
    text = f"{type(error).__name__}: {error}" if error is not None else ""
    return any(k in text for k in ("ActorDiedError", "RayActorError", "ActorUnavailableError", "died"))


_registry_lock = threading.RLock()
_serial = itertools.count()


def _guard_tune_registry() -> None:
    """Ray Tune's job-wide trainable registry is not thread-safe: two fits starting at once in this
    process (trials in parallel) make one fail with "dictionary changed size during iteration"
    while the other registers. Its writes take one lock here (once; a Ray without that registry
    is left alone)."""
    try:
        from ray.tune.registry import _global_registry as registry
    except ImportError:
        return
    if getattr(registry, "_search_locked", False):
        return
    for name in ("register", "flush_values", "unregister"):
        method = getattr(registry, name, None)
        if method is None:
            continue

        def locked(*args, _method=method, **kwargs):
            with _registry_lock:
                return _method(*args, **kwargs)

        setattr(registry, name, locked)
    registry._search_locked = True


@dataclasses.dataclass
class TrainAttempt:
    """A running multi-worker attempt, for ``request_stop``."""

    attempt: int
    channel: object

    def request_stop(self) -> None:
        self.channel.request_stop.remote()


def run_on_workers(spec: TrialSpec, put: Callable[[TrialEvent], None], closed: threading.Event,
                   started: Callable[[TrainAttempt], None]) -> None:
    """Run one attempt of ``spec`` on ``spec.workers`` Ray Train workers, handing rank 0's events to
    ``put`` as they arrive; ends with a ``done`` or one ``lost`` event."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    _guard_tune_registry()
    channel = _channel()
    started(TrainAttempt(spec.attempt, channel))
    per_worker = {"CPU": float(spec.cpus), **({"GPU": float(spec.gpus)} if spec.gpus else {})}
    storage = tempfile.mkdtemp(prefix="search-train-")
    # Ray Tune registers a trainer's trainable under its class name, job-wide, and builds the trial
    # from that name: two attempts fitting at once as plain TorchTrainers would share the name and
    # one could start the other's loop. A class of its own per attempt keeps them apart.
    own = type(f"TorchTrainer_{spec.number}_{spec.attempt}_{next(_serial)}", (TorchTrainer,), {})
    trainer = own(
        _worker_loop, train_loop_config={"spec": spec, "channel": channel},
        scaling_config=ScalingConfig(num_workers=spec.workers, use_gpu=spec.gpus > 0,
                                     resources_per_worker=per_worker, trainer_resources={"CPU": 0}),
        run_config=RunConfig(storage_path=storage, name=f"trial-{spec.number:05d}-attempt-{spec.attempt}",
                             failure_config=FailureConfig(max_failures=0)),
    )
    failure: dict[str, BaseException] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - reported below as a lost attempt
            failure["error"] = exc
            log.debug("trial %d attempt %d: Ray Train's fit failed", spec.number, spec.attempt, exc_info=True)

    runner = threading.Thread(target=fit, name=f"train-{spec.number}", daemon=True)
    runner.start()
    finished = False
    done: TrialEvent | None = None  # rank 0's, held until the fit has ended
    while True:
        alive = runner.is_alive()
        for ev in ray.get(channel.take.remote()):
            if ev.kind == "done":
                done = ev
            elif not closed.is_set():
                put(ev)
        if not alive:
            break
        runner.join(0.2)
    peer_lost = done is not None and done.error is not None and (
        _worker_died(failure.get("error")) or any(k in done.error for k in _PEER_LOST))
    if done is not None and not peer_lost:
        if not closed.is_set():
            put(done)
        finished = True
    # else: rank 0's own error only echoes another worker's death (its collective failed), or it
    # never ended: the attempt is lost, and retried
    try:
        ray.kill(channel)
    except Exception:  # noqa: BLE001 - already gone
        pass
    if not finished and not closed.is_set():
        reason = str(failure.get("error", "the workers ended without a result")).strip().splitlines()
        put(TrialEvent("lost", spec.trial_id, spec.attempt,
                       error=f"worker lost: {type(failure.get('error', RuntimeError())).__name__}: "
                             f"{reason[-1][:300] if reason else ''}"))
