"""Reading a wave's old and new pinned revisions for ``fleetgate impact`` (the Git side of
:mod:`reconciler.review.impact_pins`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from reconciler.errors import Finding, ManifestError, SourceError
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.waves import Rollout
from reconciler.review.impact_pins import PinImpact, PinMove, pin_impact
from reconciler.review.scope import Side, read_side
from reconciler.source import open_source


def pin_impact_at(  # noqa: PLR0917 (one call site, all positional)
    repo: str,
    cache_dir: Path,
    move: PinMove,
    waves: Mapping[str, str],
    rollouts: tuple[Rollout, Rollout],
    now: datetime,
    state_dir: str,
) -> PinImpact:
    """The fleet at the wave's old and new pinned revisions, compared for its devices."""

    notes: list[Finding] = []

    def side(revision: str | None, rollout: Rollout, at: str) -> Side | None:
        if revision is None:
            return None
        try:
            checkout = open_source(repo, cache_dir, ref=revision)
        except SourceError as e:
            pin = (rollout.pins or {})[move.wave]
            where = (pin.location.path, pin.location.line)
            problem = (
                f"wave {move.wave} is pinned to {revision} at {at}, which cannot be read ({e})"
            )
            if at == "BASE":  # the change may be the fix: show the new pin as a start
                notes.append(Finding(*where, f"{problem}; shown as not started"))
                return None
            message = f"{problem}; pin a commit of the branch (fleetgate validate checks it)"
            raise ManifestError([Finding(*where, message)]) from None
        return read_side(RepoTree(checkout.root), checkout.revision)

    members = [device for device, wave in waves.items() if wave == move.wave]
    old = side(move.before, rollouts[0], "BASE")
    new = side(move.after, rollouts[1], "HEAD")
    found = pin_impact(move, members, old, new, now=now, state_dir=state_dir)
    return replace(found, findings=(*notes, *found.findings))
