"""What a change of the fleet repository does to each device, with field-level reasons (pure).

:func:`compare_device` takes one device's desired state at two revisions and returns a
:class:`DeviceImpact` (``None`` when nothing that runs or schedules on the device
changed); :func:`summarize` adds totals per site and group. The revision itself is not
part of the comparison: a commit that alters no rendered state touches no device.

Reasons are found through :attr:`ServiceSpec.field_hashes` (the same per-field hashes a
plan uses to say why a container is recreated), then shown before/after for the fields
whose values are safe to print. Secrets never appear: ``environment`` and ``labels``
are reported by *key* only, a secret mount by its device path only, a config file by
its repository path and content digest, and the values shown (a command, say) lose URL
credentials and the values of secret-named variables (:mod:`reconciler.redaction`).

When a change lands on a device is the next opening of its update windows
(:func:`reconciler.decide.windows.next_opening`, with ``now`` as an argument): ``any time``
without windows, ``open now`` inside one, else the opening instant shown in the
window's own time zone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from reconciler.decide.windows import is_open, next_opening
from reconciler.model import (
    DesiredState,
    ServiceSpec,
    StackSpec,
    UpdateWindow,
)
from reconciler.review.changes import Change, service_changes, stack_changes

Kind = Literal["added", "removed", "changed"]
Schedule = Literal["any time", "open now", "scheduled", "never"]

__all__ = ["Change", "DeviceImpact", "ServiceImpact", "StackImpact", "Totals"]


@dataclass(frozen=True, slots=True)
class ServiceImpact:
    service: str
    kind: Kind
    changes: tuple[Change, ...] = ()


@dataclass(frozen=True, slots=True)
class StackImpact:
    name: str
    kind: Kind
    services: tuple[ServiceImpact, ...] = ()
    changes: tuple[Change, ...] = ()  # stack-level: config files, networks, volumes, settings


@dataclass(frozen=True, slots=True)
class DeviceImpact:
    """How one device's desired state differs between two revisions, and when it lands."""

    device: str
    kind: Kind
    stacks: tuple[StackImpact, ...] = ()
    changes: tuple[Change, ...] = ()  # device-level: arch, update windows
    site: str | None = None
    groups: tuple[str, ...] = ()
    schedule: Schedule = "any time"
    applies_at: datetime | None = None  # aware UTC when schedule == "scheduled"
    timezone: str | None = None  # the zone of the window that opens first

    @property
    def images(self) -> tuple[str, ...]:
        """Images that change (``before → after``) or appear, for a one-line summary."""
        out: list[str] = []
        for stack in self.stacks:
            for svc in stack.services:
                out += [str(c) for c in svc.changes if c.subject == "image"]
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Totals:
    devices: int
    by_site: tuple[tuple[str, int], ...]  # "(no site)" for devices without the label
    by_group: tuple[tuple[str, int], ...]


# ------------------------------------------------------------------- formatting values


def compare_stack(old: StackSpec | None, new: StackSpec | None) -> StackImpact | None:
    """How a stack differs; ``None`` when equal (or absent on both sides)."""
    if old is None and new is None:
        return None
    if old is None or new is None:
        present = new if new is not None else old
        assert present is not None
        kind: Kind = "added" if old is None else "removed"
        gone = tuple(
            ServiceImpact(s.service, kind, _added(s) if kind == "added" else ())
            for s in present.services
        )
        return StackImpact(present.name, kind, gone)
    if old == new:
        return None
    old_svc = {s.service: s for s in old.services}
    new_svc = {s.service: s for s in new.services}
    services: list[ServiceImpact] = []
    for name in sorted(old_svc.keys() | new_svc.keys()):
        a, b = old_svc.get(name), new_svc.get(name)
        if a is None:
            services.append(ServiceImpact(name, "added", _added(b)))
        elif b is None:
            services.append(ServiceImpact(name, "removed"))
        elif a != b:
            changes = service_changes(a, b)
            services.append(ServiceImpact(name, "changed", changes))
    stack_level = stack_changes(old, new)
    if not services and not stack_level:
        # Only what render derives from the device (lock dir) or ordering differs.
        stack_level = [Change("stack settings changed")]
    return StackImpact(new.name, "changed", tuple(services), tuple(stack_level))


def _added(spec: ServiceSpec | None) -> tuple[Change, ...]:
    return () if spec is None else (Change("image", None, spec.image),)


def _window(w: UpdateWindow) -> str:
    return f"{','.join(w.days)} {w.start}-{w.end} {w.timezone}"


def _windows(windows: tuple[UpdateWindow, ...]) -> str:
    return "; ".join(_window(w) for w in windows) or "any time"


def schedule_of(
    windows: tuple[UpdateWindow, ...], now: datetime
) -> tuple[Schedule, datetime | None, str | None]:
    """When a change may start on a device: ``(schedule, instant, time zone of the window)``."""
    if not windows:
        return "any time", None, None
    if is_open(windows, now):
        return "open now", None, None
    opening = next_opening(windows, now)
    if opening is None:
        return "never", None, None
    zone = None
    for window in windows:
        if next_opening((window,), now) == opening:
            zone = window.timezone
            break
    return "scheduled", opening, zone


def local_time(at: datetime, zone: str | None) -> str:
    """``2026-11-27 22:00 Europe/Berlin`` (UTC when no zone is known)."""
    if zone is None:
        return at.strftime("%Y-%m-%d %H:%M UTC")
    return f"{at.astimezone(ZoneInfo(zone)).strftime('%Y-%m-%d %H:%M')} {zone}"


def compare_device(
    before: DesiredState | None,
    after: DesiredState | None,
    now: datetime,
    site: str | None = None,
    groups: tuple[str, ...] = (),
) -> DeviceImpact | None:
    """One device's impact, or ``None`` when its desired state is the same on both sides.

    ``before``/``after`` is ``None`` where the device does not exist. The device's update
    windows at ``after`` (else ``before``) decide when the change lands.
    """
    if before is None and after is None:
        return None
    present = after if after is not None else before
    assert present is not None
    kind: Kind
    changes: list[Change] = []
    if before is None or after is None:
        kind = "added" if before is None else "removed"
        stacks = tuple(
            impact
            for s in present.stacks
            if (impact := compare_stack(None, s) if before is None else compare_stack(s, None))
        )
    else:
        kind = "changed"
        old = {s.name: s for s in before.stacks}
        new = {s.name: s for s in after.stacks}
        stacks = tuple(
            impact
            for name in sorted(old.keys() | new.keys())
            if (impact := compare_stack(old.get(name), new.get(name))) is not None
        )
        if before.arch != after.arch:
            changes.append(Change("arch", before.arch or "(none)", after.arch or "(none)"))
        if before.update_windows != after.update_windows:
            changes.append(
                Change(
                    "update windows",
                    _windows(before.update_windows),
                    _windows(after.update_windows),
                )
            )
        if not stacks and not changes:
            return None
    schedule, at, zone = schedule_of(present.update_windows, now)
    if kind == "removed":
        schedule, at, zone = schedule_of(before.update_windows if before else (), now)
    return DeviceImpact(
        device=present.device,
        kind=kind,
        stacks=stacks,
        changes=tuple(changes),
        site=site,
        groups=groups,
        schedule=schedule,
        applies_at=at,
        timezone=zone,
    )


def summarize(impacts: Iterable[DeviceImpact]) -> Totals:
    """Device counts in total, per ``site`` label and per matching group."""
    items = tuple(impacts)
    sites = Counter(i.site or "(no site)" for i in items)
    groups = Counter(g for i in items for g in i.groups)
    return Totals(
        devices=len(items),
        by_site=tuple(sorted(sites.items())),
        by_group=tuple(sorted(groups.items())),
    )


def affected_names(impacts: Iterable[DeviceImpact], limit: int = 20) -> str:
    """``a, b, c`` or ``a, b, ... and 12 more`` (for commit messages and summaries)."""
    names = sorted(i.device for i in impacts)
    if len(names) <= limit:
        return ", ".join(names) or "none"
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"


def labels_site(labels: Mapping[str, str]) -> str | None:
    return labels.get("site")


def landing(wave: str, first_wave: str | None) -> str:
    """When a change on the branch reaches a device of ``wave`` (DESIGN.md §6).

    ``"now"`` for the first wave (it follows the branch) and in a fleet without
    ``rollout`` (``first_wave`` ``None``); ``"at promotion"`` for every later wave, whose
    devices run their pin until ``fleetgate promote`` moves it.
    """
    if first_wave is None or wave == first_wave:
        return "now"
    return "at promotion"
