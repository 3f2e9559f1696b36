"""A device's history: the commits that changed its rendered state ("what ran when", pure).

The walk itself (Git log, checkouts, rendering) is composed by ``fleetgate history``;
this module decides which commits need rendering and holds the result values.

A commit can change a device's desired state only through the device's own manifest,
``fleet.yaml``, a group, a stack folder or a file a stack reaches with ``..``. A
commit that changes nothing but *other* devices' manifests is skipped without
rendering, which keeps the walk fast on a fleet of thousands of devices where most
commits touch one device each. (A stack that mounts another device's manifest file as
a config would be missed; fleetgate's own repository layout never does that.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reconciler.review.impact import DeviceImpact


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One commit that changed the device's desired state, and how."""

    commit: str  # full 40-hex SHA
    parent: str | None  # first parent (what the branch pointed to before)
    author: str
    authored_at: str  # RFC 3339
    committed_at: str
    subject: str
    impact: DeviceImpact | None  # None: the device was invalid at this commit
    problem: str | None = None  # the first finding when invalid


def could_touch(paths: Iterable[str], device_id: str) -> bool:
    """Whether a commit changing ``paths`` can change ``device_id``'s desired state."""
    own = (f"devices/{device_id}.yaml", f"devices/{device_id}.yml")
    for path in paths:
        if path in own:
            return True
        folder, _, name = path.partition("/")
        if folder == "devices" and "/" not in name and name.rsplit(".", 1)[-1] in ("yaml", "yml"):
            continue  # another device's manifest
        return True
    return False
