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
- **Bundles** (``watch`` folders, :class:`WatchFolders`): a bundle imported this pass
  is opened exactly like a remote revision (``ref=<revision>``, no network).
  ``repo: bundle://offline`` is a device updated only from bundles: it never fetches,
  its desired revision is the last imported one (else the applied one).
- **Application locks** (:class:`LockFiles`): which stacks' ``updates.lock`` exist now,
  and since when each was first seen (kept on disk: a restart grants no extra time).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.agent.config import AgentConfig
from reconciler.agent.watchfolders import SHA, WatchFolders
from reconciler.errors import Finding, SourceError
from reconciler.lockfiles import clocks_path, load_clocks, locked_stacks
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.waves import Rollout, Wave, device_wave
from reconciler.model import rfc3339
from reconciler.record import DeviceRecord
from reconciler.report.status import FetchState
from reconciler.source import Checkout, is_url, open_source, prune_checkouts, remote_head
from reconciler.source.bundle import BUNDLE_REPO
from reconciler.source.bundle_images import ImageLoader
from reconciler.store import write_atomic


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
        if mark is not None and SHA.match(mark.revision):
            return mark.revision
    return None


class AgentSource:
    """The source of one agent: remote, fallbacks and watch folders (one thread only)."""

    def __init__(self, config: AgentConfig, log: Any, loader: ImageLoader | None = None) -> None:
        self.config = config
        self._log = log
        self.watch = WatchFolders(config, log, loader)
        self.stick = self.watch.stick
        self.checkout: Checkout | None = None  # the last accepted desired checkout
        self.fetch = FetchState()
        self.desired: str | None = None
        self._failed = True
        self._refused: tuple[str, str | None, SourceError] | None = None
        self._wave: tuple[str | None, tuple[Rollout, Wave | None, list[Finding]]] | None = None

    @property
    def bundle_only(self) -> bool:
        return self.config.repo == BUNDLE_REPO

    # -------------------------------------------------------------------- a pass

    def refresh(self, record: DeviceRecord, now: datetime) -> Refresh:
        """The checkout this pass reconciles; records the fetch state."""
        applied = None if record.last_applied is None else record.last_applied.revision
        recheck = self.watch.scan(applied, now)
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
                self.watch.refusal = None  # a new revision: an older refusal is history
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
            return Refresh(chosen, self.desired, self.watch.refusal, False, recheck, waiting)
        assert chosen is not None
        return Refresh(chosen, chosen.revision, self.watch.refusal, recheck_in=recheck)

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
        fresh = self.watch.take_fresh()
        if fresh is not None:  # a bundle just brought this revision
            return self._checked(fresh, forward)
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
        refused = self.watch.refusal
        return Refresh(self.checkout, desired, refused, fetch_failed=True, recheck_in=recheck)

    def _fallback(self, record: DeviceRecord) -> Checkout | None:
        """The last accepted checkout, else the applied revision from the local mirror."""
        if self.checkout is not None:
            return self.checkout
        return self._applied_checkout(record)

    def _applied_checkout(self, record: DeviceRecord) -> Checkout | None:
        """The applied revision from the local mirror (what runs stays; drift is repaired)."""
        applied = None if record.last_applied is None else record.last_applied.revision
        if applied is None or not SHA.match(applied):
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
        self.watch.take_fresh()  # it opens the last imported revision below anyway
        wanted = self.watch.imported or applied
        if wanted is None:
            folders = ", ".join(str(f) for f in self.config.watch) or "no watch folder"
            raise SourceError(f"no bundle imported yet: drop a signed bundle into {folders}")
        if self.checkout is not None and self.checkout.revision == wanted:
            return self.checkout
        forward = forward_from(record, self.config.allow_rewind)
        return self._checked(wanted, None if wanted == applied else forward)


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
