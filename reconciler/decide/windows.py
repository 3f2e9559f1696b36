"""Update windows: when a change of the desired state may start on a device (pure).

A window is a recurring local-time interval: on each listed day (the day the window
*starts*) from ``start`` to ``end``; ``end <= start`` wraps past midnight into the next
day (``fri 22:00-04:00`` is open Saturday 03:00), ``end == start`` is a full 24 hours.
No windows at all means any time.

Wall-clock times are turned into instants with :mod:`zoneinfo`, so daylight-saving
changes behave as follows (tested for Europe/Berlin):

- spring forward: a wall time inside the gap (02:30 on the last Sunday of March) does
  not exist; the window opens at the first instant whose local time is past it, i.e. at
  the jump (03:00 CEST), so it is neither skipped nor delayed by an hour (a window
  lying wholly inside the gap, 02:15-02:45, does not open that night);
- fall back: a wall time that occurs twice (02:30 on the last Sunday of October) means
  its *first* occurrence (``fold=0``).

Time is always an argument (``now``, timezone-aware); results are aware UTC datetimes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reconciler.errors import Finding
from reconciler.model import WEEKDAYS, UpdateWindow

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def window_findings(windows: Iterable[UpdateWindow]) -> list[Finding]:
    """Malformed day names, times (``HH:MM``, 00:00-23:59) and unknown IANA time zones."""
    out: list[Finding] = []
    for window in windows:
        path = window.location.path if window.location else "updateWindows"
        line = window.location.line if window.location else None
        for day in window.days:
            if day not in WEEKDAYS:
                out.append(Finding(path, line, f"unknown day {day!r}; use {', '.join(WEEKDAYS)}"))
        for name, value in (("start", window.start), ("end", window.end)):
            if not _HHMM.match(str(value)):
                message = f"{name} {value!r} is not a time HH:MM between 00:00 and 23:59"
                out.append(Finding(path, line, f"{message}; write e.g. 22:00"))
        try:
            ZoneInfo(window.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            message = f"unknown time zone {window.timezone!r}; use an IANA name like Europe/Berlin"
            out.append(Finding(path, line, message))
    return out


def _clock(text: str) -> time:
    m = _HHMM.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not HH:MM")
    return time(int(m.group(1)), int(m.group(2)))


def _interval(window: UpdateWindow, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC instants of the window that starts on local ``day``."""
    start, end = _clock(window.start), _clock(window.end)
    end_day = day if end > start else day + timedelta(days=1)
    return _instant(day, start, zone), _instant(end_day, end, zone)


def _instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time: first occurrence; in a gap, the jump itself."""
    local = datetime.combine(day, clock, zone)
    utc = local.astimezone(UTC)
    wall = local.replace(tzinfo=None)
    if utc.astimezone(zone).replace(tzinfo=None) == wall:
        return utc
    # Non-existent wall time: walk from the earlier reading to where the clock reaches it.
    instant = local.replace(fold=1).astimezone(UTC)
    step = timedelta(minutes=1)
    while instant.astimezone(zone).replace(tzinfo=None) < wall and instant < utc:
        instant += step
    return instant


def _intervals(
    window: UpdateWindow, now: datetime, before: int, after: int
) -> list[tuple[datetime, datetime]]:
    zone = ZoneInfo(window.timezone)
    today = now.astimezone(zone).date()
    out = []
    for offset in range(-before, after + 1):
        day = today + timedelta(days=offset)
        if WEEKDAYS[day.weekday()] in window.days:
            out.append(_interval(window, day, zone))
    return out


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def is_open(windows: Iterable[UpdateWindow], now: datetime) -> bool:
    """True when ``now`` lies in any window, or when there are no windows at all."""
    _require_aware(now)
    items = tuple(windows)
    if not items:
        return True
    return any(opens <= now < closes for w in items for opens, closes in _intervals(w, now, 2, 0))


def next_opening(windows: Iterable[UpdateWindow], now: datetime) -> datetime | None:
    """The next instant (aware UTC) a window opens; ``None`` if open now or never."""
    _require_aware(now)
    items = tuple(windows)
    if is_open(items, now):
        return None
    starts = [
        opens
        for w in items
        for opens, closes in _intervals(w, now, 1, 15)  # two weeks: a gap may skip one
        if now < opens < closes  # a window wholly inside a DST gap never opens
    ]
    return min(starts) if starts else None
