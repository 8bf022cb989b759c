"""Hostile requests the dashboard must answer with a 4xx and a message, never a 500 (issue #21):
non-ASCII tokens, open redirects, numbers too large for the database, duplicated security
headers; the machine's own addresses on a wildcard bind; and durations of studies that stopped."""
from __future__ import annotations

import http.client
import json
from datetime import timedelta
from urllib.parse import urljoin, urlsplit

import pytest
from dashboard_names import STEPPER

from dashboards.app import create_app
from dashboards.server import ServerThread, plan

SECURITY = ("content-security-policy", "x-content-type-options", "referrer-policy", "x-frame-options",
            "cross-origin-opener-policy")
HUGE = "99999999999999999999999"


def raw_request(srv, path: str, headers: dict[str, str | bytes] | None = None, *, connect: str | None = None,
                method: str = "GET"):
    """(status, [(name, value)...] with repeats kept, body). ``path`` goes out byte for byte."""
    port = srv.port
    conn = http.client.HTTPConnection(connect or "127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        hdrs = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, [(k.lower(), v) for k, v in r.getheaders()], r.read()
    finally:
        conn.close()


def header(headers, name):
    return next(v for k, v in headers if k == name)


@pytest.fixture(scope="module")
def ascii_token_server(dash_url):
    app = create_app(dash_url, token="right-token")
    with ServerThread(app) as srv:
        yield srv
    app.app.state.read_api.close()


# -- 3: non-ASCII tokens ---------------------------------------------------------------------------

def test_non_ascii_configured_token_works_and_wrong_ones_are_401(dash_url):
    token = "pässwörd"
    utf8 = token.encode()
    app = create_app(dash_url, token=token)
    with ServerThread(app) as srv:
        assert raw_request(srv, "/api/v1/studies")[0] == 401
        assert raw_request(srv, "/api/v1/studies", {"Authorization": b"Bearer " + utf8})[0] == 200
        assert raw_request(srv, "/api/v1/studies", {"X-Search-Token": utf8})[0] == 200
        assert raw_request(srv, "/api/v1/studies", {"Authorization": "Bearer p\xe4ssw\xf6rd".encode("latin-1")})[0] == 401
        assert raw_request(srv, "/api/v1/studies", {"Authorization": "Bearer é".encode()})[0] == 401
        assert raw_request(srv, "/?token=%C3%A9")[0] == 401
        status, headers, _ = raw_request(srv, f"/studies/{STEPPER}?token=p%C3%A4ssw%C3%B6rd&x=%C3%A9")
        assert status == 303 and header(headers, "location") == f"/studies/{STEPPER}?x=%C3%A9"
        cookie = header(headers, "set-cookie").split(";")[0]
        assert cookie.isascii()
        assert raw_request(srv, "/api/v1/studies", {"Cookie": cookie})[0] == 200
    app.app.state.read_api.close()


@pytest.mark.parametrize("headers, path", [
    ({"Authorization": "Bearer é".encode()}, "/api/v1/studies"),
    ({"Authorization": b"Bearer \xff\xfe"}, "/api/v1/studies"),
    ({"X-Search-Token": "pässwörd".encode()}, "/api/v1/studies"),
    ({"Cookie": "search_dashboard_token=é".encode()}, "/api/v1/studies"),
    ({}, "/?token=%C3%A9"),
    ({}, "/?token=%FF"),
    ({}, "/?token=" + "%E2%82%AC" * 50),
])
def test_non_ascii_wrong_tokens_are_401_not_500(ascii_token_server, headers, path):
    status, _, body = raw_request(ascii_token_server, path, headers)
    assert status == 401, body


# -- 4: open redirect ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["//evil.example/?token=right-token", "///evil.example/x?token=right-token",
                                  "/%2F%2Fevil.example/?token=right-token", "/%5Cevil.example/?token=right-token",
                                  "/%5C%5Cevil.example?token=right-token", "//evil.example?token=right-token&a=1",
                                  "/%09/evil.example?token=right-token"])
def test_token_redirect_stays_on_this_host(ascii_token_server, path):
    status, headers, _ = raw_request(ascii_token_server, path)
    assert status == 303
    location = header(headers, "location")
    base = f"http://127.0.0.1:{ascii_token_server.port}/studies/x"
    assert location.startswith("/") and not location.startswith(("//", "/\\"))
    assert all(c > " " and c != "\\" for c in location), location
    assert urlsplit(urljoin(base, location)).netloc == f"127.0.0.1:{ascii_token_server.port}"


# -- 5: numbers -------------------------------------------------------------------------------------

BAD_NUMBERS = [
    (f"/api/v1/studies/{STEPPER}/trials?offset={HUGE}", "offset"),
    (f"/api/v1/studies/{STEPPER}/trials?limit={HUGE}", "limit"),
    (f"/api/v1/studies/{STEPPER}/trials?offset=-1", "offset"),
    (f"/api/v1/studies/{STEPPER}/trials?offset=abc", "offset"),
    (f"/api/v1/studies/{STEPPER}/trials?offset=1e3", "offset"),
    (f"/api/v1/studies/{STEPPER}/curves?offset={HUGE}", "offset"),
    (f"/api/v1/studies/{STEPPER}/curves?offset=-1", "offset"),
    (f"/api/v1/studies/{STEPPER}/curves?limit={HUGE}", "limit"),
    (f"/api/v1/studies/{STEPPER}/curves?points=-{HUGE}", "points"),
    (f"/api/v1/studies/{STEPPER}/history?objective={HUGE}", "objective"),
    (f"/api/v1/studies/{STEPPER}/history?objective=x", "objective"),
    (f"/api/v1/studies/{STEPPER}/importance?objective={HUGE}", "objective"),
    (f"/api/v1/studies/{STEPPER}/trials/{HUGE}", "trial number"),
    (f"/api/v1/studies/{STEPPER}/trials/-1", "trial number"),
    (f"/api/v1/studies/{STEPPER}/trials/one", "trial number"),
    (f"/api/v1/studies/{STEPPER}/trials/{'9' * 5000}", "trial number"),
]


@pytest.mark.parametrize("path, name", BAD_NUMBERS)
def test_bad_numbers_are_400_naming_the_parameter(dash_server, path, name):
    status, headers, body = raw_request(dash_server, path)
    assert status == 400, body[:300]
    error = json.loads(body)["error"]
    assert error.startswith(name) and "integer" in error, error


def test_trial_page_with_a_huge_number_is_400(dash_server):
    status, _, body = raw_request(dash_server, f"/studies/{STEPPER}/trials/{HUGE}")
    assert status == 400 and b"trial number" in body


def test_numbers_in_range_still_answer(dash_server):
    status, _, body = raw_request(dash_server, f"/api/v1/studies/{STEPPER}/curves?offset=1000000&limit=5")
    assert status == 200 and json.loads(body)["curves"] == []
    status, _, body = raw_request(dash_server, f"/api/v1/studies/{STEPPER}/trials?offset=2147483647")
    assert status == 200 and json.loads(body)["rows"] == []
    assert raw_request(dash_server, f"/api/v1/studies/{STEPPER}/trials/2147483647")[0] == 404


def test_read_api_curves_refuse_a_negative_offset(dash_url):
    from storage.read_api import ReadAPI

    with ReadAPI(dash_url) as api, pytest.raises(ValueError, match="offset must be >= 0"):
        api.learning_curves(STEPPER, offset=-1)


def test_each_security_header_is_sent_once(dash_server, ascii_token_server):
    answers = [
        raw_request(dash_server, "/api/v1/studies"),
        raw_request(dash_server, "/studies/nope"),
        raw_request(dash_server, "/static/nope.js"),
        raw_request(dash_server, f"/api/v1/studies/{STEPPER}/trials?offset=-1"),
        raw_request(dash_server, "/", {"Host": "evil.example"}),
        raw_request(dash_server, "/", method="POST"),
        raw_request(ascii_token_server, "/"),
        raw_request(ascii_token_server, "/?token=right-token"),
    ]
    for status, headers, _ in answers:
        names = [k for k, _ in headers]
        for h in SECURITY:
            assert names.count(h) == 1, (status, h, names)


# -- 17: a wildcard bind answers to the machine's own addresses --------------------------------------

def _own_ipv4() -> str | None:
    import ipaddress

    psutil = pytest.importorskip("psutil")
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            try:
                ip = ipaddress.ip_address(a.address)
            except ValueError:
                continue
            if ip.version == 4 and not ip.is_loopback:
                return a.address
    return None


def test_plan_for_a_wildcard_bind_allows_every_interface_address(monkeypatch):
    monkeypatch.delenv("SEARCH_DASHBOARD_TOKEN", raising=False)
    ip = _own_ipv4()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    _token, allowed = plan("0.0.0.0")
    assert ip in allowed and "127.0.0.1" in allowed


def test_wildcard_bind_answers_on_the_machines_own_ip(dash_url):
    ip = _own_ipv4()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    # Only loopback names are configured: the address the connection arrived on is allowed as such.
    app = create_app(dash_url, allowed_hosts=("127.0.0.1", "localhost"))
    with ServerThread(app, host="0.0.0.0") as srv:
        status, _, body = raw_request(srv, "/api/v1/meta", {"Host": f"{ip}:{srv.port}"}, connect=ip)
        assert status == 200, body
        # a name that merely resolves here is still refused (DNS rebinding)
        assert raw_request(srv, "/api/v1/meta", {"Host": f"evil.example:{srv.port}"}, connect=ip)[0] == 400
        assert raw_request(srv, "/api/v1/meta", {"Host": f"10.9.9.9:{srv.port}"}, connect=ip)[0] == 400
    app.app.state.read_api.close()


def test_startup_lines_say_which_hosts_are_allowed():
    from dashboards.server import startup_lines

    lines = startup_lines("sqlite:///x.db", "0.0.0.0", 8080, "tok", ["127.0.0.1", "localhost", "192.0.2.7"])
    text = "\n".join(lines)
    assert lines[0] == "search dashboard over sqlite:///x.db"
    assert "allowed hosts: 127.0.0.1, localhost, 192.0.2.7" in text and "--allowed-host" in text
    assert lines[-1].startswith("open http://") and lines[-1].endswith("?token=tok")
    assert startup_lines("u", "0.0.0.0", 1, "pässwörd", ["h"])[-1].endswith("?token=p%C3%A4ssw%C3%B6rd")


# -- 18: a study that stopped has a duration that stops ------------------------------------------------

def _aged_study(url: str, name: str, *, state: str, trial_states: tuple[str, ...], age_s: float = 600.0,
                ran_s: float = 13.0):
    """A study created ``age_s`` ago whose trials were active for its first ``ran_s`` seconds."""
    from sqlalchemy import create_engine, update

    from storage import open_storage
    from storage._schema import StudyRow, TrialRow

    with open_storage(url) as st:
        study = st.create_study(name, metrics=["loss"], directions=["minimize"], spec={"name": name})
        for i, ts in enumerate(trial_states):
            t = st.create_trial(study.id, {"x": i})
            if ts in ("COMPLETE", "PRUNED", "FAILED"):
                st.finish_trial(t.id, 0, state=ts, values=[1.0] if ts == "COMPLETE" else None)
            elif ts == "WAITING":
                st.requeue_running(study.id, reason="controller stopped", trial_ids=[t.id])
        st.set_study_state(study.id, state)
    engine = create_engine(url)
    with engine.begin() as conn:
        created = conn.execute(StudyRow.__table__.select().where(StudyRow.__table__.c.id == study.id)).one().created_at
        t0 = created - timedelta(seconds=age_s)
        conn.execute(update(StudyRow.__table__).where(StudyRow.__table__.c.id == study.id).values(created_at=t0))
        tr = TrialRow.__table__
        for col in ("created_at", "started_at"):
            conn.execute(update(tr).where(tr.c.study_id == study.id, tr.c[col].is_not(None))
                         .values({col: t0 + timedelta(seconds=1)}))
        for col in ("finished_at", "heartbeat_at"):
            conn.execute(update(tr).where(tr.c.study_id == study.id, tr.c[col].is_not(None))
                         .values({col: t0 + timedelta(seconds=ran_s)}))
    engine.dispose()


@pytest.mark.parametrize("state, trial_states", [
    ("INTERRUPTED", ("PRUNED", "FAILED")),        # nothing completed
    ("INTERRUPTED", ("COMPLETE", "RUNNING")),      # a trial left RUNNING, its heartbeat the last sign
    ("RUNNING", ("COMPLETE", "RUNNING")),          # controller killed (kill -9): state never updated
    ("INTERRUPTED", ("WAITING",)),                 # requeued at Ctrl-C: only its start is known
])
def test_duration_of_a_stopped_study_does_not_grow(storage_url, state, trial_states):
    from storage.read_api import ReadAPI

    _aged_study(storage_url, "aged", state=state, trial_states=trial_states)
    with ReadAPI(storage_url) as api:
        s = api.study("aged")
        listed = api.studies()[0]
        page = api.trials_page("aged")
    assert s["duration_s"] < 20, s
    assert listed["duration_s"] == pytest.approx(s["duration_s"])
    for row in page["rows"]:
        assert row["duration_s"] is None or row["duration_s"] < 20, row
    if state == "RUNNING":
        assert s["stale"] and s["last_activity_at"]


def test_duration_of_a_live_running_study_counts_to_now(sqlite_url):
    from storage import open_storage
    from storage.read_api import ReadAPI

    with open_storage(sqlite_url) as st:
        study = st.create_study("live", metrics=["loss"], directions=["minimize"], spec={"name": "live"})
        st.create_trial(study.id, {"x": 1})
    with ReadAPI(sqlite_url) as api:
        s = api.study("live")
    assert s["state"] == "RUNNING" and not s["stale"] and s["duration_s"] >= 0


# -- control characters in names, metrics and filter values -------------------------------------------

@pytest.mark.parametrize("path", [f"/api/v1/studies/{STEPPER}/curves?metric=%00",
                                  f"/api/v1/studies/{STEPPER}/curves?metric=loss%01",
                                  f"/api/v1/studies/{STEPPER}/trials?sort=metrics.%00",
                                  f"/api/v1/studies/{STEPPER}/trials?filter=params.kind%20%3D%20a%00",
                                  f"/api/v1/studies/{STEPPER}/trials?sort=values.{'9' * 5000}"])
def test_control_characters_and_long_numbers_are_400(dash_server, path):
    status, _, body = raw_request(dash_server, path)
    assert status == 400, body[:300]
    assert "Exceeds the limit" not in json.loads(body)["error"]


def test_nul_in_a_name_or_value_is_refused_on_every_storage(storage_url):
    from storage import StudyNotFound, open_storage
    from storage.read_api import ReadAPI

    with open_storage(storage_url) as st:
        sid = st.create_study("nul", metrics=["loss"], directions=["minimize"],
                              spec={"name": "nul", "space": {"k": {"type": "categorical", "choices": ["a"]}}}).id
        t = st.create_trial(sid, {"k": "a"})
        st.add_reports([(t.id, 0, 1, {"loss": 1.0})])
    with ReadAPI(storage_url) as api:
        with pytest.raises(StudyNotFound):
            api.study("nul\x00")
        with pytest.raises(ValueError, match="metric must not contain control characters"):
            api.learning_curves("nul", "lo\x00ss")
        with pytest.raises(ValueError, match="sort must not contain control characters"):
            api.trials_page("nul", sort="metrics.\x00")
        with pytest.raises(ValueError, match="filter value of 'params.k' must not contain control characters"):
            api.trials_page("nul", filter="params.k = a\x00")
        assert api.trials_page("nul", filter="params.k = a")["total"] == 1


@pytest.mark.browser
@pytest.mark.slow
def test_a_killed_running_study_shows_its_run_time_and_says_it_is_stale(sqlite_url, watch):
    _aged_study(sqlite_url, "killed", state="RUNNING", trial_states=("COMPLETE", "RUNNING"))
    app = create_app(sqlite_url)
    with ServerThread(app) as srv:
        watch.page.goto(srv.url + "/")
        watch.page.wait_for_selector('#studies tr[data-study="killed"]', timeout=30_000)
        cells = watch.page.locator('#studies tr[data-study="killed"] td').all_inner_texts()
        watch.page.goto(srv.url + "/studies/killed")
        watch.page.wait_for_selector("#summary", timeout=30_000)
        watch.page.wait_for_function("document.querySelector('#summary').innerText.includes('heartbeat')",
                                     timeout=30_000)
        summary = watch.page.inner_text("#summary")
    app.app.state.read_api.close()
    assert cells[3].startswith("RUNNING (no heartbeat since ")
    assert cells[-1] == "13.0 s"  # its last heartbeat, not the 10 minutes since it was created
    assert "no heartbeat since" in summary
    assert not watch.errors and not watch.dialogs

