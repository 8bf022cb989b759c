"""One answer per study: `search scaling report`, `search pareto`, `search importance` and the
dashboard's JSON API compute through the same ``analysis`` views over the read API."""
from __future__ import annotations

import json

import pytest

import search
from analysis.importance import importance_view
from analysis.pareto import pareto_view
from analysis.scaling import law_at, scaling_view
from search.cli import main
from storage.read_api import open_read_api

LADDER = {"target": {"layers": 3, "width": 64, "tokens": 1048576},
          "rungs": [{"layers": 2, "width": 16}, {"layers": 2, "width": 24}, {"layers": 2, "width": 32}],
          "tokens": [65536, 131072, 262144], "lrs": [0.0125, 0.025, 0.05, 0.1, 0.2, 0.4],
          "batch_sizes": [1, 2, 4, 8], "context": 64, "bootstrap": 0}


def _run(url, tmp_path, name, entrypoint, algorithm, trials, space=None,
         objective=({"metric": "loss", "direction": "minimize"},)):
    search.run({"name": name, "objective": list(objective), "trial": {"entrypoint": entrypoint},
                "space": space or {}, "algorithm": algorithm, "budget": {"trials": trials, "parallel": 2},
                "backend": {"name": "inprocess"}, "artifacts": str(tmp_path)}, storage=url)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("views")
    url = f"sqlite:///{folder / 'views.db'}"
    _run(url, folder, "ladder", "search_test_objectives:ladder_toy", {"name": "scaling", "seed": 0, **LADDER}, 400,
         objective=({"metric": "val_loss", "direction": "minimize"},))
    _run(url, folder, "grid", "search_test_objectives:chinchilla_toy", {"name": "grid"}, 20,
         space={"n": {"type": "categorical", "choices": [1e7, 3e7, 1e8, 3e8, 1e9]},
                "d": {"type": "categorical", "choices": [1e9, 3e9, 1e10, 3e10]}})
    _run(url, folder, "mo", "search_test_objectives:metrics_dict", {"name": "random", "seed": 3}, 12,
         space={"x": {"type": "float", "low": -1.0, "high": 1.0}},
         objective=({"metric": "loss", "direction": "minimize"}, {"metric": "size", "direction": "maximize"}))
    return url


def _cli_json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _dashboard_json(url, path):
    from urllib.request import urlopen

    from dashboards import ServerThread, create_app

    app = create_app(url)
    try:
        with ServerThread(app) as srv, urlopen(srv.url + path, timeout=120) as response:
            return json.loads(response.read())
    finally:
        app.app.state.read_api.close()


def test_a_ladder_answers_with_its_recorded_law_in_the_cli_and_the_dashboard(url, capsys):
    with open_read_api(url) as api:
        view = scaling_view(api, "ladder")
        state = api.get_algorithm_state("ladder")["algorithm"]
    assert view["available"] and view["source"] == "ladder"
    assert view["fit"] == state["fit"]["loss_law"] and view["prediction"] == state["prediction"]
    cells = [c for c in state["cells"] if c["finished"]]
    assert view["points"]["N"] == [c["N"] for c in cells] and view["points"]["loss"] == [c["loss"] for c in cells]
    curve = view["curves"][0]
    assert curve["loss"][5] == pytest.approx(law_at(view["fit"], curve["N"][5], curve["tokens"]))
    assert _cli_json(capsys, ["scaling", "report", "ladder", "--storage", url, "--json"]) == state
    assert _dashboard_json(url, "/api/v1/studies/ladder/scaling") == json.loads(json.dumps(view))


def test_any_other_study_answers_with_one_fit_of_its_trials_everywhere(url, capsys):
    with open_read_api(url) as api:
        view = scaling_view(api, "grid")
    assert view["available"] and view["source"] == "trials" and len(view["points"]["N"]) == 20
    assert view["fit"]["params"]["alpha"] == pytest.approx(0.34, rel=0.05)
    assert _cli_json(capsys, ["scaling", "report", "grid", "--storage", url, "--json"]) == json.loads(json.dumps(view))
    assert _dashboard_json(url, "/api/v1/studies/grid/scaling") == json.loads(json.dumps(view))
    assert main(["scaling", "report", "grid", "--storage", url]) == 0
    assert "fitted to 20 completed trials" in capsys.readouterr().out


def test_pareto_and_importance_agree_between_cli_and_dashboard(url, capsys):
    with open_read_api(url) as api:
        front = pareto_view(api, "mo")
        imp = importance_view(api, "grid")
    cli = _cli_json(capsys, ["pareto", "mo", "--storage", url, "--json"])
    assert [t["number"] for t in cli["front"]] == [n for n, on in zip(front["numbers"], front["front"]) if on]
    # the dashboard's answer is the same view, with how many points it drew (it thins dominated
    # points past 4,000; here it shows them all)
    board = _dashboard_json(url, "/api/v1/studies/mo/pareto")
    assert board.pop("shown") == board.pop("total") == len(front["numbers"])
    assert board == json.loads(json.dumps(front))
    assert _cli_json(capsys, ["importance", "grid", "--storage", url, "--json"]) == imp
    assert _dashboard_json(url, "/api/v1/studies/grid/importance") == imp
