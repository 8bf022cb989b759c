"""The dashboard's ASGI app: HTML pages and a JSON API over ``storage.read_api``, read-only.

Importance, Pareto and scaling answers come from ``analysis``, the same functions the CLI's
``search importance``, ``search pareto`` and ``search scaling report`` call. The dashboard imports
nothing from ``search``, ``trials`` or ``surrogates``.

Security, in the order a request meets it (``_Guard``, a plain ASGI middleware):
1. the Host header must name an allowed host (DNS-rebinding defence): else 400;
2. only GET and HEAD exist: anything else is 405, before any route runs;
3. with a token configured (any non-loopback bind), the request must carry it: ``?token=`` once
   (answered by a redirect that sets an HttpOnly cookie and drops the token from the URL), the
   cookie, or an ``Authorization: Bearer`` / ``X-Search-Token`` header: else 401;
4. every answer carries a Content-Security-Policy that allows scripts only from this server's own
   files (no inline script, no eval), plus nosniff, no-referrer and frame denial.
Pages are Jinja2 templates with autoescape on; the scripts fill tables with ``textContent`` and
escape strings handed to plotly, so names, metrics and error text are shown, never run. Static
files come from a fixed allowlist, never from a path in the request. The storage URL is shown and
logged only through ``safe_url`` (password masked); uvicorn's access log is replaced by one that
omits query strings, which can hold the token.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import secrets
import time
from http.cookies import SimpleCookie
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlencode

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from storage.read_api import FILTER_HELP, READ_API_VERSION, ReadAPI, json_safe, open_read_api

__all__ = ["create_app", "LOOPBACK_HOSTS", "is_loopback", "STATIC_FILES", "CSP"]

log = logging.getLogger("search.dashboard")

HERE = os.path.dirname(os.path.abspath(__file__))
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
# plotly draws with inline style attributes, hence 'unsafe-inline' for styles only.
_SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def _plotly_js() -> str:
    import plotly

    return os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")


STATIC_FILES: dict[str, tuple[Callable[[], str], str]] = {
    "app.js": (lambda: os.path.join(HERE, "static", "app.js"), "text/javascript; charset=utf-8"),
    "style.css": (lambda: os.path.join(HERE, "static", "style.css"), "text/css; charset=utf-8"),
    "plotly.min.js": (_plotly_js, "text/javascript; charset=utf-8"),
}


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host part of a Host header, lower-cased, without port or IPv6 brackets."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else ""
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _token_from_query(qs: str) -> tuple[str | None, str]:
    pairs = parse_qsl(qs, keep_blank_values=True)
    token = next((v for k, v in pairs if k == "token"), None)
    return token, urlencode([(k, v) for k, v in pairs if k != "token"])


class _Guard:
    """Host allowlist, GET/HEAD only, optional token, security headers, a query-free access log."""

    def __init__(self, app, *, allowed_hosts: Iterable[str], token: str | None, cookie_name: str) -> None:
        self.app = app
        self.allowed = {_host_name(h) for h in allowed_hosts}
        self.token = token
        self.cookie_name = cookie_name

    async def _send_plain(self, send, status: int, text: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
        body = text.encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                   *_SECURITY_HEADERS, *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _has_token(self, headers: dict[bytes, bytes]) -> bool:
        assert self.token is not None
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer ") and hmac.compare_digest(auth[7:].strip(), self.token):
            return True
        direct = headers.get(b"x-search-token", b"").decode("latin-1")
        if direct and hmac.compare_digest(direct, self.token):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            return False
        morsel = cookie.get(self.cookie_name)
        return morsel is not None and hmac.compare_digest(morsel.value, self.token)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets here: the connection is refused by not accepting it
        start = time.perf_counter()
        status_box = [0]

        async def send_logged(message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + _SECURITY_HEADERS
            await send(message)

        try:
            await self._handle(scope, receive, send_logged)
        finally:
            log.info("%s %s %s %.1fms", scope.get("method"), scope.get("path"), status_box[0],
                     (time.perf_counter() - start) * 1000)

    async def _handle(self, scope, receive, send) -> None:
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        host = _host_name(headers.get(b"host", b"").decode("latin-1"))
        if host not in self.allowed:
            await self._send_plain(send, 400, "bad Host header: this dashboard answers only to "
                                   + ", ".join(sorted(self.allowed)) + " (start it with --allowed-host NAME to add one)")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await self._send_plain(send, 405, "the dashboard is read-only: only GET and HEAD are allowed",
                                   [(b"allow", b"GET, HEAD")])
            return
        if scope["method"] == "HEAD":
            # The routes are GET routes; a HEAD runs the GET and sends its headers only.
            scope = {**scope, "method": "GET"}
            inner_send = send

            async def send(message) -> None:  # noqa: F811 - deliberately shadows for HEAD
                if message["type"] == "http.response.body":
                    message = {**message, "body": b""}
                await inner_send(message)

        if self.token is not None:
            token, rest = _token_from_query(scope.get("query_string", b"").decode("latin-1"))
            if token is not None:
                if not hmac.compare_digest(token, self.token):
                    await self._send_plain(send, 401, "wrong token")
                    return
                location = scope["path"] + ("?" + rest if rest else "")
                cookie = f"{self.cookie_name}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                await self._send_plain(send, 303, "token accepted",
                                       [(b"location", location.encode("latin-1", "replace")),
                                        (b"set-cookie", cookie.encode())])
                return
            if not self._has_token(headers):
                await self._send_plain(send, 401, "token required: open the URL with ?token=... that "
                                       "`search dashboard` printed, or send Authorization: Bearer TOKEN")
                return
        await self.app(scope, receive, send)


def _json_bytes(obj: Any) -> bytes:
    try:
        return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:  # a NaN slipped through: JSON has none, send null
        return json.dumps(json_safe(obj), separators=(",", ":")).encode()


def create_app(storage_url: str | None = None, *, api: ReadAPI | None = None, token: str | None = None,
               allowed_hosts: Iterable[str] = LOOPBACK_HOSTS, poll_seconds: float = 3.0, port: int | None = None):
    """The dashboard as an ASGI app over ``api`` (or a read API opened on ``storage_url``).

    ``token``: required on every request when given. ``allowed_hosts``: host names the Host
    header may carry. ``poll_seconds``: how often pages refresh running studies.
    """
    from storage import StudyNotFound

    if poll_seconds <= 0:
        raise ValueError(f"poll_seconds must be > 0, got {poll_seconds}")
    reader = api if api is not None else open_read_api(storage_url)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.read_api = reader
    common = {"storage": reader.url_safe, "poll_ms": int(poll_seconds * 1000), "api_version": READ_API_VERSION}

    def page(template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = env.get_template(template).render(**common, **ctx)
        return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})

    def json_response(obj: Any, status: int = 200) -> Response:
        return Response(_json_bytes(obj), status_code=status, media_type="application/json",
                        headers={"cache-control": "no-store"})

    async def answer(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Response:
        try:
            return json_response(await run_in_threadpool(fn, *args, **kwargs))
        except (StudyNotFound, KeyError) as exc:
            return json_response({"error": str(exc.args[0] if exc.args else exc)}, 404)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)

    async def html_or_404(template: str, name: str, **ctx: Any) -> HTMLResponse:
        try:
            study = await run_in_threadpool(reader.study, name)
        except StudyNotFound:
            return page("error.html", 404, title="not found", message=f"no study named {name!r}")
        return page(template, study=study, **ctx)

    # -- pages --------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def studies_page():
        return page("studies.html", title="studies")

    @app.get("/studies/{name}", response_class=HTMLResponse)
    async def study_page(name: str):
        return await html_or_404("study.html", name, title=name, filter_help=FILTER_HELP)

    @app.get("/studies/{name}/scaling", response_class=HTMLResponse)
    async def scaling_page(name: str):
        return await html_or_404("scaling.html", name, title=f"{name}: scaling")

    @app.get("/studies/{name}/pareto", response_class=HTMLResponse)
    async def pareto_page(name: str):
        return await html_or_404("pareto.html", name, title=f"{name}: Pareto front")

    @app.get("/studies/{name}/lineage", response_class=HTMLResponse)
    async def lineage_page(name: str):
        return await html_or_404("lineage.html", name, title=f"{name}: PBT lineage")

    @app.get("/studies/{name}/trials/{number}", response_class=HTMLResponse)
    async def trial_page(name: str, number: int):
        try:
            trial = await run_in_threadpool(reader.trial, name, number, max_reports=2)
        except (StudyNotFound, KeyError):
            return page("error.html", 404, title="not found", message=f"no trial {number} in study {name!r}")
        return page("trial.html", title=f"{name} #{number}", trial=trial)

    @app.get("/compare", response_class=HTMLResponse)
    async def compare_page(request: Request):
        names = request.query_params.getlist("study")
        return page("compare.html", title="compare studies", names=names)

    @app.get("/favicon.ico")
    async def favicon():
        return Response(status_code=204)

    @app.get("/static/{filename}")
    async def static(filename: str):
        entry = STATIC_FILES.get(filename)
        if entry is None:
            return Response("no such file", status_code=404, media_type="text/plain")
        path_fn, media = entry
        return FileResponse(path_fn(), media_type=media, headers={"cache-control": "public, max-age=3600"})

    # -- JSON API -----------------------------------------------------------------------------

    @app.get("/api/v1/meta")
    async def meta():
        return json_response({"read_api_version": READ_API_VERSION, "storage": reader.url_safe,
                              "poll_ms": common["poll_ms"], "filter_help": FILTER_HELP})

    @app.get("/api/v1/studies")
    async def api_studies():
        return await answer(reader.studies)

    @app.get("/api/v1/studies/{name}")
    async def api_study(name: str):
        return await answer(reader.study, name)

    @app.get("/api/v1/studies/{name}/trials")
    async def api_trials(name: str, request: Request, offset: int = 0, limit: int = 50, sort: str = "number",
                         order: str = "asc", filter: str = ""):
        if order not in ("asc", "desc"):
            return json_response({"error": f"order must be asc or desc, got {order!r}"}, 400)
        states = [s.upper() for s in request.query_params.getlist("state") if s]
        return await answer(reader.trials_page, name, offset=offset, limit=limit, sort=sort,
                            descending=order == "desc", states=states, filter=filter)

    @app.get("/api/v1/studies/{name}/trials/{number}")
    async def api_trial(name: str, number: int):
        return await answer(reader.trial, name, number)

    @app.get("/api/v1/studies/{name}/history")
    async def api_history(name: str, objective: int = 0):
        return await answer(reader.history, name, objective)

    @app.get("/api/v1/studies/{name}/params")
    async def api_params(name: str):
        return await answer(reader.param_points, name)

    @app.get("/api/v1/studies/{name}/importance")
    async def api_importance(name: str, objective: int = 0):
        from analysis.importance import importance_view

        return await answer(importance_view, reader, name, objective)

    @app.get("/api/v1/studies/{name}/curves")
    async def api_curves(name: str, metric: str = "", offset: int = 0, limit: int = 200, points: int = 40):
        return await answer(reader.learning_curves, name, metric or None, offset=offset, limit=limit, points=points)

    @app.get("/api/v1/studies/{name}/timeline")
    async def api_timeline(name: str):
        return await answer(reader.timeline, name)

    @app.get("/api/v1/studies/{name}/pareto")
    async def api_pareto(name: str):
        from analysis.pareto import pareto_view

        return await answer(pareto_view, reader, name)

    @app.get("/api/v1/studies/{name}/lineage")
    async def api_lineage(name: str):
        return await answer(reader.lineage, name)

    @app.get("/api/v1/studies/{name}/scaling")
    async def api_scaling(name: str):
        from analysis.scaling import scaling_view

        return await answer(scaling_view, reader, name)

    @app.get("/api/v1/compare")
    async def api_compare(request: Request):
        names = request.query_params.getlist("study")
        return await answer(reader.compare, names)

    cookie_name = "search_dashboard_token" + (f"_{port}" if port else "")
    return _Guard(app, allowed_hosts=allowed_hosts, token=token, cookie_name=cookie_name)


def new_token() -> str:
    return secrets.token_urlsafe(32)
