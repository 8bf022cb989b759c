"""Helpers shared by test modules (importable as `testlib`: tests/ is on sys.path). Kept out of
conftest.py because several folders have their own conftest and the name would be ambiguous."""
from __future__ import annotations

import os

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS_DIR)
# Public benchmark data shipped beside the repository (../shared/data), or where SEARCH_SHARED_DATA says.
SHARED_DATA = os.environ.get("SEARCH_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
PG_ADMIN = os.environ.get("SEARCH_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for ``search`` subprocesses: test objectives importable, no inherited storage."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEARCH_")}
    env["PYTHONPATH"] = os.pathsep.join([TESTS_DIR, REPO, os.environ.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def interrupt_after(n: int):
    """An ``on_progress`` callback that raises KeyboardInterrupt (as Ctrl-C would) at its n-th call."""
    calls = {"n": 0}

    def interrupt(progress) -> None:
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt

    return interrupt


def start_run(study: dict, folder, url: str):
    """``search run`` of ``study`` (written to FOLDER/study.yaml) as a subprocess in its own
    session, so a test can ``kill -9`` its whole process group: returns (process, its env)."""
    import subprocess

    import yaml

    path = os.path.join(str(folder), "study.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(study, f)
    env = cli_env()
    proc = subprocess.Popen(["search", "run", path, "--storage", url, "--quiet"], env=env, cwd=str(folder),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, env
