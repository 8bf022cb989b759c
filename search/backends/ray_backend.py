"""Ray backend: long-lived worker actors reused across trials, per-trial CPUs/GPUs (fractions
allowed).

One controller thread per slot drives one actor: once Ray has placed the actor it takes the next
spec, calls the actor's ``run`` (one plain call per trial) and, if the trial lasts, long-polls the
actor's ``drain`` for the events so far; events are numbered and forwarded in order. A dead actor
(node lost, OOM-killed) becomes a ``lost`` event for its attempt and a fresh actor for the slot.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from typing import Any

from search.backends.base import Backend, BackendError, drain
from trials.api import TrialEvent, TrialSpec

__all__ = ["RayBackend", "TrialWorker", "init_local_ray", "shutdown_ray", "local_instance", "local_dir",
           "probe_ray_address", "is_job_server_address"]

log = logging.getLogger("search.ray")
log.setLevel(logging.INFO)  # what is starting, on the CLI's stderr handler; Python callers see it if they log INFO

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


# --- starting or reaching Ray ------------------------------------------------------------------

# Seconds to wait for an address to answer before saying it does not (Ray itself retries for a
# minute or more, printing warnings, before it gives up on an address where nothing listens).
CONNECT_TIMEOUT_S = 5.0
# Keyword arguments that shape a new node: a caller passing them wants its own instance.
_NODE_KWARGS = {"num_cpus", "num_gpus", "resources", "labels", "object_store_memory", "include_dashboard",
                "dashboard_host", "dashboard_port", "_system_config"}
# An HTTP/2 client preface and an empty SETTINGS frame: what a gRPC client (Ray's driver) sends first.
_H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _debug() -> bool:
    return bool(os.environ.get("SEARCH_DEBUG"))


def is_job_server_address(address: str | None) -> bool:
    """``http(s)://HEAD:8265``: the Ray job server (dashboard), which `search submit/jobs/logs/stop`
    talk to; a driver connects to the head's GCS (``HEAD:6379``) or Ray Client (``ray://HEAD:10001``)."""
    return bool(address) and address.split("://", 1)[0].lower() in ("http", "https") and "://" in address


def local_dir() -> str:
    """Where `search ray start` keeps its instance (``$SEARCH_RAY_DIR``, default a per-user folder
    under the temporary directory): Ray's own temp dir for it, its address and pid."""
    return os.environ.get("SEARCH_RAY_DIR") or os.path.join(tempfile.gettempdir(), f"search-ray-{os.getuid()}")


def local_instance() -> dict | None:
    """The instance `search ray start` left running (``{"address", "pid", ...}``), or None when
    there is none or its process is gone."""
    try:
        with open(os.path.join(local_dir(), "instance.json"), encoding="utf-8") as f:
            info = json.load(f)
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


def _host_port(address: str) -> tuple[str, int] | None:
    rest = address.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    return (host, int(port)) if host and port.isdigit() else None


def probe_ray_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """None when a gRPC server (a Ray head's GCS, or a Ray Client server) answers at ``address``
    within ``timeout`` seconds, else why not, in a few words. Ray resolves a loopback host to this
    node's IP before connecting, and so does this probe (except for ``ray://``, which Ray does not)."""
    hp = _host_port(address)
    if hp is None:
        return None  # a form this probe does not read (``auto``): Ray judges it
    host, port = hp
    if not address.startswith("ray://"):
        try:
            from ray._private.services import resolve_ip_for_localhost

            host = resolve_ip_for_localhost(host)
        except Exception:  # noqa: BLE001 - a Ray without it: probe the host as given
            pass
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_H2_HELLO)
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except socket.timeout:
        return f"nothing answered within {timeout:g} s"
    except OSError as exc:
        return (exc.strerror or type(exc).__name__).lower()
    # An HTTP/2 server's first frame is SETTINGS (type 4); anything else is not a Ray head.
    if len(head) < 9 or head[3] != 4:
        return "a server answers there, but not Ray's (no gRPC)"
    return None


@contextlib.contextmanager
def _quiet_ray():
    """Ray's warnings and log lines stay out of our output unless SEARCH_DEBUG is set: the
    token-auth notice every local start prints, client UserWarnings that would come before our
    one-line error."""
    if _debug():
        yield logging.INFO
        return
    auth = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = auth.level
    auth.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield logging.ERROR
    finally:
        auth.setLevel(level)


def _use_token_if_available() -> None:
    """A head started with token authentication (Ray's default) wants its token from a driver that
    connects by address, which Ray enables only for ``auto``: do what it does for ``auto``."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _children(pid: int) -> dict[int, str]:
    """Direct children of ``pid`` -> their start time (Linux /proc; empty elsewhere)."""
    out: dict[int, str] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out[int(name)] = fields[19]
    return out


# The reaper: a small process that outlives a killed driver. It tracks the processes of the Ray
# instance the driver started (those roots and their descendants, polled) until its stdin closes;
# unless the driver said "done" first (a clean shutdown), it kills every one still alive (same pid
# and start time). Ray's own reaper ends the GCS and the raylet, but not the agents they spawned.
_REAPER = r"""
import os, signal, sys, threading, time
def stat(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), fields[19]
    except (OSError, IndexError, ValueError):
        return None
known = {int(p): t for p, t in (a.split(":") for a in sys.argv[1:])}
lock = threading.Lock()
def track():
    while True:
        with lock:
            for name in os.listdir("/proc"):
                if name.isdigit() and int(name) not in known:
                    st = stat(int(name))
                    if st and st[0] in known:
                        known[int(name)] = st[1]
        time.sleep(1.0)  # one /proc scan a second: under 1% of a core here
threading.Thread(target=track, daemon=True).start()
last = ""
for line in sys.stdin:
    last = line.strip()
if last != "done":
    with lock:
        for pid, start in known.items():
            st = stat(pid)
            if st and st[1] == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
"""
_reaper_proc: subprocess.Popen | None = None


def _start_reaper(roots: dict[int, str]) -> None:
    global _reaper_proc
    if not roots or not os.path.isdir("/proc"):
        return
    _reaper_proc = subprocess.Popen([sys.executable, "-c", _REAPER, *(f"{p}:{t}" for p, t in roots.items())],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True, close_fds=True)


def _stop_reaper() -> None:
    """After a clean ``ray.shutdown()``: the reaper has nothing to do."""
    global _reaper_proc
    if _reaper_proc is not None:
        try:
            _reaper_proc.communicate(b"done\n", timeout=5)
        except Exception:  # noqa: BLE001 - it is gone or stuck; either way nothing is left to reap
            _reaper_proc.kill()
        _reaper_proc = None


def init_local_ray(address: str | None = None, **kwargs: Any) -> bool:
    """Connect to Ray and return True if this call initialised it (False: already initialised).

    Where: ``address`` if given (a GCS ``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``); else the
    job's cluster inside a Ray job (``search submit``), or ``$RAY_ADDRESS`` when it names a Ray head;
    else the instance `search ray start` left running; else a fresh local instance started lean
    (no dashboard; never port 6379, which other services may hold), whose processes a reaper ends
    if this process is killed. An ``http://`` address is the job server's, which a driver cannot
    use: given as ``address`` it is an error, in ``$RAY_ADDRESS`` it is left to the job verbs.
    An explicit address is probed first, so one that does not answer fails in seconds.

    Outside a job, workers get the current folder on their path (so ``module:function``
    entrypoints import); inside one, the job's runtime environment already carries it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if is_job_server_address(address):
        raise BackendError(f"backend.address {address} is a Ray job server (dashboard) address, which "
                           "`search submit` takes; a study's backend.address is the head's GCS address, "
                           "e.g. HEAD:6379, or ray://HEAD:10001")
    env_address = os.environ.get("RAY_ADDRESS")
    hidden_env = None
    if address is None and is_job_server_address(env_address):
        log.info("RAY_ADDRESS=%s is the job server's address (for search submit/jobs/logs/stop); "
                 "this run does not connect to it", env_address)
        hidden_env, env_address = env_address, None
    in_job = bool(os.environ.get("RAY_JOB_ID") or env_address)
    runtime_env = kwargs.pop("runtime_env", None)
    own_node = bool(_NODE_KWARGS & kwargs.keys())
    reused = False
    if address is None and not in_job and not own_node:
        instance = local_instance()
        if instance is not None:
            why = probe_ray_address(instance["address"], timeout=2.0)
            if why is None:
                address, reused = instance["address"], True
                log.info("using the local Ray instance `search ray start` left at %s", address)
            else:
                log.info("the local Ray instance at %s does not answer (%s); starting a fresh one",
                         instance["address"], why)
    # Workers on this machine get the driver's folder and PYTHONPATH (so `module:function`
    # entrypoints import, on Ray Train's workers too). A fresh instance inherits them from this
    # process's environment, so the workers Ray prestarts serve the first trials (a runtime
    # environment would make Ray start new ones); a reused instance gets them as the job's runtime
    # environment.
    path = os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH", "")] if p)
    if runtime_env is None and reused:
        runtime_env = {"env_vars": {"PYTHONPATH": path}}
    if runtime_env is not None:
        kwargs["runtime_env"] = runtime_env
    fresh = address in (None, "local") and not in_job
    if fresh:
        address = "local"  # never a cluster `ray start` left unless asked for (address: auto)
        kwargs.setdefault("include_dashboard", False)
        log.info("starting a local Ray instance (no dashboard; `search ray start` keeps one running "
                 "for the next runs)")
    elif address not in (None, "auto") and not reused:
        why = probe_ray_address(address)
        if why is not None:
            raise BackendError(f"backend.address {address}: no Ray head answers there ({why}); start one "
                               "with `ray start --head --port PORT` or `search ray start`, or fix the address")
        log.info("connecting to Ray at %s", address)
    if hidden_env is not None:
        os.environ.pop("RAY_ADDRESS", None)
    saved_path = os.environ.get("PYTHONPATH")
    if fresh and runtime_env is None:
        os.environ["PYTHONPATH"] = path  # for the raylet this starts, and the workers it starts
    before = _children(os.getpid()) if fresh else {}
    try:
        with _quiet_ray() as level:
            if not fresh:
                _use_token_if_available()
            ray.init(address=address, logging_level=level, **kwargs)
    except BackendError:
        raise
    except Exception as exc:  # noqa: BLE001 - ray raises many kinds; the user needs one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        where = address if address not in (None, "local") else "a local instance"
        raise BackendError(f"cannot start or reach Ray at {where}: {type(exc).__name__}: {first}") from None
    finally:
        if hidden_env is not None:
            os.environ["RAY_ADDRESS"] = hidden_env
        if saved_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_path
    if fresh:
        _start_reaper({p: t for p, t in _children(os.getpid()).items() if p not in before})
    return True


def shutdown_ray() -> None:
    """``ray.shutdown()``, and the reaper told that nothing is left to reap."""
    import ray

    ray.shutdown()
    _stop_reaper()


def _ship_by_value(fn) -> None:
    """A callable objective from the user's own module travels with its code, as one from
    ``__main__`` or a notebook does: Ray's workers need not be able to import that module (a
    worker that cannot unpickle a task's argument leaves the task pending, and the study waits).
    Modules of installed packages (site-packages) still travel by reference."""
    from ray import cloudpickle

    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    path = getattr(module, "__file__", None) or ""
    if module is None or module.__name__ == "__main__" or "site-packages" in path or "dist-packages" in path:
        return
    if module.__name__.split(".")[0] in ("search", "trials", "storage", "surrogates", "analysis", "dashboards"):
        return  # ours: on every worker already
    try:
        cloudpickle.register_pickle_by_value(module)
    except ValueError:
        pass  # a module cloudpickle cannot ship by value (no file): by reference, as before


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

    def start(self, *, parallel: int, cpus: float, gpus: float, workers: int = 1) -> None:
        import ray

        self._owns_ray = init_local_ray(self.address, runtime_env=self.runtime_env)
        total = ray.cluster_resources()
        per_trial = "" if workers == 1 else f" x resources.workers={workers}"
        fix = "" if workers == 1 else " or resources.workers"
        if cpus * workers > total.get("CPU", 0):
            raise BackendError(f"resources.cpus={cpus:g}{per_trial} but the Ray cluster has {total.get('CPU', 0):g} "
                               f"CPUs; lower resources.cpus{fix}")
        if gpus * workers > total.get("GPU", 0):
            raise BackendError(f"resources.gpus={gpus:g}{per_trial} but the Ray cluster has {total.get('GPU', 0):g} "
                               f"GPUs; set resources.gpus: 0{fix.replace('or', 'or lower')} or add GPU nodes")
        self._cpus, self._gpus = cpus, gpus
        # A trial on several workers runs on Ray Train's own worker actors: its slot holds none.
        loop = self._slot_loop if workers == 1 else self._train_slot_loop
        for slot in range(parallel):
            t = threading.Thread(target=loop, args=(slot,), name=f"ray-slot-{slot}", daemon=True)
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
                    with contextlib.suppress(Exception):  # unavailable is not always dead: free its CPUs
                        ray.kill(actor, no_restart=True)
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

    def _train_slot_loop(self, slot: int) -> None:
        """A slot of multi-worker trials: each spec runs on Ray Train (``search.backends._train``)."""
        from search.backends._train import run_on_workers

        while not self._closed.is_set():
            spec = self._specs.get()
            if spec is None:
                return

            def started(attempt, spec=spec):
                with self._lock:
                    self._running[spec.trial_id] = (attempt, spec.attempt)

            try:
                run_on_workers(spec, self._events.put, self._closed, started)
            finally:
                with self._lock:
                    running = self._running.get(spec.trial_id)
                    if running is not None and running[1] == spec.attempt:
                        del self._running[spec.trial_id]

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
                # Not always dead: an ActorUnavailableError (its node unreachable for a while) may
                # leave it alive, holding its CPUs with nobody to call it; the slot's next actor
                # could then wait for resources that never free up. Killed, it frees them.
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
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
        if callable(spec.entrypoint):
            _ship_by_value(spec.entrypoint)
        self._specs.put(spec)

    def request_stop(self, trial_id: int) -> None:
        with self._lock:
            running = self._running.get(trial_id)
        if running is not None:
            actor, attempt = running
            if hasattr(actor, "request_stop"):  # a multi-worker attempt (search.backends._train)
                actor.request_stop()
            else:
                actor.stop.remote(trial_id, attempt)

    def abandon(self, trial_id: int, attempt: int) -> None:
        import ray

        with self._lock:
            running = self._running.get(trial_id)
        if running is not None and running[1] == attempt:
            if hasattr(running[0], "request_stop"):
                # Ray Train's workers cannot be killed from here: they are asked to stop, and the
                # slot takes its next trial once they have (the events are ignored meanwhile).
                running[0].request_stop()
                return
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
            shutdown_ray()
