"""Image references in the plan (pure): which images are here, and which to pull ahead.

:func:`image_present` matches a wanted reference against the observed local images the
way the engine lists them (``busybox`` is ``docker.io/library/busybox:latest``).
:func:`pull_ahead` is the *pull-ahead plan*: only ``pull`` steps, for the images a state
needs that are not here yet. It never stops, removes or creates anything, so it may run
while an update waits (a closed window, an application lock) and the window is then
spent switching, not downloading.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.model import DesiredState, ObservedImage, ObservedState
from reconciler.plan.steps import Plan, PullImage


def normalize_ref(ref: str) -> str:
    """An image reference as the engine lists it (``busybox`` is ``busybox:latest``)."""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
            break
    if "@" in ref:
        return ref
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else f"{ref}:latest"


def image_present(image: str, images: Iterable[ObservedImage]) -> bool:
    """Whether ``image`` (a tag or digest reference) is among the observed local images."""
    want = normalize_ref(image)
    return any(want == normalize_ref(ref) for img in images for ref in (*img.tags, *img.digests))


def pull_ahead(desired: DesiredState, observed: ObservedState, *, skip: Iterable[str] = ()) -> Plan:
    """``pull`` steps for every image of ``desired`` that is not present locally.

    One step per (image, platform), in stack and service order, naming the services
    that will use it. Images under ``pull_policy: never`` are never pulled; images in
    ``skip`` (pulled by another plan of the same pass) are left out.
    """
    skipped = {normalize_ref(ref) for ref in skip}
    users: dict[tuple[str, str | None], list[str]] = {}
    for spec in desired.services:
        if spec.pull_policy == "never" or normalize_ref(spec.image) in skipped:
            continue
        if image_present(spec.image, observed.images):
            continue
        users.setdefault((spec.image, spec.platform), []).append(f"{spec.stack}/{spec.service}")
    steps = tuple(
        PullImage(image, platform, f"pulled ahead for {', '.join(names)}")
        for (image, platform), names in users.items()
    )
    return Plan(steps=steps, device=desired.device, revision=desired.revision)
