"""The fleet reader's paho client: it drains its socket instead of reading packet by
packet (part of :mod:`reconciler.report.mqtt`, the MQTT adapter)."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

DRAIN = 1000  # packets the reader takes from its buffer between two turns of paho's loop


class _BufferedSocket:
    """A socket whose ``recv`` serves paho from one large read.

    paho reads a packet with three or more ``recv`` calls (type, length, body) and goes
    back to ``select`` after each packet; 10,000 retained statuses were 40,000 system
    calls and 10,000 trips through its loop. Reading ``CHUNK`` bytes at once and telling
    paho, through ``pending()`` (the method it asks an SSL socket for bytes it already
    decrypted), that bytes are waiting lets it read packet after packet from memory.
    Everything else goes to the wrapped socket.
    """

    CHUNK = 256 * 1024

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer = b""
        self._at = 0

    def recv(self, size: int) -> bytes:
        if self._at >= len(self._buffer):
            self._buffer, self._at = self._sock.recv(max(size, self.CHUNK)), 0
            if not self._buffer:
                return b""  # the connection was closed
        out = self._buffer[self._at : self._at + size]
        self._at += len(out)
        return out

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return len(self._buffer) - self._at + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ReaderClient(paho.Client):
    """paho's client reading through a :class:`_BufferedSocket` (the fleet's reader), and
    reading every packet already in the buffer before it goes back to ``select``."""

    def _create_socket(self) -> Any:
        return _BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        for _ in range(DRAIN):
            sock: Any = self._sock
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or sock is None or not sock.pending():
                break
            rc = super().loop_read(1)
        return rc
