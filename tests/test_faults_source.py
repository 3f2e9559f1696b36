"""A Git server that hangs or answers garbage (a raw TCP server on 127.0.0.1).

The fetch must end within its timeout with one clear line (a ``SourceError``, which the
agent retries with backoff), and the cached mirror must keep serving the last fetched
revision (the device keeps what it runs: nothing downstream is reached).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.errors import SourceError
from reconciler.source.fetch import open_source


class RawServer:
    """Accepts TCP connections on 127.0.0.1 and either says nothing or sends ``reply``."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.stop = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(conn)  # kept open: a hang
            if self.reply is not None:
                try:
                    conn.recv(65536)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture(params=["hang-git", "garbage-git", "hang-http", "garbage-http"])
def bad_server(request: pytest.FixtureRequest) -> Iterator[str]:
    how, scheme = request.param.split("-")
    reply = None if how == "hang" else b"\x00\xffnot a git server\x1b[31m\r\n" * 40
    server = RawServer(reply)
    try:
        yield f"{scheme}://127.0.0.1:{server.port}/fleet.git"
    finally:
        server.close()


class TestBadGitServer:
    def test_a_hanging_or_garbage_server_fails_in_time_with_one_line(
        self, bad_server: str, tmp_path: Path
    ) -> None:
        """The fetch gives up within its timeout, says so in one printable line."""
        start = time.monotonic()
        with pytest.raises(SourceError) as caught:
            open_source(bad_server, tmp_path / "cache", timeout=3.0)
        elapsed = time.monotonic() - start
        message = str(caught.value)
        assert elapsed < 10, f"took {elapsed:.1f}s"
        assert "\n" not in message
        assert "\x1b" not in message and "\x00" not in message
        assert "127.0.0.1" in message
