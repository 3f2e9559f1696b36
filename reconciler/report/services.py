"""The services part of a status: one entry per managed container, with its image digest."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.model import ObservedContainer, ObservedState


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    stack: str
    service: str
    container: str
    image: str
    image_digest: str
    state: str
    health: str | None
    restart_count: int
    config_hash: str


def services_of(observed: ObservedState) -> tuple[ServiceStatus, ...]:
    """One entry per managed container, with the repo digest of the image it runs."""
    digests = {image.id: image.digests for image in observed.images}
    return tuple(
        ServiceStatus(
            stack=c.stack,
            service=c.service,
            container=c.name,
            image=c.image,
            image_digest=_digest(c, digests.get(c.image_id, ())),
            state=c.state,
            health=c.health,
            restart_count=c.restart_count,
            config_hash=c.config_hash,
        )
        for c in observed.containers
    )


def _digest(container: ObservedContainer, digests: tuple[str, ...]) -> str:
    """The ``repo@sha256:...`` of the image, preferring the repository it was pulled as."""
    ref = container.image
    if "@sha256:" in ref:
        return ref
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    repo = ref[:colon] if colon > slash else ref
    for digest in digests:
        if digest.partition("@")[0] == repo:
            return digest
    return digests[0] if digests else ""
