"""Publishing the status: ``status.json`` and a small HTTP server on ``statusListen``.

The agent owns the current :class:`reconciler.status.Status` and hands this module a
``provide()`` callable returning it (an immutable value, so reading it from a server
thread needs no lock). Endpoints (no inbound port is needed: it listens on loopback by
default, ``127.0.0.1:9180``):

- ``GET /status``: the status JSON (:meth:`Status.to_json`, the stable contract);
- ``GET /metrics``: Prometheus text (:mod:`reconciler.statusmetrics`);
- ``GET /healthz``: 200 while the agent loop is alive (its heartbeat is recent), else 503;
- ``POST /reconcile``: calls ``nudge()`` (ask for a pass now) and answers 202.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog

from reconciler.errors import UsageError
from reconciler.status import Status, status_from_json, status_path
from reconciler.statusmetrics import render_metrics
from reconciler.store import write_atomic

DEFAULT_LISTEN = "127.0.0.1:9180"
_JSON = "application/json"
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class StatusServer:
    """``/status``, ``/metrics``, ``/healthz`` and ``POST /reconcile`` on ``listen``.

    ``listen`` may use port 0 (tests); :attr:`address` is the bound one after
    :meth:`start`. ``alive`` overrides the liveness check of ``/healthz`` (default: the
    status heartbeat is at most ``max(5 poll intervals, 120 s)`` old).
    """

    def __init__(
        self,
        listen: str,
        provide: Callable[[], Status],
        nudge: Callable[[], None],
        *,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.listen = listen
        self.provide = provide
        self.nudge = nudge
        self.alive = alive or self._heartbeat_recent
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._log = structlog.get_logger().bind(component="status-http")

    def _heartbeat_recent(self) -> bool:
        status = self.provide()
        return status.alive(datetime.now(UTC), max(5 * status.poll_interval, 120.0))

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the status server is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind and serve in a daemon thread; ``UsageError`` when the address is unusable."""
        host, port = parse_listen(self.listen)
        kind = _Server6 if ":" in host else _Server
        try:
            server = kind((host, port), _handler(self))
        except OSError as e:
            raise UsageError(f"statusListen {self.listen}: cannot listen: {e.strerror}") from None
        self._server = server
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
        """(status code, content type, body) for one request."""
        route = path.split("?", 1)[0].rstrip("/") or "/"
        routes = {"/status": "GET", "/metrics": "GET", "/healthz": "GET", "/reconcile": "POST"}
        if route not in routes:
            return _json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {route}"})
        if method != routes[route]:
            return _json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"use {routes[route]}"})
        if route == "/status":
            return _json(HTTPStatus.OK, self.provide().to_json())
        if route == "/metrics":
            return HTTPStatus.OK, _PROMETHEUS, render_metrics(self.provide)
        if route == "/healthz":
            ok = self.alive()
            return _json(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, {"alive": ok})
        self.nudge()
        return _json(HTTPStatus.ACCEPTED, {"accepted": True})


def _json(code: int, body: Any) -> tuple[int, str, bytes]:
    return code, _JSON, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def _handler(owner: StatusServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fleetgate"
        sys_version = ""

        def _serve(self, method: str) -> None:
            try:
                code, kind, body = owner.respond(method, self.path)
            except Exception as e:  # one failing request must not kill the server
                owner._log.error("status.request_failed", path=self.path, error=type(e).__name__)
                code, kind, body = _json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal"})
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # http.server's naming
            self._serve("GET")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 65536))
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def log_message(self, format: str, *args: Any) -> None:  # stdlib's name
            pass

    return Handler
