"""Ray backend: long-lived worker actors reused across trials, per-trial CPUs/GPUs (fractions
allowed), events streamed back through an actor generator.

One controller thread per slot drives one actor: it takes the next spec, calls the actor's
streaming ``run`` and forwards each event. A dead actor (node lost, OOM-killed) becomes a ``lost``
event for its attempt and a fresh actor for the slot.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
from typing import Any

from search.backends.base import Backend, BackendError, drain
from trials.api import TrialEvent, TrialSpec

__all__ = ["RayBackend", "TrialWorker"]

log = logging.getLogger("search.ray")

class TrialWorker:
    """The actor body (wrapped with ``ray.remote`` on first use, so importing this module does not
    import ray). ``max_concurrency=2``: ``stop`` must get through while ``run`` is streaming."""

    def __init__(self) -> None:
        import ray

        self._stop: set[int] = set()
        self._node = ray.get_runtime_context().get_node_id()

    def node_id(self) -> str:
        return self._node

    def stop(self, trial_id: int) -> None:
        self._stop.add(trial_id)

    def run(self, spec: TrialSpec):
        from trials.runner import run_trial

        events: queue.SimpleQueue = queue.SimpleQueue()

        def target() -> None:
            try:
                run_trial(spec, events.put, lambda: spec.trial_id in self._stop)
            except BaseException as exc:  # noqa: BLE001 - surfaces as a lost attempt
                events.put(TrialEvent("lost", spec.trial_id, spec.attempt, error=f"{type(exc).__name__}: {exc}"))

        threading.Thread(target=target, name=f"trial-{spec.trial_id}", daemon=True).start()
        try:
            while True:
                ev = events.get()
                if ev.kind == "done":
                    ev = dataclasses.replace(ev, node=self._node)
                yield ev
                if ev.kind in ("done", "lost"):
                    return
        finally:
            self._stop.discard(spec.trial_id)


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
        self._running: dict[int, Any] = {}  # trial_id -> actor
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._owns_ray = False

    def describe(self) -> str:
        return f"ray ({self.address or 'local'})"

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
        return _worker_class().options(num_cpus=self._cpus, num_gpus=self._gpus, max_concurrency=2,
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
                    return actor
                except ray.exceptions.RayError:
                    actor = self._actors[slot] = self._new_actor()
                    ready = actor.node_id.remote()
        return None

    def _slot_loop(self, slot: int) -> None:
        import ray
        from ray.exceptions import RayError

        while not self._closed.is_set():
            actor = self._ready_actor(slot)
            if actor is None:
                return
            spec = self._specs.get()
            if spec is None:
                return
            with self._lock:
                self._running[spec.trial_id] = actor
            finished = False
            try:
                for ref in actor.run.remote(spec):
                    ev = ray.get(ref)
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
                    self._running.pop(spec.trial_id, None)

    def submit(self, spec: TrialSpec) -> None:
        self._specs.put(spec)

    def request_stop(self, trial_id: int) -> None:
        with self._lock:
            actor = self._running.get(trial_id)
        if actor is not None:
            actor.stop.remote(trial_id)

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
