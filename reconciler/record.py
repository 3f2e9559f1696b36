"""The device record: what the reconciler remembers about a device between passes.

Pure values and their transitions (attempted, applied, good, failed, finished), and
their JSON-able form; :mod:`reconciler.store` keeps them on disk. The record holds the
last good :class:`DesiredState` (what a rollback converges to) and the revisions that
failed their health gate (so a bad commit is not re-applied in a loop).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cattrs

from reconciler.model import DesiredState, parse_rfc3339, rfc3339

MAX_FAILED = 50
"""Failed revisions remembered per device (oldest forgotten first)."""


@dataclass(frozen=True, slots=True)
class RevisionMark:
    """A revision and when it reached a milestone (attempted, applied, good).

    ``revision`` is a full 40-hex SHA, or ``worktree:<hex>`` (a digest of the desired
    state) when the repository was read from a directory outside Git.
    """

    revision: str
    at: datetime


@dataclass(frozen=True, slots=True)
class FailedRevision:
    """A revision whose update failed its health gate, and why (no secret values)."""

    revision: str
    reason: str
    at: datetime
    fingerprint: str = ""  # digest of the device's desired state at that revision


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """Everything remembered about one device between passes. Transitions are pure."""

    device: str
    last_attempted: RevisionMark | None = None
    last_applied: RevisionMark | None = None
    last_good: RevisionMark | None = None
    last_good_state: DesiredState | None = None
    failed: tuple[FailedRevision, ...] = ()
    last_outcome: str | None = None
    last_reason: str = ""
    last_pass_at: datetime | None = None

    def failure_of(self, revision: str, fingerprint: str = "") -> FailedRevision | None:
        """The recorded failure of ``revision`` or of an identical desired state, if any."""
        for entry in reversed(self.failed):
            if entry.revision == revision:
                return entry
        if fingerprint:
            for entry in reversed(self.failed):
                if entry.fingerprint == fingerprint:
                    return entry
        return None

    def attempted(self, revision: str, now: datetime) -> DeviceRecord:
        return dataclasses.replace(self, last_attempted=RevisionMark(revision, now))

    def applied(self, revision: str, now: datetime) -> DeviceRecord:
        return dataclasses.replace(self, last_applied=RevisionMark(revision, now))

    def good(self, revision: str, state: DesiredState, now: datetime) -> DeviceRecord:
        """Applied and healthy: the new rollback target; a earlier failure of it is forgotten."""
        return dataclasses.replace(
            self,
            last_applied=RevisionMark(revision, now),
            last_good=RevisionMark(revision, now),
            last_good_state=state,
            failed=tuple(f for f in self.failed if f.revision != revision),
        )

    def failed_with(
        self, revision: str, fingerprint: str, reason: str, now: datetime
    ) -> DeviceRecord:
        """Remember ``revision`` as failed (replacing an older entry for it)."""
        kept = tuple(f for f in self.failed if f.revision != revision)
        entry = FailedRevision(revision, reason, now, fingerprint)
        return dataclasses.replace(self, failed=(*kept, entry)[-MAX_FAILED:])

    def finished(self, outcome: str, reason: str, now: datetime) -> DeviceRecord:
        return dataclasses.replace(self, last_outcome=outcome, last_reason=reason, last_pass_at=now)


# ---------------------------------------------------------------------- serialization


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_unstructure_hook(datetime, rfc3339)
    conv.register_structure_hook(datetime, lambda value, _: parse_rfc3339(str(value)))
    return conv


CONVERTER = _converter()
"""Turns records and desired states into JSON-able values and back (RFC 3339 times)."""


def unstructure_state(state: DesiredState) -> dict[str, Any]:
    """A JSON-able dict of a desired state (round-trips through :func:`structure_state`)."""
    data: dict[str, Any] = CONVERTER.unstructure(state)
    return data


def structure_state(data: Any) -> DesiredState:
    """The :class:`DesiredState` of :func:`unstructure_state`'s output; raises on bad data."""
    return CONVERTER.structure(data, DesiredState)
