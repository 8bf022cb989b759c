"""Ray cluster verbs: `search submit`, `search jobs`, `search logs`, `search stop`.

A study's controller runs as a Ray job (Ray Jobs API), with the user's folder shipped as the job's
working directory. The storage URL travels in the job's environment (`SEARCH_STORAGE`), never in
its command line, so a password is not shown by `search jobs` or in process listings.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import time

__all__ = ["add_parsers"]

# Never shipped with the working directory: databases, checkpoints, caches.
EXCLUDES = ["*.db", "*.db-wal", "*.db-shm", "search-artifacts/", ".git/", "__pycache__/", "*.pt"]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class ClusterInputError(ValueError):
    pass


def _address(args) -> str:
    """The job server's URL (``http://HEAD:8265``) from ``--address`` or ``$RAY_ADDRESS``. A head's
    GCS address (``HEAD:6379``, what a driver and `search resume` use) is accepted too: the job
    server's URL is looked up from it."""
    from search.backends.ray_backend import is_job_server_address, probe_ray_address

    given = args.address or os.environ.get("RAY_ADDRESS")
    if not given:
        raise ClusterInputError(f"--address: `search {args.verb}` talks to the Ray job server, which the head's "
                                "dashboard serves (port 8265 by default): pass --address http://HEAD:8265 or "
                                "export RAY_ADDRESS=http://HEAD:8265")
    if is_job_server_address(given):
        return given
    if given.startswith("ray://"):
        raise ClusterInputError(f"--address {given}: that is a Ray Client address; `search {args.verb}` needs the "
                                "job server's, e.g. http://HEAD:8265")
    if given != "auto" and probe_ray_address(given, timeout=3.0) is not None:
        return "http://" + given  # not a GCS: taken as the job server's host:port
    try:  # a head's GCS: it knows where its job server is
        from ray.dashboard.utils import ray_address_to_api_server_url

        with _quiet():
            return ray_address_to_api_server_url(given)
    except Exception as exc:  # noqa: BLE001 - ray raises several kinds; one line for the user
        raise ClusterInputError(f"--address {given}: a Ray head answers there but names no job server "
                                f"({type(exc).__name__}); start the head with the dashboard, or pass "
                                "--address http://HEAD:8265") from None


@contextlib.contextmanager
def _quiet():
    import logging
    import warnings

    if os.environ.get("SEARCH_DEBUG"):
        yield
        return
    ray_log = logging.getLogger("ray")
    level = ray_log.level
    ray_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        ray_log.setLevel(level)


def use_token_auth_if_available() -> None:
    """Ray clusters started with token authentication need the client to say so; when a token is
    at hand (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) and the user has
    not chosen a mode, use it."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    path = os.environ.get("RAY_AUTH_TOKEN_PATH", os.path.expanduser("~/.ray/auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(path):
        os.environ["RAY_AUTH_MODE"] = "token"


def _client(args):
    # Before ray is imported: it reads RAY_AUTH_MODE once, at import.
    use_token_auth_if_available()
    from ray.job_submission import JobSubmissionClient

    address = _address(args)
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # noqa: BLE001 - ray raises several kinds; one line for the user
        if type(exc).__name__ == "AuthenticationError":
            raise ClusterInputError(f"--address {address}: the cluster wants an authentication token; set "
                                    "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH to the cluster's token") from None
        raise ClusterInputError(f"--address {address}: no Ray job server answers there ({exc.__class__.__name__}); "
                                "start the head with the dashboard, e.g. `ray start --head --dashboard-host 0.0.0.0`") from None


def cmd_submit(args) -> int:
    from search.config import ConfigError, load_study_file
    from storage import resolve_url

    workdir = os.path.abspath(args.working_dir or os.getcwd())
    path = os.path.abspath(args.file)
    if os.path.commonpath([workdir, path]) != workdir:
        raise ConfigError(f"{args.file}: the study file must be inside the working directory {workdir} "
                          "(it is shipped with it); pass --working-dir")
    config = load_study_file(path)  # bad input stops here, before anything reaches the cluster
    url = resolve_url(args.storage)
    if url.startswith("sqlite") and not args.allow_local_storage:
        raise ConfigError("--storage: a cluster job needs a database every node can reach, e.g. "
                          "postgresql://user@db-host/search (or pass --allow-local-storage for a one-node cluster)")
    entry = ["search", "run", os.path.relpath(path, workdir), "--quiet"]
    if args.backend:
        entry += ["--backend", args.backend]
    client = _client(args)
    env = {"SEARCH_STORAGE": url}
    job_id = client.submit_job(
        entrypoint=" ".join(shlex.quote(a) for a in entry),
        runtime_env={"working_dir": workdir, "excludes": EXCLUDES, "env_vars": env},
        metadata={"study": config.name},
    )
    print(job_id)
    if args.wait:
        return _follow(client, job_id)
    print(f"submitted study {config.name!r} as job {job_id}; `search logs {job_id} --follow` shows its output",
          file=sys.stderr)
    return 0


def _follow(client, job_id: str) -> int:
    seen = 0
    while True:
        status = str(client.get_job_status(job_id)).split(".")[-1]
        logs = client.get_job_logs(job_id)
        sys.stdout.write(logs[seen:])
        sys.stdout.flush()
        seen = len(logs)
        if status in TERMINAL:
            return 0 if status == "SUCCEEDED" else 1
        time.sleep(1.0)


def cmd_jobs(args) -> int:
    client = _client(args)
    rows = []
    for j in client.list_jobs():
        rows.append({"job_id": j.submission_id or j.job_id, "status": str(j.status).split(".")[-1],
                     "study": (j.metadata or {}).get("study"), "entrypoint": j.entrypoint,
                     "start_time": j.start_time, "end_time": j.end_time})
    if args.json:
        json.dump(rows, sys.stdout)
        sys.stdout.write("\n")
    else:
        for r in rows:
            print(f"{r['job_id']:<28} {r['status']:<10} {r['study'] or '-':<24} {r['entrypoint']}")
    return 0


def cmd_logs(args) -> int:
    client = _client(args)
    if args.follow:
        return _follow(client, args.job)
    sys.stdout.write(client.get_job_logs(args.job))
    return 0


def cmd_stop(args) -> int:
    client = _client(args)
    stopped = client.stop_job(args.job)
    print(f"job {args.job}: {'stop requested' if stopped else 'already finished'}")
    return 0


def _tree(pid: int) -> dict[int, str]:
    """``pid`` and its descendants -> their start time (Linux /proc)."""
    from search.backends.ray_backend import _children

    out, todo = {}, [pid]
    while todo:
        kids = _children(todo.pop())
        out.update(kids)
        todo.extend(kids)
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            out[pid] = f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        pass
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def cmd_ray(args) -> int:
    """`search ray start|stop|status`: a local Ray instance that `search run` and `search resume`
    reuse (no Ray start-up per run), its processes ours alone to stop (never `ray stop`, which ends
    every Ray instance on the machine)."""
    import signal
    import subprocess

    from search.backends.ray_backend import local_dir, local_instance, probe_ray_address

    folder = local_dir()
    state = os.path.join(folder, "instance.json")
    instance = local_instance()
    if args.ray_verb == "status":
        if instance is None:
            print("no local Ray instance from `search ray start`; `search run` starts one per run")
            return 1
        why = probe_ray_address(instance["address"], timeout=3.0)
        print(f"local Ray instance at {instance['address']} (pid {instance['pid']}, {folder}): "
              + ("answering" if why is None else f"not answering ({why})"))
        return 0 if why is None else 1
    if args.ray_verb == "stop":
        if instance is None:
            print("no local Ray instance from `search ray start` is running")
            return 0
        procs = _tree(int(instance["pid"]))
        os.kill(int(instance["pid"]), signal.SIGTERM)  # `ray start --block` stops its processes on SIGTERM
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_tree(p) for p in procs):
            time.sleep(0.2)
        for pid, start in procs.items():
            if _tree(pid).get(pid) == start:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        os.unlink(state)
        print(f"stopped the local Ray instance at {instance['address']}")
        return 0
    if instance is not None and probe_ray_address(instance["address"], timeout=3.0) is None:
        print(f"a local Ray instance is already running at {instance['address']}")
        return 0
    os.makedirs(folder, exist_ok=True)
    port = args.port or _free_port()
    ray_tmp = _ray_temp_dir(folder)
    cmd = ["ray", "start", "--head", "--block", "--port", str(port), "--include-dashboard", "false",
           "--disable-usage-stats", "--temp-dir", ray_tmp]
    if args.num_cpus is not None:
        cmd += ["--num-cpus", str(args.num_cpus)]
    if args.num_gpus is not None:
        cmd += ["--num-gpus", str(args.num_gpus)]
    log_path = os.path.join(folder, "ray-start.log")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + args.timeout
    print(f"starting a local Ray instance on port {port} (no dashboard)...", file=sys.stderr)
    while probe_ray_address(address, timeout=1.0) is not None or not _raylet_up(ray_tmp):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            with open(log_path, encoding="utf-8", errors="replace") as f:
                tail = [ln for ln in f.read().splitlines() if ln.strip()][-1:] or ["(no output)"]
            raise ClusterInputError(f"ray start did not come up on port {port} within {args.timeout:g} s: "
                                    f"{tail[0][:300]} (log: {log_path})")
        time.sleep(0.2)
    with open(state + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"address": address, "pid": proc.pid, "port": port, "log": log_path, "ray_temp_dir": ray_tmp}, f)
    os.replace(state + ".tmp", state)
    print(f"local Ray instance at {address}: `search run` uses it from now on; `search ray stop` ends it")
    return 0


def _raylet_up(ray_tmp: str) -> bool:
    """The head's raylet has written its session (``ray start`` records the address last)."""
    return os.path.exists(os.path.join(ray_tmp, "ray_current_cluster"))


def _ray_temp_dir(folder: str) -> str:
    """Ray's temp dir for the instance: inside ``folder`` when that is short, since Ray's socket
    paths under it must fit in 107 bytes; else a short folder named after it."""
    tmp = os.path.join(folder, "tmp")
    if len(tmp) <= 32:
        return tmp
    import hashlib
    import tempfile

    return os.path.join(tempfile.gettempdir(), "sray-" + hashlib.sha1(folder.encode()).hexdigest()[:10])


def add_parsers(sub, storage_arg) -> None:
    def address(p: argparse.ArgumentParser) -> None:
        p.add_argument("--address", help="Ray job server, e.g. http://HEAD:8265 (default $RAY_ADDRESS)")

    p = sub.add_parser("submit", help="run a study's controller as a job on a Ray cluster")
    p.add_argument("file")
    address(p)
    storage_arg(p)
    p.add_argument("--working-dir", help="folder shipped to the cluster (default: the current folder)")
    p.add_argument("--backend", choices=["ray", "inprocess"], help="override the study's backend")
    p.add_argument("--wait", action="store_true", help="follow the job's output until it ends")
    p.add_argument("--allow-local-storage", action="store_true", help="accept a SQLite URL (one-node clusters)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("jobs", help="list jobs on a Ray cluster")
    address(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("logs", help="a job's output")
    p.add_argument("job")
    address(p)
    p.add_argument("--follow", action="store_true")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("ray", help="a local Ray instance that `search run` reuses (start | stop | status)")
    p.add_argument("ray_verb", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, help="GCS port (default: a free one; never 6379)")
    p.add_argument("--num-cpus", type=int, help="CPUs it offers (default: all)")
    p.add_argument("--num-gpus", type=int, help="GPUs it offers (default: those Ray finds)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for it to come up")
    p.set_defaults(func=cmd_ray)

    p = sub.add_parser("stop", help="stop a job (its running trials are requeued for `search resume`)")
    p.add_argument("job")
    address(p)
    p.set_defaults(func=cmd_stop)
