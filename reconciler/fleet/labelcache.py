"""The labels of device files already read, by content digest, in the user's cache.

Parsing 10,000 device files with the hardened YAML loader took about a second of CPU per
``fleet status``, for files that rarely change. libyaml's plain ``CSafeLoader`` would only
halve that, and it reads YAML 1.1 (``site: no`` becomes ``False``) and keeps duplicate
keys, so its labels could differ from what ``validate`` sees. This cache keeps exactly the
hardened loader's result instead, under a digest of the file's bytes: an unchanged file
costs one hash and one lookup, a changed or new one is parsed as before. Files with a
problem are never cached (they are parsed again and reported with their ``file:line``).

The cache is a convenience: a missing, unreadable, corrupt or foreign file is ignored,
and failing to write it changes nothing but the next run's speed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler import __version__

FORMAT = f"fleet-labels/1 fleetgate/{__version__}"  # another loader version: start afresh
MAX_ENTRIES = 100_000  # several fleets may share one cache; beyond that the oldest go
MAX_BYTES = 64 * 1024 * 1024


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def cache_file() -> Path:
    """``$XDG_CACHE_HOME/fleetgate/fleet-labels.json`` (else under ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fleetgate" / "fleet-labels.json"


def labels_of(value: object) -> dict[str, str] | None:
    """A cache entry's labels (a copy), or ``None`` when it is not ``str -> str``."""
    if not isinstance(value, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return None
    return dict(value)


def load(path: Path) -> dict[str, Any]:
    """``{digest: labels}`` from ``path``; empty when it is missing or not a cache. An
    entry is checked when used (:func:`labels_of`), not all 10,000 on every load."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
        document = json.loads(raw) if len(raw) <= MAX_BYTES else None
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return {}
    entries = document.get("labels")
    return entries if isinstance(entries, dict) else {}


def save(path: Path, fresh: Mapping[str, Mapping[str, str]], old: Mapping[str, Any]) -> None:
    """Write ``fresh`` (this run's files) and as many ``old`` entries as fit, atomically
    (a temporary file renamed over the cache); any failure leaves the cache as it was."""
    entries = dict(fresh)
    for key, value in old.items():
        if len(entries) >= MAX_ENTRIES:
            break
        entries.setdefault(key, value)
    text = json.dumps({"format": FORMAT, "labels": entries}, separators=(",", ":"))
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".fleet-labels-", dir=path.parent)
        temporary = Path(name)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            temporary.replace(path)
        finally:
            temporary.unlink(missing_ok=True)
