"""Image references in the plan (pure): which images are here, and which to pull ahead.

:func:`image_present` matches a wanted reference against the observed local images the
way the engine lists them (``busybox`` is ``docker.io/library/busybox:latest``).
:func:`pull_ahead` is the *pull-ahead plan*: only ``pull`` steps, for the images a state
needs that are not here yet. It never stops, removes or creates anything, so it may run
while an update waits (a closed window, an application lock) and the window is then
spent switching, not downloading. :class:`Pulls` collects the ``pull`` steps of one
``plan()`` call (phase 1: every pull before anything stops).
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.model import DesiredState, ObservedImage, ObservedState, ServiceSpec
from reconciler.plan.steps import Plan, PullImage, Step


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


class Pulls:
    """The images one ``plan()`` call pulls, and which services need each (working memory).

    ``pulled``: images another service pulls in this plan (counted as present for a
    service under ``pull_policy: never``).
    """

    def __init__(self, observed: ObservedState, pulled: frozenset[str]) -> None:
        self._images = observed.images
        self._pulled = pulled
        self._wanted: dict[tuple[str, str | None], tuple[str, list[str]]] = {}

    def steps(self) -> list[Step]:
        """One ``pull`` per (image, platform), in the order first wanted, naming its users."""
        return [
            PullImage(image, platform, f"{why} for {', '.join(users)}")
            for (image, platform), (why, users) in self._wanted.items()
        ]

    def images(self) -> frozenset[str]:
        """The images pulled so far."""
        return frozenset(image for image, _ in self._wanted)

    def block(self, spec: ServiceSpec) -> str | None:
        """Why ``spec`` cannot be created for want of its image, or ``None``."""
        present = spec.image in self._pulled or image_present(spec.image, self._images)
        if spec.pull_policy == "never" and not present:
            return f"image {spec.image} is not present and pull_policy is never"
        return None

    def want(self, spec: ServiceSpec) -> None:
        """Pull ``spec``'s image when it is missing, or always under ``pull_policy: always``."""
        present = image_present(spec.image, self._images)
        if spec.pull_policy == "never" or (present and spec.pull_policy != "always"):
            return
        why = "pull_policy always" if present else "not present"
        entry = self._wanted.setdefault((spec.image, spec.platform), (why, []))
        entry[1].append(f"{spec.stack}/{spec.service}")
