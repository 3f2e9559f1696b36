"""The live fleet page (``fleet serve``): ``/`` (HTML+JS shipped in the package),
``/api/fleet`` (the fleet document, with the ``waves`` summary of ``fleet status`` when
the repository declares waves), ``/api/fleet/page`` (the page's cut of it) and
``/metrics`` over plain ``http.server``.

Hygiene as on the agent's status port: GET/HEAD only, no request body read, a socket
timeout, and on a loopback address a ``Host`` header that names loopback (a web page on
another origin cannot read the fleet through DNS rebinding).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import structlog

from reconciler.errors import UsageError
from reconciler.fleet.metrics import render_fleet_metrics
from reconciler.fleet.view import FleetView, page_document, to_json

DEFAULT_LISTEN = "127.0.0.1:9280"
REQUEST_TIMEOUT = 10.0
API_CACHE = 1.0  # s a built /api/fleet answer is served again (pages poll every 2 s)
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {listen!r}: write HOST:PORT, e.g. {DEFAULT_LISTEN}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


def page() -> bytes:
    return resources.files("reconciler.fleet").joinpath("page.html").read_bytes()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class FleetServer:
    """Serves the view ``provide()`` returns at request time (the caller keeps it live)."""

    def __init__(
        self,
        listen: str,
        provide: Callable[[], FleetView],
        waves: Callable[[FleetView], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.listen = listen
        self.provide = provide
        self.waves = waves  # the per-wave summary of a view (``fleet status``'s ``waves``)
        self._page = page()
        self._api_lock = threading.Lock()
        self._api: dict[str, bytes] = {}  # route -> the last built answer
        self._api_at = -float("inf")
        self._api_building = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._log = structlog.get_logger().bind(component="fleet-http")

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        host, port = parse_listen(self.listen)
        kind = _Server6 if ":" in host else _Server
        try:
            self._server = kind((host, port), _handler(self))
        except OSError as e:
            raise UsageError(f"--listen {self.listen}: cannot listen: {e.strerror}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _api_body(self, route: str) -> bytes:
        """The fleet document (or the page's cut of it), stale-while-rebuilding: an answer
        older than ``API_CACHE`` s is still served at once while one background thread
        builds the next (joining and serialising 10,000 devices takes a few hundred ms,
        and every open page polls). Only the very first request waits for a build."""
        with self._api_lock:
            if not self._api:
                self._api = self._build()
                self._api_at = time.monotonic()
            elif time.monotonic() - self._api_at >= API_CACHE and not self._api_building:
                self._api_building = True
                threading.Thread(target=self._rebuild_in_background, daemon=True).start()
            return self._api[route]

    def _build(self) -> dict[str, bytes]:
        view = self.provide()
        document = to_json(view)
        document["waves"] = self.waves(view) if self.waves is not None else []
        page = page_document(document)
        return {
            "/api/fleet": (json.dumps(document, sort_keys=True) + "\n").encode(),
            "/api/fleet/page": (json.dumps(page, sort_keys=True) + "\n").encode(),
        }

    def _rebuild_in_background(self) -> None:
        try:
            built: dict[str, bytes] | None = self._build()
        except Exception as e:  # keep serving the last answer
            self._log.error("fleet.rebuild_failed", error=type(e).__name__)
            built = None
        with self._api_lock:
            if built is not None:
                self._api = built
                self._api_at = time.monotonic()
            self._api_building = False

    def host_allowed(self, host_header: str | None) -> bool:
        """On loopback, only a loopback Host (any port) is answered."""
        bound = parse_listen(self.listen)[0]
        if bound not in _LOOPBACK:
            return True
        name = (host_header or "").strip().lower()
        name = name.rsplit(":", 1)[0] if not name.endswith("]") else name
        return name in _LOOPBACK

    def respond(self, path: str) -> tuple[int, str, bytes]:
        route = path.split("?", 1)[0]
        if route in ("/", "/index.html"):
            return HTTPStatus.OK, "text/html; charset=utf-8", self._page
        if route in ("/api/fleet", "/api/fleet/page"):
            return HTTPStatus.OK, "application/json", self._api_body(route)
        if route == "/metrics":
            return HTTPStatus.OK, "text/plain; version=0.0.4", render_fleet_metrics(self.provide())
        return HTTPStatus.NOT_FOUND, "application/json", b'{"error": "no such page"}\n'


def _handler(owner: FleetServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fleetgate"
        sys_version = ""
        timeout = REQUEST_TIMEOUT

        def _send(self, code: int, kind: str, body: bytes, head: bool) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", "default-src 'self' 'unsafe-inline'")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _serve(self, head: bool) -> None:
            if not owner.host_allowed(self.headers.get("Host")):
                self._send(HTTPStatus.FORBIDDEN, "text/plain", b"forbidden host\n", head)
                return
            try:
                code, kind, body = owner.respond(self.path)
            except Exception as e:  # one failing request must not stop the page
                owner._log.error("fleet.request_failed", error=type(e).__name__)
                code, kind, body = HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", b"internal\n"
            self._send(code, kind, body, head)

        def do_GET(self) -> None:  # http.server's naming
            self._serve(head=False)

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_POST(self) -> None:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"read only\n", False)

        def log_message(self, format: str, *args: Any) -> None:  # stdlib's name
            pass

    return Handler


def now() -> datetime:
    return datetime.now(UTC)
