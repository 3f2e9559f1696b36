"""Which images ``fleetgate bundle create --images`` carries: render the chosen devices."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from reconciler.cli import selector_of
from reconciler.errors import ManifestError, UsageError
from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree
from reconciler.render.device import render_device
from reconciler.render.targeting import selector_matches
from reconciler.source import open_source
from reconciler.source.bundle_images import ARCH_PLATFORMS, Wanted, wanted_summary


def wanted_images(
    repo: Path, ref: str, devices: Sequence[str], selectors: Sequence[str]
) -> tuple[Wanted, ...]:
    """Every ``(image, platform)`` the chosen devices' desired states at ``ref`` need."""
    selector = selector_of(selectors)
    with tempfile.TemporaryDirectory(prefix="fleetgate-images-") as cache:
        checkout = open_source(str(repo), Path(cache), ref=ref)
        tree = RepoTree(checkout.root)
        fleet, _ = load_repository(tree, checkout.revision)
        unknown = [d for d in devices if d not in fleet.devices]
        if unknown:
            raise UsageError(f"--device {unknown[0]}: no such device in fleet.yaml at {ref}")
        chosen = [
            d
            for d in sorted(fleet.devices)
            if (not devices or d in devices) and selector_matches(selector, fleet.devices[d].labels)
        ]
        if not chosen:
            raise UsageError("--images: no device matches --device / --selector")
        wanted: dict[tuple[str, str | None], list[str]] = {}
        for device in chosen:
            try:
                state = render_device(fleet, tree, device).state
            except ManifestError as e:
                raise ManifestError(e.findings) from None
            platform = None if state.arch is None else ARCH_PLATFORMS[state.arch]
            for service in state.services:
                wanted.setdefault((service.image, platform), []).append(device)
    return wanted_summary({k: sorted(set(v)) for k, v in wanted.items()})
