"""What devices reported, parsed and checked (pure): MQTT messages or status files.

A report is untrusted input: anything that is not a status document of
``fleetgate status --output json`` for the device it claims to be is dropped with one
problem line, and the device is shown as never having reported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from reconciler.model import parse_rfc3339
from reconciler.report.services import ServiceStatus
from reconciler.stages import stage_from_json

DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_REPORT = 1 << 20  # bytes: a status is a few KiB; anything larger is not one
_TIMES = (
    "last_good_at",
    "pass_started_at",
    "pass_finished_at",
    "observed_at",
    "last_fetch_at",
    "last_successful_fetch_at",
    "heartbeat_at",
)
_SERVICE_KEYS = frozenset(f.name for f in fields(ServiceStatus))


@dataclass(frozen=True, slots=True)
class Report:
    """One device's latest report: the status document (as sent) and its presence."""

    device: str
    status: Mapping[str, Any] | None = None
    online: bool | None = None  # None: not known (status files carry no presence)
    received_at: datetime | None = None  # when the file was written (status files only)
    text: str | None = None  # the status as received, when it can be shown as it is


def plain_text(payload: bytes) -> str | None:
    """``payload`` as text when it can be printed as it is inside the fleet document:
    ASCII with no control character, so on one line (else ``None``: it is re-encoded).
    A key given twice stays twice, as the device sent it; fleetgate judged the last one,
    as ``jq``, Python and JavaScript read it (refusing such reports through a hook on
    every JSON object cost about what reusing the texts saves)."""
    if not payload.isascii() or b"\n" in payload or b"\r" in payload:
        return None
    if b"\t" in payload or b"\x7f" in payload:
        return None
    return payload.decode("ascii")


def shown(text: str, limit: int = 80) -> str:
    """``text`` safe for one terminal line: control characters escaped, length capped."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in cut)


def parse_status(device: str, payload: bytes, where: str) -> tuple[Mapping[str, Any] | None, str]:
    """The status document in ``payload`` for ``device``, or ``None`` and one problem line."""
    if len(payload) > MAX_REPORT:
        return None, f"{where}: larger than {MAX_REPORT} bytes; not a status, ignored"
    try:
        document = json.loads(payload)
    except UnicodeDecodeError:
        return None, f"{where}: not UTF-8 text; ignored"
    except json.JSONDecodeError as e:
        return None, f"{where}:{e.lineno}: not valid JSON ({e.msg}); ignored"
    except RecursionError:
        return None, f"{where}: nested too deeply; ignored"
    if not isinstance(document, dict):
        return None, f"{where}: not a status document (a JSON object); ignored"
    try:
        check_status(document)
    except (ValueError, RecursionError) as e:
        return None, f"{where}: {shown(str(e), 120)}; ignored"
    if document.get("device") != device:
        claimed = shown(str(document.get("device")), 64)
        return None, f"{where}: status of device {claimed!r} under {device!r}; ignored"
    return document, ""


def _time(text: Any) -> None:
    if text not in (None, ""):
        parse_rfc3339(str(text))


def check_status(data: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` where :func:`~reconciler.report.status.status_from_json` would,
    without building the :class:`Status` (its services, counters and tallies were half
    the cost of reading 10,000 reports; ``test_fleet_reports`` keeps the two in step)."""
    try:
        str(data["device"])
        for key in _TIMES:
            _time(data.get(key))
        stage_from_json(data.get("stage"))
        for failed in data.get("failed_revisions") or ():
            str(failed["revision"]), str(failed["reason"])
            parse_rfc3339(failed["at"])
        for service in data.get("services") or ():
            if not isinstance(service, Mapping) or service.keys() != _SERVICE_KEYS:
                raise TypeError(f"a service has not the fields {sorted(_SERVICE_KEYS)}")
        pending = data.get("pending_update")
        if pending:
            str(pending["revision"]), str(pending["reason"])
            _time(pending.get("next_window"))
        float(data.get("poll_interval_seconds") or 60.0)
        counters = data.get("counters") or {}
        for key, value in counters.get("passes", {}).items():
            str(key), int(value)
        int(counters.get("fetch_errors") or 0)
        float(counters.get("pass_seconds_total") or 0.0)
        for warning in data.get("warnings") or ():
            str(warning)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"status does not match its schema: {e}") from e


def reports_from_messages(
    messages: Mapping[str, bytes], prefix: str
) -> tuple[dict[str, Report], tuple[str, ...]]:
    """``{prefix}/{device}/status|online`` retained messages as reports, plus problems."""
    statuses: dict[str, Mapping[str, Any] | None] = {}
    online: dict[str, bool | None] = {}
    texts: dict[str, str | None] = {}
    problems: list[str] = []
    for topic in sorted(messages):
        rest = topic[len(prefix) + 1 :] if topic.startswith(prefix + "/") else ""
        device, _, kind = rest.partition("/")
        if not DEVICE_ID.match(device) or kind not in ("status", "online"):
            problems.append(f"topic {shown(topic)!r}: not a device's status or online; ignored")
            continue
        payload = messages[topic]
        if kind == "online":
            value = payload.strip().lower()
            online[device] = True if value == b"true" else False if value == b"false" else None
            if online[device] is None:
                problems.append(f"topic {topic}: online is not true or false; ignored")
            continue
        document, problem = parse_status(device, payload, f"topic {topic}")
        statuses[device] = document
        if problem:
            problems.append(problem)
        else:
            texts[device] = plain_text(payload)
    reports = {
        d: Report(d, statuses.get(d), online.get(d), None, texts.get(d))
        for d in sorted({*statuses, *online})
    }
    return reports, tuple(problems)
