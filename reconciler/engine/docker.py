"""The Docker engine adapter: the only module that imports ``docker``.

:class:`DockerEngine` implements :class:`reconciler.engine.port.Runtime` on the Engine
API (low-level ``docker.APIClient``). It executes; it decides nothing. Every docker
exception is translated here into :mod:`reconciler.errors` (one line, never a
credential): ``ImageUnavailable`` for pulls, ``NameConflict`` when a name is held by
an object fleetgate does not own, ``EngineError`` for everything else.

Ownership: only objects labelled ``io.fleetgate.managed=true`` are ever changed or
removed; ``remove_*`` refuse anything else even if a caller asks.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import docker
import docker.errors
import requests.exceptions

from reconciler import statedir
from reconciler.engine import spec as engine_spec
from reconciler.engine.port import ProgressCallback, Runtime
from reconciler.errors import EngineError, ImageUnavailable, NameConflict
from reconciler.model import (
    LABEL_CONFIG_HASH,
    LABEL_DEVICE,
    LABEL_FIELD_HASHES,
    LABEL_MANAGED,
    LABEL_REVISION,
    LABEL_SERVICE,
    LABEL_STACK,
    ContainerState,
    NetworkSpec,
    ObservedContainer,
    ObservedImage,
    ObservedNetwork,
    ObservedState,
    ObservedVolume,
    ServiceSpec,
    VolumeSpec,
)
from reconciler.redaction import redact_urls

PROGRESS_INTERVAL = 2.0
"""Seconds between coalesced ``pull.progress`` events (layer status changes always report)."""

_STATES: frozenset[str] = frozenset(
    ("created", "running", "restarting", "paused", "exited", "dead", "removing")
)
_HEALTH = frozenset(("starting", "healthy", "unhealthy"))
_DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """A single-line, credential-free reason for an engine error."""
    if isinstance(error, docker.errors.APIError):
        text = str(error.explanation or error)
    else:
        text = str(error)
    text = redact_urls(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


_DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def _unreachable(error: BaseException) -> str:
    """The short cause of a failed connection (refused, no socket, timeout, ...)."""
    text = str(error)
    for cause in ("Connection refused", "No such file or directory", "Permission denied"):
        if cause in text:
            return cause.lower()
    if "timed out" in text.lower():
        return "timed out"
    return one_line(error, limit=120)


def _fail(action: str, error: BaseException) -> NoReturn:
    raise EngineError(f"docker: {action} failed: {one_line(error)}") from error


def _managed_by(labels: Mapping[str, str] | None, device: str | None = None) -> bool:
    labels = labels or {}
    if labels.get(LABEL_MANAGED) != "true":
        return False
    return device is None or labels.get(LABEL_DEVICE) == device


def _observed_container(info: Mapping[str, Any]) -> ObservedContainer:
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


class DockerEngine:
    """Runtime on a Docker engine at ``docker_host`` (default: ``DOCKER_HOST`` or the socket).

    The connection is opened on first use, so constructing the engine never fails;
    an unreachable engine raises ``EngineError`` from the first call.
    """

    def __init__(self, docker_host: str | None = None, timeout: float = 60.0) -> None:
        self._docker_host = docker_host
        self._timeout = timeout
        self._client: docker.APIClient | None = None

    @property
    def api(self) -> docker.APIClient:
        if self._client is None:
            try:
                if self._docker_host:
                    self._client = docker.APIClient(
                        base_url=self._docker_host, version="auto", timeout=int(self._timeout)
                    )
                else:
                    self._client = docker.from_env(timeout=int(self._timeout)).api
            except _DOCKER_ERRORS as e:
                where = self._docker_host or os.environ.get("DOCKER_HOST") or _DEFAULT_SOCKET
                raise EngineError(
                    f"cannot reach the Docker engine at {where} ({_unreachable(e)}); "
                    "start dockerd or point --docker-host / DOCKER_HOST at it"
                ) from e
        return self._client

    def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # ------------------------------------------------------------------ observe

    def observe(self, device: str) -> ObservedState:
        """One list call per object kind; inspect only this device's containers."""
        api = self.api
        try:
            listed = api.containers(all=True)
            networks = api.networks()
            volumes = api.volumes(
                filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_DEVICE}={device}"]}
            )
            images = api.images()
        except _DOCKER_ERRORS as e:
            _fail("listing objects", e)
        containers: list[ObservedContainer] = []
        foreign: set[str] = set()
        for entry in listed:
            names = [str(n).lstrip("/") for n in entry.get("Names") or ()]
            if not _managed_by(entry.get("Labels"), device):
                foreign.update(names)
                continue
            observed = self.inspect_container(str(entry["Id"]))
            if observed is not None:  # vanished between list and inspect
                containers.append(observed)
        own_networks = [
            ObservedNetwork(
                str(n["Id"]), str(n["Name"]), (n.get("Labels") or {}).get(LABEL_STACK, "")
            )
            for n in networks
            if _managed_by(n.get("Labels"), device)
        ]
        foreign_networks = {
            str(n["Name"]) for n in networks if not _managed_by(n.get("Labels"), device)
        }
        own_volumes = [
            ObservedVolume(str(v["Name"]), (v.get("Labels") or {}).get(LABEL_STACK, ""))
            for v in (volumes or {}).get("Volumes") or ()
            if _managed_by(v.get("Labels"), device)
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

    def inspect_container(self, container_id: str) -> ObservedContainer | None:
        """Fresh state of one container; ``None`` when it does not exist (any more)."""
        try:
            info = self.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return None
        except _DOCKER_ERRORS as e:
            _fail(f"inspecting container {container_id[:12]}", e)
        return _observed_container(info)

    # --------------------------------------------------------------------- pull

    def pull(self, image: str, platform: str | None, progress: ProgressCallback | None) -> None:
        """Pull ``image`` (tag or ``repo@sha256:...``), reporting coalesced progress.

        ``progress`` receives ``pull.layer`` when a layer changes status, ``pull.progress``
        at most every :data:`PROGRESS_INTERVAL` seconds, and ``pull.done``.
        """
        repository, tag = docker.utils.parse_repository_tag(image)
        layers: dict[str, str] = {}
        last_report = time.monotonic()
        try:
            stream = self.api.pull(
                repository, tag=tag or "latest", stream=True, decode=True, platform=platform
            )
            for event in stream:
                if "error" in event:
                    raise ImageUnavailable(image, one_line(str(event["error"])))
                layer, status = str(event.get("id", "")), str(event.get("status", ""))
                if progress is None or not layer or not status:
                    continue
                if layers.get(layer) != status:
                    layers[layer] = status
                    progress("pull.layer", {"image": image, "layer": layer, "status": status})
                elif time.monotonic() - last_report >= PROGRESS_INTERVAL:
                    last_report = time.monotonic()
                    detail = event.get("progressDetail") or {}
                    progress(
                        "pull.progress",
                        {
                            "image": image,
                            "layer": layer,
                            "current": detail.get("current", 0),
                            "total": detail.get("total", 0),
                        },
                    )
            info = self.api.inspect_image(image)
        except docker.errors.APIError as e:
            raise ImageUnavailable(image, one_line(e)) from e
        except _DOCKER_ERRORS as e:
            raise ImageUnavailable(image, one_line(e)) from e
        if progress is not None:
            progress("pull.done", {"image": image, "id": str(info.get("Id", ""))})

    # ------------------------------------------------------- networks & volumes

    def _ownership(self, device: str, stack: str) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_DEVICE: device, LABEL_STACK: stack}

    def create_network(self, device: str, stack: str, spec: NetworkSpec) -> None:
        """Create a managed network; an existing one of this device is kept (idempotent)."""
        if spec.external:
            return
        labels = dict(spec.labels) | self._ownership(device, stack)
        try:
            existing = self.api.networks(names=[spec.name])
            for net in existing:
                if net.get("Name") == spec.name:
                    if _managed_by(net.get("Labels"), device):
                        return
                    raise NameConflict(
                        f"network {spec.name} exists and is not managed by fleetgate for {device}"
                    )
            self.api.create_network(
                spec.name,
                driver=spec.driver,
                internal=spec.internal,
                labels=labels,
                check_duplicate=True,
            )
        except docker.errors.APIError as e:
            if e.status_code == 409:
                raise NameConflict(f"network {spec.name}: {one_line(e)}") from e
            _fail(f"creating network {spec.name}", e)
        except _DOCKER_ERRORS as e:
            _fail(f"creating network {spec.name}", e)

    def remove_network(self, name: str) -> None:
        """Remove a managed network; a missing one is fine, a foreign one is refused."""
        try:
            info = self.api.inspect_network(name)
            if not _managed_by(info.get("Labels")):
                raise EngineError(f"refusing to remove network {name}: not managed by fleetgate")
            self.api.remove_network(info["Id"])
        except docker.errors.NotFound:
            return
        except _DOCKER_ERRORS as e:
            _fail(f"removing network {name}", e)

    def create_volume(self, device: str, stack: str, spec: VolumeSpec) -> None:
        """Create a managed volume; an existing one of this device is kept (idempotent)."""
        if spec.external:
            return
        try:
            try:
                info = self.api.inspect_volume(spec.name)
            except docker.errors.NotFound:
                info = None
            if info is not None:
                if _managed_by(info.get("Labels"), device):
                    return
                raise NameConflict(
                    f"volume {spec.name} exists and is not managed by fleetgate for {device}"
                )
            labels = dict(spec.labels) | self._ownership(device, stack)
            self.api.create_volume(spec.name, driver=spec.driver, labels=labels)
        except _DOCKER_ERRORS as e:
            _fail(f"creating volume {spec.name}", e)

    # --------------------------------------------------------------- containers

    def create_container(self, spec: ServiceSpec, revision: str, name: str | None = None) -> str:
        """Create (not start) the container and connect its extra networks; return its id.

        ``name`` (a temporary name while the old container runs) replaces
        ``spec.container_name``. A state-directory bind source with a symlink component
        is refused first (:class:`~reconciler.errors.PlantedLink`): the engine would
        follow it on the host.
        """
        statedir.check_binds(spec)
        body = engine_spec.container_config(spec, revision)
        cname = name or spec.container_name
        try:
            created = self.api.create_container_from_config(
                body, name=cname, platform=spec.platform
            )
        except docker.errors.APIError as e:
            if e.status_code == 409:
                raise NameConflict(
                    f"container name {cname} is taken by a container "
                    "fleetgate does not own; rename or remove it"
                ) from e
            if e.status_code == 404 and "image" in one_line(e).lower():
                raise ImageUnavailable(spec.image, "not present locally") from e
            _fail(f"creating container {cname}", e)
        except _DOCKER_ERRORS as e:
            _fail(f"creating container {cname}", e)
        container_id = str(created["Id"])
        try:
            for attachment in engine_spec.extra_network_attachments(spec):
                endpoint = engine_spec.endpoint_config(spec, attachment)
                self.api.connect_container_to_network(
                    container_id,
                    attachment.network,
                    ipv4_address=attachment.ipv4_address,
                    aliases=endpoint["Aliases"],
                )
        except _DOCKER_ERRORS as e:
            self._discard(container_id)
            _fail(f"connecting {cname} to its networks", e)
        return container_id

    def rename_container(self, container: str, new_name: str) -> None:
        """Rename a managed container (the swap of create-before-stop)."""
        try:
            info = self.api.inspect_container(container)
            if not _managed_by((info.get("Config") or {}).get("Labels")):
                raise EngineError(f"refusing to rename container {container}: not managed")
            self.api.rename(info["Id"], new_name)
        except docker.errors.APIError as e:
            if e.status_code == 409:
                raise NameConflict(f"container name {new_name} is taken") from e
            _fail(f"renaming container {container} to {new_name}", e)
        except _DOCKER_ERRORS as e:
            _fail(f"renaming container {container} to {new_name}", e)

    def _discard(self, container_id: str) -> None:
        """Best-effort removal of a half-created container (its creation already failed)."""
        with contextlib.suppress(*_DOCKER_ERRORS):
            self.api.remove_container(container_id, force=True, v=False)

    def start_container(self, container_id: str) -> None:
        """Start; refused (``PlantedLink``) when a state-dir bind source is now a link."""
        try:
            info = self.api.inspect_container(container_id)
            labels = (info.get("Config") or {}).get("Labels") or {}
            binds = (info.get("HostConfig") or {}).get("Binds") or []
            device, stack = labels.get(LABEL_DEVICE, ""), labels.get(LABEL_STACK, "")
            if device and stack:
                statedir.check_started(binds, device, stack, labels.get(LABEL_SERVICE, ""))
            self.api.start(container_id)
        except _DOCKER_ERRORS as e:
            _fail(f"starting container {container_id[:12]}", e)

    def stop_container(self, container_id: str, timeout: float | None) -> None:
        """Stop with ``timeout`` seconds of grace (``None``: the container's StopTimeout)."""
        try:
            self.api.stop(container_id, timeout=None if timeout is None else round(timeout))
        except docker.errors.NotFound:
            return
        except _DOCKER_ERRORS as e:
            _fail(f"stopping container {container_id[:12]}", e)

    def remove_container(self, container_id: str) -> None:
        """Remove a managed container, keeping every volume (``v=False``)."""
        try:
            info = self.api.inspect_container(container_id)
            if not _managed_by((info.get("Config") or {}).get("Labels")):
                raise EngineError(
                    f"refusing to remove container {container_id[:12]}: not managed by fleetgate"
                )
            self.api.remove_container(container_id, v=False, force=False)
        except docker.errors.NotFound:
            return
        except _DOCKER_ERRORS as e:
            _fail(f"removing container {container_id[:12]}", e)

    # ------------------------------------------------------------------- events

    def events(self, device: str, stop: threading.Event) -> Iterator[ContainerEvent]:
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
            stream = self.api.events(filters=filters, decode=True)
        except _DOCKER_ERRORS as e:
            _fail("subscribing to events", e)
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
    except (*_DOCKER_ERRORS, AttributeError, ValueError, OSError) as e:
        # AttributeError / OSError: the stream was closed under the reader.
        if not stop.is_set():
            _fail("reading events", e)
    finally:
        ended.set()
        stream.close()


if TYPE_CHECKING:  # mypy proves the adapter satisfies the port
    _runtime: Runtime = DockerEngine()
