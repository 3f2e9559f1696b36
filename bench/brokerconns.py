"""Benchmark what idle agent connections cost a broker: N connections held open with
keepalive against a local Mosquitto, broker CPU and memory per 1,000 of them.

Each connection does on the wire what an idle agent's paho client does: CONNECT (clean
session, ``--keepalive``, the agent's last will ``fleetgate/<id>/online`` = ``false``
retained QoS 1), then one PINGREQ per keepalive interval, spread evenly over the fleet.
The connections are raw sockets driven by one selector (N paho clients would need N
threads here, and the broker sees the same bytes). Measured from ``/proc`` of the broker:

- CPU to accept the connections (TCP + CONNECT + will), per 1,000;
- CPU while they idle for ``--window`` s, per second per 1,000 connections;
- resident memory added, per 1,000.

    .venv/bin/python bench/brokerconns.py [--connections 5000] [--keepalive 30] [--window 60]
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

from fleet import mosquitto
from fleetgit import cpu_seconds


def _text(value: str) -> bytes:
    data = value.encode()
    return struct.pack("!H", len(data)) + data


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client: str, keepalive: int) -> bytes:
    """MQTT 3.1.1 CONNECT: clean session, last will ``online`` false (QoS 1, retained)."""
    flags = 0x02 | 0x04 | 0x08 | 0x20
    body = _text("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body += _text(client) + _text(f"fleetgate/{client}/online") + _text("false")
    return b"\x10" + _length(len(body)) + body


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_connections(port: int, count: int, keepalive: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    for n in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(connect_packet(f"bench-{n:06d}", keepalive))
        if sock.recv(4)[:1] != b"\x20":
            raise SystemExit(f"connection {n}: no CONNACK")
        sock.setblocking(False)
        socks.append(sock)
    return socks


def idle(socks: list[socket.socket], keepalive: int, window: float) -> int:
    """Ping each connection once per ``keepalive`` (spread evenly) for ``window`` s;
    returns how many PINGRESP came back."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    step = keepalive / len(socks)
    started = time.monotonic()
    answers, sent = 0, 0
    while (now := time.monotonic()) - started < window:
        due = int((now - started) / step)
        while sent < due:
            socks[sent % len(socks)].send(b"\xc0\x00")
            sent += 1
        for key, _ in selector.select(timeout=min(step, 0.05)):
            data = key.fileobj.recv(64)  # type: ignore[union-attr]
            answers += data.count(b"\xd0\x00")
    selector.close()
    return answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--keepalive", type=int, default=30)
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()
    per = 1000 / args.connections
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-broker-") as tmp:
        broker, port = mosquitto(Path(tmp))
        socks: list[socket.socket] = []
        try:
            time.sleep(1)
            print(f"load average: {os.getloadavg()[0]:.1f}")
            rss, cpu, started = rss_kib(broker.pid), cpu_seconds(broker.pid)[0], time.monotonic()
            socks = open_connections(port, args.connections, args.keepalive)
            took = time.monotonic() - started
            cpu = cpu_seconds(broker.pid)[0] - cpu
            rss = rss_kib(broker.pid) - rss
            print(
                f"{args.connections} connections in {took:.1f} s: broker CPU {cpu:.2f} s "
                f"= {cpu * per * 1000:.0f} ms per 1,000; RSS +{rss / 1024:.1f} MiB "
                f"= {rss * per / 1024:.2f} MiB per 1,000"
            )
            cpu = cpu_seconds(broker.pid)[0]
            answers = idle(socks, args.keepalive, args.window)
            cpu = cpu_seconds(broker.pid)[0] - cpu
            print(
                f"idle {args.window:.0f} s at keepalive {args.keepalive} s: {answers} pings "
                f"answered; broker CPU {cpu:.2f} s = "
                f"{cpu / args.window * per * 1000:.2f} ms per second per 1,000 connections "
                f"({cpu / args.window * 100:.2f} % of a core for all {args.connections})"
            )
            print(f"load average: {os.getloadavg()[0]:.1f}")
        finally:
            for sock in socks:
                sock.close()
            broker.terminate()
            broker.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
