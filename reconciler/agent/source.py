"""The agent's inputs from outside the engine: the fleet source and the application locks.

- **Remote** (a Git URL): a cheap ``ls-remote`` ("did the ref move?") decides whether
  to open a new revision; a moved ref is fetched into the mirror and checked there.
  A local repository path is re-read every pass (a few local git calls).
- **Security** (DESIGN.md §2 rule 8): every :func:`open_source` call carries
  ``allowed_signers`` (the commit must be signed by an allowed key) and, unless
  ``allowRewind``, ``forward_from``: the new revision must descend from the last
  revision the device attempted (else applied). Both are checked on the Git objects
  before anything is checked out, so a refused commit never reaches the manifest
  parser. A refusal is not a source outage: the fetch worked, the revision is
  *rejected*; the pass keeps the applied revision (drift repair only) and the status
  says why. A refused head is remembered, so the same head is not fetched and checked
  again every poll.
- **Fallback**: when the source fails, the pass goes on with the last accepted
  checkout or, after a restart without network, with the applied revision from the
  local mirror (checked again, ``forward_from`` = that revision itself).
- **Bundles** (``watch`` folders, e.g. a USB mount point): every pass (timer or file
  event) lists ``*.fgb`` / ``*.bundle`` files; a file untouched for
  :data:`BUNDLE_SETTLE` seconds (not being copied any more), that passes the bundle
  limits (:func:`scan_bundle`: size by ``stat``, a few tar headers; checked before it is
  hashed, so a hostile file costs a few small reads) and whose SHA-256 was never seen
  is imported with :func:`import_bundle` into the mirror of ``repo`` and its revision
  is then opened exactly like a remote one (``ref=<revision>``, no network). A refused
  bundle changes nothing; its reason stays in the status until a later import works or
  the desired revision changes. Seen digests and the last imported revision are kept in
  ``{state}/devices/{device}/bundles.json``, so no file is imported twice, even across
  restarts. ``repo: bundle://offline`` is a device updated only from bundles: it never
  fetches, its desired revision is the last imported one (else the applied one). A
  bundle's images (those for this device) are verified and loaded into the engine
  before its revision is recorded; the status then goes back onto the stick
  (:mod:`reconciler.agent.stick`).
- **Application locks** (:class:`LockFiles`): which stacks' ``updates.lock`` exist now,
  and since when each was first seen (kept on disk: a restart grants no extra time).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.agent.config import AgentConfig
from reconciler.agent.stick import StickStatus
from reconciler.errors import Finding, SourceError
from reconciler.lockfiles import clocks_path, load_clocks, locked_stacks
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.waves import Rollout, Wave, device_wave
from reconciler.model import rfc3339
from reconciler.record import DeviceRecord
from reconciler.report.status import FetchState
from reconciler.source import Checkout, is_url, open_source, prune_checkouts, remote_head
from reconciler.source.bundle import BUNDLE_REPO, import_bundle
from reconciler.source.bundle_images import ImageLoader
from reconciler.source.bundletar import scan_bundle
from reconciler.store import write_atomic

BUNDLE_SUFFIXES = (".fgb", ".bundle")
BUNDLE_SETTLE = 1.0
"""Seconds a bundle file must be unchanged before it is imported (a copy in progress)."""
MAX_SEEN = 200
"""Bundle digests remembered (oldest forgotten first)."""

_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True, slots=True)
class Refresh:
    """What the source stage hands a pass.

    ``checkout``: the tree to reconcile (``None``: nothing usable). ``desired``: the
    revision the source asks for, also when it is refused. ``refused``: why ``desired``
    (or a bundle) is not applied. ``fetch_failed``: the source could not be read.
    ``recheck_in``: seconds after which a bundle still being copied should be looked at.
    """

    checkout: Checkout | None
    desired: str | None
    refused: str | None = None
    fetch_failed: bool = False
    recheck_in: float | None = None
    waiting: str | None = None  # why the device keeps what it runs (its wave has not started)


def is_refusal(error: SourceError) -> bool:
    """A verdict on a revision (signature, anti-rollback), not an unreachable source.

    The error class says so (``next_step == "stall"``: ``SignatureError``,
    ``RewindRefused``); every other :class:`SourceError` means "try again later".
    """
    return error.next_step == "stall"


def forward_from(record: DeviceRecord, allow_rewind: bool) -> str | None:
    """The revision a new one must descend from: the last attempted, else the applied one.

    The attempted revision is the newest the device moved toward (a failed update is
    attempted, then rolled back); a rollback that the repository wants is a forward
    ``git revert`` commit. ``None`` with ``allowRewind`` or before the first update.
    """
    if allow_rewind:
        return None
    for mark in (record.last_attempted, record.last_applied):
        if mark is not None and _SHA.match(mark.revision):
            return mark.revision
    return None


class AgentSource:
    """The source of one agent: remote, fallbacks and watch folders (one thread only)."""

    def __init__(self, config: AgentConfig, log: Any, loader: ImageLoader | None = None) -> None:
        self.config = config
        self._log = log
        self._loader = loader  # the engine: a bundle's images are loaded through it
        self.stick = StickStatus(config.device, log)
        self.checkout: Checkout | None = None  # the last accepted desired checkout
        self.fetch = FetchState()
        self.desired: str | None = None
        self._failed = True
        self._refused: tuple[str, str | None, SourceError] | None = None
        self._bundle_refusal: str | None = None
        self._fresh_import: str | None = None
        self._digests: dict[tuple[str, int, int], str] = {}
        self._seen, self._imported = self._load_bundles()
        self._wave: tuple[str | None, tuple[Rollout, Wave | None, list[Finding]]] | None = None

    @property
    def bundle_only(self) -> bool:
        return self.config.repo == BUNDLE_REPO

    # -------------------------------------------------------------------- a pass

    def refresh(self, record: DeviceRecord, now: datetime) -> Refresh:
        """The checkout this pass reconciles; records the fetch state."""
        applied = None if record.last_applied is None else record.last_applied.revision
        recheck = self._watch(applied, now)
        try:
            checkout = self._bundle_checkout(record) if self.bundle_only else self._remote(record)
        except SourceError as e:
            if not is_refusal(e):
                return self._unreachable(e, record, now, recheck)
            self._log.warning("source.refused", error=str(e))
            if not self.bundle_only:
                self.fetch = self.fetch.fetched(now)
                self._failed = False
            self.checkout = self._applied_checkout(record)
            refused = self._refused[0] if self._refused else None
            self.desired = refused or self.desired
            return Refresh(self.checkout, self.desired, str(e), recheck_in=recheck)
        if self.checkout is None or checkout.revision != self.checkout.revision:
            self._log.info("source.fetched", revision=checkout.revision, dirty=checkout.dirty)
            if self.desired is not None and checkout.revision != self.desired:
                self._bundle_refusal = None  # a new revision: an older refusal is history
        self._failed = False
        # A bundle-only device never fetches: "no bundle yet" is its only source error.
        self.fetch = FetchState() if self.bundle_only else self.fetch.fetched(now)
        self.checkout = checkout
        self.desired = checkout.revision
        try:
            chosen, waiting = self._wave_checkout(checkout, record)
        except SourceError as e:
            self._log.warning("source.refused", error=str(e), wave_pin=True)
            kept = self._applied_checkout(record)
            return Refresh(kept, self.desired, str(e), recheck_in=recheck)
        if waiting is not None:
            return Refresh(chosen, self.desired, self._bundle_refusal, False, recheck, waiting)
        assert chosen is not None
        return Refresh(chosen, chosen.revision, self._bundle_refusal, recheck_in=recheck)

    def _wave_checkout(
        self, head: Checkout, record: DeviceRecord
    ) -> tuple[Checkout | None, str | None]:
        """The checkout of this device's rollout wave (DESIGN.md §6), or what it runs and why.

        Membership and pins are read from the head. The first wave (or a fleet without
        ``rollout``) follows the head. A later wave runs its pin: the pin's commit is opened
        with the same signature check as any commit, and the head must descend from it
        (checked by opening the head with ``forward_from=pin``). The device's own
        anti-rollback guard is not applied to the pin: moving a pin back (the rollback of a
        promotion) is authorized by the head that says so. A wave without a pin, a device in
        no wave or an invalid rollout: the device keeps what it runs, and says why.
        """
        key = head.revision
        if self._wave is not None and self._wave[0] == key:
            rollout, wave, findings = self._wave[1]
        else:
            rollout, wave, findings = device_wave(RepoTree(head.root), self.config.device)
            self._wave = (key, (rollout, wave, findings))
        if not rollout.declared:
            return head, None
        applied = None if record.last_applied is None else record.last_applied.revision
        kept = f"; running {applied} is kept" if applied else "; nothing runs yet"
        if findings:
            return self._applied_checkout(record), f"rollout is invalid: {findings[0]}{kept}"
        if wave is None:
            why = f"device {self.config.device} is in no rollout wave{kept}"
            return self._applied_checkout(record), why
        if rollout.index(wave.name) == 0:
            return head, None
        pin = rollout.pin(wave.name)
        if pin is None:
            why = f"wave {wave.name} not started (no waves/{wave.name}.yaml){kept}"
            return self._applied_checkout(record), why
        if pin == head.revision:
            return head, None
        pinned = self._checked(pin, None)
        self._open(head.revision, pin)  # RewindRefused unless the head descends from the pin
        return pinned, None

    def prune(self, keep: set[str]) -> None:
        """Remove checkouts of every revision but ``keep`` (the caller's applied / good)."""
        removed = prune_checkouts(self.config.cache_dir, keep)
        if removed:
            self._log.info("source.pruned", checkouts=len(removed))

    # ------------------------------------------------------------------- remote

    def _open(self, ref: str | None, forward: str | None) -> Checkout:
        cfg = self.config
        return open_source(
            cfg.repo,
            cfg.cache_dir,
            ref,
            cfg.source_timeout,
            allowed_signers=cfg.allowed_signers,
            forward_from=forward,
        )

    def _remote(self, record: DeviceRecord) -> Checkout:
        cfg = self.config
        forward = forward_from(record, cfg.allow_rewind)
        if self._fresh_import is not None:  # a bundle just brought this revision
            revision, self._fresh_import = self._fresh_import, None
            return self._checked(revision, forward)
        if not is_url(cfg.repo):
            return self._open(cfg.ref, forward)
        head = remote_head(cfg.repo, cfg.ref, cfg.source_timeout)
        current = self.checkout
        if current is not None and not self._failed and head == current.revision:
            return current
        return self._checked(head, forward)

    def _checked(self, revision: str, forward: str | None) -> Checkout:
        """Open ``revision`` (security checks included); a refusal is remembered."""
        refused = self._refused
        if refused is not None and refused[:2] == (revision, forward):
            raise refused[2]
        try:
            checkout = self._open(revision, forward)
        except SourceError as e:
            if is_refusal(e):
                self._refused = (revision, forward, e)
            raise
        self._refused = None
        return checkout

    def _unreachable(
        self, error: SourceError, record: DeviceRecord, now: datetime, recheck: float | None
    ) -> Refresh:
        self._failed = True
        self.fetch = self.fetch.failed(str(error), now)
        self._log.warning("source.unreachable", error=str(error))
        self.checkout = self._fallback(record)
        desired = self.desired or (None if self.checkout is None else self.checkout.revision)
        # A refused bundle stays visible also while nothing can be read (a bundle-only
        # device whose first bundle was refused): the technician at the stick sees why.
        refused = self._bundle_refusal
        return Refresh(self.checkout, desired, refused, fetch_failed=True, recheck_in=recheck)

    def _fallback(self, record: DeviceRecord) -> Checkout | None:
        """The last accepted checkout, else the applied revision from the local mirror."""
        if self.checkout is not None:
            return self.checkout
        return self._applied_checkout(record)

    def _applied_checkout(self, record: DeviceRecord) -> Checkout | None:
        """The applied revision from the local mirror (what runs stays; drift is repaired)."""
        applied = None if record.last_applied is None else record.last_applied.revision
        if applied is None or not _SHA.match(applied):
            return None
        if self.checkout is not None and self.checkout.revision == applied:
            return self.checkout
        forward = None if self.config.allow_rewind else applied
        try:
            return self._open(applied, forward)
        except SourceError as e:
            self._log.warning("source.no_local_copy", revision=applied, error=str(e))
            return None

    def _bundle_checkout(self, record: DeviceRecord) -> Checkout:
        """Bundle-only device: the last imported revision, else the applied one."""
        applied = None if record.last_applied is None else record.last_applied.revision
        self._fresh_import = None
        wanted = self._imported or applied
        if wanted is None:
            folders = ", ".join(str(f) for f in self.config.watch) or "no watch folder"
            raise SourceError(f"no bundle imported yet: drop a signed bundle into {folders}")
        if self.checkout is not None and self.checkout.revision == wanted:
            return self.checkout
        forward = forward_from(record, self.config.allow_rewind)
        return self._checked(wanted, None if wanted == applied else forward)

    # ------------------------------------------------------------- watch folders

    def _watch(self, applied: str | None, now: datetime) -> float | None:
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
        self._bundle_refusal = None
        self._imported = result.revision
        self._fresh_import = result.revision
        self._log.info(
            "bundle.imported", file=str(path), revision=result.revision, signer=result.signer
        )
        self._remember(digest, path, now, f"imported {result.revision}")

    def _refuse(self, path: Path, key: str, now: datetime, error: SourceError) -> None:
        """Record a refused bundle (its message already names the file) in status and log."""
        self._bundle_refusal = str(error)
        self._log.warning("bundle.refused", file=str(path), reason=str(error))
        self._remember(key, path, now, f"refused: {error}")

    def _remember(self, digest: str, path: Path, now: datetime, result: str) -> None:
        self._seen[digest] = {"file": str(path), "at": rfc3339(now), "result": result}
        while len(self._seen) > MAX_SEEN:
            del self._seen[next(iter(self._seen))]
        data = {"imported": self._imported, "seen": self._seen}
        try:
            write_atomic(self._bundles_path, json.dumps(data, indent=1).encode())
        except OSError as e:
            self._log.warning("bundle.unrecorded", error=str(e))

    @property
    def _bundles_path(self) -> Path:
        return self.config.device_dir / "bundles.json"

    def _load_bundles(self) -> tuple[dict[str, dict[str, str]], str | None]:
        try:
            data = json.loads(self._bundles_path.read_bytes())
            seen = {str(k): {str(a): str(b) for a, b in v.items()} for k, v in data["seen"].items()}
            imported = data.get("imported")
            return seen, imported if isinstance(imported, str) and _SHA.match(imported) else None
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}, None


class LockFiles:
    """The ``updates.lock`` files under ``{state}/locks/{device}/<stack>/`` and their clocks."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._path = clocks_path(config.state_dir, config.device)
        self.first_seen: dict[str, datetime] = load_clocks(self._path)

    def locked(self) -> frozenset[str]:
        """Stacks whose application holds ``updates.lock`` now (observed, as plan/apply do)."""
        return locked_stacks(self.config.lock_root)

    def keep_first_seen(self, clocks: Mapping[str, datetime]) -> None:
        """Persist the deferral clocks so a restart does not grant a lock more time."""
        if dict(clocks) == self.first_seen:
            return
        self.first_seen = dict(clocks)
        data = {stack: rfc3339(at) for stack, at in sorted(clocks.items())}
        write_atomic(self._path, json.dumps(data).encode())
