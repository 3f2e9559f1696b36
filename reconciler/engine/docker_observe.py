"""Reading the Docker engine: observe a device's objects, inspect, follow events.

The read half of the Docker adapter (:mod:`reconciler.engine.docker` acts and holds the
connection). Also the shared translation of docker exceptions into one-line,
credential-free :class:`~reconciler.errors.EngineError` reasons.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import docker
import docker.errors
import requests.exceptions

from reconciler.engine import spec as engine_spec
from reconciler.errors import EngineError
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
from reconciler.redaction import redact_urls

_STATES: frozenset[str] = frozenset(
    ("created", "running", "restarting", "paused", "exited", "dead", "removing")
)
_HEALTH = frozenset(("starting", "healthy", "unhealthy"))
DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """A single-line, credential-free reason for an engine error."""
    if isinstance(error, docker.errors.APIError):
        text = str(error.explanation or error)
    else:
        text = str(error)
    text = redact_urls(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def unreachable(error: BaseException) -> str:
    """The short cause of a failed connection (refused, no socket, timeout, ...)."""
    text = str(error)
    for cause in ("Connection refused", "No such file or directory", "Permission denied"):
        if cause in text:
            return cause.lower()
    if "timed out" in text.lower():
        return "timed out"
    return one_line(error, limit=120)


def fail(action: str, error: BaseException) -> NoReturn:
    """Raise the one-line ``EngineError`` for a failed engine call."""
    raise EngineError(f"docker: {action} failed: {one_line(error)}") from error


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


CONTAINER_EVENTS = ("die", "destroy", "stop")
"""Container events of managed containers that may mean drift (see :meth:`DockerEngine.events`)."""


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    """One engine event about a managed container (``action``: die, destroy or stop)."""

    action: str
    container_id: str
    name: str
    stack: str
    service: str
    at: float  # seconds since the epoch (engine clock)


def observe(
    api: docker.APIClient,
    device: str,
    inspect: Callable[[str], ObservedContainer | None] | None = None,
    *,
    brief: bool = False,
) -> ObservedState:
    """One list call per object kind; inspect (``inspect``, default :func:`inspect_container`)
    this device's containers: every one, or with ``brief`` only those the list cannot
    describe (:func:`listed_container`)."""
    inspect_one = inspect or (lambda container_id: inspect_container(api, container_id))
    try:
        listed = api.containers(all=True)
        networks = api.networks()
        volumes = api.volumes(
            filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_DEVICE}={device}"]}
        )
        images = api.images()
    except DOCKER_ERRORS as e:
        fail("listing objects", e)
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


def inspect_container(api: docker.APIClient, container_id: str) -> ObservedContainer | None:
    """Fresh state of one container; ``None`` when it does not exist (any more)."""
    try:
        info = api.inspect_container(container_id)
    except docker.errors.NotFound:
        return None
    except DOCKER_ERRORS as e:
        fail(f"inspecting container {container_id[:12]}", e)
    return observed_container(info)


def events(api: docker.APIClient, device: str, stop: threading.Event) -> Iterator[ContainerEvent]:
    """Die / destroy / stop events of ``device``'s managed containers, as they happen.

    Subscribes before returning (events from then on are not missed); iterating
    blocks until an event arrives and ends when ``stop`` is set (the stream is
    closed from a watcher thread) or the engine closes the stream. Raises
    ``EngineError`` when the engine cannot be reached. Use a separate engine
    instance for this: the stream holds its connection for as long as it runs.
    """
    filters = {
        "type": ["container"],
        "event": list(CONTAINER_EVENTS),
        "label": [f"{LABEL_MANAGED}=true", f"{LABEL_DEVICE}={device}"],
    }
    try:
        stream = api.events(filters=filters, decode=True)
    except DOCKER_ERRORS as e:
        fail("subscribing to events", e)
    return _read_events(stream, stop)


def _read_events(stream: Any, stop: threading.Event) -> Iterator[ContainerEvent]:
    """Translate a docker event stream; close it when ``stop`` is set or it ends."""
    ended = threading.Event()

    def close_on_stop() -> None:
        while not stop.wait(5.0):
            if ended.is_set():
                return
        stream.close()

    threading.Thread(target=close_on_stop, name="docker-events-stop", daemon=True).start()
    try:
        for raw in stream:
            if stop.is_set():
                return
            actor = raw.get("Actor") or {}
            attributes: Mapping[str, str] = actor.get("Attributes") or {}
            yield ContainerEvent(
                action=str(raw.get("Action") or raw.get("status") or ""),
                container_id=str(actor.get("ID") or raw.get("id") or ""),
                name=str(attributes.get("name", "")),
                stack=str(attributes.get(LABEL_STACK, "")),
                service=str(attributes.get(LABEL_SERVICE, "")),
                at=float(raw.get("timeNano") or 0) / 1e9 or float(raw.get("time") or 0),
            )
    except (*DOCKER_ERRORS, AttributeError, ValueError, OSError) as e:
        # AttributeError / OSError: the stream was closed under the reader.
        if not stop.is_set():
            fail("reading events", e)
    finally:
        ended.set()
        stream.close()
