"""A loopback TCP proxy that cuts or stalls the stream, for registry fault tests.

``TcpProxy(target)`` listens on ``127.0.0.1:<free port>`` and forwards to ``target``
(``host:port``). ``cut_after`` bytes from the server on one connection close it (the
first ``cuts`` connections that get that far; later ones pass); ``hang`` accepts and
forwards nothing (the connection stays open until the proxy closes).
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target: str, *, cut_after: int | None = None, cuts: int = 1) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.cut_after, self.cuts_left, self.cut = cut_after, cuts, 0
        self.hang = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.open.append(client)
            if self.hang:
                continue
            threading.Thread(target=self._pair, args=(client,), daemon=True).start()

    def _pair(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        self.open.append(server)
        threading.Thread(target=_pump, args=(client, server, None), daemon=True).start()
        _pump(server, client, self)

    def take_cut(self, sent: int) -> bool:
        with self.lock:
            if self.cut_after is None or sent < self.cut_after or self.cuts_left <= 0:
                return False
            self.cuts_left -= 1
            self.cut += 1
            return True

    def close(self) -> None:
        self.closed.set()
        for s in (self.sock, *self.open):
            with contextlib.suppress(OSError):
                s.close()


def _pump(src: socket.socket, dst: socket.socket, proxy: TcpProxy | None) -> None:
    sent = 0
    try:
        while True:
            data = src.recv(16384)
            if not data:
                break
            dst.sendall(data)
            sent += len(data)
            if proxy is not None and proxy.take_cut(sent):
                break
    except OSError:
        pass
    for s in (src, dst):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            s.close()
