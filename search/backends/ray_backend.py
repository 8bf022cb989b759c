"""Ray backend: long-lived worker actors reused across trials, per-trial CPUs/GPUs (fractions
allowed).

One controller thread per slot drives one actor: once Ray has placed the actor it takes the next
spec, calls the actor's ``run`` (one plain call per trial) and, if the trial lasts, long-polls the
actor's ``drain`` for the events so far; events are numbered and forwarded in order. A dead actor
(node lost, OOM-killed) becomes a ``lost`` event for its attempt and a fresh actor for the slot.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import queue
import threading
import time
from typing import Any

from search.backends.base import Backend, BackendError, drain
from trials.api import TrialEvent, TrialSpec

__all__ = ["RayBackend", "TrialWorker"]

log = logging.getLogger("search.ray")

class TrialWorker:
    """The actor body (wrapped with ``ray.remote`` on first use, so importing this module does not
    import ray). ``run`` trains one trial and returns its events; while it runs, ``drain``
    long-polls the events so far, and ``stop`` flags the trial's attempt (a late flag cannot stop a
    later attempt of the same trial): hence ``max_concurrency=3``.

    Events are numbered, because ``drain`` and the end of ``run`` share one queue: the caller
    merges both channels by number. A short trial costs one plain actor call, not a stream.
    """

    def __init__(self) -> None:
        import ray

        self._stop: set[tuple[int, int]] = set()  # (trial id, attempt)
        self._node = ray.get_runtime_context().get_node_id()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def node_id(self) -> str:
        return self._node

    def stop(self, trial_id: int, attempt: int) -> None:
        self._stop.add((trial_id, attempt))

    def _emit(self, ev: TrialEvent) -> None:
        with self._lock:  # numbering and enqueueing together keep numbers in queue order
            self._events.put((next(self._seq), ev))

    def drain(self, timeout: float) -> list[tuple[int, TrialEvent]]:
        return [item for item in drain(self._events, timeout) if item[1] is not None]

    def run(self, spec: TrialSpec) -> list[tuple[int, TrialEvent]]:
        from trials.runner import run_trial

        try:
            done = run_trial(spec, lambda ev: None if ev.kind == "done" else self._emit(ev),
                             lambda: (spec.trial_id, spec.attempt) in self._stop)
            self._emit(dataclasses.replace(done, node=self._node))
        except BaseException as exc:  # noqa: BLE001 - surfaces as a lost attempt
            self._emit(TrialEvent("lost", spec.trial_id, spec.attempt, error=f"{type(exc).__name__}: {exc}"))
        finally:
            self._stop.discard((spec.trial_id, spec.attempt))
        items = [item for item in drain(self._events, 0.0) if item[1] is not None]
        # Wake a drain call that may be waiting on the (now empty) queue, so the caller does not
        # wait out its timeout; a drain that finds this marker later ignores it.
        self._events.put((-1, None))
        return items


_REMOTE_WORKER = None


def _worker_class():
    global _REMOTE_WORKER
    if _REMOTE_WORKER is None:
        import ray

        _REMOTE_WORKER = ray.remote(TrialWorker)
    return _REMOTE_WORKER


def init_local_ray(address: str | None = None, **kwargs: Any) -> bool:
    """Connect to ``address`` or start a local Ray instance (free ports; never 6379, which other
    services may hold). Returns True if this call initialised Ray.

    Inside a Ray job (``search submit``) the job's runtime environment already carries the user's
    folder, so none is set here; a local instance gets the current folder on workers' path."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    runtime_env = kwargs.pop("runtime_env", None)
    in_job = bool(os.environ.get("RAY_JOB_ID") or os.environ.get("RAY_ADDRESS"))
    if runtime_env is None and address is None and not in_job:
        path = os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH", "")] if p)
        runtime_env = {"env_vars": {"PYTHONPATH": path}}
    if runtime_env is not None:
        kwargs["runtime_env"] = runtime_env
    if address is None and not in_job:
        # "local": always a fresh instance, even if `ray start` left a cluster on this machine.
        address = "local"
        kwargs.setdefault("include_dashboard", False)
    ray.init(address=address, logging_level=logging.WARNING, **kwargs)
    return True


class RayBackend(Backend):
    def __init__(self, address: str | None = None, runtime_env: dict | None = None) -> None:
        self.address = address
        self.runtime_env = runtime_env
        self._events: queue.SimpleQueue[TrialEvent] = queue.SimpleQueue()
        self._specs: queue.Queue[TrialSpec | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._actors: dict[int, Any] = {}  # slot -> actor
        self._running: dict[int, tuple[Any, int]] = {}  # trial_id -> (actor, attempt)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._owns_ray = False
        self._placed: set[int] = set()  # slots whose actor Ray has placed

    def start(self, *, parallel: int, cpus: float, gpus: float) -> None:
        import ray

        try:
            self._owns_ray = init_local_ray(self.address, runtime_env=self.runtime_env)
        except Exception as exc:  # noqa: BLE001 - ray raises many kinds; the user needs one line
            raise BackendError(f"cannot start or reach Ray at {self.address or 'a local instance'}: {exc}") from None
        total = ray.cluster_resources()
        if cpus > total.get("CPU", 0):
            raise BackendError(f"resources.cpus={cpus} but the Ray cluster has {total.get('CPU', 0)} CPUs; lower it")
        if gpus > total.get("GPU", 0):
            raise BackendError(f"resources.gpus={gpus} but the Ray cluster has {total.get('GPU', 0)} GPUs; "
                               "set resources.gpus: 0 or add GPU nodes")
        self._cpus, self._gpus = cpus, gpus
        for slot in range(parallel):
            t = threading.Thread(target=self._slot_loop, args=(slot,), name=f"ray-slot-{slot}", daemon=True)
            t.start()
            self._threads.append(t)

    def _new_actor(self):
        return _worker_class().options(num_cpus=self._cpus, num_gpus=self._gpus, max_concurrency=3,
                                       max_restarts=0).remote()

    def _ready_actor(self, slot: int):
        """This slot's actor, started if needed and waited for until Ray has placed it. A slot
        takes work only once its actor is live, so when the cluster shrinks (a node lost) the
        specs flow to the slots that still have resources instead of waiting on a pending actor."""
        import ray

        actor = self._actors.get(slot)
        if actor is not None:
            return actor
        actor = self._actors[slot] = self._new_actor()
        ready = actor.node_id.remote()
        while not self._closed.is_set():
            done, _ = ray.wait([ready], timeout=1.0)
            if done:
                try:
                    ray.get(ready)
                    self._placed.add(slot)
                    return actor
                except ray.exceptions.RayError:
                    actor = self._actors[slot] = self._new_actor()
                    ready = actor.node_id.remote()
        return None

    def wait_placed(self, timeout: float = 120.0) -> bool:
        """Block until every slot's actor is placed (or ``timeout``); True if all are. Trials do
        not need this (a slot takes work once placed); benchmarks use it to time dispatch alone."""
        deadline = time.monotonic() + timeout
        while len(self._placed) < len(self._threads):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _slot_loop(self, slot: int) -> None:
        from ray.exceptions import RayError

        while not self._closed.is_set():
            actor = self._ready_actor(slot)
            if actor is None:
                return
            spec = self._specs.get()
            if spec is None:
                return
            with self._lock:
                self._running[spec.trial_id] = (actor, spec.attempt)
            finished = False
            try:
                for ev in self._events_of(actor, spec):
                    if not self._closed.is_set():
                        self._events.put(ev)
                    if ev.kind in ("done", "lost"):
                        finished = True
            except RayError as exc:
                self._actors.pop(slot, None)
                if not finished and not self._closed.is_set():
                    reason = str(exc).strip().splitlines()[0][:300]
                    self._events.put(TrialEvent("lost", spec.trial_id, spec.attempt,
                                                error=f"worker lost: {type(exc).__name__}: {reason}"))
            finally:
                with self._lock:
                    # The next attempt of this trial may already run on another slot: leave it.
                    running = self._running.get(spec.trial_id)
                    if running is not None and running[1] == spec.attempt:
                        del self._running[spec.trial_id]

    # A trial shorter than this needs no second call: its events come back with ``run``'s result.
    FIRST_POLL_S = 0.05

    def _events_of(self, actor, spec: TrialSpec):
        """Yield a trial's events in order while it runs: ``run``'s result at the end, and
        long-polled ``drain`` batches meanwhile; both carry event numbers, merged here."""
        import ray

        run_ref = actor.run.remote(spec)
        poll_ref = None
        next_seq: int | None = None
        held: dict[int, TrialEvent] = {}

        def release(batch):
            nonlocal next_seq
            for seq, ev in batch:
                held[seq] = ev
            if next_seq is None and held:
                next_seq = min(held)
            while next_seq in held:
                yield held.pop(next_seq)
                next_seq += 1

        timeout = self.FIRST_POLL_S
        while True:
            refs = [run_ref] if poll_ref is None else [run_ref, poll_ref]
            ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
            if poll_ref is not None and poll_ref in ready:
                yield from release(ray.get(poll_ref))
                poll_ref = None
            if run_ref in ready:
                final = ray.get(run_ref)
                if poll_ref is not None:
                    yield from release(ray.get(poll_ref))
                yield from release(final)
                yield from (held[k] for k in sorted(held))  # numbers are dense; nothing is left
                return
            if poll_ref is None:
                poll_ref = actor.drain.remote(1.0)
                timeout = None

    def submit(self, spec: TrialSpec) -> None:
        self._specs.put(spec)

    def request_stop(self, trial_id: int) -> None:
        with self._lock:
            running = self._running.get(trial_id)
        if running is not None:
            actor, attempt = running
            actor.stop.remote(trial_id, attempt)

    def abandon(self, trial_id: int, attempt: int) -> None:
        import ray

        with self._lock:
            running = self._running.get(trial_id)
        if running is not None and running[1] == attempt:
            # The slot loop sees the actor die, drops it and starts a fresh one; the attempt's
            # "lost" event is for an attempt the controller has already ended, so it is ignored.
            try:
                ray.kill(running[0], no_restart=True)
            except Exception:  # noqa: BLE001 - already dead is fine
                pass

    def poll(self, timeout: float) -> list[TrialEvent]:
        return drain(self._events, timeout)

    def shutdown(self) -> None:
        import ray

        self._closed.set()
        for _ in self._threads:
            self._specs.put(None)
        for actor in list(self._actors.values()):
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already dead is fine
                pass
        for t in self._threads:
            t.join(timeout=5)
        self._actors.clear()
        if self._owns_ray:
            ray.shutdown()
