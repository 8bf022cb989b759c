"""Running the dashboard: ``serve`` (the CLI's blocking server) and ``ServerThread`` (tests, benchmarks).

A loopback bind needs no token. Any other bind requires one: ``token``, else
``$SEARCH_DASHBOARD_TOKEN``, else a fresh random one, printed once with the URL to open.

The Host names a request may carry: the loopback names, the bind address, for a wildcard bind
(0.0.0.0, ::) this machine's name and every address of its network interfaces, and each
``--allowed-host``; the startup lines list them. (The app also accepts the address a connection
arrived on, so an address added after startup works too.)
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import threading
from typing import Any, Callable, Iterable
from urllib.parse import quote

from dashboards.app import LOOPBACK_HOSTS, create_app, is_loopback, new_token

__all__ = ["serve", "ServerThread", "plan", "startup_lines", "listen"]

TOKEN_ENV = "SEARCH_DASHBOARD_TOKEN"


def _interface_addresses(ipv6: bool) -> list[str]:
    """Every IPv4 (and with ``ipv6`` IPv6) address of this machine's network interfaces: what a
    wildcard bind listens on. The host name often resolves to 127.0.1.1 or nothing, so it cannot
    be asked instead."""
    try:
        import psutil
    except ImportError:  # psutil comes with Ray; without it, the names and resolved addresses remain
        return []
    out = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET or (ipv6 and a.family == socket.AF_INET6):
                out.append(a.address.split("%", 1)[0])  # a link-local zone is no part of a Host
    return out


def _local_names(ipv6: bool = False) -> set[str]:
    """This machine's names and addresses, which a browser may put in Host for a wildcard bind."""
    names = {socket.gethostname(), socket.getfqdn()}
    try:
        names.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    names.update(_interface_addresses(ipv6))
    return {n for n in names if n}


def plan(host: str, *, token: str | None = None, allowed_hosts: Iterable[str] = ()) -> tuple[str | None, list[str]]:
    """(token, allowed Host names) for a bind address. Loopback: no token unless given."""
    allowed = list(LOOPBACK_HOSTS) + [h for h in allowed_hosts if h]
    if is_loopback(host):
        return token, allowed
    if host not in ("0.0.0.0", "::", ""):
        allowed.append(host)
    else:
        allowed.extend(sorted(_local_names(ipv6=host != "0.0.0.0") - set(allowed)))
    return token or os.environ.get(TOKEN_ENV) or new_token(), list(dict.fromkeys(allowed))


def startup_lines(storage_safe: str, host: str, port: int, token: str | None, allowed: Iterable[str]) -> list[str]:
    """What ``serve`` prints before serving: the storage, the Host names it answers to, the URL."""
    url = f"http://{_url_host(host)}:{port}/"
    return [f"search dashboard over {storage_safe}",
            f"allowed hosts: {', '.join(allowed)} (add one with --allowed-host NAME)",
            f"open {url}?token={quote(token, safe='')}" if token else f"open {url}"]


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn to serve on, bound before anything is printed:
    a port in use or an address this machine does not have is a ``ValueError`` naming the fix
    (uvicorn would print its own error after our URL and exit 3)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ValueError(f"cannot listen on {where}: {host!r} is not a name or address this machine resolves "
                         f"({exc.strerror}); use --host 127.0.0.1, 0.0.0.0 or one of its addresses") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = {errno.EADDRINUSE: f"port {port} is in use (another dashboard?); choose another --port",
               errno.EADDRNOTAVAIL: f"{host} is not an address of this machine; use --host 127.0.0.1, 0.0.0.0 "
                                    "or one of its addresses",
               errno.EACCES: f"port {port} needs privileges; choose a --port above 1023"}.get(
                   exc.errno or 0, f"{exc.strerror or exc}; choose another --host or --port")
        raise ValueError(f"cannot listen on {where}: {why}") from None
    return sock


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"[{host}]" if ":" in host else host


def serve(storage_url: str | None, *, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
          allowed_hosts: Iterable[str] = (), poll_seconds: float = 3.0,
          echo: Callable[[str], Any] = print) -> None:
    """Serve until interrupted. Prints the URL to open (with the token for a non-loopback bind)."""
    import uvicorn

    token, allowed = plan(host, token=token, allowed_hosts=allowed_hosts)
    app = create_app(storage_url, token=token, allowed_hosts=allowed, poll_seconds=poll_seconds, port=port)
    try:
        sock = listen(host, port)
    except ValueError:
        app.app.state.read_api.close()
        raise
    reader = app.app.state.read_api
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dashboard: %(message)s"))
    log = logging.getLogger("search.dashboard")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    for line in startup_lines(reader.url_safe, host, port, token, allowed):
        echo(line)
    try:
        config = uvicorn.Config(app, access_log=False, log_level="warning", server_header=False)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        reader.close()
        log.removeHandler(handler)


class ServerThread:
    """The app served by uvicorn in a background thread on a free loopback port.

    ``with ServerThread(app) as srv: srv.url`` ... the server stops on exit.
    """

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port or _free_port(host)
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ServerThread":
        import time

        import uvicorn

        config = uvicorn.Config(self.app, host=self.host, port=self.port, access_log=False,
                                log_level="warning", server_header=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="dashboard-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"dashboard server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
