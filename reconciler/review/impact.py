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

import json
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from reconciler.decide.windows import is_open, next_opening
from reconciler.model import (
    DesiredState,
    Mount,
    PortBinding,
    ServiceSpec,
    StackSpec,
    UpdateWindow,
)
from reconciler.redaction import redact, secret_values
from reconciler.render.hashing import plain
from reconciler.units import format_duration

Kind = Literal["added", "removed", "changed"]
Schedule = Literal["any time", "open now", "scheduled", "never"]


@dataclass(frozen=True, slots=True)
class Change:
    """One reason: ``subject: before -> after`` (``None`` side: absent / not shown)."""

    subject: str
    before: str | None = None
    after: str | None = None

    def __str__(self) -> str:
        if self.before is None and self.after is None:
            return self.subject
        return f"{self.subject}: {self.before or '-'} → {self.after or '-'}"


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


def _port(p: PortBinding) -> str:
    host = f"{p.host_ip}:" if p.host_ip else ""
    published = f"{host}{p.host_port}" if p.host_port is not None else f"{host}(any)"
    return f"{published}->{p.container_port}/{p.protocol}"


def _mount(m: Mount) -> str:
    mode = "ro" if m.read_only else "rw"
    if m.kind == "config":
        return f"config -> {m.target} ({mode})"  # the source is a content-addressed path
    return f"{m.kind} {m.source or '(tmpfs)'} -> {m.target} ({mode})"


def _value(name: str, value: Any) -> str:
    """A compact, human-readable rendering of a non-secret field value."""
    if value is None:
        return "(unset)"
    if name in ("command", "entrypoint"):
        return shlex.join(value)
    if name == "ports":
        return ", ".join(_port(p) for p in value) or "(none)"
    if name in ("stop_grace_period", "health_timeout") and isinstance(value, int | float):
        return format_duration(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = json.dumps(plain(value), sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 120 else text[:117] + "..."


def _keyed(
    subject: str, before: Iterable[tuple[str, str]], after: Iterable[tuple[str, str]]
) -> Change | None:
    """Keys added / removed / changed of a name-value list; values are never shown."""
    old, new = dict(before), dict(after)
    parts = [f"+{k}" for k in sorted(new.keys() - old.keys())]
    parts += [f"-{k}" for k in sorted(old.keys() - new.keys())]
    parts += [f"~{k}" for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]
    return Change(f"{subject} {', '.join(parts)}") if parts else None


def _mounts(before: tuple[Mount, ...], after: tuple[Mount, ...]) -> list[Change]:
    old = {m.target: m for m in before}
    new = {m.target: m for m in after}
    out = [Change(f"mount {t}", None, _mount(new[t])) for t in sorted(new.keys() - old.keys())]
    out += [Change(f"mount {t}", _mount(old[t]), None) for t in sorted(old.keys() - new.keys())]
    for target in sorted(old.keys() & new.keys()):
        a, b = old[target], new[target]
        if a == b:
            continue
        if a.kind == b.kind == "config" and a.read_only == b.read_only:
            out.append(Change(f"mount {target}: config content changed"))
        else:
            out.append(Change(f"mount {target}", _mount(a), _mount(b)))
    return out


# ------------------------------------------------------------------- comparing


def _service_changes(old: ServiceSpec, new: ServiceSpec) -> tuple[Change, ...]:
    old_hashes, new_hashes = dict(old.field_hashes), dict(new.field_hashes)
    fields = [f for f, h in new.field_hashes if old_hashes.get(f) != h]
    fields += [f for f in old_hashes if f not in new_hashes]
    out: list[Change] = []
    for name in fields:
        before, after = getattr(old, name), getattr(new, name)
        if name == "environment":
            change = _keyed("environment", before, after)
            out += [change] if change else []
        elif name == "labels":
            change = _keyed("labels", before, after)
            out += [change] if change else []
        elif name == "mounts":
            out += _mounts(before, after)
        else:
            out.append(Change(name, _value(name, before), _value(name, after)))
    for name in ("pull_policy", "depends_on"):  # not in the config hash: how, not what
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            out.append(Change(name, _value(name, before), _value(name, after)))
    hidden = secret_values(old.environment + new.environment)
    return tuple(_redacted(change, hidden) for change in out)


def _redacted(change: Change, hidden: frozenset[str]) -> Change:
    """``change`` without URL credentials nor secret values (a command may quote them)."""
    before = None if change.before is None else redact(change.before, hidden)
    after = None if change.after is None else redact(change.after, hidden)
    return Change(change.subject, before, after)


def _stack_changes(old: StackSpec, new: StackSpec) -> list[Change]:
    out: list[Change] = []
    old_cfg = {c.repo_path: c.digest for c in old.config_files}
    new_cfg = {c.repo_path: c.digest for c in new.config_files}
    for path in sorted(old_cfg.keys() | new_cfg.keys()):
        a, b = old_cfg.get(path), new_cfg.get(path)
        if a != b:
            out.append(Change(f"config {path}", _short(a), _short(b)))
    for label, a_items, b_items in (
        ("network", {n.name: n for n in old.networks}, {n.name: n for n in new.networks}),
        ("volume", {v.name: v for v in old.volumes}, {v.name: v for v in new.volumes}),
    ):
        for name in sorted(a_items.keys() | b_items.keys()):
            a_val, b_val = a_items.get(name), b_items.get(name)
            if a_val == b_val:
                continue
            if a_val is None or b_val is None:
                out.append(Change(f"{label} {name}", _present(a_val), _present(b_val)))
            else:
                out.append(Change(f"{label} {name}: settings changed"))
    for directory in sorted(set(new.data_dirs) - set(old.data_dirs)):
        out.append(Change(f"data dir {directory}", None, "created"))
    for name in ("health_timeout", "update_strategy"):
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            out.append(Change(name, _value(name, before), _value(name, after)))
    return out


def _short(digest: str | None) -> str | None:
    """``sha256:1a2b3c4d5e6f`` (12 hex digits are plenty to tell two versions apart)."""
    if digest is None:
        return None
    algo, _, hexdigest = digest.partition(":")
    return f"{algo}:{hexdigest[:12]}"


def _present(value: object) -> str | None:
    return None if value is None else "present"


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
            changes = _service_changes(a, b)
            services.append(ServiceImpact(name, "changed", changes))
    stack_level = _stack_changes(old, new)
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
