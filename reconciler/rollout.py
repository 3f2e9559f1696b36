"""Rollout decisions for one pass (pure): what to converge toward, and whether now.

:func:`decide` picks the target from the device record and the rendered candidate:
the candidate itself, or, when that revision (or an identical desired state) already
failed its health gate, the stored last good state, so a bad commit is not re-applied
in a loop. :func:`window_hold` says why an update may not start now. Time is an
argument; nothing here reads Docker, Git, files or the clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from typing import Literal

from reconciler.model import DesiredState
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


def window_hold(record: DeviceRecord, desired: DesiredState, now: datetime) -> str | None:
    """Why an update may not start at ``now`` (update windows closed), or ``None``.

    Drift repair toward the revision already applied is allowed any time; so is any
    change when the device declares no windows.
    """
    applied = record.last_applied
    if applied is not None and applied.revision == revision_id(desired):
        return None
    if is_open(desired.update_windows, now):
        return None
    opens = next_opening(desired.update_windows, now)
    when = "" if opens is None else f" (next opens {rfc3339(opens)})"
    return f"outside the update windows{when}; run with --ignore-windows to update now"
