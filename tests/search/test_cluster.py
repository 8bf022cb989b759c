"""A real two-node Ray cluster on loopback (`ray start --head` + a second `ray start --address`
node with its own resources) and the machine's PostgreSQL: `search submit` runs a study's
controller as a Ray job; trials run on both nodes; losing the second node mid-study retries its
trials from their checkpoints on the head node."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
import yaml

from testlib import TESTS_DIR, cli_env
from storage import TrialState, open_storage

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.postgres]

PORT_KEYS = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"]


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _env() -> dict[str, str]:
    # A loopback-only test cluster: token authentication off for every process that talks to it
    # (head, second node, the CLI), so none depends on a token file left by another Ray.
    env = cli_env(RAY_USAGE_STATS_ENABLED="0", RAY_health_check_period_ms="1000",
                  RAY_health_check_failure_threshold="3", RAY_health_check_initial_delay_ms="1000",
                  RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    return env


class Cluster:
    def __init__(self, tmp) -> None:
        ports = _free_ports(4 + 2 * len(PORT_KEYS))
        self.gcs_port, self.dashboard_port, self.client_port, _ = ports[:4]
        head_extra = [a for k, p in zip(PORT_KEYS, ports[4:4 + len(PORT_KEYS)]) for a in (k, str(p))]
        node_extra = [a for k, p in zip(PORT_KEYS, ports[4 + len(PORT_KEYS):]) for a in (k, str(p))]
        self.log = open(os.path.join(tmp, "ray.log"), "w")
        common = ["--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
        self.head = subprocess.Popen(
            ["ray", "start", "--head", "--port", str(self.gcs_port), "--dashboard-port", str(self.dashboard_port),
             "--dashboard-host", "127.0.0.1", "--include-dashboard", "true", "--ray-client-server-port",
             str(self.client_port), "--num-cpus", "2", "--resources", json.dumps({"head": 1}), *head_extra, *common],
            env=_env(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_dashboard()
        self.node = subprocess.Popen(
            ["ray", "start", "--address", f"127.0.0.1:{self.gcs_port}", "--num-cpus", "1",
             "--resources", json.dumps({"node2": 1}), *node_extra, *common],
            env=_env(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_nodes(2)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def jobs(self) -> dict[str, dict] | None:
        """`search jobs --json` as a user runs it (a fresh process, so Ray picks up the token the
        head wrote); None while the job server is not answering."""
        out = subprocess.run(["search", "jobs", "--address", self.address, "--json"], env=_env(),
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            return None
        return {j["job_id"]: j for j in json.loads(out.stdout)}

    def _wait_dashboard(self) -> None:
        deadline = time.time() + 300
        while self.jobs() is None:
            assert self.head.poll() is None, "ray head exited"
            if time.time() > deadline:
                raise TimeoutError("Ray job server did not come up")
            time.sleep(2)

    def alive_node_ids(self) -> set[str]:
        out = subprocess.run(["ray", "list", "nodes", "--address", f"127.0.0.1:{self.gcs_port}", "--format", "json"],
                             env=_env(), capture_output=True, text=True, timeout=60)
        try:
            return {n["node_id"] for n in json.loads(out.stdout) if n.get("state") == "ALIVE"}
        except (json.JSONDecodeError, KeyError):
            return set()

    def alive_nodes(self) -> int:
        return len(self.alive_node_ids())

    def _wait_nodes(self, n: int) -> None:
        deadline = time.time() + 300
        while self.alive_nodes() < n:
            assert time.time() < deadline, "second Ray node did not join"
            time.sleep(1)

    def kill_node(self) -> None:
        os.killpg(self.node.pid, signal.SIGKILL)
        self.node.wait()

    def stop(self) -> None:
        """Kill both nodes and every process that belongs to this cluster (found by its GCS
        port), never `ray stop`, which would also end other Ray instances on the machine."""
        import psutil

        for p in (self.node, self.head):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(str(self.gcs_port) in part for part in (proc.info["cmdline"] or [])):
                    proc.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(str(tmp_path_factory.mktemp("cluster")))
    yield c
    c.stop()


def _workdir(tmp_path, name, trials, steps, sleep, parallel=3):
    shutil.copy(os.path.join(TESTS_DIR, "search_test_objectives.py"), tmp_path)
    study = {
        "name": name, "objective": {"metric": "loss", "direction": "minimize"},
        "trial": {"entrypoint": "search_test_objectives:stepper",
                  "params": {"steps": steps, "sleep": sleep, "log": str(tmp_path / "starts.jsonl")}},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "algorithm": {"name": "random", "seed": 0}, "budget": {"trials": trials, "parallel": parallel},
        "resources": {"cpus": 1}, "artifacts": str(tmp_path / "artifacts"),
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    return tmp_path / "study.yaml"


def _submit(cluster, path, pg_url, wait):
    args = ["search", "submit", str(path), "--address", cluster.address, "--storage", pg_url,
            "--working-dir", str(path.parent)]
    return subprocess.run(args + (["--wait"] if wait else []), env=_env(), capture_output=True, text=True,
                          timeout=600)


def test_submit_runs_trials_on_both_nodes(cluster, tmp_path, pg_url):
    path = _workdir(tmp_path, "two-nodes", trials=9, steps=3, sleep=0.3)
    # A password in the storage URL (the server trusts local connections, so any works) must not
    # be echoed by submit or by the job's output.
    secret = "s3cret-Token-9q"
    url = pg_url.replace("postgres@", f"postgres:{secret}@", 1)
    assert secret in url
    out = _submit(cluster, path, url, wait=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    job_id = out.stdout.splitlines()[0]
    assert secret not in out.stdout + out.stderr
    with open_storage(pg_url) as st:
        trials = st.get_trials(st.get_study("two-nodes").id)
    assert len(trials) == 9 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.node for t in trials}) == 2  # both nodes, recorded by node id
    listed = cluster.jobs()
    assert listed[job_id]["status"] == "SUCCEEDED" and listed[job_id]["study"] == "two-nodes"
    assert "postgresql" not in listed[job_id]["entrypoint"]  # the URL travels in the environment
    logs = subprocess.run(["search", "logs", job_id, "--address", cluster.address], env=_env(),
                          capture_output=True, text=True, check=True)
    assert "study two-nodes: 9 complete" in logs.stdout or logs.returncode == 0


def test_losing_a_node_retries_its_trials_from_checkpoints(cluster, tmp_path, pg_url):
    path = _workdir(tmp_path, "node-loss", trials=6, steps=8, sleep=0.5)
    out = _submit(cluster, path, pg_url, wait=False)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.splitlines()[0]
    deadline = time.time() + 180
    ready = False
    while not ready:
        assert time.time() < deadline, "no trial reached step 2 on the second node"
        try:
            with open_storage(pg_url, create=False) as st:
                running = st.get_trials(st.get_study("node-loss").id, states=[TrialState.RUNNING])
        except Exception:  # noqa: BLE001 - the job has not created the study yet
            running = []
        # Three slots of one CPU each: two fit on the head, the third can only be on node2, so
        # once all three trials are running past step 2, one of them is on the node we kill.
        # ...and none near its end, so no trial finishes (and a fresh one takes its slot)
        # between this check and the kill.
        if len(running) == 3 and all(2 <= (t.last_step or 0) <= 5 for t in running):
            ready = True
        time.sleep(0.3)
    cluster.kill_node()

    def logs() -> str:
        return subprocess.run(["search", "logs", job_id, "--address", cluster.address], env=_env(),
                              capture_output=True, text=True).stdout[-3000:]

    while (cluster.jobs() or {}).get(job_id, {}).get("status") not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.time() < deadline + 300, logs()
        time.sleep(2)
    assert cluster.jobs()[job_id]["status"] == "SUCCEEDED", logs()
    with open_storage(pg_url) as st:
        trials = st.get_trials(st.get_study("node-loss").id)
        retried = [t for t in trials if t.attempt > 0]
        expected = {t.number: max((c.step for c in st.get_checkpoints(t.id) if c.attempt < t.attempt), default=0)
                    for t in retried}
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state == TrialState.COMPLETE and t.last_step == 8 for t in trials)
    assert len(retried) == 1 and retried[0].failures == 1  # the one trial node2 held
    starts = {(s["number"], s["attempt"]): s["start"]
              for s in map(json.loads, (tmp_path / "starts.jsonl").read_text().splitlines())}
    for t in retried:
        # It restarts from the newest checkpoint the controller had recorded for it (none, in
        # some runs: see the closing note of this test's issue; the Ray backend test of a dead
        # worker checks the checkpoint case every time).
        assert starts[(t.number, t.attempt)] == expected[t.number]
    # The retried trial ended on the surviving head node (trials that finished on node2 before
    # the kill keep its id).
    assert retried[0].node in cluster.alive_node_ids()


def test_job_verbs_take_a_gcs_address_or_the_job_servers(cluster):
    """#21-16: RAY_ADDRESS holds one address for every verb. The job verbs accept the head's GCS
    address (they look the job server up from it) as well as the job server's URL."""
    listed = subprocess.run(["search", "jobs", "--json"], env=dict(_env(), RAY_ADDRESS=f"127.0.0.1:{cluster.gcs_port}"),
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    listed = subprocess.run(["search", "jobs", "--json"], env=dict(_env(), RAY_ADDRESS=cluster.address),
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
