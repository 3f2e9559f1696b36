"""Durable files in the state directory: every write is temp file, fsync, ``os.replace``.

A crash or power cut at any moment leaves either the old or the new content of a
file, never a torn one.

:class:`StateStore` keeps what the reconciler must remember between passes for one
device in ``{state}/devices/{device}/state.json``: the last attempted / applied /
good revision with their times, the last good :class:`DesiredState` (what a rollback
converges to), the revisions that failed their health gate (so a bad commit is not
re-applied in a loop) and the outcome of the last pass. The file holds rendered
environment values, so it is written with mode 0600; it is internal state, not the
published status (secret *values* never appear in status, logs or labels).

Reading never crashes a pass: a missing, unreadable or corrupt file is an empty
record (logged, and a corrupt file is kept aside as ``state.json.corrupt``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cattrs
import structlog

from reconciler import statedir
from reconciler.errors import FleetgateError
from reconciler.model import DesiredState

STATE_VERSION = 1
MAX_FAILED = 50
"""Failed revisions remembered per device (oldest forgotten first)."""


def write_atomic(path: Path, data: bytes, mode: int = 0o644, *, root: Path | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (creating parent directories).

    Nothing below ``root`` (default: the file's own directory) is followed if it is a
    symlink: a link on a directory between ``root`` and the file refuses the write
    (:class:`~reconciler.errors.PlantedLink`), and a link in place of the file is
    replaced, its target untouched (see :mod:`reconciler.statedir`).
    """
    base = path.parent if root is None else root
    statedir.write_file(str(path), data, mode, "state", root=str(base))


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as RFC 3339 with a ``Z`` suffix, whole seconds."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    """The aware UTC datetime of an RFC 3339 string (``Z`` or an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# ----------------------------------------------------------------------------- record


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


_CONVERTER = _converter()


def unstructure_state(state: DesiredState) -> dict[str, Any]:
    """A JSON-able dict of a desired state (round-trips through :func:`structure_state`)."""
    data: dict[str, Any] = _CONVERTER.unstructure(state)
    return data


def structure_state(data: Any) -> DesiredState:
    """The :class:`DesiredState` of :func:`unstructure_state`'s output; raises on bad data."""
    return _CONVERTER.structure(data, DesiredState)


def dump_record(record: DeviceRecord) -> bytes:
    data = {"version": STATE_VERSION, **_CONVERTER.unstructure(record)}
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def load_record(raw: bytes) -> DeviceRecord:
    """Parse ``state.json``; raises ``ValueError`` on anything it cannot trust."""
    data = json.loads(raw)
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise ValueError("unknown state file version")
    data.pop("version")
    try:
        return _CONVERTER.structure(data, DeviceRecord)
    except (cattrs.BaseValidationError, TypeError, KeyError) as e:
        raise ValueError(f"state file does not match its schema: {e}") from e


# ------------------------------------------------------------------------------- store


class StateStore:
    """One device's reconciler state under ``{state_dir}/devices/{device}/``."""

    def __init__(self, state_dir: Path | str, device: str) -> None:
        self.device = device
        self.root = Path(state_dir)
        self.folder = self.root / "devices" / device
        self.path = self.folder / "state.json"
        self._log = structlog.get_logger().bind(device=device)

    def load(self) -> DeviceRecord:
        """The stored record; an empty one when missing, unreadable or corrupt (logged)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return DeviceRecord(self.device)
        except OSError as e:
            self._log.warning("state.unreadable", path=str(self.path), error=e.strerror)
            return DeviceRecord(self.device)
        try:
            record = load_record(raw)
        except ValueError as e:
            self._log.warning("state.corrupt", path=str(self.path), error=str(e)[:200])
            with contextlib.suppress(OSError):
                self.path.replace(self.path.with_name("state.json.corrupt"))
            return DeviceRecord(self.device)
        if record.device != self.device:
            self._log.warning("state.foreign", path=str(self.path), found=record.device)
            return DeviceRecord(self.device)
        return record

    def save(self, record: DeviceRecord) -> None:
        """Write ``record`` atomically (mode 0600: it holds rendered environment values)."""
        write_atomic(self.path, dump_record(record), mode=0o600, root=self.root)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the device's pass lock (``flock``; released by the kernel if we die).

        Raises :class:`FleetgateError` at once when another process (the agent, a
        technician's ``apply``) is in the middle of a pass for this device.
        """
        statedir.ensure_dir(str(self.folder), "state", root=str(self.root))
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.folder / "pass.lock", flags, 0o600)
        except OSError as e:
            raise FleetgateError(
                f"cannot open the pass lock {self.folder / 'pass.lock'}: {e.strerror}; "
                "remove what is in its place"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FleetgateError(
                    f"another fleetgate pass is running for device {self.device}; "
                    "wait for it to finish and try again"
                ) from None
            yield
        finally:
            os.close(fd)
