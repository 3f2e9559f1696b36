"""Publishing the status: ``status.json`` and a small HTTP server on ``statusListen``.

The agent owns the current :class:`reconciler.report.status.Status` and hands this module a
``provide()`` callable returning it (an immutable value, so reading it from a server
thread needs no lock). Endpoints (no inbound port is needed: it listens on loopback by
default, ``127.0.0.1:9180``):

- ``GET /status``: the status JSON (:meth:`Status.to_json`, the stable contract);
- ``GET /metrics``: Prometheus text (:mod:`reconciler.report.status_metrics`);
- ``GET /healthz``: 200 while the agent loop is alive (its heartbeat is recent), else 503;
- ``POST /reconcile``: calls ``nudge()`` (ask for a pass now) and answers 202.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from reconciler.errors import UsageError
from reconciler.report.http_rules import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    Guard,
    Refusal,
    admit,
    body_length,
    is_loopback,
)
from reconciler.report.status import Status, status_from_json, status_path
from reconciler.store import write_atomic

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

DEFAULT_LISTEN = "127.0.0.1:9180"
_JSON = "application/json"
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_TIMEOUT = 5.0
"""Seconds a connection has to deliver its whole request (then it is closed)."""
MAX_CONNECTIONS = 16
"""Connections served at once; more get a quick 503 (idle senders cannot pile threads)."""


# ------------------------------------------------------------------- status.json


def write_status(state_dir: Path | str, status: Status) -> Path:
    """Write ``{state}/devices/{device}/status.json`` atomically; return its path."""
    path = status_path(state_dir, status.device)
    data = json.dumps(status.to_json(), indent=2, sort_keys=True) + "\n"
    write_atomic(path, data.encode(), mode=0o644)
    return path


def read_status(path: Path) -> Status | None:
    """The status in ``path``; ``None`` when missing; ``ValueError`` when unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"{path} is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a status object")
    return status_from_json(data)


# ------------------------------------------------------------------------- server


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` / ``:port`` as (host, port); ``UsageError`` if malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"statusListen {listen!r}: write host:port, e.g. {DEFAULT_LISTEN}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)  # ":port" asks for every interface


class _TooLarge(Exception):
    """The request went past the byte limit of :class:`_DeadlineReader`."""


class _DeadlineReader(io.RawIOBase):
    """The bytes of one request: all of them before ``deadline`` (monotonic), at most
    ``limit``, so a slow or endless sender cannot hold a server thread."""

    def __init__(self, sock: socket.socket, deadline: float, limit: int) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        self._limit = limit
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not received in time")
        if self.consumed >= self._limit:
            raise _TooLarge
        self._sock.settimeout(left)
        n = self._sock.recv_into(memoryview(buffer)[: self._limit - self.consumed])
        self.consumed += n
        return n


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most ``slots`` of them; the rest get a quick 503."""

    daemon_threads = True
    allow_reuse_address = True
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)  # replaced per server
    log: Any = None

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            _busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A broken connection is logged as one event, never as a traceback."""
        if self.log is not None:
            self.log.warning("status.connection_failed", error=type(sys.exc_info()[1]).__name__)


class _Server6(_Server):
    address_family = socket.AF_INET6


def _busy(request: socket.socket) -> None:
    body = b"too many connections; retry in a few seconds\n"
    head = (
        "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 5\r\n\r\n"
    )
    try:
        request.settimeout(0.5)
        request.sendall(head.encode() + body)
    except OSError:
        pass


def exposure_warning(listen: str, *, token: bool) -> str | None:
    """The warning to give when ``listen`` is reachable from other machines, else ``None``."""
    host, _ = parse_listen(listen)
    if is_loopback(host):
        return None
    nudge = "" if token else " and POST /reconcile (set statusTokenFile to require a token)"
    return (
        f"status-port-exposed: statusListen {listen} is reachable from other machines: "
        f"whoever reaches it can read /status and /metrics{nudge}"
    )


class StatusServer:
    """``/status``, ``/metrics``, ``/healthz`` and ``POST /reconcile`` on ``listen``.

    ``listen`` may use port 0 (tests); :attr:`address` is the bound one after
    :meth:`start`. ``alive`` overrides the liveness check of ``/healthz`` (default: the
    status heartbeat is at most ``max(5 poll intervals, 120 s)`` old). Every request is
    first checked by :func:`reconciler.report.http_rules.admit` (Host, Origin, ``token`` for
    ``POST /reconcile``, sizes); a connection must deliver its request within
    ``timeout`` seconds and at most ``max_connections`` are served at once. ``metrics``
    are collectors served on ``/metrics`` beside the status's own series (the MQTT
    reporter's ``fleetgate_report_*``).
    """

    def __init__(
        self,
        listen: str,
        provide: Callable[[], Status],
        nudge: Callable[[], None],
        *,
        alive: Callable[[], bool] | None = None,
        token: str | None = None,
        timeout: float = REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        metrics: Sequence[Collector] = (),
    ) -> None:
        self.listen = listen
        self.provide = provide
        self.nudge = nudge
        self.alive = alive or self._heartbeat_recent
        self.timeout = timeout
        self.max_connections = max_connections
        self.metrics = tuple(metrics)
        self._token = token
        self._guard = Guard(bound="127.0.0.1")
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._log = structlog.get_logger().bind(component="status-http")

    def __repr__(self) -> str:  # the token stays out of every repr / log
        return f"StatusServer({self.listen!r})"

    def _heartbeat_recent(self) -> bool:
        status = self.provide()
        return status.alive(datetime.now(UTC), max(5 * status.poll_interval, 120.0))

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the status server is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def guard(self) -> Guard:
        return self._guard

    def start(self) -> None:
        """Bind and serve in a daemon thread; ``UsageError`` when the address is unusable.

        Bound beyond loopback, logs ``status.exposed`` (a warning) first."""
        host, port = parse_listen(self.listen)
        kind = _Server6 if ":" in host else _Server
        try:
            server = kind((host, port), _handler(self))
        except OSError as e:
            raise UsageError(f"statusListen {self.listen}: cannot listen: {e.strerror}") from None
        server.slots = threading.BoundedSemaphore(self.max_connections)
        server.log = self._log
        me = socket.gethostname().lower()
        names = frozenset((me, me.split(".", 1)[0]))
        self._guard = Guard(bound=host, token=self._token, names=names)
        self._server = server
        warning = exposure_warning(self.listen, token=self._token is not None)
        if warning is not None:
            self._log.warning("status.exposed", address=self.listen, warning=warning)
        self._thread = threading.Thread(
            target=server.serve_forever, name="fleetgate-status-http", daemon=True
        )
        self._thread.start()
        self._log.info("status.listening", address=f"{self.address[0]}:{self.address[1]}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        """(status code, content type, body) for one admitted request."""
        route = _route(path)
        if route not in _ROUTES:
            return _json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {route}"})
        if method != _ROUTES[route]:
            return _json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"use {_ROUTES[route]}"})
        if route == "/status":
            return _json(HTTPStatus.OK, self.provide().to_json())
        if route == "/metrics":
            # prometheus_client (~1 MB) only once something scrapes: an idle agent
            # nobody scrapes never loads it
            from reconciler.report.status_metrics import render_metrics  # noqa: PLC0415

            return HTTPStatus.OK, _PROMETHEUS, render_metrics(self.provide, self.metrics)
        if route == "/healthz":
            ok = self.alive()
            return _json(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, {"alive": ok})
        self.nudge()
        return _json(HTTPStatus.ACCEPTED, {"accepted": True})


_ROUTES = {"/status": "GET", "/metrics": "GET", "/healthz": "GET", "/reconcile": "POST"}


def _route(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/") or "/"


def _json(code: int, body: Any) -> tuple[int, str, bytes]:
    return code, _JSON, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def _handler(owner: StatusServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fleetgate"
        sys_version = ""
        timeout = owner.timeout  # socket timeout of the writes

        def setup(self) -> None:
            super().setup()
            deadline = time.monotonic() + owner.timeout
            limit = MAX_HEADER_BYTES + MAX_BODY_BYTES
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline, limit))

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except _TooLarge:
                self._text(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request too large")
            except OSError:  # timed out or gone: nothing to answer
                self.close_connection = True

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            """Malformed requests: the standard phrase only, never the client's bytes."""
            self._text(code, HTTPStatus(code).phrase)

        def _text(self, code: int, line: str) -> None:
            self.close_connection = True
            self._answer(code, "text/plain; charset=utf-8", (line + "\n").encode(), "GET")

        def _answer(self, code: int, kind: str, body: bytes, method: str) -> None:
            self.connection.settimeout(owner.timeout)
            self.request_version = "HTTP/1.0"  # always a status line, even to HTTP/0.9 junk
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)

        def _serve(self, method: str) -> None:
            names = [k.lower() for k in self.headers]
            counts = {n: names.count(n) for n in names}
            headers = {k.lower(): v for k, v in self.headers.items()}
            size = len(self.requestline) + 2 + sum(len(k) + len(v) + 4 for k, v in headers.items())
            route = _route(self.path)
            refusal = admit(owner.guard, method, route, headers, counts=counts, header_bytes=size)
            if refusal is None and method == "POST":
                length = body_length(headers, counts)
                if isinstance(length, Refusal):
                    refusal = length
                elif length:
                    self.rfile.read(length)
            if refusal is not None:
                shown = route if route in _ROUTES else "other"
                owner._log.info("status.refused", code=refusal.code, route=shown, method=method)
                self._text(refusal.code, refusal.reason)
                return
            try:
                code, kind, body = owner.respond(method, self.path)
            except Exception as e:  # one failing request must not kill the server
                owner._log.error("status.request_failed", path=route, error=type(e).__name__)
                code, kind, body = _json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal"})
            self._answer(code, kind, body, method)

        def do_GET(self) -> None:  # http.server's naming
            self._serve("GET")

        def do_HEAD(self) -> None:
            self._serve("HEAD")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def log_message(self, format: str, *args: Any) -> None:  # stdlib's name
            pass

    return Handler
