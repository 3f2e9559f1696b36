"""The fleet view (pure): every device of the repository with its last report.

``build_view`` joins the devices (id, labels) with the reports; ``summary`` counts them
by category, wave and outcome; ``to_json`` is the ``fleet status --output json`` /
``/api/fleet`` document of DESIGN.md §6. ``wave`` is the device's rollout wave
(:func:`reconciler.manifests.waves.membership`; ``""`` without ``rollout``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from reconciler.fleet.reports import Report
from reconciler.model import parse_rfc3339, rfc3339

FAILED = frozenset({"failed", "failed-no-change", "rollback-failed", "rejected"})
CATEGORIES = ("on_head", "behind", "failed", "rolled_back", "offline", "waiting", "silent")
"""Summary categories; a device can be in several (behind and waiting, say)."""
DEFAULT_STALE_AFTER = 900.0  # three default report intervals


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One device as the fleet view shows it (``status`` is the document it sent)."""

    device: str
    wave: str = ""
    labels: Mapping[str, str] | None = None
    online: bool | None = None
    last_report_at: datetime | None = None
    stale: bool | None = None  # None: never reported
    status: Mapping[str, Any] | None = None
    status_text: str | None = None  # ``status`` as received, when printable as it is

    @property
    def outcome(self) -> str | None:
        value = self.status.get("outcome") if self.status else None
        return value if isinstance(value, str) else None

    @property
    def applied(self) -> str | None:
        value = self.status.get("applied_revision") if self.status else None
        return value if isinstance(value, str) else None

    @property
    def pending(self) -> Mapping[str, Any] | None:
        value = self.status.get("pending_update") if self.status else None
        return value if isinstance(value, dict) else None

    def categories(self, head: str | None) -> frozenset[str]:
        if self.status is None:
            return frozenset({"silent"})
        found: set[str] = set()
        if head is not None:
            found.add("on_head" if self.applied == head else "behind")
        if self.outcome in FAILED:
            found.add("failed")
        if self.outcome == "rolled-back":
            found.add("rolled_back")
        if self.online is False or self.stale:
            found.add("offline")
        if self.pending is not None or self.outcome == "waiting":
            found.add("waiting")
        return frozenset(found)


@dataclass(frozen=True, slots=True)
class FleetView:
    """The repository's devices (sorted) and the reporters it does not know."""

    head: str | None
    devices: tuple[DeviceRow, ...]
    unknown: tuple[DeviceRow, ...] = ()
    generated_at: datetime | None = None


def _last_report(report: Report) -> datetime | None:
    status = report.status or {}
    for key in ("heartbeat_at", "pass_finished_at"):
        value = status.get(key)
        if isinstance(value, str):
            try:
                return parse_rfc3339(value)
            except ValueError:
                continue
    return report.received_at


def _row(
    device: str,
    labels: Mapping[str, str] | None,
    report: Report | None,
    now: datetime,
    stale_after: float,
) -> DeviceRow:
    if report is None:
        return DeviceRow(device, labels=labels)
    last = _last_report(report)
    stale = None
    if report.status is not None:
        stale = last is None or now - last > timedelta(seconds=stale_after)
    text = report.text if report.status is not None else None
    return DeviceRow(device, "", labels, report.online, last, stale, report.status, text)


def with_waves(view: FleetView, waves: Mapping[str, str]) -> FleetView:
    """The view with each device's rollout wave (``device id -> wave``) filled in."""
    rows = tuple(replace(r, wave=waves.get(r.device, "")) for r in view.devices)
    return replace(view, devices=rows)


def build_view(
    devices: Mapping[str, Mapping[str, str]],
    reports: Mapping[str, Report],
    *,
    head: str | None,
    now: datetime,
    stale_after: float = DEFAULT_STALE_AFTER,
) -> FleetView:
    """``devices`` maps each device id of the repository to its labels."""
    rows = tuple(
        _row(d, dict(devices[d]), reports.get(d), now, stale_after) for d in sorted(devices)
    )
    unknown = tuple(
        _row(d, None, reports[d], now, stale_after) for d in sorted(reports) if d not in devices
    )
    return FleetView(head, rows, unknown, now)


def matches(row: DeviceRow, selector: Mapping[str, str]) -> bool:
    labels = row.labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def filter_view(
    view: FleetView,
    *,
    selector: Mapping[str, str] | None = None,
    outcomes: Iterable[str] = (),
    behind: bool = False,
) -> FleetView:
    """The devices that match every given filter (``--selector``, ``--outcome``, ``--behind``)."""
    wanted = frozenset(outcomes)

    def keep(row: DeviceRow) -> bool:
        if selector and not matches(row, selector):
            return False
        if wanted and (row.outcome or "none") not in wanted:
            return False
        return not behind or "behind" in row.categories(view.head)

    return replace(view, devices=tuple(r for r in view.devices if keep(r)))


def summary(view: FleetView) -> dict[str, Any]:
    """Counts: total, per category, per outcome, per wave and outcome."""
    categories: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    waves: dict[str, Counter[str]] = {}
    for row in view.devices:
        categories.update(row.categories(view.head))
        outcome = row.outcome or "none"
        outcomes[outcome] += 1
        waves.setdefault(row.wave, Counter())[outcome] += 1
    return {
        "devices": len(view.devices),
        "reported": sum(1 for r in view.devices if r.status is not None),
        **{name: categories[name] for name in CATEGORIES},
        "outcomes": dict(sorted(outcomes.items())),
        "waves": {w: dict(sorted(c.items())) for w, c in sorted(waves.items())},
        "unknown_devices": len(view.unknown),
    }


def rollout(view: FleetView) -> list[dict[str, Any]]:
    """Per applied revision: how many devices run it, wait for a window, rolled back."""
    by_revision: dict[str | None, Counter[str]] = {}
    for row in view.devices:
        counts = by_revision.setdefault(row.applied, Counter())
        counts["devices"] += 1
        for category in row.categories(view.head):
            counts[category] += 1
    return [
        {"revision": rev, "head": rev is not None and rev == view.head, **dict(counts)}
        for rev, counts in sorted(by_revision.items(), key=lambda kv: -kv[1]["devices"])
    ]


def _row_json(row: DeviceRow) -> dict[str, Any]:
    return {
        "device": row.device,
        "wave": row.wave,
        "labels": dict(row.labels) if row.labels is not None else {},
        "online": row.online,
        "last_report_at": rfc3339(row.last_report_at) if row.last_report_at else None,
        "stale": row.stale,
        "status": dict(row.status) if row.status is not None else None,
    }


def to_json(view: FleetView, *, rows: bool = True) -> dict[str, Any]:
    """The fleet document (DESIGN.md §6): devices, summary, unknown_devices (without
    ``rows``, everything but the two device lists)."""
    document: dict[str, Any] = {
        "head_revision": view.head,
        "generated_at": rfc3339(view.generated_at) if view.generated_at else None,
        "summary": summary(view),
        "rollout": rollout(view),
    }
    if rows:
        document["devices"] = [_row_json(r) for r in view.devices]
        document["unknown_devices"] = [_row_json(r) for r in view.unknown]
    return document


def _row_text(row: DeviceRow) -> str:
    """``json.dumps(_row_json(row), sort_keys=True)``, with the status as received when
    it is plain one-line text (re-encoding 10,000 statuses was a third of the output)."""
    if row.status_text is None:
        return json.dumps(_row_json(row), sort_keys=True)
    labels = json.dumps(dict(row.labels) if row.labels is not None else {}, sort_keys=True)
    last = json.dumps(rfc3339(row.last_report_at) if row.last_report_at else None)
    return (
        f'{{"device": {json.dumps(row.device)}, "labels": {labels}, "last_report_at": {last}, '
        f'"online": {json.dumps(row.online)}, "stale": {json.dumps(row.stale)}, '
        f'"status": {row.status_text}, "wave": {json.dumps(row.wave)}}}'
    )


def dumps_view(view: FleetView, extra: Mapping[str, Any]) -> str:
    """``dumps_document({**to_json(view), **extra})``, without building the device rows:
    each line is written from its row, reusing the status text as received."""
    document = {**to_json(view, rows=False), **extra}
    return dumps_document(
        document,
        {
            "devices": [_row_text(r) for r in view.devices],
            "unknown_devices": [_row_text(r) for r in view.unknown],
        },
    )


def dumps_document(
    document: Mapping[str, Any], lists: Mapping[str, list[str]] | None = None
) -> str:
    """The fleet document as JSON text for people and tools alike: top-level keys indented,
    one device (one list item) per line. ``json.dumps(indent=2)`` runs in pure Python and
    took a second for 10,000 devices; each line here goes through the C encoder.
    ``lists`` holds top-level lists already written as one JSON text per item."""
    lines = ["{"]
    items = sorted({**document, **(lists or {})}.items())
    for index, (key, value) in enumerate(items):
        comma = "," if index < len(items) - 1 else ""
        if lists is not None and key in lists and value:
            body = ",\n".join("    " + item for item in lists[key])
            lines.append(f"  {json.dumps(key)}: [\n{body}\n  ]{comma}")
        elif isinstance(value, list) and value:
            body = ",\n".join("    " + json.dumps(item, sort_keys=True) for item in value)
            lines.append(f"  {json.dumps(key)}: [\n{body}\n  ]{comma}")
        else:
            text = json.dumps(value, indent=2, sort_keys=True).replace("\n", "\n  ")
            lines.append(f"  {json.dumps(key)}: {text}{comma}")
    lines.append("}")
    return "\n".join(lines)


PAGE_STATUS_FIELDS = ("outcome", "reason", "applied_revision", "pending_update")


def page_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """The fleet document cut to what the page shows (``/api/fleet/page``): each status
    keeps only ``PAGE_STATUS_FIELDS``. With 10,000 devices the full document is ~20 MB
    (services, digests, counters), which a tablet parses for seconds before drawing."""

    def cut(row: Mapping[str, Any]) -> dict[str, Any]:
        status = row.get("status")
        if status is None:
            return dict(row)
        return {**row, "status": {k: status.get(k) for k in PAGE_STATUS_FIELDS}}

    return {
        **document,
        "devices": [cut(r) for r in document["devices"]],
        "unknown_devices": [cut(r) for r in document["unknown_devices"]],
    }
