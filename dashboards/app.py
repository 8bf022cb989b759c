"""The dashboard's ASGI app: HTML pages and a JSON API over ``storage.read_api``, read-only.

Importance, Pareto and scaling answers come from ``analysis``, the same functions the CLI's
``search importance``, ``search pareto`` and ``search scaling report`` call. The dashboard imports
nothing from ``search``, ``trials`` or ``surrogates``.

Security, in the order a request meets it (``_Guard``, a plain ASGI middleware):
1. the Host header must name an allowed host (DNS-rebinding defence): else 400.
   The host the connection arrived on (the server's own address, as an IP literal) is allowed too,
   so a wildcard bind answers to every address of the machine;
2. only GET and HEAD exist: anything else is 405, before any route runs;
3. with a token configured (any non-loopback bind), the request must carry it: ``?token=`` once
   (answered by a redirect to a path on this host that sets an HttpOnly cookie and drops the token
   from the URL), the cookie, or an ``Authorization: Bearer`` / ``X-Search-Token`` header: else
   401. Tokens are compared as UTF-8 bytes in constant time, so any token (non-ASCII included)
   works and a wrong one is a 401, never an error;
4. every answer carries a Content-Security-Policy that allows scripts only from this server's own
   files (no inline script, no eval), plus nosniff, no-referrer and frame denial, once each.
Numeric query and path parameters are parsed here, bounded (``MAX_INT``): a bad one is a 400 that
names it, never a 422 or a database overflow.
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
import re
import secrets
import time
from http.cookies import SimpleCookie
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from storage.read_api import (FILTER_HELP, MAX_CURVES_PAGE, MAX_HISTORY_POINTS, MAX_PAGE, MAX_WATCH,
                              READ_API_VERSION, ReadAPI, json_safe, open_read_api)

__all__ = ["create_app", "LOOPBACK_HOSTS", "is_loopback", "STATIC_FILES", "CSP", "MAX_INT"]

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
_SECURITY_NAMES = {name for name, _ in _SECURITY_HEADERS}
# The largest number a query or path parameter may carry: PostgreSQL's INTEGER (trial numbers,
# steps), which every offset and index fits too. Larger ones are refused before any SQL runs.
MAX_INT = 2**31 - 1
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,12}")


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


def _ip_literal(host: str) -> str | None:
    """``host`` as a canonical IP address (IPv4-mapped IPv6 as IPv4, no zone), else None."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _token_from_query(qs: bytes) -> tuple[bytes | None, str]:
    """(the ``token`` value as raw bytes, the rest of the query string). Latin-1 maps every byte to
    one character and back, so percent-escapes of any encoding survive unchanged."""
    pairs = parse_qsl(qs.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    token = next((v.encode("latin-1") for k, v in pairs if k == "token"), None)
    return token, urlencode([(k, v) for k, v in pairs if k != "token"], encoding="latin-1")


def _local_location(path: str, query: str) -> bytes:
    """A Location that can only be a path on this host: one leading slash (``//host`` and
    ``/\\host`` would leave the site), everything else percent-encoded."""
    rest = quote(path.lstrip("/\\"), safe="/:@!$&'()*+,;=-._~")
    return ("/" + rest + ("?" + query if query else "")).encode("ascii")


def int_param(text: str | None, name: str, default: int, low: int = 0, high: int = MAX_INT) -> int:
    """``text`` (a query or path parameter) as an int in [low, high]; ``default`` when absent.
    Raises ``ValueError`` naming the parameter and the range."""
    if text is None:
        return default
    value = int(text) if _INT_TEXT.fullmatch(text.strip()) else None
    if value is None or not low <= value <= high:
        shown = text if len(text) <= 24 else text[:20] + "..."
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {shown!r}")
    return value


class _Guard:
    """Host allowlist, GET/HEAD only, optional token, security headers, a query-free access log."""

    def __init__(self, app, *, allowed_hosts: Iterable[str], token: str | None, cookie_name: str) -> None:
        self.app = app
        self.allowed = {_host_name(h) for h in allowed_hosts}
        # Compared as bytes: hmac.compare_digest refuses str with non-ASCII characters.
        self.token = None if token is None else token.encode("utf-8")
        self.cookie_name = cookie_name

    async def _send_plain(self, send, status: int, text: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
        # The security headers are added once, by __call__'s send, like on every other answer.
        body = text.encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                   *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _is_token(self, candidate: bytes) -> bool:
        assert self.token is not None
        return bool(candidate) and hmac.compare_digest(candidate, self.token)

    def _has_token(self, headers: dict[bytes, bytes]) -> bool:
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer " and self._is_token(auth[7:].strip()):
            return True
        if self._is_token(headers.get(b"x-search-token", b"")):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            return False
        morsel = cookie.get(self.cookie_name)
        return morsel is not None and self._is_token(unquote_to_bytes(morsel.value))

    def _host_allowed(self, scope, host: str) -> bool:
        if host in self.allowed:
            return True
        # The address this connection arrived on, written as an IP: the server's own address, which
        # a rebinding attacker's page cannot put in Host (its Host is the attacker's name).
        server = scope.get("server") or (None, None)
        literal = _ip_literal(host)
        return literal is not None and server[0] is not None and literal == _ip_literal(str(server[0]))

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
                message["headers"] = [(k, v) for k, v in message.get("headers", [])
                                      if k.lower() not in _SECURITY_NAMES] + _SECURITY_HEADERS
            await send(message)

        try:
            await self._handle(scope, receive, send_logged)
        finally:
            log.info("%s %s %s %.1fms", scope.get("method"), scope.get("path"), status_box[0],
                     (time.perf_counter() - start) * 1000)

    async def _handle(self, scope, receive, send) -> None:
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        host = _host_name(headers.get(b"host", b"").decode("latin-1"))
        if not self._host_allowed(scope, host):
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
            token, rest = _token_from_query(scope.get("query_string", b""))
            if token is not None:
                if not self._is_token(token):
                    await self._send_plain(send, 401, "wrong token")
                    return
                # The cookie holds the token percent-encoded: any token, as ASCII a header can carry.
                cookie = f"{self.cookie_name}={quote(self.token, safe='')}; HttpOnly; SameSite=Strict; Path=/"
                await self._send_plain(send, 303, "token accepted",
                                       [(b"location", _local_location(scope["path"], rest)),
                                        (b"set-cookie", cookie.encode("ascii"))])
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


MAX_PARETO_POINTS = 4000


def _thin_pareto(d: dict[str, Any], max_points: int = MAX_PARETO_POINTS) -> dict[str, Any]:
    """A Pareto answer with every non-dominated trial and, above ``max_points`` trials, an even
    spread of the dominated ones (a scatter of 100,000 points draws as a blot and a slow page);
    ``shown`` and ``total`` say so."""
    n = len(d.get("numbers", []))
    if n <= max_points:
        return {**d, "shown": n, "total": n}
    front = [i for i in range(n) if d["front"][i]]
    rest = [i for i in range(n) if not d["front"][i]]
    room = max(0, max_points - len(front))
    keep = sorted(front + [rest[int(k * len(rest) / room)] for k in range(room)] if room < len(rest) else front + rest)
    per_trial = ("numbers", "values", "params", "front")
    return {**d, **{k: [d[k][i] for i in keep] for k in per_trial if k in d}, "shown": len(keep), "total": n}


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
        """``fn(*args, **kwargs)`` as JSON: 404 for an unknown study or trial, 400 for a ValueError
        (a bad parameter, parsed inside ``fn`` so that its error is answered the same way)."""
        try:
            return json_response(await run_in_threadpool(fn, *args, **kwargs))
        except (StudyNotFound, KeyError) as exc:
            return json_response({"error": str(exc.args[0] if exc.args else exc)}, 404)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)

    async def html_or_404(template: str, name: str, **ctx: Any) -> HTMLResponse:
        try:
            study = await run_in_threadpool(reader.study_header, name)
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
    async def trial_page(name: str, number: str):
        try:
            number = int_param(number, "trial number", 0)  # type: ignore[assignment]
        except ValueError as exc:
            return page("error.html", 400, title="bad request", message=str(exc))
        from dashboards._commands import trial_commands

        def load():
            trial = reader.trial(name, number, max_reports=2, with_best=False)
            study = reader.get_study(name)
            return trial, study

        try:
            trial, study = await run_in_threadpool(load)
        except (StudyNotFound, KeyError):
            return page("error.html", 404, title="not found", message=f"no trial {number} in study {name!r}")
        spec = dict(study.spec)
        fixed = json_safe(dict((spec.get("trial") or {}).get("params") or {}))
        return page("trial.html", title=f"{name} #{number}", trial=trial, fixed=fixed,
                    entrypoint=(spec.get("trial") or {}).get("entrypoint"),
                    commands=trial_commands(spec, study.name, study.state, trial, reader.url_safe))

    @app.get("/compare", response_class=HTMLResponse)
    async def compare_page(request: Request):
        names = request.query_params.getlist("study")
        return page("compare.html", title="compare studies", names=names)

    @app.get("/favicon.ico")
    async def favicon():
        return Response(status_code=204)

    static_bytes: dict[str, bytes] = {}

    @app.get("/static/{filename}")
    async def static(filename: str):
        entry = STATIC_FILES.get(filename)
        if entry is None:
            return Response("no such file", status_code=404, media_type="text/plain")
        path_fn, media = entry
        # Read once and sent in one piece: plotly.min.js is 3.5 MB, which FileResponse streams in
        # 64 KiB chunks, each a hop to a worker thread. The files are the installed package's.
        body = static_bytes.get(filename)
        if body is None:
            with open(path_fn(), "rb") as f:
                body = static_bytes[filename] = f.read()
        return Response(body, media_type=media, headers={"cache-control": "public, max-age=3600"})

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

    def query_int(request: Request, name: str, default: int, low: int = 0, high: int = MAX_INT) -> int:
        return int_param(request.query_params.get(name), name, default, low, high)

    @app.get("/api/v1/studies/{name}/trials")
    async def api_trials(name: str, request: Request, sort: str = "number", order: str = "asc", filter: str = ""):
        if order not in ("asc", "desc"):
            return json_response({"error": f"order must be asc or desc, got {order!r}"}, 400)
        states = [s.upper() for s in request.query_params.getlist("state") if s]
        return await answer(lambda: reader.trials_page(
            name, offset=query_int(request, "offset", 0), limit=query_int(request, "limit", 50, 1, MAX_PAGE),
            sort=sort, descending=order == "desc", states=states, filter=filter))

    @app.get("/api/v1/studies/{name}/trials/{number}")
    async def api_trial(name: str, number: str):
        return await answer(lambda: reader.trial(name, int_param(number, "trial number", 0)))

    @app.get("/api/v1/studies/{name}/history")
    async def api_history(name: str, request: Request):
        return await answer(lambda: reader.history(name, query_int(request, "objective", 0),
                                                   max_points=query_int(request, "max_points", MAX_HISTORY_POINTS,
                                                                        16, 100_000)))

    @app.get("/api/v1/studies/{name}/updates")
    async def api_updates(name: str, request: Request, metric: str = ""):
        since = request.query_params.get("since")

        def run():
            text = request.query_params.get("watch", "")
            parts = [p for p in text.split(",") if p.strip()]
            if len(parts) > MAX_WATCH:
                raise ValueError(f"watch may name at most {MAX_WATCH} trials, got {len(parts)}")
            watch = [int_param(p, "watch", 0) for p in parts]
            return reader.updates(name, since or None, watch=watch, metric=metric or None)

        return await answer(run)

    @app.get("/api/v1/studies/{name}/params")
    async def api_params(name: str):
        return await answer(reader.param_points, name)

    @app.get("/api/v1/studies/{name}/importance")
    async def api_importance(name: str, request: Request):
        from analysis.importance import importance_view

        return await answer(lambda: importance_view(reader, name, query_int(request, "objective", 0)))

    @app.get("/api/v1/studies/{name}/curves")
    async def api_curves(name: str, request: Request, metric: str = ""):
        return await answer(lambda: reader.learning_curves(
            name, metric or None, offset=query_int(request, "offset", 0),
            limit=query_int(request, "limit", 200, 1, MAX_CURVES_PAGE), points=query_int(request, "points", 40, 2, 1000)))

    @app.get("/api/v1/studies/{name}/timeline")
    async def api_timeline(name: str):
        return await answer(reader.timeline, name)

    @app.get("/api/v1/studies/{name}/pareto")
    async def api_pareto(name: str):
        from analysis.pareto import pareto_view

        return await answer(lambda: _thin_pareto(pareto_view(reader, name)))

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
