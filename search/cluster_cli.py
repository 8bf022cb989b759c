"""Ray cluster verbs: `search submit`, `search jobs`, `search logs`, `search stop`.

A study's controller runs as a Ray job (Ray Jobs API), with the user's folder shipped as the job's
working directory. The storage URL travels in the job's environment (`SEARCH_STORAGE`), never in
its command line, so a password is not shown by `search jobs` or in process listings.
"""
from __future__ import annotations

import argparse
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
    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ClusterInputError("--address: give the Ray dashboard address, e.g. --address http://HEAD:8265 "
                                "(or set RAY_ADDRESS)")
    if "://" not in address:
        address = "http://" + address
    return address


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

    p = sub.add_parser("stop", help="stop a job (its running trials are requeued for `search resume`)")
    p.add_argument("job")
    address(p)
    p.set_defaults(func=cmd_stop)
