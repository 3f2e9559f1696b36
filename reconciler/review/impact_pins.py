"""What moving a wave's pin lands on the wave's devices (pure; DESIGN.md §6).

A commit that only changes ``waves/<wave>.yaml`` (a promotion, or the revert of one)
renders the same files at BASE and HEAD, yet every device of that wave changes what it
runs: it renders the fleet *as of the pinned commit*. :func:`pin_moves` finds the waves
whose pin differs between two revisions; :func:`pin_impact` compares, for the wave's
devices (membership at HEAD, as the agent reads it), the desired state at the old pin
with the one at the new pin, device by device, with the same field-level reasons as
:func:`reconciler.review.impact.compare_device`.

No pin at BASE means the wave had not started: its devices kept whatever they ran, so
the new pin's state is shown as ``added``. No pin at HEAD (the pin file was removed)
means they keep what they run: nothing is compared. Reading the pinned revisions is the
caller's (Git); here there is no clock and no Git.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from reconciler.errors import Finding
from reconciler.manifests.waves import Rollout
from reconciler.render.cache import RenderCache
from reconciler.render.device import DEFAULT_STATE_DIR
from reconciler.review.impact import DeviceImpact, compare_device
from reconciler.review.scope import Side, placement, render_in


@dataclass(frozen=True, slots=True)
class PinMove:
    """A wave whose pinned revision differs between BASE and HEAD (``None``: no pin)."""

    wave: str
    before: str | None
    after: str | None


@dataclass(frozen=True, slots=True)
class PinImpact:
    """What a pin move lands on the wave's devices."""

    move: PinMove
    members: tuple[str, ...]  # the wave's devices at HEAD, sorted
    devices: tuple[DeviceImpact, ...]  # the members whose desired state changes
    findings: tuple[Finding, ...] = ()  # the new pin's, for members (it was valid once)


def pin_moves(base: Rollout, head: Rollout) -> tuple[PinMove, ...]:
    """The waves (in HEAD's order, then waves only BASE declared) whose pin moved."""
    names = [w.name for w in head.waves]
    names += [w.name for w in base.waves if w.name not in names]
    moves: list[PinMove] = []
    for name in names:
        before = _pin(base, name)
        after = _pin(head, name)
        if before != after:
            moves.append(PinMove(name, before, after))
    return tuple(moves)


def _pin(rollout: Rollout, wave: str) -> str | None:
    pin = (rollout.pins or {}).get(wave)
    return None if pin is None else pin.revision


def pin_impact(
    move: PinMove,
    members: Iterable[str],
    old: Side | None,
    new: Side | None,
    *,
    now: datetime,
    state_dir: str = DEFAULT_STATE_DIR,
) -> PinImpact:
    """Each member's desired state at ``old`` (the fleet at the old pin) against ``new``.

    ``old`` is ``None`` when the wave had no pin (its devices start on the new one);
    ``new`` is ``None`` when the pin was removed (its devices keep what they run, so
    no device is listed).
    """
    wanted = tuple(sorted(set(members)))
    if new is None:
        return PinImpact(move, wanted, ())
    findings: set[Finding] = set(new.findings)
    impacts: list[DeviceImpact] = []
    old_cache, new_cache = RenderCache(), RenderCache()
    for device_id in wanted:
        before = None if old is None else render_in(old, device_id, state_dir, old_cache)[0]
        after, problems = render_in(new, device_id, state_dir, new_cache)
        findings.update(problems)
        sides = (new,) if old is None else (new, old)
        impact = compare_device(before, after, now, *placement(sides, device_id))
        if impact is not None:
            impacts.append(impact)
    ordered = tuple(sorted(findings, key=lambda f: (f.path, f.line or 0, f.message)))
    return PinImpact(move, wanted, tuple(impacts), ordered)
