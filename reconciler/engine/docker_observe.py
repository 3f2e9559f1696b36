"""Reading the Docker engine: observe a device's objects, inspect, follow events.

The read half of the Docker adapter (:mod:`reconciler.engine.docker` acts and holds the
connection); the JSON → snapshot translation is :mod:`reconciler.engine.docker_listing`.
Also the shared translation of docker exceptions into one-line, credential-free
:class:`~reconciler.errors.EngineError` reasons.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import docker
import docker.errors
import requests.exceptions

from reconciler.engine.docker_listing import assemble, observed_container
from reconciler.engine.docker_listing import managed_by as managed_by  # noqa: PLC0414  # re-exported for engine/docker.py
from reconciler.errors import EngineError
from reconciler.model import (
    LABEL_DEVICE,
    LABEL_MANAGED,
    LABEL_SERVICE,
    LABEL_STACK,
    ObservedContainer,
    ObservedState,
)
from reconciler.redaction import redact_urls

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
    return assemble(device, (listed, networks, volumes, images), inspect_one, brief=brief)


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
