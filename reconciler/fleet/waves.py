"""Per-wave summary of the fleet view (pure): each wave's revision, how many devices run
it, and whether the next promotion's gate holds and why not (DESIGN.md §6, issue 11).

The gate is :func:`reconciler.decide.waves.gate` over the view's rows, exactly what
``fleetgate promote --dry-run`` decides, except that ``promote`` also credits a device
whose older applied revision renders the same state (Git is not read here). A first-wave
device that runs a pin-only commit after the candidate (``passed``: a promotion commit the
first wave took from the branch head) runs the candidate's state and counts as running it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reconciler.decide.waves import Evidence, wave_gate
from reconciler.fleet.view import FleetView
from reconciler.manifests.waves import Rollout
from reconciler.units import format_duration


def wave_summary(
    view: FleetView,
    rollout: Rollout,
    candidate_head: str | None,
    now: datetime,
    passed: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """One entry per declared wave, in order (``[]`` without ``rollout``).

    ``candidate_head`` is the first wave's release (the branch head passing over pin-only
    commits) and ``passed`` the pin-only commits passed over.
    """
    out: list[dict[str, Any]] = []
    for position, wave in enumerate(rollout.waves):
        revision = candidate_head if position == 0 else rollout.pin(wave.name)
        same = {revision} | (passed if position == 0 else set())
        rows = [r for r in view.devices if r.wave == wave.name]
        entry: dict[str, Any] = {
            "wave": wave.name,
            "revision": revision,
            "started": revision is not None,
            "devices": len(rows),
            "running": sum(1 for r in rows if revision is not None and r.applied in same),
            "soak": format_duration(wave.soak),
            "max_failed": wave.max_failed,
            "promotion": None,
        }
        if position > 0:
            previous = rollout.waves[position - 1].name
            candidate = candidate_head if position == 1 else rollout.pin(previous)
            evidence = [
                Evidence(
                    r.device,
                    r.status,
                    False if r.stale else r.online,
                    equivalent=position == 1 and r.applied in passed,
                )
                for r in view.devices
                if r.wave == previous
            ]
            verdict = wave_gate(rollout, position, candidate, evidence, now)
            soaked = [r.soaked for r in verdict.devices if not r.bad]
            left = max(0.0, wave.soak - min(soaked)) if soaked else wave.soak
            entry["promotion"] = {
                "candidate_revision": candidate,
                "already": candidate is not None and candidate == revision,
                "gate_met": verdict.met,
                "soak_left": format_duration(round(left)),
                "reasons": list(verdict.reasons),
            }
        out.append(entry)
    return out
