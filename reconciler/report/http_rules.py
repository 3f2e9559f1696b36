"""Who may talk to the status port (pure): the Host, Origin, token and size rules.

The status server (:mod:`reconciler.report.http`) asks :func:`admit` about every request
before it routes it. The rules, and why:

- **Host** (DNS rebinding: a web page whose name later resolves to 127.0.0.1 reads
  ``/status`` as same-origin): the ``Host`` header must be a loopback name
  (``127.0.0.0/8``, ``localhost``, ``[::1]``, any port) or the address the server is
  bound to. Bound to every interface (``0.0.0.0`` / ``::``) the server cannot know every
  name it is reached by, so it accepts any *IP literal* and the machine's own host name,
  but never another DNS name: a rebinding page always sends its own DNS name. A request
  without ``Host`` (HTTP/1.0, not a browser) passes. Refused: **421**.
- **Cross-origin POST** (a page in a browser on the device submits a simple
  ``POST /reconcile``): a POST with an ``Origin`` whose host:port is not the request's
  ``Host``, with ``Origin: null``, or with ``Sec-Fetch-Site: cross-site`` / ``same-site``
  is refused: **403**. GETs carry no effect and a cross-origin page cannot read them
  (no CORS headers are ever sent), so they are not checked for Origin.
- **Token**: with ``statusTokenFile`` configured, ``POST /reconcile`` needs
  ``Authorization: Bearer <token>`` (constant-time comparison); missing **401**, wrong
  **403**. ``GET /status``, ``/metrics`` and ``/healthz`` stay open: they carry no secret
  (status text is redacted) and Prometheus / health probes must not need one.
- **Size**: the request line and headers are at most ``MAX_HEADER_BYTES`` (**431**), a
  POST body at most ``MAX_BODY_BYTES`` (**413**); ``Content-Length`` that is not one
  decimal number, or a ``Transfer-Encoding``, is **400**.

Every refusal is one line of text: the reason and what to do, never a header value the
client sent (a token or a hostile string never reaches the answer or the log).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus

MAX_HEADER_BYTES = 8 * 1024
"""Request line plus headers."""
MAX_BODY_BYTES = 1024
"""Body of a POST (``/reconcile`` needs none)."""
_LOOPBACK_NAMES = frozenset(("localhost", "localhost."))
_CROSS = frozenset(("cross-site", "same-site"))


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the server answers without routing it: the code and one line of text."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Guard:
    """The admission rules of one server: where it is bound, its token, its host names.

    ``bound`` is the listening address (an IP literal, ``0.0.0.0`` or ``::``); ``names``
    are extra host names accepted when bound to every interface (the machine's own).
    """

    bound: str
    token: str | None = None
    names: frozenset[str] = frozenset()

    @property
    def wildcard(self) -> bool:
        """Bound to every interface (``0.0.0.0``, ``::``)."""
        address = _ip(self.bound)
        return self.bound == "" or (address is not None and address.is_unspecified)

    def host_allowed(self, host_header: str | None) -> bool:
        """The ``Host`` header names this server (see the module docstring)."""
        if host_header is None:
            return True
        host = split_host(host_header)
        if host is None:
            return False
        if host in _LOOPBACK_NAMES:
            return True
        address = _ip(host)
        if address is not None and address.is_loopback:
            return True
        if self.wildcard:
            return address is not None or host in self.names
        return address is not None and address == _ip(self.bound)


def admit(
    guard: Guard,
    method: str,
    route: str,
    headers: Mapping[str, str],
    *,
    counts: Mapping[str, int],
    header_bytes: int,
) -> Refusal | None:
    """``None`` when the request may be routed, else why not.

    ``headers`` maps lower-case names to values, ``counts`` tells how often each was sent,
    ``header_bytes`` is the size of the request line and headers.
    """
    if header_bytes > MAX_HEADER_BYTES:
        return Refusal(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            f"request line and headers exceed {MAX_HEADER_BYTES} bytes",
        )
    if counts.get("host", 0) > 1:
        return Refusal(HTTPStatus.BAD_REQUEST, "more than one Host header")
    if not guard.host_allowed(headers.get("host")):
        return Refusal(
            HTTPStatus.MISDIRECTED_REQUEST,
            "Host is not this status port; use http://127.0.0.1:<port>/ or the listen address",
        )
    if method != "POST":
        return None
    if headers.get("sec-fetch-site", "").strip().lower() in _CROSS:
        return Refusal(HTTPStatus.FORBIDDEN, "cross-site requests may not POST here")
    origin = headers.get("origin")
    if origin is not None and not _same_origin(origin, headers.get("host")):
        return Refusal(HTTPStatus.FORBIDDEN, "cross-origin requests may not POST here")
    if guard.token is not None and route == "/reconcile":
        return _token_refusal(guard.token, headers.get("authorization"))
    return None


def body_length(headers: Mapping[str, str], counts: Mapping[str, int]) -> int | Refusal:
    """The POST body size from ``Content-Length`` (absent: 0), or why it is refused.

    ``counts`` tells how often each (lower-case) header was sent: two ``Content-Length``
    headers, or any ``Transfer-Encoding``, are refused (request smuggling shapes).
    """
    if counts.get("transfer-encoding", 0):
        return Refusal(HTTPStatus.BAD_REQUEST, "Transfer-Encoding is not accepted; send a body")
    if counts.get("content-length", 0) > 1:
        return Refusal(HTTPStatus.BAD_REQUEST, "more than one Content-Length")
    text = headers.get("content-length")
    if text is None:
        return 0
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        return Refusal(HTTPStatus.BAD_REQUEST, "Content-Length is not a decimal number")
    if len(text) > 12 or int(text) > MAX_BODY_BYTES:
        return Refusal(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body larger than {MAX_BODY_BYTES} bytes"
        )
    return int(text)


def is_loopback(host: str) -> bool:
    """``host`` (a listen host: IP literal, ``localhost`` or empty) stays on this machine."""
    if host in _LOOPBACK_NAMES:
        return True
    address = _ip(host)
    return address is not None and address.is_loopback


def split_host(value: str) -> str | None:
    """The lower-case host of a ``Host`` value (``name[:port]``, ``[v6][:port]``); ``None``
    when it is not of that shape."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1 :] and not _port(value[end + 1 :])):
            return None
        return value[1:end]
    host, sep, port = value.partition(":")
    if (sep and not _port(sep + port)) or not host:
        return None
    return host


def _port(text: str) -> bool:
    return text.startswith(":") and text[1:].isascii() and text[1:].isdigit() and len(text) <= 6


def _same_origin(origin: str, host: str | None) -> bool:
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme != "http" or host is None or "/" in rest:
        return False  # "null", another scheme, or nothing to compare against
    return rest == host.strip().lower()


def _token_refusal(token: str, authorization: str | None) -> Refusal | None:
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return Refusal(
            HTTPStatus.UNAUTHORIZED,
            "POST /reconcile needs Authorization: Bearer <the statusTokenFile token>",
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return Refusal(HTTPStatus.FORBIDDEN, "wrong token for POST /reconcile")
    return None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
