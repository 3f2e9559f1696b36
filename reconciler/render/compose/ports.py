"""Compose ``ports`` (short and long syntax) to one :class:`PortBinding` per port.

Short syntax follows Docker's ``nat.ParsePortSpec`` as compose-go uses it:
``[[ip:][host[-range]]:]container[-range][/protocol]``; IPv6 host addresses are written
in brackets (``[::1]:8080:80``); ``127.0.0.1::80`` publishes on an ephemeral port. A
host range must have as many ports as the container range; a host range with a single
container port (Docker picks one free port) is refused because the desired state must
name the port it publishes.
"""

from __future__ import annotations

import re
from typing import Any, Literal, cast

from reconciler.model import PortBinding
from reconciler.render.compose.context import Issues, line_of, scalar_text

Protocol = Literal["tcp", "udp", "sctp"]
_PROTOCOLS = ("tcp", "udp", "sctp")
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


class PortError(ValueError):
    """A port specification that Compose would refuse."""


def _range(text: str, what: str) -> tuple[int, int]:
    m = _RANGE.match(text.strip())
    if m is None:
        raise PortError(f"{what} {text!r} is not a port or a range like 5000-5002")
    low = int(m.group(1))
    high = int(m.group(2)) if m.group(2) else low
    for port in (low, high):
        if not 1 <= port <= 65535:
            raise PortError(f"{what} {port} is out of range; use 1-65535")
    if high < low:
        raise PortError(f"{what} range {text!r} ends before it starts")
    return low, high


def _bindings(host_ip: str, host: str, container: str, protocol: str) -> tuple[PortBinding, ...]:
    proto = protocol.lower() or "tcp"
    if proto not in _PROTOCOLS:
        raise PortError(f"protocol {protocol!r} is not tcp, udp or sctp")
    c_low, c_high = _range(container, "container port")
    if not host:
        return tuple(
            PortBinding(p, cast(Protocol, proto), None, host_ip) for p in range(c_low, c_high + 1)
        )
    h_low, h_high = _range(host, "host port")
    if h_high - h_low != c_high - c_low:
        raise PortError(
            f"host range {host} and container range {container} differ in length; "
            "give both the same number of ports"
        )
    return tuple(
        PortBinding(c_low + i, cast(Protocol, proto), h_low + i, host_ip)
        for i in range(c_high - c_low + 1)
    )


def parse_short_port(spec: str) -> tuple[PortBinding, ...]:
    """Bindings of one short-syntax entry; raise :class:`PortError` when malformed."""
    text = spec.strip()
    body, _, protocol = text.partition("/")
    host_ip = ""
    if body.startswith("["):
        end = body.find("]")
        if end < 0 or body[end + 1 : end + 2] != ":":
            raise PortError(f"{spec!r}: write an IPv6 address as [::1]:8080:80")
        host_ip = body[1:end]
        body = body[end + 2 :]
        host, sep, container = body.rpartition(":")
        if not sep:
            raise PortError(f"{spec!r}: an address needs host and container ports")
        return _bindings(host_ip, host, container, protocol)
    parts = body.split(":")
    if len(parts) == 1:
        return _bindings("", "", parts[0], protocol)
    if len(parts) == 2:
        return _bindings("", parts[0], parts[1], protocol)
    if len(parts) == 3:
        return _bindings(parts[0], parts[1], parts[2], protocol)
    raise PortError(f"{spec!r} is not [ip:][host:]container[/protocol]")


def parse_long_port(entry: dict[str, Any]) -> tuple[PortBinding, ...]:
    """Bindings of one long-syntax entry (``target``, ``published``, ``host_ip``, ``protocol``)."""
    unknown = set(entry) - {
        "target",
        "published",
        "host_ip",
        "protocol",
        "mode",
        "name",
        "app_protocol",
    }
    if unknown:
        raise PortError(f"unknown key {sorted(unknown)[0]!r}; remove it")
    if entry.get("target") is None:
        raise PortError("target is required")
    mode = scalar_text(entry.get("mode") or "ingress")
    if mode not in ("ingress", "host"):
        raise PortError(f"mode {mode!r} is not ingress or host")
    published = entry.get("published")
    return _bindings(
        scalar_text(entry.get("host_ip") or ""),
        "" if published is None else scalar_text(published),
        scalar_text(entry["target"]),
        scalar_text(entry.get("protocol") or "tcp"),
    )


def normalize_ports(
    value: Any, where: str, line: int | None, issues: Issues
) -> tuple[PortBinding, ...]:
    """All bindings of a service's ``ports`` list, duplicates once, in declared order."""
    if value is None:
        return ()
    if not isinstance(value, list):
        issues.add(line, where, "must be a list of ports")
        return ()
    out: dict[PortBinding, None] = {}
    for i, item in enumerate(value):
        item_line = line_of(value, i, line)
        try:
            if isinstance(item, dict):
                bindings = parse_long_port(item)
            elif isinstance(item, str | int) and not isinstance(item, bool):
                bindings = parse_short_port(str(item))
            else:
                raise PortError("must be a string like 8080:80 or a mapping with target")
        except PortError as e:
            issues.add(item_line, f"{where}[{i}]", str(e))
            continue
        out.update(dict.fromkeys(bindings))
    return tuple(out)
