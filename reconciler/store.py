"""Durable files in the state directory: every write is temp file, fsync, ``os.replace``.

A crash or power cut at any moment leaves either the old or the new content of a
file, never a torn one.

:class:`StateStore` keeps the device record (:class:`reconciler.record.DeviceRecord`,
what the reconciler must remember between passes) for one device in
``{state}/devices/{device}/state.json``: the last attempted / applied /
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
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

import cattrs
import structlog

from reconciler import statedir
from reconciler.errors import FleetgateError
from reconciler.record import CONVERTER, DeviceRecord

STATE_VERSION = 1


def write_atomic(path: Path, data: bytes, mode: int = 0o644, *, root: Path | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (creating parent directories).

    Nothing below ``root`` (default: the file's own directory) is followed if it is a
    symlink: a link on a directory between ``root`` and the file refuses the write
    (:class:`~reconciler.errors.PlantedLink`), and a link in place of the file is
    replaced, its target untouched (see :mod:`reconciler.statedir`).
    """
    base = path.parent if root is None else root
    statedir.write_file(str(path), data, mode, "state", root=str(base))


# ---------------------------------------------------------------------- serialization


def dump_record(record: DeviceRecord) -> bytes:
    data = {"version": STATE_VERSION, **CONVERTER.unstructure(record)}
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def load_record(raw: bytes) -> DeviceRecord:
    """Parse ``state.json``; raises ``ValueError`` on anything it cannot trust."""
    data = json.loads(raw)
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise ValueError("unknown state file version")
    data.pop("version")
    try:
        return CONVERTER.structure(data, DeviceRecord)
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
