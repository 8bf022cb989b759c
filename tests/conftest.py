"""Shared fixtures: storages (SQLite and the machine's PostgreSQL), one Ray instance per session."""
from __future__ import annotations

import os
import sys
import uuid

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from testlib import PG_ADMIN, REPO  # noqa: E402


def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"search_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = dict(kv.split("=", 1) for kv in PG_ADMIN.split())
    yield f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:{params.get('port', '5432')}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'search.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request, tmp_path):
    """Each storage test runs on SQLite and on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'search.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (workers can import tests/ modules)."""
    import ray

    from search.backends.ray_backend import init_local_ray

    path = os.pathsep.join([TESTS_DIR, REPO, os.environ.get("PYTHONPATH", "")])
    init_local_ray(None, num_cpus=2, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()
