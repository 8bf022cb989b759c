"""Resources said plainly, and addresses checked before Ray is asked: a study that asks a trial for
more than the machine (in-process) can ever give stops at start with one line; an address where no
Ray head answers fails in seconds with our line first. None of these start Ray."""
from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import pytest
import yaml

from search.backends.base import BackendError
from search.backends.inprocess import InProcessBackend
from search.backends.ray_backend import is_job_server_address, probe_ray_address
from testlib import cli_env


def test_inprocess_refuses_more_cpus_than_the_machine_has():
    cores = os.cpu_count()
    with pytest.raises(BackendError, match=rf"resources.cpus={cores + 1} but this machine has {cores} CPUs"):
        InProcessBackend().start(parallel=1, cpus=cores + 1, gpus=0)
    InProcessBackend().start(parallel=1, cpus=cores, gpus=0)  # all of them is fine


def test_inprocess_refuses_gpus_it_does_not_have(monkeypatch):
    import search.backends.inprocess as inprocess

    monkeypatch.setattr(inprocess, "_cuda_devices", lambda: 0)
    with pytest.raises(BackendError, match=r"resources.gpus=1000 but this machine has 0 CUDA GPUs.*gpus: 0"):
        InProcessBackend().start(parallel=1, cpus=1, gpus=1000)
    monkeypatch.setattr(inprocess, "_cuda_devices", lambda: 1)
    InProcessBackend().start(parallel=4, cpus=1, gpus=0.25)  # four trials packed on one GPU
    with pytest.raises(BackendError, match="lower it to at most 1"):
        InProcessBackend().start(parallel=1, cpus=1, gpus=2)


def _study_file(tmp_path, **extra) -> str:
    study = {"name": "res", "objective": {"metric": "loss", "direction": "minimize"},
             "trial": {"entrypoint": "search_test_objectives:quadratic"},
             "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
             "budget": {"trials": 2}, "artifacts": str(tmp_path / "artifacts"), **extra}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return str(path)


def _search(args, tmp_path, **env):
    return subprocess.run(["search", *args], env=cli_env(**env), cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=120)


def test_cli_gpus_1000_in_process_exits_2_with_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    path = _study_file(tmp_path, resources={"gpus": 1000}, backend={"name": "inprocess"})
    out = _search(["run", path, "--storage", url], tmp_path, CUDA_VISIBLE_DEVICES="")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: resources.gpus=1000") and "0 CUDA GPUs" in lines[0]
    # Nothing written: not even an empty database file.
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("search.db")]


def test_a_refused_run_keeps_a_database_that_already_held_studies(tmp_path):
    from storage import open_storage

    url = f"sqlite:///{tmp_path / 'search.db'}"
    with open_storage(url) as st:
        st.create_study("kept", metrics=("loss",), directions=("minimize",), spec={})
    path = _study_file(tmp_path, resources={"gpus": 1000}, backend={"name": "inprocess"})
    out = _search(["run", path, "--storage", url], tmp_path, CUDA_VISIBLE_DEVICES="")
    assert out.returncode == 2, out.stderr
    with open_storage(url) as st:
        assert [s.name for s in st.list_studies()] == ["kept"]


def test_probe_tells_refused_not_grpc_and_grpc_apart():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert "refused" in probe_ray_address(f"127.0.0.1:{port}", timeout=2)

    def serve(reply: bytes):
        srv = socket.socket()
        srv.bind(("", 0))
        srv.listen(1)

        def answer():
            conn, _ = srv.accept()
            conn.recv(64)
            conn.sendall(reply)
            time.sleep(0.5)
            conn.close()
            srv.close()

        threading.Thread(target=answer, daemon=True).start()
        return srv.getsockname()[1]

    # Redis (the usual tenant of Ray's default port 6379) answers text; a gRPC server a SETTINGS frame.
    assert "not Ray's" in probe_ray_address(f"127.0.0.1:{serve(b'-ERR unknown command')}", timeout=2)
    assert probe_ray_address(f"127.0.0.1:{serve(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))}", timeout=2) is None


def test_job_server_addresses_are_told_from_driver_addresses():
    assert is_job_server_address("http://head:8265") and is_job_server_address("HTTPS://head")
    assert not any(map(is_job_server_address, ["head:6379", "ray://head:10001", "auto", None, "http"]))


@pytest.mark.ray
@pytest.mark.parametrize("address", ["127.0.0.1:{free}", "ray://127.0.0.1:{free}", "http://127.0.0.1:8265"])
def test_an_address_without_a_ray_head_fails_fast_with_our_line_first(tmp_path, address):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    address = address.format(free=free)
    path = _study_file(tmp_path, backend={"name": "ray", "address": address})
    t0 = time.monotonic()
    out = _search(["run", path, "--storage", f"sqlite:///{tmp_path / 'search.db'}"], tmp_path)
    assert out.returncode == 2
    assert time.monotonic() - t0 < 30  # Ray alone retries for a minute or more
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: backend.address {address}"[:30]), out.stderr
    assert "UserWarning" not in out.stderr and "Token authentication" not in out.stderr


def test_a_bare_jobs_says_which_address_it_needs(tmp_path):
    env = cli_env()
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run(["search", "jobs"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: --address: `search jobs` talks to the Ray job server, which the head's dashboard serves "
        "(port 8265 by default): pass --address http://HEAD:8265 or export RAY_ADDRESS=http://HEAD:8265"]
