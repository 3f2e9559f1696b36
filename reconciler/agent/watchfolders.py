"""The agent's watch folders (e.g. a USB mount point): bundle files found, checked and imported.

Every pass (timer or file event) lists ``*.fgb`` / ``*.bundle`` files; a file untouched
for :data:`BUNDLE_SETTLE` seconds (not being copied any more), that passes the bundle
limits (:func:`scan_bundle`: size by ``stat``, a few tar headers; checked before it is
hashed, so a hostile file costs a few small reads) and whose SHA-256 was never seen is
imported with :func:`import_bundle` into the mirror of ``repo``; the source
(:mod:`reconciler.agent.source`) then opens its revision exactly like a remote one
(``ref=<revision>``, no network). A refused bundle changes nothing; its reason stays in
the status until a later import works or the desired revision changes. Seen digests and
the last imported revision are kept in ``{state}/devices/{device}/bundles.json``, so no
file is imported twice, even across restarts. A bundle's images (those for this device)
are verified and loaded into the engine before its revision is recorded; the status then
goes back onto the stick (:mod:`reconciler.agent.stick`).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.agent.config import AgentConfig
from reconciler.agent.stick import StickStatus
from reconciler.errors import SourceError
from reconciler.model import rfc3339
from reconciler.source.bundle import import_bundle
from reconciler.source.bundle_images import ImageLoader
from reconciler.source.bundletar import scan_bundle
from reconciler.store import write_atomic

BUNDLE_SUFFIXES = (".fgb", ".bundle")
BUNDLE_SETTLE = 1.0
"""Seconds a bundle file must be unchanged before it is imported (a copy in progress)."""
MAX_SEEN = 200
"""Bundle digests remembered (oldest forgotten first)."""

SHA = re.compile(r"^[0-9a-f]{40}$")
"""A full commit id (what a record or ``bundles.json`` may name as a revision)."""


class WatchFolders:
    """The bundle files of the watch folders and what became of each (one thread only).

    ``imported``: the last imported revision (kept across restarts). ``fresh``: a revision
    imported since the source last looked (taken once with :meth:`take_fresh`).
    ``refusal``: why the last bundle was refused, until an import works or the source
    forgets it (a new desired revision).
    """

    def __init__(self, config: AgentConfig, log: Any, loader: ImageLoader | None) -> None:
        self.config = config
        self._log = log
        self._loader = loader  # the engine: a bundle's images are loaded through it
        self.stick = StickStatus(config.device, log)
        self.refusal: str | None = None
        self.fresh: str | None = None
        self._digests: dict[tuple[str, int, int], str] = {}
        self._seen, self.imported = self._load()

    def take_fresh(self) -> str | None:
        """The revision a bundle just brought (once), else ``None``."""
        fresh, self.fresh = self.fresh, None
        return fresh

    def scan(self, applied: str | None, now: datetime) -> float | None:
        """Import every new bundle file; the seconds until an unsettled one is ready."""
        recheck: float | None = None
        for path, mtime in self._bundle_files():
            age = time.time() - mtime
            if age < BUNDLE_SETTLE:
                wait = BUNDLE_SETTLE - age
                recheck = wait if recheck is None else min(recheck, wait)
                continue
            if not self._scanned(path, now):
                continue
            digest = self._digest(path)
            if digest is None or digest in self._seen:
                continue
            self._import(path, digest, applied, now)
        return recheck

    def _scanned(self, path: Path, now: datetime) -> bool:
        """Whether ``path`` passes the bundle limits (a few small reads, nothing written).

        Checked before the file is hashed, so an oversized or hostile file (huge, a tar of
        300,000 members) costs a ``stat`` and a few header reads, once: its refusal is
        remembered by path, size and modification time instead of a digest.
        """
        try:
            scan_bundle(path)
            return True
        except SourceError as e:
            try:
                info = path.stat()
                key = f"scan:{path}:{info.st_size}:{info.st_mtime_ns}"
            except OSError:
                return False
            if key not in self._seen:
                self._refuse(path, key, now, SourceError(f"bundle {ascii(path.name)[1:-1]}: {e}"))
            return False

    def _bundle_files(self) -> list[tuple[Path, float]]:
        found: list[tuple[Path, float]] = []
        for folder in self.config.watch:
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                if entry.suffix in BUNDLE_SUFFIXES and not entry.name.startswith("."):
                    try:
                        if entry.is_file():
                            found.append((entry, entry.stat().st_mtime))
                    except OSError:
                        continue
        return sorted(found, key=lambda item: (item[1], item[0].name))

    def _digest(self, path: Path) -> str | None:
        """SHA-256 of the file (cached by path, size and mtime); ``None`` when unreadable."""
        try:
            info = path.stat()
            key = (str(path), info.st_size, info.st_mtime_ns)
            if key not in self._digests:
                h = hashlib.sha256()
                with path.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                self._digests = {k: v for k, v in self._digests.items() if k[0] != key[0]}
                self._digests[key] = h.hexdigest()
            return self._digests[key]
        except OSError:
            return None

    def _import(self, path: Path, digest: str, applied: str | None, now: datetime) -> None:
        cfg = self.config
        assert cfg.allowed_signers is not None  # the configuration requires it with watch
        try:
            result = import_bundle(
                path, cfg.cache_dir, cfg.allowed_signers, now,
                repo=cfg.repo, applied=applied, loader=self._loader, device=cfg.device,
            )  # fmt: skip
        except SourceError as e:
            self._refuse(path, digest, now, e)
            self.stick.note(path.parent)
            return
        self.stick.note(path.parent)
        self.refusal = None
        self.imported = result.revision
        self.fresh = result.revision
        self._log.info(
            "bundle.imported", file=str(path), revision=result.revision, signer=result.signer
        )
        self._remember(digest, path, now, f"imported {result.revision}")

    def _refuse(self, path: Path, key: str, now: datetime, error: SourceError) -> None:
        """Record a refused bundle (its message already names the file) in status and log."""
        self.refusal = str(error)
        self._log.warning("bundle.refused", file=str(path), reason=str(error))
        self._remember(key, path, now, f"refused: {error}")

    def _remember(self, digest: str, path: Path, now: datetime, result: str) -> None:
        self._seen[digest] = {"file": str(path), "at": rfc3339(now), "result": result}
        while len(self._seen) > MAX_SEEN:
            del self._seen[next(iter(self._seen))]
        data = {"imported": self.imported, "seen": self._seen}
        try:
            write_atomic(self._path, json.dumps(data, indent=1).encode())
        except OSError as e:
            self._log.warning("bundle.unrecorded", error=str(e))

    @property
    def _path(self) -> Path:
        return self.config.device_dir / "bundles.json"

    def _load(self) -> tuple[dict[str, dict[str, str]], str | None]:
        try:
            data = json.loads(self._path.read_bytes())
            seen = {str(k): {str(a): str(b) for a, b in v.items()} for k, v in data["seen"].items()}
            imported = data.get("imported")
            return seen, imported if isinstance(imported, str) and SHA.match(imported) else None
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}, None
