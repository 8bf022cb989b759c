"""Soak (#21, item 19), after Ray's release tests: many short trials on a two-node loopback Ray
cluster with PostgreSQL, once without faults and once with a node killer (node 2's process group
SIGKILLed and restarted every ``--kill-every`` seconds) and the controller (`search run`) SIGKILLed
once mid-run and finished by `search resume`. Asserted at the end of each run: exactly the budget
of trials, numbers 0..N-1 each once, every trial terminal (none RUNNING or WAITING), no report
recorded twice; and that the faults were injected. Prints both wall times side by side and one
final JSON line.

    nice -n 10 python bench/bench_soak.py --trials 10000 --kill-every 60

The cluster is this script's own: a head (`ray start --head --port FREE`, never 6379) and node 2
(`ray start --address`), each with its own ``--temp-dir`` and explicit free ports, both bound to
127.0.0.1, token authentication off (a loopback cluster). Every process it starts is tracked by
PID (with its start time) and SIGKILLed at the end, on failure too; nothing is stopped by name.
The database is its own (``search_soak_<pid>``, dropped at the end unless ``--keep``);
``SEARCH_TEST_PG`` names the admin connection (default the machine's server, database ``test``).

The objective, ``tick``, is this module's: a few reports, no sleep, no checkpoint. It stays
importable without heavy imports, since every Ray worker imports it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
PG_ADMIN = os.environ.get("SEARCH_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
PORT_KEYS = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"]
TERMINAL = {"COMPLETE", "PRUNED", "FAILED"}


def tick(config, reporter):
    """The soak's trial: ``steps`` reports (``sleep`` seconds apart, none by default) and a result."""
    loss = 0.0
    for step in range(1, int(config.get("steps", 3)) + 1):
        if config.get("sleep"):
            time.sleep(float(config["sleep"]))
        loss = (float(config["x"]) - 0.5) ** 2 + 1.0 / step
        if reporter.report(step, loss=loss):
            break
    return {"loss": loss}


# --- processes: tracked by PID and start time, killed by PID ------------------------------------

def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of ``pid`` from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), fields[19]
    except (OSError, IndexError, ValueError):
        return None


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _tree(root: int) -> dict[int, str]:
    """``root`` and its living descendants -> their start times."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                parents.setdefault(st[0], []).append(int(name))
                starts[int(name)] = st[1]
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in starts:
            out[pid] = starts[pid]
            todo.extend(parents.get(pid, []))
    return out


class Processes:
    """Every process this run started, and their descendants as seen by a scan every second (Ray's
    workers are the raylets' children): SIGKILLed by PID, only while the PID still has the start
    time it was seen with (a reused PID is someone else's)."""

    def __init__(self) -> None:
        self.roots: list[int] = []
        self.known: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._scan, daemon=True)
        self._thread.start()

    def add(self, proc: subprocess.Popen) -> subprocess.Popen:
        with self._lock:
            self.roots.append(proc.pid)
            self.known.update(_tree(proc.pid))
        return proc

    def refresh(self) -> None:
        with self._lock:
            for root in self.roots:
                self.known.update(_tree(root))

    def _scan(self) -> None:
        while not self._stop.wait(1.0):
            self.refresh()

    def kill(self, pids: dict[int, str]) -> int:
        n = 0
        for pid, start in pids.items():
            st = _stat(pid)
            if st is not None and st[1] == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                    n += 1
                except OSError:
                    pass
        return n

    def kill_all(self) -> int:
        self._stop.set()
        self.refresh()
        with self._lock:
            return self.kill(dict(self.known))


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    while len(ports) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        socks.append(s)
        if port != 6379:
            ports.append(port)
    for s in socks:
        s.close()
    return ports


def cluster_env(extra_path: str = "") -> dict[str, str]:
    """For every process that talks to the cluster: a loopback cluster without token
    authentication, node deaths detected in about 3 s, the objective importable, one thread of BLAS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEARCH_") and k != "RAY_ADDRESS"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", RAY_health_check_period_ms="1000",
               RAY_health_check_failure_threshold="3", RAY_health_check_initial_delay_ms="1000",
               # Generous registration timeouts: on a 2-core machine at load 20-30 a raylet's agent and
               # its workers can take minutes to start, and Ray's defaults then end the node.
               RAY_agent_register_timeout_ms="300000", RAY_worker_register_timeout_seconds="300",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in [BENCH, REPO, extra_path, os.environ.get("PYTHONPATH", "")] if p)
    return env


class Cluster:
    """A head and a second node on loopback, each its own ``ray start --block`` process group."""

    def __init__(self, root: str, procs: Processes, *, head_cpus: int, node_cpus: int, extra_path: str = "") -> None:
        self.root, self.procs = root, procs
        self.env = cluster_env(extra_path)
        self.node_cpus = node_cpus
        self.log = open(os.path.join(root, "ray.log"), "a")
        ports = _free_ports(1 + len(PORT_KEYS))
        self.port = ports[0]
        head_extra = [a for k, p in zip(PORT_KEYS, ports[1:]) for a in (k, str(p))]
        self.head = procs.add(subprocess.Popen(
            ["ray", "start", "--head", "--port", str(self.port), "--num-cpus", str(head_cpus),
             "--include-dashboard", "false", "--temp-dir", os.path.join(root, "h"), *head_extra, *self._common()],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True))
        self.node: subprocess.Popen | None = None
        self.node_starts = 0
        self.failed_starts = 0  # `ray start` of node 2 that gave up and was retried
        self.wait_nodes(1, self.head)
        self.start_node()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @staticmethod
    def _common() -> list[str]:
        return ["--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]

    def alive_nodes(self) -> int:
        from ray._raylet import GcsClient
        from ray.core.generated.gcs_pb2 import GcsNodeInfo

        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
            nodes = GcsClient(address=self.address).get_all_node_info(timeout=5)
        except Exception:  # noqa: BLE001 - not up yet
            return 0
        return sum(1 for n in nodes.values() if n.state == GcsNodeInfo.ALIVE)

    def wait_nodes(self, n: int, proc: subprocess.Popen, timeout: float = 180.0) -> float:
        t0 = time.monotonic()
        while self.alive_nodes() != n:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode} (log: {self.log.name})")
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"the Ray cluster did not reach {n} alive nodes in {timeout:g} s")
            time.sleep(0.5)
        return time.monotonic() - t0

    def start_node(self, tries: int = 2) -> float:
        """Start (or restart) node 2 with fresh ports and its own temp dir; seconds until it is
        alive. Under heavy load `ray start` can give up on its raylet registering (a fixed 30 s in
        Ray): that attempt's processes are killed and it is started again, up to ``tries`` times."""
        t0 = time.monotonic()
        for attempt in range(tries):
            self.node_starts += 1
            extra = [a for k, p in zip(PORT_KEYS, _free_ports(len(PORT_KEYS))) for a in (k, str(p))]
            self.node = self.procs.add(subprocess.Popen(
                ["ray", "start", "--address", self.address, "--num-cpus", str(self.node_cpus),
                 "--temp-dir", os.path.join(self.root, f"n{self.node_starts}"), *extra, *self._common()],
                env=self.env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True))
            try:
                self.wait_nodes(2, self.node)
                return time.monotonic() - t0
            except (RuntimeError, TimeoutError):
                if attempt == tries - 1:
                    raise
                self.failed_starts += 1
                self._kill_node_processes()
                self.wait_nodes(1, self.head)
        raise AssertionError("unreachable")

    def _kill_node_processes(self) -> None:
        assert self.node is not None
        self.procs.refresh()
        doomed = {pid: start for pid, start in self.procs.known.items() if _pgid(pid) == self.node.pid}
        doomed.update(_tree(self.node.pid))
        try:
            os.killpg(self.node.pid, signal.SIGKILL)  # the group outlives its leader while members live
        except OSError:
            pass
        self.procs.kill(doomed)
        self.node.wait()

    def kill_node(self) -> float:
        """SIGKILL node 2: its process group and every descendant seen (its raylet's workers);
        seconds until the head counts it dead."""
        self._kill_node_processes()
        return self.wait_nodes(1, self.head)


# --- the database -------------------------------------------------------------------------------

def pg_reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001
        return False


def create_database(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    params = dict(kv.split("=", 1) for kv in PG_ADMIN.split())
    return (f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
            f"{params.get('port', '5432')}/{name}")


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Counter:
    """Trial counts by state of one study, from one storage handle kept open (opening one costs
    most of a second of CPU here, which the controller would lose)."""

    def __init__(self, url: str, study: str) -> None:
        self.url, self.study = url, study
        self._st = None
        self._sid: int | None = None

    def __call__(self) -> dict[str, int]:
        from storage import open_storage

        try:
            if self._st is None:
                self._st = open_storage(self.url, create=False)
            if self._sid is None:
                self._sid = self._st.get_study(self.study).id
            return dict(self._st.count_trials(self._sid).get(self._sid, {}))
        except Exception:  # noqa: BLE001 - not created yet
            return {}

    def terminal(self) -> int:
        return sum(n for s, n in self().items() if s in TERMINAL)

    def nodes(self) -> int:
        """How many Ray nodes the finished trials ran on."""
        if self._st is None or self._sid is None:
            return 0
        return len({t.node for t in self._st.get_trials(self._sid) if t.node})

    def close(self) -> None:
        if self._st is not None:
            self._st.close()
            self._st = None


# --- one soak run -------------------------------------------------------------------------------

def write_study(folder: str, name: str, *, trials: int, parallel: int, cpus: float, address: str,
                steps: int, max_failures: int, sleep: float = 0.0) -> str:
    import yaml

    study = {
        "name": name, "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "bench_soak:tick", "params": {"steps": steps, "sleep": sleep}},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 0},
        "budget": {"trials": trials, "parallel": parallel, "max_failures": max_failures},
        "backend": {"name": "ray", "address": address},
        "resources": {"cpus": cpus},
        "artifacts": os.path.join(folder, "artifacts"),
    }
    path = os.path.join(folder, f"{name}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(study, f)
    return path


def _controller(procs: Processes, cluster: Cluster, args: list[str], log_path: str, nice: int) -> subprocess.Popen:
    cmd = (["nice", "-n", str(nice)] if nice else []) + ["search", *args, "--quiet", "--json"]
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        return procs.add(subprocess.Popen(cmd, env=cluster.env, cwd=os.path.dirname(log_path), stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))


def _tail(path: str, n: int = 30) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return "\n".join(f.read().splitlines()[-n:])


class NodeKiller(threading.Thread):
    """Kills node 2 every ``every`` seconds (counted from the run's start: at every, 2*every, ...,
    or at once after a restart that took longer) and restarts it, at most ``limit`` times. With
    ``first`` (a callable), the first kill waits until it answers True instead."""

    def __init__(self, cluster: Cluster, t0: float, every: float, limit: int | None, name: str, log,
                 first=None) -> None:
        super().__init__(daemon=True)
        self.cluster, self.t0, self.every, self.limit, self.run_name, self.log = cluster, t0, every, limit, name, log
        self.first = first
        self.kills: list[dict] = []
        self.failed_restarts = 0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        k = 1
        try:
            while self.first is not None and not self.first():
                if self.done.wait(0.2):
                    return
            while self.limit is None or len(self.kills) < self.limit:
                if self.first is None and self.done.wait(max(0.0, self.t0 + k * self.every - time.monotonic())):
                    return
                self.first = None
                at = time.monotonic() - self.t0
                if self.cluster.alive_nodes() < 2:
                    # the last restart failed: this turn starts it again instead of killing it
                    up_s = self._restart(at)
                    if up_s is not None:
                        self.log(f"  [{self.run_name}] t={at:6.1f}s node 2 restarted (alive after {up_s:.1f} s)")
                    k = max(k + 1, int((time.monotonic() - self.t0) / self.every) + 1)
                    continue
                dead_s = self.cluster.kill_node()
                up_s = self._restart(at)
                self.kills.append({"at_s": round(at, 1), "detected_dead_s": round(dead_s, 1),
                                   "rejoined_s": None if up_s is None else round(up_s, 1)})
                self.log(f"  [{self.run_name}] t={at:6.1f}s node 2 killed (dead to the head after {dead_s:.1f} s), "
                         + ("restart failed" if up_s is None else f"restarted (alive after {up_s:.1f} s)"))
                k = max(k + 1, int((time.monotonic() - self.t0) / self.every) + 1)
        except BaseException as exc:  # noqa: BLE001 - raised in the main thread
            self.error = exc

    def _restart(self, at: float) -> float | None:
        """Node 2 started again; None when `ray start` gave up every try (under heavy load): the
        run goes on with the head alone, and the next turn tries again."""
        try:
            return self.cluster.start_node()
        except (RuntimeError, TimeoutError) as exc:
            self.failed_restarts += 1
            self.log(f"  [{self.run_name}] t={at:6.1f}s node 2 did not come back ({exc}); the run goes on without it")
            return None


def soak_run(cluster: Cluster, procs: Processes, folder: str, url: str, name: str, *, trials: int, parallel: int,
             cpus: float, steps: int, faults: bool, kill_every: float, node_kill_limit: int | None,
             controller_kill_at: float, max_failures: int, timeout: float, nice: int, log=print,
             node_kill_at: float | None = None, sleep: float = 0.0) -> dict:
    """One run of ``trials`` trials; with ``faults`` node 2 is killed and restarted every
    ``kill_every`` seconds (at most ``node_kill_limit`` times; the first once ``node_kill_at`` of
    the budget is terminal, if given) and the controller is SIGKILLed once ``controller_kill_at``
    of the budget is terminal, then resumed. Returns its figures (the invariants are checked by
    ``verify``)."""
    path = write_study(folder, name, trials=trials, parallel=parallel, cpus=cpus, address=cluster.address,
                       steps=steps, max_failures=max_failures, sleep=sleep)
    log_path = os.path.join(folder, f"{name}.log")
    controller_kills: list[dict] = []
    t0 = time.monotonic()
    proc = _controller(procs, cluster, ["run", path, "--storage", url], log_path, nice)
    counts, killer_counts = Counter(url, name), Counter(url, name)  # one handle per thread
    first = None
    if node_kill_at is not None:
        def first() -> bool:
            # ...and once trials have finished on both nodes: node 2's workers are up and busy
            return killer_counts.terminal() >= node_kill_at * trials and killer_counts.nodes() >= 2
    killer = NodeKiller(cluster, t0, kill_every, node_kill_limit, name, log, first) if faults else None
    if killer is not None:
        killer.start()
    last_print = t0
    killed_controller = not faults
    load = []
    try:
        while True:
            now = time.monotonic()
            if killer is not None and killer.error is not None:
                raise killer.error
            rc = proc.poll()
            if rc is not None:
                if rc != 0:
                    raise RuntimeError(f"{name}: `search` exited {rc}:\n{_tail(log_path)}")
                break
            if now - t0 > timeout:
                raise TimeoutError(f"{name}: not finished after {timeout:g} s (a hang?): {counts()}\n"
                                   f"{_tail(log_path)}")
            c = None
            if not killed_controller:
                c = counts()
                if sum(c.get(s, 0) for s in TERMINAL) >= controller_kill_at * trials:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    at = time.monotonic() - t0
                    after = counts()
                    controller_kills.append({"at_s": round(at, 1), "states_at_kill": after})
                    log(f"  [{name}] t={at:6.1f}s controller (pid {proc.pid}) SIGKILLed: {after}; `search resume`")
                    killed_controller = True
                    proc = _controller(procs, cluster, ["resume", name, "--storage", url], log_path, nice)
                    continue
            if now - last_print >= 30:
                c = c or counts()
                load.append(os.getloadavg()[0])
                log(f"  [{name}] t={now - t0:6.1f}s {c} load {os.getloadavg()[0]:.1f}")
                last_print = now
            time.sleep(0.25)
    finally:
        if killer is not None:
            killer.done.set()
            killer.join()
        counts.close()
        killer_counts.close()
    wall = time.monotonic() - t0
    load.append(os.getloadavg()[0])
    if killer is not None and killer.error is not None:
        raise killer.error
    if killer is not None and cluster.alive_nodes() != 2:
        cluster.start_node(tries=5)  # a kill that landed as the run ended: the next run gets both nodes
    return {"name": name, "faults": faults, "wall_s": round(wall, 1), "trials_per_s": round(trials / wall, 2),
            "node_kills": [] if killer is None else killer.kills, "controller_kills": controller_kills,
            "node_restarts_failed": 0 if killer is None else killer.failed_restarts,
            "load_1min_mean": round(sum(load) / len(load), 2)}


def verify(url: str, name: str, trials: int, steps: int) -> dict:
    """The invariants: ``trials`` trials numbered 0..trials-1 once each, all terminal, no report
    recorded twice, and each trial's final attempt reported steps 1..``steps`` once each (an
    interrupted attempt's reports stay, under their own attempt). Raises AssertionError naming the
    first that fails; returns the counts."""
    from storage import TrialState, open_storage

    with open_storage(url, create=False) as st:
        study = st.get_study(name)
        rows = st.get_trials(study.id)
        reports = st.get_study_reports(study.id)
    numbers = [t.number for t in rows]
    states: dict[str, int] = {}
    for t in rows:
        state = TrialState(t.state).value
        states[state] = states.get(state, 0) + 1
    missing = sorted(set(range(trials)) - set(numbers))
    extra = sorted(set(numbers) - set(range(trials)))
    dup = len(numbers) - len(set(numbers))
    keys = [(r.trial_id, r.attempt, r.step) for _, r in reports]
    dup_reports = len(keys) - len(set(keys))
    final: dict[int, list[int]] = {}
    attempt_of = {t.id: t.attempt for t in rows}
    for _, r in reports:
        if r.attempt == attempt_of.get(r.trial_id):
            final.setdefault(r.trial_id, []).append(r.step)
    short = [t.number for t in rows if sorted(final.get(t.id, [])) != list(range(1, steps + 1))]
    not_terminal = {s: n for s, n in states.items() if s not in TERMINAL}
    out = {"trials": len(rows), "states": states, "missing": len(missing), "extra": len(extra), "duplicated": dup,
           "not_terminal": sum(not_terminal.values()), "retried": sum(1 for t in rows if t.attempt > 0),
           "lost_to_workers": sum(t.failures for t in rows), "reports": len(keys), "duplicated_reports": dup_reports,
           "final_attempt_not_all_steps": len(short),
           "study_state": study.state}
    assert not missing, f"{name}: {len(missing)} trial numbers missing, first {missing[:10]}"
    assert not extra and len(rows) == trials, f"{name}: {len(rows)} trials for a budget of {trials}, extra {extra[:10]}"
    assert dup == 0, f"{name}: {dup} duplicated trial numbers"
    assert not not_terminal, f"{name}: trials not terminal: {not_terminal}"
    assert dup_reports == 0, f"{name}: {dup_reports} reports recorded twice"
    assert not short, f"{name}: {len(short)} trials whose final attempt did not report steps 1..{steps}: {short[:10]}"
    assert study.state == "COMPLETE", f"{name}: study ended {study.state}"
    return out


def soak(*, trials: int, runs: list[str], kill_every: float, controller_kill_at: float, node_kill_limit: int | None,
         head_cpus: int, node_cpus: int, cpus: float, steps: int, max_failures: int, timeout: float, nice: int,
         keep: bool, log=print, extra_path: str = "", node_kill_at: float | None = None, sleep: float = 0.0) -> dict:
    """Start the cluster and the database, do ``runs`` (``nofault``, ``fault``), verify each, clean
    up every process started (also on failure). Returns {run name: figures and counts}."""
    root = tempfile.mkdtemp(prefix="soak-", dir="/tmp")  # short: Ray's socket paths live under it
    db = f"search_soak_{os.getpid()}"
    procs = Processes()
    results: dict[str, dict] = {}
    url = create_database(db)
    try:
        t0 = time.monotonic()
        cluster = Cluster(root, procs, head_cpus=head_cpus, node_cpus=node_cpus, extra_path=extra_path)
        parallel = max(1, int((head_cpus + node_cpus) / cpus))
        log(f"cluster at {cluster.address} (2 nodes, {head_cpus}+{node_cpus} CPUs) up in {time.monotonic() - t0:.1f} s; "
            f"budget.parallel={parallel}, resources.cpus={cpus:g}; database {db}")
        for run in runs:
            name = f"soak-{run}"
            retries_before = cluster.failed_starts
            fig = soak_run(cluster, procs, root, url, name, trials=trials, parallel=parallel, cpus=cpus, steps=steps,
                           faults=run == "fault", kill_every=kill_every, node_kill_limit=node_kill_limit,
                           controller_kill_at=controller_kill_at, node_kill_at=node_kill_at, sleep=sleep,
                           max_failures=max_failures, timeout=timeout, nice=nice, log=log)
            fig["verified"] = verify(url, name, trials, steps)
            fig["parallel"] = parallel
            fig["node_start_retries"] = cluster.failed_starts - retries_before
            if run == "fault":
                assert fig["node_kills"], f"{name}: no node kill was injected (the run took {fig['wall_s']} s)"
                assert len(fig["controller_kills"]) == 1, f"{name}: the controller was not killed"
                at_kill = fig["controller_kills"][0]["states_at_kill"]
                assert at_kill.get("RUNNING", 0) > 0, f"{name}: no trial was running when the controller was killed"
                assert fig["verified"]["retried"] >= at_kill["RUNNING"], f"{name}: interrupted trials not retried"
            results[run] = fig
            log(f"  [{name}] {fig['wall_s']} s, {fig['trials_per_s']} trials/s; verified: {fig['verified']}")
        return results
    finally:
        killed = procs.kill_all()
        log(f"cleanup: SIGKILLed {killed} processes this run started")
        if not keep:
            try:
                drop_database(db)
            except Exception as exc:  # noqa: BLE001 - say it, do not hide the run's own error
                log(f"cleanup: could not drop database {db}: {exc}")
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"kept: database {db}, folder {root}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=10_000)
    p.add_argument("--runs", default="nofault,fault", help="comma-separated: nofault, fault")
    p.add_argument("--kill-every", type=float, default=60.0, help="seconds between node-2 kills (fault run)")
    p.add_argument("--controller-kill-at", type=float, default=0.5,
                   help="fraction of the budget terminal when the controller is SIGKILLed (fault run)")
    p.add_argument("--node-kills", type=int, default=None, help="at most this many node-2 kills (default: no limit)")
    p.add_argument("--head-cpus", type=int, default=2)
    p.add_argument("--node-cpus", type=int, default=2)
    p.add_argument("--cpus", type=float, default=0.5, help="resources.cpus per trial")
    p.add_argument("--steps", type=int, default=3, help="reports per trial")
    p.add_argument("--max-failures", type=int, default=3)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds a run may take before it counts as a hang")
    p.add_argument("--nice", type=int, default=0, help="run the controller under nice -n N")
    p.add_argument("--keep", action="store_true", help="keep the database and temp folder")
    args = p.parse_args(argv)
    if REPO not in sys.path:
        sys.path.insert(0, REPO)  # this checkout's packages, as the cluster's processes get them
    if not pg_reachable():
        print(f"PostgreSQL not reachable at {PG_ADMIN!r}", file=sys.stderr)
        return 2
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    res = soak(trials=args.trials, runs=runs, kill_every=args.kill_every, controller_kill_at=args.controller_kill_at,
               node_kill_limit=args.node_kills, head_cpus=args.head_cpus, node_cpus=args.node_cpus, cpus=args.cpus, steps=args.steps,
               max_failures=args.max_failures, timeout=args.timeout, nice=args.nice, keep=args.keep,
               log=lambda s: print(s, flush=True))
    print()
    print("| run | trials | node-2 kills | controller kills | retried trials | wall s | trials/s | load (1 min, mean) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for run, r in res.items():
        v = r["verified"]
        print(f"| {run} | {v['trials']} ({v['states']}) | {len(r['node_kills'])} | {len(r['controller_kills'])} | "
              f"{v['retried']} | {r['wall_s']} | {r['trials_per_s']} | {r['load_1min_mean']} |")
    if "nofault" in res and "fault" in res:
        print(f"\nwall with faults / without: {res['fault']['wall_s'] / res['nofault']['wall_s']:.2f}x")
    print(json.dumps({"bench": "soak", "trials": args.trials, "cpus_per_trial": args.cpus,
                      "head_cpus": args.head_cpus, "node_cpus": args.node_cpus, "kill_every_s": args.kill_every,
                      "nice": args.nice, "runs": res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
