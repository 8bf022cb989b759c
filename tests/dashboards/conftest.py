"""Dashboard fixtures, all session-scoped: real studies run once with the in-process backend, one
dashboard server (uvicorn in a thread) over them, and one headless Chromium driven by Playwright.

Playwright never downloads a browser here: it launches the system Chromium at /usr/bin/chromium
(Debian packages ``chromium`` and ``chromium-driver``).
"""
from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from dashboard_names import (ASHA, CHROMIUM, CHROMIUM_ARGS, P_IMG, P_SCRIPT, P_SVG, PARETO, PBT,  # noqa: E402
                             POLL_SECONDS, SCALING, STEPPER, XSS, asha_study)


def _study(name: str, entrypoint: str, objective, space, trials: int, artifacts: str, **trial_params):
    return {
        "name": name, "objective": objective,
        "trial": {"entrypoint": entrypoint, "params": trial_params},
        "space": space, "algorithm": {"name": "random", "seed": 0},
        "budget": {"trials": trials, "parallel": 2}, "backend": {"name": "inprocess"},
        "artifacts": artifacts,
    }


@pytest.fixture(scope="session")
def dash_url(tmp_path_factory):
    """A SQLite database holding finished studies: a stepper study that reports learning curves
    and checkpoints, a two-objective study, a study with scaling-law metrics, a PBT study with
    exploits, an ASHA study of 1 complete and 7 pruned trials, and a study full of script payloads
    (see ``_write_xss_study``)."""
    import search

    folder = tmp_path_factory.mktemp("dash")
    url = f"sqlite:///{folder / 'dash.db'}"
    art = str(folder / "artifacts")
    search.run(_study(STEPPER, "search_test_objectives:stepper", {"metric": "loss", "direction": "minimize"},
                      {"x": {"type": "float", "low": 0.0, "high": 1.0},
                       "kind": {"type": "categorical", "choices": ["a", "b"]},
                       "width": {"type": "int", "low": 8, "high": 512, "log": True}},
                      25, art, steps=6), storage=url, backend="inprocess")
    search.run(_study(PARETO, "dashboard_objectives:two_objectives",
                      [{"metric": "loss", "direction": "minimize"}, {"metric": "cost", "direction": "minimize"}],
                      {"x": {"type": "float", "low": 0.0, "high": 1.0},
                       "y": {"type": "float", "low": 0.0, "high": 0.5}}, 16, art), storage=url, backend="inprocess")
    search.run(_study(SCALING, "search_test_objectives:chinchilla_toy", {"metric": "loss", "direction": "minimize"},
                      {"n": {"type": "float", "low": 1.0e6, "high": 1.0e9, "log": True},
                       "d": {"type": "float", "low": 1.0e8, "high": 1.0e11, "log": True}}, 14, art),
               storage=url, backend="inprocess")
    search.run({"name": PBT, "objective": {"metric": "loss", "direction": "minimize"},
                "trial": {"entrypoint": "search_test_objectives:pbt_toy", "params": {"steps": 20}},
                "space": {"lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}},
                "algorithm": {"name": "pbt", "seed": 3, "interval": 4, "quantile": 0.25},
                "budget": {"trials": 6, "parallel": 6}, "backend": {"name": "simulated"}, "artifacts": art},
               storage=url)
    search.run(asha_study(ASHA, art), storage=url, backend="inprocess")
    _write_xss_study(url)
    return url



def _write_xss_study(url: str) -> None:
    """A two-objective study whose parameter, categorical, metric, worker, node, algorithm and
    error strings are script payloads, written straight through storage (the study config would
    refuse such names; a database can still hold them)."""
    from storage import open_storage

    with open_storage(url) as st:
        study = st.create_study(XSS, metrics=[P_SCRIPT, P_SVG + "2"], directions=["minimize", "maximize"], spec={
            "name": XSS, "algorithm": {"name": P_SCRIPT},
            "trial": {"entrypoint": P_IMG, "params": {P_SVG: 1}},
            "space": {P_IMG: {"type": "categorical", "choices": [P_SVG, "plain"]},
                      "x": {"type": "float", "low": 0.0, "high": 1.0}},
        })
        for i, choice in enumerate([P_SVG, "plain", P_SVG]):
            t = st.create_trial(study.id, {P_IMG: choice, "x": 0.25 * (i + 1)}, worker=P_SVG)
            st.add_reports([(t.id, 0, step, {P_SCRIPT: 1.0 / step + i, P_IMG: float(step)}) for step in (1, 2, 3)])
            st.add_checkpoint(t.id, 0, 3, P_IMG, "sha256:" + "0" * 64)
            if i == 1:
                t = st.exploit_trial(t.id, 0, params={P_IMG: P_SVG, "x": 0.6}, step=3, parent_number=0,
                                     checkpoint=(2, P_IMG, "sha256:" + "1" * 64))
            if i == 2:
                st.finish_trial(t.id, 0, state="FAILED", error=f"Traceback: {P_SCRIPT} {P_IMG} {P_SVG}", node=P_IMG)
            else:
                st.finish_trial(t.id, t.attempt, state="COMPLETE", values=[1.0 + i, 2.0 - i],
                                metrics={P_SCRIPT: 1.0 + i, P_SVG + "2": 2.0 - i, P_IMG: 7.0}, last_step=3, node=P_IMG)
        st.set_study_state(study.id, "COMPLETE")


@pytest.fixture(scope="session")
def dash_server(dash_url):
    """The dashboard over ``dash_url`` on a free loopback port, for the whole session."""
    from dashboards import ServerThread, create_app

    app = create_app(dash_url, poll_seconds=POLL_SECONDS)
    with ServerThread(app) as srv:
        yield srv
    app.app.state.read_api.close()


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the session."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}; install Debian's chromium and chromium-driver (or set SEARCH_TEST_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageWatch:
    """A fresh page that records script errors, dialogs and CSP violations."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(viewport={"width": 1300, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watch(chromium):
    w = PageWatch(chromium)
    yield w
    w.close()
