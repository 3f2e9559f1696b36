"""The application lock gate (pure): which stacks' updates are held back, and until when.

An application that mounts ``FLEETGATE_LOCK_DIR`` and creates ``updates.lock`` in it
defers updates of its stack (a batch in progress, a machine mid-cycle) until it removes
the file or ``maxDefer`` passes (DESIGN.md §1). The agent observes which lock files
exist (that filesystem read is its job); :func:`lock_gate` decides, given the instants
each lock was first seen *while an update was pending*, and ``now``:

- a lock starts its deferral clock on the first pass that sees it while an update is
  pending; the clock keeps running across new revisions (pushing more commits does not
  give an application more time) and stops only when the file is removed or no update
  is pending any more;
- a lock seen while nothing is pending does not count: an application that always
  holds its lock between updates is not punished when the next update arrives;
- a ``first_seen`` later than ``now`` is not believed: that clock starts at ``now``;
- when ``first_seen + max_defer`` has passed, the lock is *expired*: the update goes
  ahead even though the file is still there (logged and reported).

The result carries the new ``first_seen`` map, which the agent keeps (and persists) for
the next pass. Nothing here reads files or the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.model import rfc3339

LOCK_FILE = "updates.lock"
DEFAULT_MAX_DEFER = 4 * 3600.0
"""Seconds a lock may hold an update when ``maxDefer`` is not configured (4h)."""


@dataclass(frozen=True, slots=True)
class LockGate:
    """The decision for one pass.

    ``held``: stacks whose update must wait, with the instant the deferral ends.
    ``expired``: stacks whose lock is still there but held longer than ``max_defer``.
    ``first_seen``: the deferral clocks to carry into the next pass.
    """

    held: Mapping[str, datetime]
    expired: frozenset[str]
    first_seen: Mapping[str, datetime]

    @property
    def held_stacks(self) -> frozenset[str]:
        return frozenset(self.held)

    def reason(self) -> str:
        """One line for status and logs ('' when nothing is held)."""
        if not self.held:
            return ""
        parts = [f"{stack} until {until.isoformat()}" for stack, until in sorted(self.held.items())]
        return "update held by application lock: " + ", ".join(parts)


def lock_gate(
    locked: frozenset[str],
    first_seen: Mapping[str, datetime],
    now: datetime,
    max_defer: timedelta,
    *,
    update_pending: bool,
) -> LockGate:
    """Which of the ``locked`` stacks hold their update at ``now`` (see the module docstring).

    ``locked``: stacks whose ``updates.lock`` exists now. ``first_seen``: the clocks of
    the previous pass. ``update_pending``: the desired revision differs from the applied
    one (or nothing was applied yet).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not update_pending:
        return LockGate(held={}, expired=frozenset(), first_seen={})
    # A clock from the future (a wrong clock, a damaged file) restarts now: no lock is
    # ever granted more than ``max_defer`` from now, and no date arithmetic overflows.
    clocks = {stack: min(first_seen.get(stack, now), now) for stack in sorted(locked)}
    held = {stack: seen + max_defer for stack, seen in clocks.items() if now < seen + max_defer}
    expired = frozenset(stack for stack in clocks if stack not in held)
    return LockGate(held=held, expired=expired, first_seen=clocks)


def held_reason(until: Mapping[str, datetime | None]) -> str:
    """One line naming the held stacks and when each deferral ends ('' when none).

    ``held by application lock: mqtt (updates.lock), until 2026-11-24T22:00:00Z or its
    removal``; without a known end, ``until its removal``.
    """
    parts = [
        f"{stack} ({LOCK_FILE}), until "
        + ("its removal" if end is None else f"{rfc3339(end)} or its removal")
        for stack, end in sorted(until.items())
    ]
    return "held by application lock: " + "; ".join(parts) if parts else ""
