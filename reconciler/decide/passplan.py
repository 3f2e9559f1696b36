"""One pure decision per pass: what to converge toward, what waits, and why.

:func:`decide` is the single place where the device record, the rendered candidate,
the observed gates and ``now`` become a :class:`PassPlan`. ``fleetgate plan``,
``fleetgate apply`` and the agent all call it, so a dry run shows what a real run does.

- A revision (or an identical desired state) that failed its health gate is not
  re-applied unless ``retry``: the pass is a ``rollback`` toward the stored last good
  state, or a ``hold`` (touch nothing) when there is none (:class:`FailedWait`).
- An ``update`` (the candidate is not the applied revision) waits while the update
  windows are closed; so does a ``repair`` (drift back to the applied revision) when
  ``repair_drift`` is off (:class:`WindowWait`). Only images are pulled ahead.
- Stacks whose application holds ``updates.lock`` keep their last good definition
  while the rest of an update goes ahead; their new images are pulled ahead
  (:class:`LockWait`).

Time is an argument; nothing here reads Docker, Git, files or the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from reconciler.decide.gates import held_reason
from reconciler.decide.rollout import (
    compose_target,
    fingerprint,
    held_changes,
    is_update,
    only_stacks,
    revision_id,
)
from reconciler.decide.windows import is_open, next_opening
from reconciler.model import DesiredState, UpdateWindow, rfc3339
from reconciler.record import DeviceRecord

PassKind = Literal["update", "repair", "rollback", "hold"]


@dataclass(frozen=True, slots=True)
class Gates:
    """What the caller observed and allows for this pass.

    ``held``: stacks whose application holds ``updates.lock`` (observed lock files after
    :func:`reconciler.decide.gates.lock_gate`), each with the end of its deferral if known.
    ``ignore_windows`` and ``retry`` are the ``apply`` flags; ``repair_drift=False``
    makes drift repair wait for a window too.
    """

    held: Mapping[str, datetime | None] = field(default_factory=dict)
    ignore_windows: bool = False
    retry: bool = False
    repair_drift: bool = True


@dataclass(frozen=True, slots=True)
class WindowWait:
    """The update windows are closed: nothing but pulling ahead may happen now."""

    next_window: datetime | None  # aware UTC; None: no window ever opens
    zone: str | None  # the time zone of the window that opens next
    drift: bool  # drift repair waits (repairDrift off), not an update

    def describe(self) -> str:
        when = "" if self.next_window is None else f" (next opens {self.opening()})"
        if self.drift:
            return (
                f"drift repair of the applied revision waits for the update windows{when}: "
                "repairDrift is off"
            )
        return f"outside the update windows{when}; run with --ignore-windows to update now"

    def opening(self) -> str:
        """``2026-03-07T01:00:00Z, Sat 02:00 Europe/Berlin`` ('' when none)."""
        if self.next_window is None:
            return ""
        text = rfc3339(self.next_window)
        if self.zone is None:
            return text
        local = self.next_window.astimezone(ZoneInfo(self.zone))
        return f"{text}, {local:%a %H:%M} {self.zone}"

    def to_json(self) -> dict[str, object]:
        at = None if self.next_window is None else rfc3339(self.next_window)
        return {"kind": "window", "reason": self.describe(), "next_window": at,
                "timezone": self.zone, "drift": self.drift}  # fmt: skip


@dataclass(frozen=True, slots=True)
class LockWait:
    """Stacks held back by their application's ``updates.lock`` (sorted by name)."""

    stacks: tuple[tuple[str, datetime | None], ...]  # (stack, end of its deferral)

    def describe(self) -> str:
        return held_reason(dict(self.stacks))

    def to_json(self) -> dict[str, object]:
        until = {s: None if end is None else rfc3339(end) for s, end in self.stacks}
        return {"kind": "lock", "reason": self.describe(), "stacks": until}


@dataclass(frozen=True, slots=True)
class FailedWait:
    """The desired revision failed its health gate before; it waits for a fix or --retry."""

    revision: str
    failed: str  # the failed revision with the same desired state (often ``revision``)
    reason: str  # why it failed
    last_good: str | None  # what the device stays on (None: nothing to return to)

    def describe(self) -> str:
        same = "" if self.failed == self.revision else f" (same desired state as {self.failed})"
        return (
            f"revision {self.revision}{same} failed health before: {self.reason}; "
            "push a fix or run with --retry"
        )

    def to_json(self) -> dict[str, object]:
        return {"kind": "failed-revision", "reason": self.describe(), "revision": self.revision,
                "failed": self.failed, "last_good": self.last_good}  # fmt: skip


Wait = WindowWait | LockWait | FailedWait


@dataclass(frozen=True, slots=True)
class PassPlan:
    """What one pass converges toward and what waits (the output of :func:`decide`).

    ``kind``: ``update`` (toward a new desired state), ``repair`` (drift back to the
    applied revision), ``rollback`` (the candidate failed before: stay on / return to
    the last good state), ``hold`` (it failed and there is nothing to return to).
    ``target``: the state converged toward (the candidate, the candidate with held
    stacks kept at last good, or last good); ``None``: touch nothing. ``ahead``: a
    state whose missing images are pulled first. ``held_stacks`` are never pruned.
    ``confirmed``: the target revision already passed its health gate here.
    """

    kind: PassKind
    revision: str
    target_revision: str
    target: DesiredState | None
    ahead: DesiredState | None = None
    waits: tuple[Wait, ...] = ()
    held_stacks: tuple[str, ...] = ()
    confirmed: bool = False

    @property
    def window(self) -> WindowWait | None:
        """The closed window that gates this pass (only pulls ahead run), if any."""
        return next((w for w in self.waits if isinstance(w, WindowWait)), None)

    @property
    def lock(self) -> LockWait | None:
        return next((w for w in self.waits if isinstance(w, LockWait)), None)

    @property
    def failure(self) -> FailedWait | None:
        return next((w for w in self.waits if isinstance(w, FailedWait)), None)

    def describe(self) -> tuple[str, ...]:
        """One line per wait, in the order a reader needs them."""
        return tuple(w.describe() for w in self.waits)

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "revision": self.revision, "target": self.target_revision,
                "held_stacks": list(self.held_stacks),
                "waits": [w.to_json() for w in self.waits]}  # fmt: skip


def decide(record: DeviceRecord, desired: DesiredState, gates: Gates, now: datetime) -> PassPlan:
    """The pass plan for ``desired`` given the record, the gates and ``now`` (pure)."""
    rev = revision_id(desired)
    failure = None if gates.retry else record.failure_of(rev, fingerprint(desired))
    if failure is not None:
        good, state = record.last_good, record.last_good_state
        last = None if good is None or state is None else good.revision
        wait = FailedWait(rev, failure.revision, failure.reason, last)
        if good is None or state is None:
            return PassPlan("hold", rev, rev, None, waits=(wait,))
        return PassPlan("rollback", rev, good.revision, state, waits=(wait,))
    update = is_update(record, desired)
    window = None if gates.ignore_windows else _window(desired, now, update, gates.repair_drift)
    held = held_changes(desired, record.last_good_state, gates.held) if update else ()
    waits: list[Wait] = []
    if window is not None:
        waits.append(window)
    if held:
        waits.append(LockWait(tuple((s, gates.held.get(s)) for s in held)))
    target = compose_target(desired, record.last_good_state, held) if held else desired
    ahead = desired if window is not None else (only_stacks(desired, held) if held else None)
    confirmed = record.last_good is not None and record.last_good.revision == rev
    return PassPlan(
        "update" if update else "repair",
        rev,
        rev,
        target,
        ahead=ahead,
        waits=tuple(waits),
        held_stacks=held,
        confirmed=confirmed,
    )


def _window(
    desired: DesiredState, now: datetime, update: bool, repair_drift: bool
) -> WindowWait | None:
    """Why converging may not start at ``now`` (windows closed), or ``None``."""
    windows = desired.update_windows
    if is_open(windows, now) or (not update and repair_drift):
        return None
    opens = next_opening(windows, now)
    return WindowWait(opens, _zone_opening(windows, now, opens), drift=not update)


def _zone_opening(
    windows: tuple[UpdateWindow, ...], now: datetime, opens: datetime | None
) -> str | None:
    """The time zone of the window that opens at ``opens`` (the first such window)."""
    if opens is None:
        return None
    return next((w.timezone for w in windows if next_opening((w,), now) == opens), None)
