"""The hardened status port: Host, Origin, token, sizes, timeouts and the connection cap,
each rule checked against the real server on an ephemeral loopback port with raw sockets."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs
from support.statusdata import example_status
from support.wait import wait_for

from reconciler.report.http import StatusServer, exposure_warning
from reconciler.report.http_rules import Guard
from reconciler.report.status import Status

TOKEN = "s3cret-token-0123456789abcdef"


class Nudges:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def _status() -> Callable[[], Status]:
    status = example_status(heartbeat_at=datetime.now(UTC))
    return lambda: status


@pytest.fixture
def nudges() -> Nudges:
    return Nudges()


def _serve(nudges: Nudges, listen: str = "127.0.0.1:0", **kw: object) -> Iterator[StatusServer]:
    server = StatusServer(listen, _status(), nudges, **kw)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(nudges: Nudges) -> Iterator[StatusServer]:
    yield from _serve(nudges)


@pytest.fixture
def guarded(nudges: Nudges) -> Iterator[StatusServer]:
    """A server whose POST /reconcile needs the token."""
    yield from _serve(nudges, token=TOKEN)


@pytest.fixture
def quick(nudges: Nudges) -> Iterator[StatusServer]:
    """A server with a 0.5 s request deadline and room for 3 connections."""
    yield from _serve(nudges, timeout=0.5, max_connections=3)


def _connect(server: StatusServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.address[1]), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def raw(server: StatusServer, data: bytes) -> tuple[int, bytes]:
    """Send ``data`` as is; the status code and body of the answer."""
    with _connect(server) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        answer = _read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def request(
    server: StatusServer,
    method: str = "GET",
    path: str = "/status",
    *,
    host: str | None = "127.0.0.1:{port}",
    headers: tuple[str, ...] = (),
    body: bytes = b"",
) -> tuple[int, bytes]:
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append("Host: " + host.format(port=server.address[1]))
    lines += [h.format(port=server.address[1]) for h in headers]
    if body and not any(h.lower().startswith("content-length") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return raw(server, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


class TestHost:
    """Only requests naming this port by a loopback name or its bound address are served."""

    @pytest.mark.parametrize(
        "host",
        ["127.0.0.1:{port}", "127.0.0.1", "localhost:{port}", "LOCALHOST", "[::1]:{port}", None],
    )
    def test_loopback_hosts_accepted(self, server: StatusServer, host: str | None) -> None:
        """127.0.0.1, localhost and [::1] (with or without a port) and no Host get /status."""
        code, body = request(server, host=host)
        assert code == 200
        assert b'"device"' in body

    def test_foreign_host_refused(self, server: StatusServer) -> None:
        """A Host naming another machine is refused with 421 and a one-line body."""
        code, body = request(server, host="fleet.example.com")
        assert code == 421
        assert body.count(b"\n") == 1
        assert b"fleet.example.com" not in body

    def test_dns_rebinding_cannot_read_status(self, server: StatusServer) -> None:
        """A page whose DNS name now points at 127.0.0.1 gets no status, even on our port."""
        code, body = request(server, host="attacker.example:{port}")
        assert code == 421
        assert b"device" not in body
        assert request(server, path="/metrics", host="attacker.example:{port}")[0] == 421

    @pytest.mark.parametrize("host", ["127.0.0.1:{port}:1", "[::1", "", "a b"])
    def test_malformed_host_refused(self, server: StatusServer, host: str) -> None:
        """A Host that is not name[:port] is refused."""
        assert request(server, host=host)[0] in (400, 421)

    def test_two_host_headers_refused(self, server: StatusServer) -> None:
        """Two Host headers (one loopback, one foreign) are a 400, not a guess."""
        code, _ = request(server, headers=("Host: attacker.example",))
        assert code == 400


class TestGuardAddresses:
    """The Host rule follows the address the server is bound to."""

    def test_bound_to_one_address(self) -> None:
        """Bound to 10.1.2.3: that address and loopback names, not other IPs or names."""
        guard = Guard(bound="10.1.2.3")
        assert guard.host_allowed("10.1.2.3:9180")
        assert guard.host_allowed("localhost:9180")
        assert not guard.host_allowed("10.1.2.4:9180")
        assert not guard.host_allowed("device.example:9180")

    def test_bound_to_every_interface(self) -> None:
        """Bound to 0.0.0.0/::: any IP literal and the machine's name, never another DNS name."""
        for bound in ("0.0.0.0", "::"):
            guard = Guard(bound=bound, names=frozenset({"edge-01"}))
            assert guard.host_allowed("192.0.2.7:9180")
            assert guard.host_allowed("[2001:db8::1]:9180")
            assert guard.host_allowed("edge-01:9180")
            assert not guard.host_allowed("attacker.example:9180")


class TestCrossOrigin:
    """A browser page of another origin cannot POST /reconcile."""

    @pytest.mark.parametrize(
        "header",
        [
            "Origin: http://evil.example",
            "Origin: http://127.0.0.1:1",
            "Origin: null",
            "Origin: https://127.0.0.1:{port}",
            "Sec-Fetch-Site: cross-site",
            "Sec-Fetch-Site: same-site",
        ],
    )
    def test_cross_origin_post_refused(
        self, server: StatusServer, nudges: Nudges, header: str
    ) -> None:
        """A foreign Origin or a cross-site fetch gets 403 and asks for no pass."""
        code, body = request(server, "POST", "/reconcile", headers=(header,))
        assert code == 403
        assert b"cross" in body
        assert nudges.count == 0

    @pytest.mark.parametrize(
        "headers",
        [(), ("Origin: http://127.0.0.1:{port}",), ("Sec-Fetch-Site: same-origin",)],
    )
    def test_same_origin_post_accepted(
        self, server: StatusServer, nudges: Nudges, headers: tuple[str, ...]
    ) -> None:
        """No Origin (curl) or the port's own origin gets 202 and a pass."""
        assert request(server, "POST", "/reconcile", headers=headers)[0] == 202
        assert nudges.count == 1


class TestToken:
    """With statusTokenFile, POST /reconcile needs the bearer token; GETs stay open."""

    def test_token_required_and_checked(self, guarded: StatusServer, nudges: Nudges) -> None:
        """No token is 401, a wrong one 403, the right one 202; only the last nudges."""
        with capture_logs() as logs:
            assert request(guarded, "POST", "/reconcile")[0] == 401
            wrong = ("Authorization: Bearer " + TOKEN[:-1] + "x",)
            assert request(guarded, "POST", "/reconcile", headers=wrong)[0] == 403
            assert (
                request(guarded, "POST", "/reconcile", headers=("Authorization: Basic x",))[0]
                == 401
            )
            assert nudges.count == 0
            right = ("Authorization: Bearer " + TOKEN,)
            assert request(guarded, "POST", "/reconcile", headers=right)[0] == 202
        assert nudges.count == 1
        assert TOKEN not in repr(logs)
        assert TOKEN not in repr(guarded)

    def test_gets_stay_open(self, guarded: StatusServer) -> None:
        """/status, /metrics and /healthz answer without the token."""
        for path in ("/status", "/metrics", "/healthz"):
            assert request(guarded, path=path)[0] == 200


class TestLimits:
    """Malformed or oversized requests are refused with a status code, never a traceback."""

    @pytest.mark.parametrize("length", ["abc", "-1", "1e3", "0x10", " "])
    def test_malformed_content_length(
        self, server: StatusServer, nudges: Nudges, length: str
    ) -> None:
        """A Content-Length that is not a number is a 400, and the next request is served."""
        with capture_logs() as logs:
            code, _ = request(server, "POST", "/reconcile", headers=(f"Content-Length: {length}",))
        assert code == 400
        assert nudges.count == 0
        assert not [e for e in logs if e["log_level"] == "error"]
        assert request(server)[0] == 200

    @pytest.mark.parametrize("length", ["2048", "99999999999999999999999"])
    def test_huge_content_length(self, server: StatusServer, length: str) -> None:
        """A declared body above 1 KiB is a 413 without reading it."""
        code, _ = request(server, "POST", "/reconcile", headers=(f"Content-Length: {length}",))
        assert code == 413
        assert request(server)[0] == 200

    def test_oversized_body(self, server: StatusServer) -> None:
        """A 4 KiB body is a 413."""
        assert request(server, "POST", "/reconcile", body=b"x" * 4096)[0] == 413

    def test_small_body_accepted(self, server: StatusServer, nudges: Nudges) -> None:
        """A body within the limit is read and the POST is served."""
        assert request(server, "POST", "/reconcile", body=b"{}")[0] == 202

    @pytest.mark.parametrize("size", [8500, 100_000])
    def test_oversized_headers(self, server: StatusServer, size: int) -> None:
        """Headers above 8 KiB are a 431, and the server still answers afterwards."""
        code, _ = request(server, headers=("X-Pad: " + "a" * size,))
        assert code == 431
        assert request(server)[0] == 200

    def test_chunked_post_refused(self, server: StatusServer, nudges: Nudges) -> None:
        """Transfer-Encoding (a smuggling shape) is a 400."""
        code, _ = request(server, "POST", "/reconcile", headers=("Transfer-Encoding: chunked",))
        assert code == 400
        assert nudges.count == 0

    def test_garbage_request_line(self, server: StatusServer) -> None:
        """A request line that is not HTTP is a 400 whose one-line body echoes nothing."""
        code, body = raw(server, b"\x1b[31mHELLO\x00 there friend\r\n\r\n")
        assert code == 400
        assert body == b"Bad Request\n"


class TestNoTraceback:
    """Clients that misbehave at the socket level leave no traceback on stderr."""

    def test_hang_up_mid_request(
        self, server: StatusServer, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """Clients resetting before, during and after their request print nothing."""
        for data in (b"", b"GET /sta", b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"):
            sock = _connect(server)
            sock.sendall(data)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST
        assert request(server)[0] == 200
        time.sleep(0.3)  # let the server threads finish with the reset sockets
        err = capfd.readouterr().err
        assert "Traceback" not in err
        assert "Exception occurred" not in err


class TestTimeouts:
    """A connection that does not deliver its request in time is closed."""

    def test_idle_connection_closed_while_others_served(self, quick: StatusServer) -> None:
        """An idle connection is closed after the deadline; meanwhile requests are served."""
        idle = _connect(quick)
        try:
            started = time.monotonic()
            assert request(quick)[0] == 200
            assert _read_all(idle) == b""  # closed by the server, nothing answered
            assert time.monotonic() - started < 5
        finally:
            idle.close()

    def test_slow_drip_closed_at_the_deadline(self, quick: StatusServer) -> None:
        """Headers sent a byte at a time (each read quick) are still cut at the deadline."""
        sock = _connect(quick)
        started = time.monotonic()
        try:
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            with pytest.raises(OSError):
                for _ in range(100):  # 10 s of dripping if nobody stops it
                    sock.sendall(b"a")
                    time.sleep(0.1)
                    sock.setblocking(False)
                    try:
                        if sock.recv(1) == b"":
                            raise ConnectionResetError("closed")
                    except BlockingIOError:
                        pass
                    finally:
                        sock.setblocking(True)
        finally:
            sock.close()
        assert time.monotonic() - started < 5


class TestConcurrency:
    """Idle connections cannot pile threads or starve new requests for long."""

    def test_idle_connections_do_not_block_a_request(self, server: StatusServer) -> None:
        """Five idle connections (below the cap) leave a new request served at once."""
        idle = [_connect(server) for _ in range(5)]
        try:
            started = time.monotonic()
            assert request(server)[0] == 200
            assert time.monotonic() - started < 2
        finally:
            for sock in idle:
                sock.close()

    def test_connections_are_bounded(self, nudges: Nudges) -> None:
        """Past the cap a connection gets a quick 503, threads stay bounded, and once the
        idle ones time out requests are served again."""
        before = threading.active_count()
        for server in _serve(nudges, timeout=3, max_connections=3):
            idle = [_connect(server) for _ in range(12)]
            try:
                # The idle ones hold every slot until their 3 s deadline.
                wait_for(lambda s=server: request(s)[0] == 503, timeout=3, what="a full server")
                assert threading.active_count() <= before + 3 + 1  # + the accept loop
                wait_for(lambda s=server: request(s)[0] == 200, timeout=10, what="a free slot")
            finally:
                for sock in idle:
                    sock.close()


class TestExposure:
    """Listening beyond loopback is said loudly at start."""

    def test_warning_on_every_interface(self, nudges: Nudges) -> None:
        """Bound to 0.0.0.0 the server logs status.exposed as a warning."""
        with capture_logs() as logs:
            for _ in _serve(nudges, "0.0.0.0:0"):
                pass
        exposed = [e for e in logs if e["event"] == "status.exposed"]
        assert len(exposed) == 1
        assert exposed[0]["log_level"] == "warning"
        assert "statusTokenFile" in exposed[0]["warning"]

    def test_no_warning_on_loopback(self, nudges: Nudges) -> None:
        """Bound to 127.0.0.1 nothing is said."""
        with capture_logs() as logs:
            for _ in _serve(nudges):
                pass
        assert not [e for e in logs if e["event"] == "status.exposed"]

    def test_exposure_warning(self) -> None:
        """Loopback listens need no warning; others do, naming the token when there is none."""
        for listen in ("127.0.0.1:9180", "127.8.0.1:1", "[::1]:9180", "localhost:9180"):
            assert exposure_warning(listen, token=False) is None
        for listen in ("0.0.0.0:9180", ":9180", "[::]:9180", "10.0.0.5:9180"):
            text = exposure_warning(listen, token=False)
            assert text is not None
            assert text.startswith("status-port-exposed: ")
            assert "statusTokenFile" in text
        assert "statusTokenFile" not in (exposure_warning("0.0.0.0:1", token=True) or "")
