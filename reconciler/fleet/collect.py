"""Reports from a folder of ``<device>.json`` status files (the USB stick's
``fleetgate-status/``, or any copy of them): the file-system adapter of the fleet view."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from reconciler.errors import UsageError
from reconciler.fleet.reports import (
    DEVICE_ID,
    MAX_REPORT,
    Report,
    parse_status,
    plain_text,
    shown,
)


def read_folder(folder: Path) -> tuple[dict[str, Report], tuple[str, ...]]:
    """Every ``<device>.json`` in ``folder`` as a report; other files are skipped quietly,
    unreadable or invalid ones with one problem line each; a stick's root (holding
    ``fleetgate-status/``) is read through that folder. ``UsageError`` when ``folder`` is
    not a folder."""
    if not folder.is_dir():
        raise UsageError(f"--from {folder}: not a folder; pass the folder of status files")
    if (folder / "fleetgate-status").is_dir():  # a stick's root: the agents' status folder
        folder = folder / "fleetgate-status"
    reports: dict[str, Report] = {}
    problems: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.suffix != ".json":
            continue
        device = path.stem
        where = shown(str(path), 200)
        if not DEVICE_ID.match(device):
            problems.append(f"{where}: {shown(device)!r} is not a device id; ignored")
            continue
        if path.is_symlink() or not path.is_file():
            problems.append(f"{where}: not a regular file; ignored")
            continue
        try:
            with path.open("rb") as handle:
                payload = handle.read(MAX_REPORT + 1)
            written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except OSError as e:
            problems.append(f"{where}: cannot read: {e.strerror}; ignored")
            continue
        document, problem = parse_status(device, payload, where)
        if problem:
            problems.append(problem)
        text = plain_text(payload) if document else None
        reports[device] = Report(device, document, None, written if document else None, text)
    return reports, tuple(problems)
