"""Reading the Engine API's answers into an :class:`ObservedState` (no ``docker`` import).

Shared by the docker SDK reader (:mod:`reconciler.engine.docker_observe`) and the
socket reader of a no-change pass (:mod:`reconciler.engine.docker_socket`): both hand
over the raw JSON of ``GET /containers/json?all=1``, ``/networks``, ``/volumes``
(filtered to the device) and ``/images/json``, and an ``inspect`` for the containers
the list cannot describe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from reconciler.engine import spec as engine_spec
from reconciler.model import (
    LABEL_CONFIG_HASH,
    LABEL_DEVICE,
    LABEL_FIELD_HASHES,
    LABEL_MANAGED,
    LABEL_REVISION,
    LABEL_SERVICE,
    LABEL_STACK,
    ContainerState,
    ObservedContainer,
    ObservedImage,
    ObservedNetwork,
    ObservedState,
    ObservedVolume,
)

Listings = tuple[
    Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]], Any, Sequence[Mapping[str, Any]]
]
"""The four list answers: containers, networks, volumes (``{"Volumes": [...]}``), images."""

_STATES: frozenset[str] = frozenset(
    ("created", "running", "restarting", "paused", "exited", "dead", "removing")
)
_HEALTH = frozenset(("starting", "healthy", "unhealthy"))


def managed_by(labels: Mapping[str, str] | None, device: str | None = None) -> bool:
    """True when ``labels`` mark a fleetgate object (of ``device``, when given)."""
    labels = labels or {}
    if labels.get(LABEL_MANAGED) != "true":
        return False
    return device is None or labels.get(LABEL_DEVICE) == device


def observed_container(info: Mapping[str, Any]) -> ObservedContainer:
    """Convert one ``docker inspect`` result into an ObservedContainer."""
    config = info.get("Config") or {}
    labels: Mapping[str, str] = config.get("Labels") or {}
    state_info = info.get("State") or {}
    status = str(state_info.get("Status", "dead"))
    state: ContainerState = status if status in _STATES else "dead"  # type: ignore[assignment]  # checked against the closed set
    health_status = (state_info.get("Health") or {}).get("Status")
    health = health_status if health_status in _HEALTH else None
    exit_code = state_info.get("ExitCode") if state in ("exited", "dead", "restarting") else None
    return ObservedContainer(
        id=str(info["Id"]),
        name=str(info.get("Name", "")).lstrip("/"),
        stack=labels.get(LABEL_STACK, ""),
        service=labels.get(LABEL_SERVICE, ""),
        state=state,
        config_hash=labels.get(LABEL_CONFIG_HASH, ""),
        field_hashes=engine_spec.decode_field_hashes(labels.get(LABEL_FIELD_HASHES, "")),
        revision=labels.get(LABEL_REVISION, ""),
        image=str(config.get("Image", "")),
        image_id=str(info.get("Image", "")),
        health=health,
        restart_count=int(info.get("RestartCount") or 0),
        exit_code=None if exit_code is None else int(exit_code),
    )


_LISTED_HEALTH: dict[str, Literal["starting", "healthy", "unhealthy"]] = {
    "(healthy)": "healthy",
    "(unhealthy)": "unhealthy",
    "(health: starting)": "starting",
}


def listed_container(entry: Mapping[str, Any]) -> ObservedContainer | None:
    """The planner's view of one ``GET /containers/json`` entry, or ``None`` to inspect it.

    The list tells the id, name, state, labels (stack, service, config and field hashes,
    revision), image id and, for a running container, its health (the ``Status`` text
    ends in ``(healthy)``, ``(unhealthy)`` or ``(health: starting)``). It does not tell a
    restart count (left 0: planning never reads it; the health gate and the status use
    the full :func:`observe`) nor an exit code, and it shows the image *id* instead of the
    reference once that tag has moved to another image. So a container that is not
    running, or whose image shows as an id, is inspected.
    """
    status = str(entry.get("State") or "")
    image, image_id = str(entry.get("Image") or ""), str(entry.get("ImageID") or "")
    names = [str(n)[1:] for n in entry.get("Names") or () if str(n).count("/") == 1]
    if status != "running" or not image or image.startswith("sha256:") or len(names) != 1:
        return None
    labels: Mapping[str, str] = entry.get("Labels") or {}
    text = str(entry.get("Status") or "")
    health = next((h for mark, h in _LISTED_HEALTH.items() if text.endswith(mark)), None)
    return ObservedContainer(
        id=str(entry["Id"]),
        name=names[0],
        stack=labels.get(LABEL_STACK, ""),
        service=labels.get(LABEL_SERVICE, ""),
        state="running",
        config_hash=labels.get(LABEL_CONFIG_HASH, ""),
        field_hashes=engine_spec.decode_field_hashes(labels.get(LABEL_FIELD_HASHES, "")),
        revision=labels.get(LABEL_REVISION, ""),
        image=image,
        image_id=image_id,
        health=health,
    )


def assemble(
    device: str,
    listings: Listings,
    inspect_one: Callable[[str], ObservedContainer | None],
    *,
    brief: bool = False,
) -> ObservedState:
    """The snapshot of ``device`` from the four list answers; ``inspect_one`` each managed
    container (with ``brief``, only those :func:`listed_container` cannot describe)."""
    listed, networks, volumes, images = listings
    containers: list[ObservedContainer] = []
    foreign: set[str] = set()
    for entry in listed:
        names = [str(n).lstrip("/") for n in entry.get("Names") or ()]
        if not managed_by(entry.get("Labels"), device):
            foreign.update(names)
            continue
        observed = listed_container(entry) if brief else None
        if observed is None:
            observed = inspect_one(str(entry["Id"]))
        if observed is not None:  # vanished between list and inspect
            containers.append(observed)
    own_networks = [
        ObservedNetwork(str(n["Id"]), str(n["Name"]), (n.get("Labels") or {}).get(LABEL_STACK, ""))
        for n in networks
        if managed_by(n.get("Labels"), device)
    ]
    foreign_networks = {str(n["Name"]) for n in networks if not managed_by(n.get("Labels"), device)}
    own_volumes = [
        ObservedVolume(str(v["Name"]), (v.get("Labels") or {}).get(LABEL_STACK, ""))
        for v in (volumes or {}).get("Volumes") or ()
        if managed_by(v.get("Labels"), device)
    ]
    observed_images = [
        ObservedImage(
            id=str(i["Id"]),
            tags=tuple(sorted(t for t in i.get("RepoTags") or () if t != "<none>:<none>")),
            digests=tuple(sorted(d for d in i.get("RepoDigests") or () if "<none>" not in d)),
        )
        for i in images
    ]
    return ObservedState(
        device=device,
        containers=tuple(sorted(containers, key=lambda c: (c.stack, c.service, c.name))),
        networks=tuple(sorted(own_networks, key=lambda n: n.name)),
        volumes=tuple(sorted(own_volumes, key=lambda v: v.name)),
        images=tuple(sorted(observed_images, key=lambda i: i.id)),
        foreign_names=frozenset(foreign),
        foreign_networks=frozenset(foreign_networks),
    )
