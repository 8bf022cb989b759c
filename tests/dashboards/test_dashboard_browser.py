"""Every page in headless Chromium: plots render, tables hold the right rows, live updates arrive
without a reload. Screenshots go to each test's tmp dir."""
from __future__ import annotations

import pytest
from dashboard_names import ASHA, P_IMG, P_SCRIPT, P_SVG, PARETO, PBT, POLL_SECONDS, SCALING, STEPPER, XSS

from analysis.pareto import pareto_view
from storage import open_storage
from storage.read_api import ReadAPI

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # Chromium and full page loads: seconds each

PLOT_TIMEOUT = 30_000


def open_page(watch, url, selector):
    watch.page.goto(url)
    watch.page.wait_for_selector(selector, timeout=PLOT_TIMEOUT)
    return watch.page


def assert_plot(page, plot_id):
    page.wait_for_selector(f"#{plot_id}.js-plotly-plot .main-svg", timeout=PLOT_TIMEOUT)
    assert page.locator(f"#{plot_id} .main-svg").count() >= 1


def test_studies_page_lists_every_study(dash_server, dash_url, watch, tmp_path):
    page = open_page(watch, dash_server.url + "/", "#studies tbody tr")
    rows = page.locator("#studies tbody tr")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.study)")) == sorted([STEPPER, PARETO, SCALING, PBT, ASHA, XSS])
    with ReadAPI(dash_url) as api:
        best = {s["name"]: s for s in api.studies()}
    cells = page.locator(f'#studies tr[data-study="{STEPPER}"] td').all_inner_texts()
    assert cells[1] == STEPPER and cells[2] == "random" and cells[3] == "COMPLETE" and cells[4] == "25 / 25"
    assert float(cells[7]) == pytest.approx(best[STEPPER]["best"], rel=1e-5)
    page.screenshot(path=tmp_path / "studies.png", full_page=True)
    assert not watch.errors and not watch.dialogs


def test_study_page_renders_every_plot_and_the_table(dash_server, watch, tmp_path):
    page = open_page(watch, f"{dash_server.url}/studies/{STEPPER}", "#trials tbody tr")
    for plot in ("plot-history", "plot-parcoords", "plot-slice", "plot-contour", "plot-curves", "plot-timeline",
                 "plot-importance"):
        assert_plot(page, plot)
    assert page.locator("#trials tbody tr").count() == 25
    assert page.locator("#plot-curves .scatterlayer .trace").count() == 25
    assert "random forest" in page.inner_text("#importance-method")
    assert page.locator("#summary-done").inner_text() == "25 / 25"
    page.screenshot(path=tmp_path / "study.png", full_page=True)
    assert not watch.errors and not watch.dialogs


def test_trial_table_sorts_filters_and_pages_on_the_server(dash_server, dash_url, watch):
    with open_storage(dash_url, create=False) as st:
        trials = st.get_trials(st.get_study(STEPPER).id)
    page = open_page(watch, f"{dash_server.url}/studies/{STEPPER}", "#trials tbody tr")
    numbers = lambda: page.locator("#trials tbody tr").evaluate_all("rs => rs.map(r => Number(r.dataset.number))")  # noqa: E731

    page.click('#trials th[data-sort="value"]')
    page.wait_for_selector('#trials th[data-sort="value"]:has-text("▲")')
    page.wait_for_function("() => document.querySelector('#trials tbody tr').dataset.number === '%d'"
                           % min(trials, key=lambda t: t.value).number)
    assert numbers() == [t.number for t in sorted(trials, key=lambda t: (t.value, t.number))]

    page.select_option("#page-size", "20")
    page.wait_for_function("() => document.querySelectorAll('#trials tbody tr').length === 20")
    assert page.inner_text("#page-info") == "1–20 of 25"
    page.click("#next-page")
    page.wait_for_function("() => document.querySelectorAll('#trials tbody tr').length === 5")
    assert page.inner_text("#page-info") == "21–25 of 25"

    page.fill("#trial-filter", "params.kind = b and params.x > 0.3")
    page.press("#trial-filter", "Enter")
    expected = sorted((t for t in trials if t.params["kind"] == "b" and t.params["x"] > 0.3),
                      key=lambda t: (t.value, t.number))
    page.wait_for_function(f"() => document.getElementById('page-info').textContent.endsWith('of {len(expected)}')")
    assert numbers() == [t.number for t in expected][:20]

    page.fill("#trial-filter", "nonsense")
    page.press("#trial-filter", "Enter")
    page.wait_for_selector("#trials-error:not([hidden])")
    assert "FIELD OP VALUE" in page.inner_text("#trials-error")


def test_trial_page_shows_params_reports_and_checkpoints(dash_server, dash_url, watch, tmp_path):
    with open_storage(dash_url, create=False) as st:
        t = st.get_trial(st.get_study(STEPPER).id, 7)
    page = open_page(watch, f"{dash_server.url}/studies/{STEPPER}/trials/7", "#trial-reports tbody tr")
    assert_plot(page, "plot-reports")
    params = dict(r.split("\t") for r in page.locator("#trial-params tr").all_inner_texts())
    assert set(params) == set(t.params) and params["kind"] == t.params["kind"]
    assert page.locator("#trial-checkpoints tbody tr").count() == 6
    assert page.locator("#trial-reports tbody tr").count() == 6
    assert page.inner_text("#trial-state") == "COMPLETE"
    page.screenshot(path=tmp_path / "trial.png", full_page=True)
    assert not watch.errors


def test_scaling_page_fits_or_explains(dash_server, watch, tmp_path):
    page = open_page(watch, f"{dash_server.url}/studies/{SCALING}/scaling", "#scaling-params tbody tr")
    assert_plot(page, "plot-scaling")
    assert page.locator("#scaling-params tbody tr").count() == 5
    # the band: filled traces around each fitted curve
    assert page.locator("#plot-scaling .scatterlayer .trace").count() >= 4
    page.screenshot(path=tmp_path / "scaling.png", full_page=True)
    page.goto(f"{dash_server.url}/studies/{STEPPER}/scaling")
    page.wait_for_function("() => document.getElementById('scaling-status').textContent.startsWith('No scaling')")
    assert "params" in page.inner_text("#scaling-status")
    assert page.locator("#scaling-params").is_hidden()
    assert not watch.errors


def test_pareto_page_marks_the_front(dash_server, dash_url, watch, tmp_path):
    with ReadAPI(dash_url) as api:
        d = pareto_view(api, PARETO)
    page = open_page(watch, f"{dash_server.url}/studies/{PARETO}/pareto", "#pareto-table tbody tr")
    assert_plot(page, "plot-pareto")
    front = sorted(n for n, f in zip(d["numbers"], d["front"]) if f)
    assert page.locator("#pareto-table tbody tr").evaluate_all("rs => rs.map(r => Number(r.dataset.number))") == front
    page.screenshot(path=tmp_path / "pareto.png", full_page=True)
    assert not watch.errors


def test_lineage_page_draws_members_and_exploits(dash_server, dash_url, watch, tmp_path):
    with open_storage(dash_url, create=False) as st:
        study = st.get_study(PBT)
        exploits = st.get_exploits(study.id)
    page = open_page(watch, f"{dash_server.url}/studies/{PBT}", "#link-lineage")
    page.click("#link-lineage")
    page.wait_for_selector("#lineage-table tbody tr", timeout=PLOT_TIMEOUT)
    assert_plot(page, "plot-lineage")
    members = page.locator("#lineage-table tbody tr").evaluate_all("rs => rs.map(r => Number(r.dataset.member))")
    assert members == [e.number for e in exploits]
    assert f"{len(exploits)} exploits among 6 members" in page.inner_text("#lineage-note")
    page.screenshot(path=tmp_path / "lineage.png", full_page=True)
    assert not watch.errors


def test_compare_page_plots_several_studies(dash_server, watch, tmp_path):
    page = open_page(watch, f"{dash_server.url}/", "#studies tbody tr")
    page.check(f'#studies tr[data-study="{STEPPER}"] input.pick')
    page.check(f'#studies tr[data-study="{PARETO}"] input.pick')
    page.click("#compare-button")
    page.wait_for_url("**/compare?**")
    assert_plot(page, "plot-compare")
    legend = page.locator("#plot-compare .legendtext").evaluate_all("ns => ns.map(n => n.textContent)")
    assert any(STEPPER in x for x in legend) and any(PARETO in x for x in legend)
    page.screenshot(path=tmp_path / "compare.png", full_page=True)
    assert not watch.errors


def test_running_trials_appear_without_a_reload(dash_server, dash_url, watch):
    page = open_page(watch, f"{dash_server.url}/studies/{PARETO}", "#trials tbody tr")
    assert_plot(page, "plot-curves")
    page.evaluate("() => { window.__marker = 'same page'; }")
    with open_storage(dash_url) as st:
        study = st.get_study(PARETO)
        trial = st.create_trial(study.id, {"x": 0.5, "y": 0.1}, worker="live-worker")
        try:
            st.add_reports([(trial.id, 0, 1, {"loss": 0.9, "cost": 0.4}), (trial.id, 0, 2, {"loss": 0.8, "cost": 0.4})])
            page.wait_for_selector(f'#trials tr[data-number="{trial.number}"].state-RUNNING',
                                   timeout=int(POLL_SECONDS * 1000 * 30))
            page.wait_for_function("() => document.getElementById('summary-running').textContent === '1'")
            page.wait_for_function("() => document.getElementById('curves-info').textContent.includes('1 running')")
            st.finish_trial(trial.id, 0, state="COMPLETE", values=[0.8, 0.4], metrics={"loss": 0.8, "cost": 0.4})
            page.wait_for_function("() => document.getElementById('summary-running').textContent === '0'")
        finally:
            st.finish_trial(trial.id, 0, state="FAILED", error="test cleanup")
    assert page.evaluate("() => window.__marker") == "same page"


XSS_PAGES = [("/", "#studies tbody tr", None),
             (f"/studies/{XSS}", "#trials tbody tr", ["plot-history", "plot-parcoords", "plot-slice", "plot-contour",
                                                      "plot-curves", "plot-timeline"]),
             (f"/studies/{XSS}/trials/0", "#trial-reports tbody tr", ["plot-reports"]),
             (f"/studies/{XSS}/trials/2", "#trial-error", ["plot-reports"]),
             (f"/studies/{XSS}/pareto", "#pareto-table tbody tr", ["plot-pareto"]),
             (f"/studies/{XSS}/scaling", "#scaling-status", None),
             (f"/studies/{XSS}/lineage", "#lineage-table tbody tr", ["plot-lineage"]),
             (f"/compare?study={XSS}&study={STEPPER}", "#compare-names li", ["plot-compare"])]


@pytest.mark.parametrize("path,ready,plots", XSS_PAGES, ids=[p for p, _, _ in XSS_PAGES])
def test_payloads_in_names_and_errors_are_shown_not_run(dash_server, watch, tmp_path, path, ready, plots):
    page = open_page(watch, dash_server.url + path, ready)
    for plot in plots or ():
        assert_plot(page, plot)
    page.wait_for_timeout(int(POLL_SECONDS * 3000))  # let a few live refreshes run too
    page.screenshot(path=tmp_path / "xss.png", full_page=True)
    assert page.evaluate("() => window.__xss") is None
    assert watch.dialogs == []
    injected = page.evaluate("""() => ({
        // plotly's own text-measuring svg (#js-plotly-tester) is the only svg allowed outside a plot
        handlers: document.querySelectorAll('[onerror], [onload], [onclick]').length,
        imgs: document.querySelectorAll('img').length,
        scripts: [...document.scripts].map(s => s.getAttribute('src')),
        svgsOutsidePlots: [...document.querySelectorAll('svg')]
            .filter(s => !s.closest('.js-plotly-plot') && s.id !== 'js-plotly-tester').length,
    })""")
    # the studies list draws no plot and loads no plotly
    scripts = ["/static/app.js"] if path == "/" else ["/static/plotly.min.js", "/static/app.js"]
    assert injected == {"handlers": 0, "imgs": 0, "scripts": scripts, "svgsOutsidePlots": 0}
    # the payloads are there, as text
    text = page.evaluate("() => document.body.innerText")
    svg_text = page.evaluate("() => [...document.querySelectorAll('.main-svg text')].map(t => t.textContent).join(' ')")
    shown = text + svg_text
    if path != f"/studies/{XSS}/scaling":
        assert any(p in shown for p in (P_SCRIPT, P_IMG, P_SVG)), shown[:500]
    if path == f"/studies/{XSS}":
        headers = page.locator("#trials thead th").evaluate_all("ths => ths.map(t => t.textContent)")
        assert P_SCRIPT in headers and P_IMG in headers
        assert P_SCRIPT in page.locator("#plot-history .ytitle").text_content()
        assert P_SVG in page.locator("#trials tbody").inner_text()
    if path == f"/studies/{XSS}/trials/2":
        assert page.inner_text("#trial-error") == f"Traceback: {P_SCRIPT} {P_IMG} {P_SVG}"
    assert not [e for e in watch.errors if "Content Security Policy" in e]
