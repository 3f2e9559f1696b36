"""Status back on the stick: after a bundle import from a watch folder, the agent writes
its status to ``<watch>/fleetgate-status/<device>.json`` after every published pass.

The document is the one ``status.json`` and MQTT carry, so ``fleetgate fleet status
--from <watch>`` reads the stick as it reads any folder of reports. Each write is
atomic (a temporary file renamed over the old one: :func:`reconciler.store.write_atomic`),
so a stick pulled at any moment holds the previous status or the new one, never half of
one; nothing below the watch folder is followed if it is a symlink (a planted link on
the stick refuses the write). A folder that is gone (stick pulled) or read-only is
skipped with a log line; the pass is never affected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.errors import FleetgateError
from reconciler.report.status import Status
from reconciler.store import write_atomic

STATUS_FOLDER = "fleetgate-status"


def stick_status_path(watch: Path, device: str) -> Path:
    return watch / STATUS_FOLDER / f"{device}.json"


class StickStatus:
    """The watch folders a bundle came from, and the status written back to them."""

    def __init__(self, device: str, log: Any) -> None:
        self.device = device
        self._log = log
        self.folders: set[Path] = set()

    def note(self, folder: Path) -> None:
        """A bundle was imported (or refused) from ``folder``: report back to it."""
        self.folders.add(folder)

    def publish(self, status: Status) -> None:
        if not self.folders:
            return
        data = (json.dumps(status.to_json(), indent=2, sort_keys=True) + "\n").encode()
        for folder in sorted(self.folders):
            if not folder.is_dir():
                continue  # the stick was pulled: write again when it is back
            try:
                write_atomic(stick_status_path(folder, self.device), data, root=folder)
            except (OSError, FleetgateError) as e:
                self._log.warning("status.not_on_stick", folder=str(folder), error=str(e))
