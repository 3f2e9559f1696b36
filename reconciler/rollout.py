"""Rollout decisions for one pass (pure): what to converge toward, and whether now.

:func:`decide` picks the target from the device record and the rendered candidate:
the candidate itself, or, when that revision (or an identical desired state) already
failed its health gate, the stored last good state, so a bad commit is not re-applied
in a loop. The gates then say how much of it may happen now:

- :func:`window_hold`: an update (the candidate is not the applied revision) waits while
  the update windows are closed; so does drift repair when ``repair_drift`` is off.
  While it waits, the candidate's images are pulled ahead.
- :func:`held_changes` and :func:`compose_target`: stacks whose application holds its
  update lock keep their last good definition while every other stack moves to the
  candidate; their new images are pulled ahead.

Time is an argument; nothing here reads Docker, Git, files or the clock.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from typing import Literal

from reconciler.model import DesiredState, StackSpec
from reconciler.store import DeviceRecord, rfc3339, unstructure_state
from reconciler.windows import is_open, next_opening


def fingerprint(desired: DesiredState) -> str:
    """A digest of what the device should run (revision and windows excluded)."""
    data = unstructure_state(desired)["stacks"]
    return sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def revision_id(desired: DesiredState) -> str:
    """The revision to record: the commit SHA, or ``worktree:<digest>`` outside Git."""
    return desired.revision or f"worktree:{fingerprint(desired)[:16]}"


@dataclass(frozen=True, slots=True)
class Target:
    """What this pass converges toward (the output of :func:`decide`).

    ``kind``: ``candidate`` (the desired revision), ``last-good`` (the desired revision
    failed before: stay on / return to the stored last good state), ``hold`` (it failed
    before and there is nothing to return to: touch nothing).
    """

    kind: Literal["candidate", "last-good", "hold"]
    revision: str
    state: DesiredState | None
    reason: str = ""


def decide(record: DeviceRecord, desired: DesiredState, *, retry: bool) -> Target:
    """Pick the target from the record and the rendered candidate (pure)."""
    rev = revision_id(desired)
    failure = None if retry else record.failure_of(rev, fingerprint(desired))
    if failure is None:
        return Target("candidate", rev, desired)
    same = "" if failure.revision == rev else f" (same desired state as {failure.revision})"
    reason = (
        f"revision {rev}{same} failed health before: {failure.reason}; "
        "push a fix or run with --retry"
    )
    if record.last_good_state is None or record.last_good is None:
        return Target("hold", rev, None, reason)
    return Target("last-good", record.last_good.revision, record.last_good_state, reason)


def is_update(record: DeviceRecord, desired: DesiredState) -> bool:
    """Whether converging to ``desired`` changes the applied revision (not drift repair)."""
    applied = record.last_applied
    return applied is None or applied.revision != revision_id(desired)


@dataclass(frozen=True, slots=True)
class WindowHold:
    """Why nothing but pulling ahead may happen now, and when the next window opens."""

    reason: str
    next_window: datetime | None


def window_hold(
    record: DeviceRecord, desired: DesiredState, now: datetime, *, repair_drift: bool = True
) -> WindowHold | None:
    """Why converging to ``desired`` may not start at ``now`` (windows closed), or ``None``.

    An update waits for a window; drift repair toward the revision already applied is
    allowed any time unless ``repair_drift`` is off. No windows at all means any time.
    """
    if is_open(desired.update_windows, now):
        return None
    update = is_update(record, desired)
    if not update and repair_drift:
        return None
    opens = next_opening(desired.update_windows, now)
    when = "" if opens is None else f" (next opens {rfc3339(opens)})"
    if not update:
        return WindowHold(
            f"drift repair of the applied revision waits for the update windows{when}: "
            "repairDrift is off",
            opens,
        )
    reason = f"outside the update windows{when}; run with --ignore-windows to update now"
    return WindowHold(reason, opens)


def held_changes(
    desired: DesiredState, last_good: DesiredState | None, held: Collection[str]
) -> tuple[str, ...]:
    """The ``held`` stacks whose definition ``desired`` changes (new, changed, removed).

    A locked stack that the candidate leaves as it is in the last good state holds
    nothing back: the rest of the update may be recorded as applied and good.
    """
    old = {} if last_good is None else {st.name: _digest(last_good, st) for st in last_good.stacks}
    new = {st.name: _digest(desired, st) for st in desired.stacks}
    return tuple(
        sorted(n for n in set(held) if (n in old or n in new) and old.get(n) != new.get(n))
    )


def compose_target(
    desired: DesiredState, last_good: DesiredState | None, held: Collection[str]
) -> DesiredState:
    """``desired`` with every ``held`` stack as it is in the last good state.

    A held stack that is new in ``desired`` (or has no last good definition) is left
    out; one that ``desired`` removes is kept. Revision and windows stay the candidate's.
    """
    old = {} if last_good is None else {st.name: st for st in last_good.stacks}
    stacks = [st for st in desired.stacks if st.name not in held]
    stacks.extend(old[name] for name in sorted(set(held)) if name in old)
    return dataclasses.replace(desired, stacks=tuple(sorted(stacks, key=lambda st: st.name)))


def only_stacks(desired: DesiredState, names: Collection[str]) -> DesiredState:
    """``desired`` restricted to the stacks in ``names`` (what a pull-ahead plan reads)."""
    return dataclasses.replace(
        desired, stacks=tuple(st for st in desired.stacks if st.name in names)
    )


def _digest(state: DesiredState, stack: StackSpec) -> str:
    return fingerprint(dataclasses.replace(state, stacks=(stack,)))
