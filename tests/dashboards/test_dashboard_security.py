"""The dashboard's security rules over HTTP: read-only methods, Host allowlist, token, CSP,
static allowlist, and no password in pages, API answers or logs."""
from __future__ import annotations

import http.client
import json
import logging
import os
import re
import subprocess
import sys
import time

import pytest
from dashboard_names import PARETO, PBT, SCALING, STEPPER

from dashboards.app import CSP, create_app
from dashboards.server import ServerThread, plan


def request(srv, method, path, headers=None, body=None):
    host, port = srv.url.rsplit("/", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        hdrs = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        for k, v in hdrs.items():
            if v is not None:
                conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


PAGES = ["/", f"/studies/{STEPPER}", f"/studies/{STEPPER}/trials/3", f"/studies/{SCALING}/scaling",
         f"/studies/{PARETO}/pareto", f"/studies/{PBT}/lineage", f"/compare?study={STEPPER}&study={PARETO}"]
APIS = ["/api/v1/meta", "/api/v1/studies", f"/api/v1/studies/{STEPPER}", f"/api/v1/studies/{STEPPER}/trials",
        f"/api/v1/studies/{STEPPER}/trials/3", f"/api/v1/studies/{STEPPER}/history",
        f"/api/v1/studies/{STEPPER}/params", f"/api/v1/studies/{STEPPER}/importance",
        f"/api/v1/studies/{STEPPER}/curves", f"/api/v1/studies/{STEPPER}/timeline",
        f"/api/v1/studies/{PARETO}/pareto", f"/api/v1/studies/{SCALING}/scaling", f"/api/v1/studies/{PBT}/lineage",
        f"/api/v1/compare?study={STEPPER}&study={PARETO}"]


def test_pages_and_api_answer(dash_server):
    for path in PAGES + APIS:
        status, headers, body = request(dash_server, "GET", path)
        assert status == 200, (path, body[:300])
        if path.startswith("/api/"):
            json.loads(body)
    status, _, body = request(dash_server, "GET", "/studies/nope")
    assert status == 404 and b"no study named" in body
    status, _, body = request(dash_server, "GET", "/api/v1/studies/nope/trials")
    assert status == 404 and "nope" in json.loads(body)["error"]
    status, _, body = request(dash_server, "GET", f"/api/v1/studies/{STEPPER}/trials?filter=bogus%20%3D%201")
    assert status == 400 and "unknown filter field" in json.loads(body)["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/api/v1/studies", f"/api/v1/studies/{STEPPER}/trials/1", "/static/app.js"])
def test_only_get_and_head_exist(dash_server, method, path):
    status, headers, _ = request(dash_server, method, path, body=b"{}")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


def test_head_answers_without_body(dash_server):
    status, headers, body = request(dash_server, "HEAD", "/api/v1/studies")
    assert status == 200 and body == b"" and headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "", None])
def test_foreign_host_header_is_refused(dash_server, host):
    status, _, body = request(dash_server, "GET", "/api/v1/studies", headers={"Host": host})
    assert status == 400
    if host is not None:  # HTTP/1.1 without Host is refused by uvicorn itself, with its own text
        assert b"bad Host header" in body


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_loopback_host_names_are_allowed(dash_server, host):
    port = dash_server.port
    assert request(dash_server, "GET", "/api/v1/meta", headers={"Host": f"{host}:{port}"})[0] == 200


def test_security_headers_on_every_answer(dash_server):
    for path in ["/", "/api/v1/studies", "/static/app.js", "/static/nope.js", "/studies/nope"]:
        _, headers, _ = request(dash_server, "GET", path)
        assert headers["content-security-policy"] == CSP
        assert headers["x-content-type-options"] == "nosniff"
    assert request(dash_server, "POST", "/")[1]["content-security-policy"] == CSP
    assert "'unsafe-eval'" not in CSP and "script-src 'self';" in CSP


def test_pages_have_no_inline_script(dash_server):
    for path in PAGES:
        html = request(dash_server, "GET", path)[2].decode()
        for tag in re.findall(r"<script[^>]*>", html):
            assert re.search(r'src="/static/[a-z.]+\.js"', tag), tag
        assert not re.search(r"<[^>]+\son[a-z]+=", html), path


@pytest.mark.parametrize("path", ["/static/../../etc/passwd", "/static/..%2F..%2F..%2Fetc%2Fpasswd",
                                  "/static/%2e%2e/app.py", "/static/..%2Fapp.py", "/static/app.py",
                                  "/static/templates%2Fbase.html", "/static//etc/passwd", "/static/.%2Fapp.js",
                                  "/../../../../etc/passwd"])
def test_static_files_come_from_an_allowlist(dash_server, path):
    status, _, body = request(dash_server, "GET", path)
    assert status in (400, 404)
    assert b"root:" not in body and b"import" not in body


def test_static_allowlist_serves_the_bundled_plotly(dash_server):
    import plotly

    status, headers, body = request(dash_server, "GET", "/static/plotly.min.js")
    with open(os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js"), "rb") as f:
        assert status == 200 and body == f.read()
    assert headers["content-type"].startswith("text/javascript")


def test_token_is_required_when_configured(dash_url):
    app = create_app(dash_url, token="t0ken-abc")
    with ServerThread(app) as srv:
        status, _, body = request(srv, "GET", "/api/v1/studies")
        assert status == 401 and b"token required" in body
        assert request(srv, "GET", "/api/v1/studies", {"Authorization": "Bearer wrong"})[0] == 401
        assert request(srv, "GET", "/api/v1/studies", {"Authorization": "Bearer t0ken-abc"})[0] == 200
        assert request(srv, "GET", "/api/v1/studies", {"X-Search-Token": "t0ken-abc"})[0] == 200
        assert request(srv, "GET", "/?token=wrong")[0] == 401
        status, headers, _ = request(srv, "GET", f"/studies/{STEPPER}?token=t0ken-abc&x=1")
        assert status == 303 and headers["location"] == f"/studies/{STEPPER}?x=1"
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
        assert request(srv, "GET", "/api/v1/studies", {"Cookie": cookie})[0] == 200
        assert request(srv, "GET", "/api/v1/studies", {"Cookie": cookie.split("=")[0] + "=nope"})[0] == 401
        # the Host check and read-only rule come first, token or not
        assert request(srv, "GET", "/", {"Host": "evil.example", "Cookie": cookie})[0] == 400
        assert request(srv, "POST", "/", {"Cookie": cookie}, body=b"")[0] == 405


def test_non_loopback_binds_need_a_token(monkeypatch):
    monkeypatch.delenv("SEARCH_DASHBOARD_TOKEN", raising=False)
    assert plan("127.0.0.1")[0] is None and plan("localhost")[0] is None and plan("::1")[0] is None
    token, allowed = plan("0.0.0.0")
    assert token and len(token) >= 32
    assert "127.0.0.1" in allowed
    assert plan("0.0.0.0")[0] != token
    token, allowed = plan("10.1.2.3", allowed_hosts=["dash.example"])
    assert token and {"10.1.2.3", "dash.example"} <= set(allowed)
    monkeypatch.setenv("SEARCH_DASHBOARD_TOKEN", "from-env")
    assert plan("0.0.0.0")[0] == "from-env"


def _cli(args, env=None):
    code = ("import argparse, sys\nfrom search import dashboard_cli as d\n"
            "p = argparse.ArgumentParser(prog='search'); s = p.add_subparsers(); d.add_parser(s)\n"
            "sys.exit(d.run(p.parse_args(sys.argv[1:])))")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SEARCH_")}
    full_env.update(env or {}, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", code, "dashboard", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env)


def _wait_for_line(proc, prefix, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line and proc.poll() is not None:
            raise AssertionError(f"dashboard exited: {proc.stderr.read()}")
    raise AssertionError(f"no line starting {prefix!r}")


@pytest.mark.slow
def test_cli_on_all_interfaces_prints_a_token_and_enforces_it(dash_url):
    from dashboards.server import _free_port

    port = _free_port("127.0.0.1")
    proc = _cli(["--storage", dash_url, "--host", "0.0.0.0", "--port", str(port)])
    try:
        line = _wait_for_line(proc, "open ")
        token = line.split("?token=")[1]
        srv = type("S", (), {"url": f"http://127.0.0.1:{port}", "port": port})()
        for _ in range(100):
            try:
                status = request(srv, "GET", "/api/v1/meta")[0]
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        assert status == 401
        assert request(srv, "GET", "/api/v1/meta", {"Authorization": f"Bearer {token}"})[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.postgres
@pytest.mark.slow
def test_password_never_shown_or_logged(pg_url, caplog):
    import search

    from dashboards.server import _free_port

    secret = "Pw-0f-Th3-Db"
    url = pg_url.replace("postgres@", f"postgres:{secret}@")  # the test server trusts local users
    search.run({"name": "pw-study", "objective": {"metric": "loss", "direction": "minimize"},
                "trial": {"entrypoint": "search_test_objectives:stepper", "params": {"steps": 3}},
                "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
                "algorithm": {"name": "random", "seed": 1}, "budget": {"trials": 3}, "backend": {"name": "inprocess"}},
               storage=url, backend="inprocess")
    caplog.set_level(logging.DEBUG)
    app = create_app(url)
    seen = []
    with ServerThread(app) as srv:
        for path in [p.replace(STEPPER, "pw-study") for p in PAGES[:3] + APIS[:10]] + ["/api/v1/studies/nope"]:
            status, headers, body = request(srv, "GET", path)
            seen.append(body.decode("utf-8", "replace") + json.dumps(headers))
            assert status in (200, 404), path
    app.app.state.read_api.close()
    assert any("***" in s for s in seen), "the storage (password masked) is shown in the footer"
    assert all(secret not in s for s in seen)
    assert caplog.records and all(secret not in r.getMessage() for r in caplog.records)
    port = _free_port("127.0.0.1")
    proc = _cli(["--storage", url, "--port", str(port)])
    try:
        banner = _wait_for_line(proc, "search dashboard over ")
        _wait_for_line(proc, "open ")
        srv = type("S", (), {"url": f"http://127.0.0.1:{port}", "port": port})()
        for _ in range(100):
            try:
                request(srv, "GET", "/api/v1/studies")
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "***" in banner and secret not in banner + out + err
    assert "GET /api/v1/studies 200" in err
