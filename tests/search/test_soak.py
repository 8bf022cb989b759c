"""The soak (#21-19) at CI size: a few hundred short trials on a two-node loopback Ray cluster with
PostgreSQL, node 2 SIGKILLed (and restarted) once and the controller SIGKILLed once and resumed:
exactly the budget, numbers 0..N-1 once each, every trial terminal, no report twice. The full
10,000-trial soak is `bench/bench_soak.py`; this runs its code with a small budget."""
from __future__ import annotations

import importlib
import os
import sys

import pytest

from testlib import REPO, TESTS_DIR

BENCH = os.path.join(REPO, "bench")


def _bench():
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    return importlib.import_module("bench_soak")


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.postgres
def test_soak_with_a_node_kill_and_a_controller_kill():
    soak = _bench()
    if not soak.pg_reachable():
        pytest.skip(f"PostgreSQL not reachable at {soak.PG_ADMIN!r}")
    lines: list[str] = []
    trials = 200
    # Trials of three 0.1 s steps keep node 2's slots busy, so its kill interrupts some of them;
    # the kills are placed by progress (a fifth of the budget done and trials finished on both
    # nodes, then half of the budget done), not by the clock.
    res = soak.soak(trials=trials, runs=["fault"], kill_every=1.0, node_kill_limit=1, node_kill_at=0.2,
                    controller_kill_at=0.5, head_cpus=2, node_cpus=2, cpus=0.5, steps=3, sleep=0.1,
                    max_failures=3, timeout=300, nice=0, keep=False, log=lines.append, extra_path=TESTS_DIR)
    print("\n".join(lines))  # the timeline, shown with -s or when an assertion below fails
    run = res["fault"]
    v = run["verified"]  # soak() asserted the invariants; they are restated here as the test's claim
    assert v["trials"] == trials and v["missing"] == 0 and v["duplicated"] == 0, lines
    assert v["not_terminal"] == 0 and v["duplicated_reports"] == 0, lines
    assert v["final_attempt_not_all_steps"] == 0, lines
    assert v["states"] == {"COMPLETE": trials}, lines
    assert len(run["node_kills"]) == 1 and len(run["controller_kills"]) == 1, lines
    at_kill = run["controller_kills"][0]["states_at_kill"]
    # The trials running at the controller's kill are re-run by `search resume` as a next attempt,
    # and those running on node 2 at its kill as a retry counted against them.
    assert at_kill.get("RUNNING", 0) >= 1 and v["retried"] >= at_kill["RUNNING"], (v, at_kill)
    assert v["lost_to_workers"] >= 1, (v, lines)
    # Interrupted attempts' reports are kept beside the retries' own.
    assert v["reports"] >= 3 * trials, v


def test_a_slot_kills_the_actor_that_failed_before_taking_a_new_one(monkeypatch):
    """Found by the soak: a killed node's actors first fail with ActorUnavailableError ("may be
    available later"). A slot that gave up on such an actor must kill it: alive, it would keep
    its CPUs reserved with nobody calling it, and the slot's next actor could wait for them forever.
    (No Ray instance: the slot loop runs on stand-ins for the actors and Ray's calls.)"""
    import ray
    from ray.exceptions import RayError

    from search.backends.ray_backend import RayBackend
    from trials.api import TrialSpec

    class Unavailable(RayError):
        pass

    backend = RayBackend()
    first, second = object(), object()
    handed = iter([first, second])
    killed = []
    monkeypatch.setattr(backend, "_ready_actor", lambda slot: backend._actors.setdefault(slot, next(handed)))

    def events_of(actor, spec):
        raise Unavailable("The actor is temporarily unavailable")
        yield  # a generator, as the real one is

    monkeypatch.setattr(backend, "_events_of", events_of)
    monkeypatch.setattr(ray, "kill", lambda actor, no_restart=True: killed.append(actor))
    spec = TrialSpec(study="s", trial_id=7, number=0, attempt=0, entrypoint="m:f", config={}, seed=0,
                     objective_metrics=("loss",), checkpoint_dir="/tmp/x")
    backend._specs.put(spec)
    backend._specs.put(None)  # then the slot stops
    backend._slot_loop(0)
    assert killed == [first]
    lost = backend.poll(0.0)
    assert [(e.kind, e.trial_id, e.attempt) for e in lost] == [("lost", 7, 0)]
    assert "worker lost" in lost[0].error and 7 not in backend._running
