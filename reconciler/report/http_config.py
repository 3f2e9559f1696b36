"""The status port's settings in the agent configuration: ``statusListen``, ``statusTokenFile``.

Both are checked when the configuration loads, so a mistake is one line naming the file
and line (or the variable / flag) before anything starts. The listen host must be an
IP literal or ``localhost``: the server's Host rules (:mod:`reconciler.report.http_rules`)
compare against the address it is bound to, which a DNS name would not pin.
"""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

from reconciler.errors import UsageError

DEFAULT_STATUS_LISTEN = "127.0.0.1:9180"


def check_listen(text: str, where: str) -> None:
    """``statusListen`` is ``IP:PORT``, ``[IPv6]:PORT``, ``localhost:PORT`` or ``:PORT``."""
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    bare = host[1:-1] if bracketed else host
    shape = (
        sep
        and port.isascii()
        and port.isdigit()
        and len(port) <= 5
        and (bracketed or ":" not in host)
        and (bare in ("", "localhost") or _is_ip(bare))
    )
    if not shape:
        raise UsageError(
            f"{where}: statusListen {text!r} is not IP:PORT; write e.g. "
            f"{DEFAULT_STATUS_LISTEN}, [::1]:9180 or 0.0.0.0:9180"
        )
    if int(port) > 65535:
        raise UsageError(f"{where}: statusListen port {port} is above 65535")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


MIN_TOKEN = 16
"""Shortest accepted status token (a short one is guessable)."""


def read_token(path: Path, where: str) -> str:
    """The token in ``path`` (one line of printable ASCII, at least ``MIN_TOKEN`` long, in
    a file only its owner may read); ``UsageError`` naming ``where`` otherwise. The
    token's text never appears in an error."""
    fix = f"write one line of at least {MIN_TOKEN} characters to {path}, chmod 600"
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise UsageError(f"{where}: statusTokenFile {path} is not a file; {fix}")
        if mode & 0o077:
            raise UsageError(
                f"{where}: statusTokenFile {path} is readable by other users "
                f"(mode {stat.S_IMODE(mode):o}); chmod 600 {path}"
            )
        raw = path.read_bytes()[:4097]
    except FileNotFoundError:
        raise UsageError(f"{where}: statusTokenFile {path}: no such file; {fix}") from None
    except OSError as e:
        raise UsageError(f"{where}: statusTokenFile {path}: cannot read: {e.strerror}") from None
    token = raw.decode("ascii", "replace").strip()
    if not token:
        raise UsageError(f"{where}: statusTokenFile {path} is empty; {fix}")
    if len(raw) > 4096 or not all("!" <= c <= "~" for c in token):
        raise UsageError(
            f"{where}: statusTokenFile {path} must hold one token of printable ASCII "
            "without spaces (at most 4 KiB)"
        )
    if len(token) < MIN_TOKEN:
        raise UsageError(f"{where}: statusTokenFile {path} holds a token shorter than {MIN_TOKEN}")
    return token
