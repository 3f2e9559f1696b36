"""Broker addresses and credentials for fleet reporting (DESIGN.md §3, §6); pure, no paho.

``mqtt://host[:1883]`` or ``mqtts://host[:8883]``: nothing else. A user name or password in
the URL is refused (credentials come from a file and never appear in a URL that is logged).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from reconciler.errors import UsageError

DEFAULT_TOPIC = "fleetgate"
DEFAULT_INTERVAL = 300.0
_TOPIC = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


@dataclass(frozen=True, slots=True)
class Broker:
    """Where and how to connect: host, port, TLS (with an optional CA file), credentials."""

    host: str
    port: int
    tls: bool
    ca: Path | None = None
    username: str | None = None
    password: str | None = None  # never logged, never shown

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def __repr__(self) -> str:  # keep the password out of every log line and traceback
        return f"Broker({self.url}, user={self.username!r})"


@dataclass(frozen=True, slots=True)
class ReportStats:
    """What ``/metrics`` shows of the reporter (a read-only snapshot)."""

    connected: bool = False
    last_publish_at: float | None = None  # Unix time of the last status the broker acked
    failures: int = 0  # connection losses and refused connections


def parse_broker(text: str, where: str) -> Broker:
    """``mqtt://host:port`` / ``mqtts://host:port`` as a :class:`Broker`; one-line UsageError."""
    shown = text if len(text) < 200 else text[:200] + "…"
    shown = shown.encode("unicode_escape").decode("ascii")
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise UsageError(
            f"{where}: {shown!r} is not mqtt://HOST:PORT or mqtts://HOST:PORT"
        ) from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise UsageError(f"{where}: {shown!r} is not mqtt://HOST:PORT or mqtts://HOST:PORT")
    if parts.username is not None or parts.password is not None:
        raise UsageError(
            f"{where}: put no credentials in the broker URL; use reportUsername and "
            "reportPasswordFile"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"{where}: the broker URL has no path; write mqtt://HOST:PORT")
    tls = parts.scheme == "mqtts"
    return Broker(parts.hostname, port or (8883 if tls else 1883), tls)


def check_topic(text: str, where: str) -> str:
    """A topic prefix: plain levels separated by ``/``, no wildcards, no leading slash."""
    if not _TOPIC.match(text):
        shown = text.encode("unicode_escape").decode("ascii")
        raise UsageError(
            f"{where}: reportTopic {shown!r} is not a topic prefix (letters, digits, '_.-' "
            "in levels separated by '/', no wildcards)"
        )
    return text


def read_password(path: Path, where: str) -> str:
    """The first line of the password file (never echoed; errors name only the file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "not readable text"
        raise UsageError(f"{where}: cannot read the password file {path}: {reason}") from None
    password = text.splitlines()[0] if text.splitlines() else ""
    if not password:
        raise UsageError(f"{where}: the password file {path} is empty")
    return password


def report_config(values: Mapping[str, tuple[object, str]]) -> tuple[Broker | None, str]:
    """The agent's ``report*`` keys (value, where from) as a broker with credentials, and
    the topic prefix; one-line :class:`UsageError` naming the key's file:line, flag or
    variable on any mistake."""
    topic_v = values.get("reportTopic")
    topic = DEFAULT_TOPIC if topic_v is None else check_topic(str(topic_v[0]), topic_v[1])
    url_v = values.get("report")
    if url_v is None:
        for key in ("reportUsername", "reportPasswordFile", "reportCA"):
            if key in values:
                raise UsageError(f"{values[key][1]}: {key} needs report (the broker URL) as well")
        return None, topic
    broker = parse_broker(str(url_v[0]), url_v[1])
    user_v, password_v, ca_v = (
        values.get("reportUsername"),
        values.get("reportPasswordFile"),
        values.get("reportCA"),
    )
    if (user_v is None) != (password_v is None):
        where = (user_v or password_v or url_v)[1]
        raise UsageError(f"{where}: reportUsername and reportPasswordFile go together; set both")
    if ca_v is not None and not broker.tls:
        raise UsageError(f"{ca_v[1]}: reportCA needs an mqtts:// broker URL in report")
    ca = None
    if ca_v is not None:
        ca = Path(str(ca_v[0]))
        if not ca.is_file():
            raise UsageError(f"{ca_v[1]}: reportCA {ca}: no such file")
    password = (
        None if password_v is None else read_password(Path(str(password_v[0])), password_v[1])
    )
    username = None if user_v is None else str(user_v[0])
    return Broker(broker.host, broker.port, broker.tls, ca, username, password), topic
