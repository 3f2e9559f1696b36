"""`fleetgate impact BASE HEAD [--repo PATH] [--output text|json|markdown]`: review aid.

Materializes both revisions (read-only checkouts through the Git source), renders the
devices a change can reach at both (:mod:`reconciler.review.scope`), and prints the
devices whose desired state differs: stacks / services added, removed and changed with
field-level reasons, and when each change lands (update windows). Exit 0; 1 with HEAD's
findings when HEAD is invalid; 2 usage.

JSON (stable fields)::

    {"base": sha, "head": sha, "now": rfc3339, "rendered": n, "total": n,
     "totals": {"devices": n, "bySite": {site: n}, "byGroup": {group: n}},
     "devices": [{"device", "kind", "site", "groups", "schedule", "appliesAt", "timezone",
                  "changes": [{"subject", "before", "after"}],
                  "stacks": [{"name", "kind", "changes": [...],
                              "services": [{"service", "kind", "changes": [...]}]}]}],
     "pins": [{"wave", "before", "after", "members": n, "devices": [...], "findings": [...]}]}

``pins``: the waves whose ``waves/<wave>.yaml`` moved, and per device of the wave what
the move lands (old pin → new pin, :mod:`reconciler.review.impact_pins`).

``kind`` is ``added | removed | changed``; ``schedule`` is ``any time | open now |
scheduled | never``; ``appliesAt`` is RFC 3339 UTC (``null`` unless scheduled).
Invalid HEAD in JSON: ``{"valid": false, "findings": [{"path", "line", "message"}]}``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.cli import EXIT_FAILED, EXIT_OK, add_output_flag
from reconciler.cli.impact_pins import pin_impact_at
from reconciler.cli.output import emit
from reconciler.errors import UsageError
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.waves import load_rollout, membership, read_rollout
from reconciler.render.device import DEFAULT_STATE_DIR
from reconciler.review.impact import (
    Change,
    DeviceImpact,
    StackImpact,
    landing,
    local_time,
    summarize,
)
from reconciler.review.impact_pins import PinImpact, pin_moves
from reconciler.review.scope import Assessment, assess, read_side
from reconciler.source import open_source
from reconciler.source.commits import scratch_cache

MARKDOWN_LIMIT = 60_000  # GitHub refuses comments over 65,536 characters


@dataclass(frozen=True, slots=True)
class Review:
    base: str | None
    head: str | None
    now: datetime
    assessment: Assessment
    waves: Mapping[str, str] = field(default_factory=dict)  # device -> rollout wave at HEAD
    first_wave: str | None = None  # None: no rollout declared
    pins: tuple[PinImpact, ...] = ()  # waves whose pin moves, and what that lands

    def lands(self, device: str) -> str:
        return landing(self.waves.get(device, ""), self.first_wave)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "impact",
        help="which devices, stacks, services and images a change touches, and when",
        description="Compare the desired state of every device at BASE and HEAD.",
    )
    parser.add_argument("base", metavar="BASE", help="revision before the change (e.g. main)")
    parser.add_argument("head", metavar="HEAD", help="revision with the change (e.g. HEAD)")
    add_common(parser)
    add_output_flag(parser, "markdown")
    parser.set_defaults(handler=run)


def add_common(parser: argparse.ArgumentParser) -> None:
    """``--repo``, ``--cache-dir``, ``--state-dir`` and ``--now``, shared by history."""
    parser.add_argument("--repo", default=".", help="fleet repository clone or URL (default: .)")
    parser.add_argument(
        "--cache-dir", type=Path, help="keep checkouts here (default: a temporary folder)"
    )
    parser.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        help=f"agent state dir paths are rendered for (default: {DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "--now", type=parse_now, help="judge update windows at this RFC 3339 time (default: now)"
    )


def parse_now(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--now {text}: not an RFC 3339 time; write e.g. 2026-03-02T10:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise UsageError(f"--now {text}: add a time zone, e.g. Z or +01:00")
    return value.astimezone(UTC)


def review(
    repo: str,
    base: str,
    head: str,
    *,
    cache_dir: Path,
    now: datetime,
    state_dir: str,
    pins: bool = False,
) -> Review:
    """Materialize BASE and HEAD of ``repo`` and assess the change between them.

    With ``pins`` (``fleetgate impact``) HEAD's rollout findings count as invalid HEAD,
    and each wave whose pin moved is assessed at its old and new pinned revisions.
    """
    old = open_source(repo, cache_dir, ref=base)
    new = open_source(repo, cache_dir, ref=head)
    before = read_side(RepoTree(old.root), old.revision)
    after = read_side(RepoTree(new.root), new.revision)
    assessment = assess(before, after, now, state_dir)
    rollout, problems = load_rollout(after.tree, after.repo)
    if pins and problems:  # a bad pin file or wave list at HEAD: as bad as a bad manifest
        findings = tuple(sorted({*assessment.findings, *problems}))
        invalid = replace(assessment, devices=(), findings=findings)
        return Review(old.revision, new.revision, now, invalid)
    first = rollout.waves[0].name if rollout.declared else None
    waves = membership(rollout, after.repo)
    base_rollout = read_rollout(before.tree)[0]
    moved = pin_moves(base_rollout, rollout) if pins else ()
    impacts = tuple(
        pin_impact_at(repo, cache_dir, move, waves, (base_rollout, rollout), now, state_dir)
        for move in moved
    )
    return Review(old.revision, new.revision, now, assessment, waves, first, impacts)


def run(args: argparse.Namespace) -> int:
    now = args.now or datetime.now(UTC)
    with scratch_cache(args.cache_dir) as cache:
        result = review(
            args.repo,
            args.base,
            args.head,
            cache_dir=cache,
            now=now,
            state_dir=args.state_dir,
            pins=True,
        )
    findings = result.assessment.findings
    if args.output == "json":
        document = document_of(result) if not findings else invalid_document(result)
        emit(document, ascii_only=False)
    elif args.output == "markdown":
        emit(markdown(result))
    elif findings:
        emit(str(f) for f in findings)
        print(f"HEAD is invalid: {len(findings)} problem(s); fix them first", file=sys.stderr)
    else:
        emit(text(result))
    return EXIT_FAILED if findings else EXIT_OK


# ------------------------------------------------------------------ JSON


def _rfc3339(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _changes(changes: tuple[Change, ...]) -> list[dict[str, str | None]]:
    return [{"subject": c.subject, "before": c.before, "after": c.after} for c in changes]


def device_document(d: DeviceImpact, result: Review | None = None) -> dict[str, Any]:
    waves = (
        {}
        if result is None
        else {"wave": result.waves.get(d.device, ""), "lands": result.lands(d.device)}
    )
    return {
        **waves,
        "device": d.device,
        "kind": d.kind,
        "site": d.site,
        "groups": list(d.groups),
        "schedule": d.schedule,
        "appliesAt": _rfc3339(d.applies_at),
        "timezone": d.timezone,
        "changes": _changes(d.changes),
        "stacks": [
            {
                "name": s.name,
                "kind": s.kind,
                "changes": _changes(s.changes),
                "services": [
                    {"service": v.service, "kind": v.kind, "changes": _changes(v.changes)}
                    for v in s.services
                ],
            }
            for s in d.stacks
        ],
    }


def document_of(result: Review) -> dict[str, Any]:
    a = result.assessment
    totals = summarize(a.devices)
    return {
        "base": result.base,
        "head": result.head,
        "now": _rfc3339(result.now),
        "rendered": a.rendered,
        "total": a.total,
        "totals": {
            "devices": totals.devices,
            "bySite": dict(totals.by_site),
            "byGroup": dict(totals.by_group),
        },
        "devices": [device_document(d, result) for d in a.devices],
        "pins": [pin_document(p, result) for p in result.pins],
    }


def pin_document(pin: PinImpact, result: Review) -> dict[str, Any]:
    return {
        "wave": pin.move.wave,
        "before": pin.move.before,
        "after": pin.move.after,
        "members": len(pin.members),
        "devices": [{**device_document(d, result), "lands": "now"} for d in pin.devices],
        "findings": [f.to_json() for f in pin.findings],
    }


def invalid_document(result: Review) -> dict[str, Any]:
    return {"valid": False, "findings": [f.to_json() for f in result.assessment.findings]}


# ------------------------------------------------------------------ text


def when(d: DeviceImpact) -> str:
    if d.schedule == "scheduled" and d.applies_at is not None:
        return f"next window {local_time(d.applies_at, d.timezone)}"
    if d.schedule == "never":
        return "no window ever opens"
    return "open now" if d.schedule == "open now" else "any time (no update windows)"


def _stack_lines(stack: StackImpact, indent: str, code: str = "") -> list[str]:
    lines = [f"{indent}stack {code}{stack.name}{code} {stack.kind}"]
    lines += [f"{indent}  {_show(c, code)}" for c in stack.changes]
    for svc in stack.services:
        reasons = "; ".join(_show(c, code) for c in svc.changes)
        tail = f": {reasons}" if reasons else ""
        lines.append(f"{indent}  service {code}{svc.service}{code} {svc.kind}{tail}")
    return lines


def _show(change: Change, code: str) -> str:
    if change.before is None and change.after is None:
        return change.subject
    before = f"{code}{change.before}{code}" if change.before is not None else "(none)"
    after = f"{code}{change.after}{code}" if change.after is not None else "(none)"
    return f"{change.subject} {before} → {after}"


def device_lines(d: DeviceImpact, indent: str = "  ", code: str = "") -> list[str]:
    lines = [f"{indent}{_show(c, code)}" for c in d.changes]
    for stack in d.stacks:
        lines += _stack_lines(stack, indent, code)
    return lines


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "(working tree)"


def text(result: Review) -> str:
    a = result.assessment
    head = f"impact {_short(result.base)}..{_short(result.head)}"
    if not a.devices and result.pins:
        moved = ", ".join(p.move.wave for p in result.pins)
        lines = [f"{head}: the files of no device change; the pin of {moved} moves"]
        return "\n".join(lines + pin_lines(result)) + "\n"
    if not a.devices:
        return f"{head}: no device's desired state changes\n"
    totals = summarize(a.devices)
    lines = [f"{head}: {totals.devices} of {a.total} devices change"]
    lines.append("by site: " + ", ".join(f"{s} {n}" for s, n in totals.by_site))
    if totals.by_group:
        lines.append("by group: " + ", ".join(f"{g} {n}" for g, n in totals.by_group))
    for d in a.devices:
        wave = result.waves.get(d.device)
        lands = f"; wave {wave}: lands {result.lands(d.device)}" if wave else ""
        lines += ["", f"device {d.device} {d.kind} ({d.site or 'no site'}; {when(d)}{lands})"]
        lines += device_lines(d)
    return "\n".join(lines + pin_lines(result)) + "\n"


def pin_title(pin: PinImpact, code: str = "") -> str:
    """``wave production: pin 1a2b… → 3c4d…: 2 of 2 devices change``."""
    move = pin.move
    before = f"{code}{_short(move.before)}{code}" if move.before else "(none: not started)"
    after = f"{code}{_short(move.after)}{code}" if move.after else "(none)"
    head = f"wave {code}{move.wave}{code}: pin {before} → {after}"
    if move.after is None:
        return f"{head}: its {len(pin.members)} devices keep what they run"
    return f"{head}: {len(pin.devices)} of {len(pin.members)} devices change (lands now)"


def pin_lines(result: Review) -> list[str]:
    """Per moved pin, what it lands on each device of the wave (old pin → new pin)."""
    lines: list[str] = []
    for pin in result.pins:
        lines += ["", pin_title(pin)]
        lines += [f"  note: {f}" for f in pin.findings]
        for d in pin.devices:
            lines.append(f"  device {d.device} {d.kind} ({d.site or 'no site'}; {when(d)})")
            lines += device_lines(d, "    ")
    return lines


# ------------------------------------------------------------------ markdown


def markdown(result: Review) -> str:
    """A pull-request comment: summary tables, then each distinct change once with its devices."""
    a = result.assessment
    title = f"### fleetgate impact `{_short(result.base)}` → `{_short(result.head)}`"
    if a.findings:
        rows = "\n".join(f"- `{f}`" for f in a.findings)
        return f"{title}\n\n:x: **HEAD is invalid** ({len(a.findings)} problems):\n\n{rows}\n"
    pins = pin_markdown(result)
    if not a.devices and pins:
        return f"{title}\n\nThe files of no device change; a wave's pin moves.\n{pins}"
    if not a.devices:
        return f"{title}\n\nNo device's desired state changes ({a.total} devices checked).\n"
    totals = summarize(a.devices)
    out = [title, "", f"**{totals.devices} of {a.total} devices change.**", ""]
    out += ["| site | devices |", "|---|---:|"]
    out += [f"| {s} | {n} |" for s, n in totals.by_site]
    if totals.by_group:
        out += ["", "| group | devices |", "|---|---:|"]
        out += [f"| {g} | {n} |" for g, n in totals.by_group]
    variants: dict[tuple[Any, ...], list[DeviceImpact]] = {}
    for d in a.devices:
        variants.setdefault((d.kind, d.stacks, d.changes), []).append(d)
    for index, devices in enumerate(variants.values(), start=1):
        first = devices[0]
        out += ["", f"#### Change {index}: {len(devices)} device(s) {first.kind}", ""]
        out += [
            f"  - {line.strip()}" if line.startswith("  ") else f"- {line}"
            for line in device_lines(first, "", "`")
        ]
        out += ["", "| device | site | applies |", "|---|---|---|"]
        shown = devices[:50]
        out += [f"| `{d.device}` | {d.site or '-'} | {when(d)} |" for d in shown]
        if len(devices) > len(shown):
            out.append(f"| … and {len(devices) - len(shown)} more | | |")
    body = "\n".join(out) + "\n" + pins
    if len(body) > MARKDOWN_LIMIT:
        cut = body[:MARKDOWN_LIMIT].rsplit("\n", 1)[0]
        body = f"{cut}\n\n… truncated; run `fleetgate impact --output json` for every device.\n"
    return body


def pin_markdown(result: Review) -> str:
    """A section per moved pin: each device of the wave that changes, with its changes."""
    out: list[str] = []
    for pin in result.pins:
        out += ["", f"#### {pin_title(pin, '`')}", ""]
        for d in pin.devices[:50]:
            out.append(f"- `{d.device}` {d.kind} ({when(d)})")
            out += [f"  - {line.strip()}" for line in device_lines(d, "", "`")]
        if len(pin.devices) > 50:
            out.append(f"- … and {len(pin.devices) - 50} more")
    return "\n".join(out) + "\n" if out else ""
