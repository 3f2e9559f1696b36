"""The fleet view as a text table, grouped by site (label ``site``); pure.

Every value that came from a device passes :func:`reconciler.fleet.reports.shown`: no
control character from a report ever reaches the terminal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from reconciler.fleet.reports import shown
from reconciler.fleet.view import CATEGORIES, DeviceRow, FleetView, summary

HEADER = (
    "DEVICE",
    "REVISION",
    "OUTCOME",
    "REASON",
    "ONLINE",
    "LAST REPORT",
    "STALE",
    "PENDING",
    "NEXT WINDOW",
)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def _revision(row: DeviceRow, head: str | None, subjects: Mapping[str, str]) -> str:
    sha = row.applied
    if not sha:
        return "-"
    text = shown(sha[:12], 12)
    subject = subjects.get(sha)
    if subject:
        text += f" {shown(subject, 32)}"
    if head is not None:
        text += " (head)" if sha == head else " (behind)"
    return text


def _cells(row: DeviceRow, head: str | None, subjects: Mapping[str, str]) -> tuple[str, ...]:
    if row.status is None:
        return (row.device, "-", "never reported", "", _online(row), "-", "-", "-", "-")
    pending = row.pending
    pending_text = shown(str(pending.get("revision", ""))[:12], 12) if pending else "-"
    window = str(pending.get("next_window") or "-") if pending else "-"
    return (
        row.device,
        _revision(row, head, subjects),
        shown(row.outcome or "-", 24),
        shown(str(row.status.get("reason") or ""), 48),
        _online(row),
        _when(row.last_report_at),
        "yes" if row.stale else "no",
        pending_text,
        shown(window, 25),
    )


def _online(row: DeviceRow) -> str:
    return {True: "yes", False: "no", None: "?"}[row.online]


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _wave_line(entry: Mapping[str, Any]) -> str:
    revision = entry["revision"]
    line = (
        f"wave {shown(entry['wave'], 40)}: "
        + (f"revision {revision[:12]}" if revision else "not started")
        + f", {entry['running']} of {entry['devices']} devices run it"
    )
    promotion = entry.get("promotion")
    if promotion:
        candidate = promotion["candidate_revision"]
        target = candidate[:12] if candidate else "nothing"
        if promotion["already"]:
            verdict = "promoted"
        elif promotion["gate_met"]:
            verdict = "the gate holds"
        else:
            reasons = "; ".join(shown(r, 200) for r in promotion["reasons"])
            verdict = f"the gate does not hold ({promotion['soak_left']} of soak left): {reasons}"
        line += f"; promotion to {target}: {verdict}"
    return line


def render_waves(waves: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per rollout wave (``fleet status --output json``'s ``waves``): its revision,
    how many of its devices run it, and whether the promotion into it holds and why not."""
    return ["", "rollout waves", *(_wave_line(w) for w in waves)] if waves else []


def render_text(
    view: FleetView,
    subjects: Mapping[str, str],
    problems: Sequence[str] = (),
    waves: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Devices by site, then the reporters the repository does not know, the rollout waves,
    then a summary."""
    sites: dict[str, list[DeviceRow]] = {}
    for row in view.devices:
        sites.setdefault((row.labels or {}).get("site", ""), []).append(row)
    lines: list[str] = []
    head = view.head
    if head:
        subject = subjects.get(head)
        lines.append(f"head {head[:12]}" + (f" {shown(subject, 60)}" if subject else ""))
    for site in sorted(sites):
        lines.append("")
        lines.append(f"site {shown(site, 60)}" if site else "no site label")
        lines += _table([HEADER, *(_cells(r, head, subjects) for r in sites[site])])
    if view.unknown:
        lines.append("")
        lines.append("reporting, but not in the repository")
        lines += _table([HEADER, *(_cells(r, head, subjects) for r in view.unknown)])
    lines += render_waves(waves)
    counts = summary(view)
    lines.append("")
    lines.append(
        f"{counts['devices']} devices, {counts['reported']} reported: "
        + ", ".join(f"{counts[c]} {c.replace('_', ' ')}" for c in CATEGORIES)
    )
    lines += [f"warning: {p}" for p in problems]
    return "\n".join(lines).lstrip("\n") + "\n"
