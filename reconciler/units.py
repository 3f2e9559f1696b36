"""Compose-style durations (``90s``, ``1m30s``, ``2h``) and byte sizes (``512m``, ``1g``).

Durations follow Go's ``time.ParseDuration`` as Compose does (units ``ns us µs ms s m h``,
fractions allowed, a bare ``0``); a bare integer is *not* a duration except ``0``.
Sizes follow Compose/Docker (``b k kb m mb g gb``, case-insensitive, powers of 1024);
a bare integer is bytes.
"""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
_INT64_MAX = 2**63 - 1
MAX_DURATION_S = _INT64_MAX / 1e9
"""The engine counts durations in int64 nanoseconds: about 292 years."""


def parse_duration(text: str | int | float) -> float:
    """Seconds in a Compose duration; raise ``ValueError`` with a hint when malformed."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration; write e.g. 90s, 1m30s or 2h")
    if isinstance(text, int | float):
        if text == 0:
            return 0.0
        raise ValueError(f"{text!r} has no unit; write e.g. {text}s")
    s = text.strip()
    if s in ("0", "+0"):
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ValueError(f"{text!r} is not a duration; write e.g. 90s, 1m30s or 2h")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s:
        raise ValueError("empty duration; write e.g. 90s, 1m30s or 2h")
    if not total <= MAX_DURATION_S:  # also catches an overflow to infinity
        raise ValueError(f"{_cut(text)} is longer than the engine can count; use a shorter one")
    return total


def format_duration(seconds: float) -> str:
    """The shortest Compose spelling of a whole-second duration (``90`` -> ``1m30s``)."""
    whole = round(seconds)
    if abs(seconds - whole) > 1e-9:
        return f"{seconds:g}s"
    if whole == 0:
        return "0s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs:
        out += f"{secs}s"
    return out


def parse_bytes(value: str | int) -> int:
    """Bytes in a Compose size (``512m``, ``1g``, ``1024``); raise ``ValueError`` when malformed."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; write e.g. 512m or 1g")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative; write e.g. 512m or 1g")
        return value  # the YAML loader refuses integers beyond 64 bits
    m = _SIZE.match(value)
    if m is None:
        raise ValueError(f"{value!r} is not a size; write e.g. 512m or 1g")
    size = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if not size <= _INT64_MAX:  # also catches an overflow to infinity
        raise ValueError(f"{_cut(value)} is larger than the engine can count; use a smaller size")
    return int(size)


def _cut(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")
