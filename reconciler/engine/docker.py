"""The Docker engine adapter (acting half; reading is in :mod:`.docker_observe`).

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
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import docker
import docker.errors

from reconciler import statedir
from reconciler.engine import docker_observe
from reconciler.engine import spec as engine_spec
from reconciler.engine.docker_observe import (
    CONTAINER_EVENTS,
    DEFAULT_SOCKET,
    DOCKER_ERRORS,
    ContainerEvent,
    fail,
    managed_by,
    one_line,
    unreachable,
)
from reconciler.engine.port import ProgressCallback, Runtime
from reconciler.errors import EngineError, ImageUnavailable, NameConflict
from reconciler.model import (
    LABEL_DEVICE,
    LABEL_MANAGED,
    LABEL_SERVICE,
    LABEL_STACK,
    NetworkSpec,
    ObservedContainer,
    ObservedState,
    ServiceSpec,
    VolumeSpec,
)

__all__ = ["CONTAINER_EVENTS", "PROGRESS_INTERVAL", "ContainerEvent", "DockerEngine", "one_line"]

PROGRESS_INTERVAL = 2.0
"""Seconds between coalesced ``pull.progress`` events (layer status changes always report)."""


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
            except DOCKER_ERRORS as e:
                where = self._docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
                raise EngineError(
                    f"cannot reach the Docker engine at {where} ({unreachable(e)}); "
                    "start dockerd or point --docker-host / DOCKER_HOST at it"
                ) from e
        return self._client

    def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # ------------------------------------------------------------------ observe

    def observe(self, device: str, *, brief: bool = False) -> ObservedState:
        """One list call per object kind; inspect this device's containers (with
        ``brief``, only those the list cannot describe: see
        :func:`reconciler.engine.docker_observe.listed_container`)."""
        return docker_observe.observe(self.api, device, self.inspect_container, brief=brief)

    def inspect_container(self, container_id: str) -> ObservedContainer | None:
        """Fresh state of one container; ``None`` when it does not exist (any more)."""
        return docker_observe.inspect_container(self.api, container_id)

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
        except DOCKER_ERRORS as e:
            raise ImageUnavailable(image, one_line(e)) from e
        if progress is not None:
            progress("pull.done", {"image": image, "id": str(info.get("Id", ""))})

    # ------------------------------------------------------- networks & volumes

    def load_images(self, archive: Path, platform: str) -> None:
        try:
            version = self.api.version()
            engine = f"{version.get('Os', 'linux')}/{version.get('Arch', '')}"
            if platform.split("/")[:2] != engine.split("/"):
                raise EngineError(
                    f"wrong architecture: the images are {platform} but this engine runs {engine}"
                )
            with archive.open("rb") as data:
                for message in self.api.load_image(data):
                    if isinstance(message, dict) and message.get("error"):
                        raise EngineError(f"docker load: {one_line(str(message['error']))}")
        except OSError as e:
            raise EngineError(f"cannot read {archive.name}: {e.strerror}") from None
        except DOCKER_ERRORS as e:
            fail("load images", e)

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
                    if managed_by(net.get("Labels"), device):
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
            fail(f"creating network {spec.name}", e)
        except DOCKER_ERRORS as e:
            fail(f"creating network {spec.name}", e)

    def remove_network(self, name: str) -> None:
        """Remove a managed network; a missing one is fine, a foreign one is refused."""
        try:
            info = self.api.inspect_network(name)
            if not managed_by(info.get("Labels")):
                raise EngineError(f"refusing to remove network {name}: not managed by fleetgate")
            self.api.remove_network(info["Id"])
        except docker.errors.NotFound:
            return
        except DOCKER_ERRORS as e:
            fail(f"removing network {name}", e)

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
                if managed_by(info.get("Labels"), device):
                    return
                raise NameConflict(
                    f"volume {spec.name} exists and is not managed by fleetgate for {device}"
                )
            labels = dict(spec.labels) | self._ownership(device, stack)
            self.api.create_volume(spec.name, driver=spec.driver, labels=labels)
        except DOCKER_ERRORS as e:
            fail(f"creating volume {spec.name}", e)

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
            fail(f"creating container {cname}", e)
        except DOCKER_ERRORS as e:
            fail(f"creating container {cname}", e)
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
        except DOCKER_ERRORS as e:
            self._discard(container_id)
            fail(f"connecting {cname} to its networks", e)
        return container_id

    def rename_container(self, container: str, new_name: str) -> None:
        """Rename a managed container (the swap of create-before-stop)."""
        try:
            info = self.api.inspect_container(container)
            if not managed_by((info.get("Config") or {}).get("Labels")):
                raise EngineError(f"refusing to rename container {container}: not managed")
            self.api.rename(info["Id"], new_name)
        except docker.errors.APIError as e:
            if e.status_code == 409:
                raise NameConflict(f"container name {new_name} is taken") from e
            fail(f"renaming container {container} to {new_name}", e)
        except DOCKER_ERRORS as e:
            fail(f"renaming container {container} to {new_name}", e)

    def _discard(self, container_id: str) -> None:
        """Best-effort removal of a half-created container (its creation already failed)."""
        with contextlib.suppress(*DOCKER_ERRORS):
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
        except DOCKER_ERRORS as e:
            if _stale_task(e):
                self._remove_half_started(container_id)
            fail(f"starting container {container_id[:12]}", e)

    def _remove_half_started(self, container_id: str) -> None:
        """The engine died mid-start: containerd kept the half-made task (or container)
        and this container can never start again. Remove it if it is ours (volumes stay;
        ``force``: the engine still counts it as starting); the failed pass is retried and
        creates it anew. A foreign container is never touched."""
        with contextlib.suppress(*DOCKER_ERRORS):
            info = self.api.inspect_container(container_id)
            if managed_by((info.get("Config") or {}).get("Labels")):
                self.api.remove_container(container_id, v=False, force=True)

    def stop_container(self, container_id: str, timeout: float | None) -> None:
        """Stop with ``timeout`` seconds of grace (``None``: the container's StopTimeout)."""
        try:
            self.api.stop(container_id, timeout=None if timeout is None else round(timeout))
        except docker.errors.NotFound:
            return
        except DOCKER_ERRORS as e:
            fail(f"stopping container {container_id[:12]}", e)

    def remove_container(self, container_id: str) -> None:
        """Remove a managed container, keeping every volume (``v=False``)."""
        try:
            info = self.api.inspect_container(container_id)
            if not managed_by((info.get("Config") or {}).get("Labels")):
                raise EngineError(
                    f"refusing to remove container {container_id[:12]}: not managed by fleetgate"
                )
            self.api.remove_container(container_id, v=False, force=False)
        except docker.errors.NotFound:
            return
        except DOCKER_ERRORS as e:
            fail(f"removing container {container_id[:12]}", e)

    # ------------------------------------------------------------------- events

    def events(self, device: str, stop: threading.Event) -> Iterator[ContainerEvent]:
        """Die / destroy / stop events of ``device``'s managed containers (see
        :func:`reconciler.engine.docker_observe.events`); use a separate engine instance."""
        return docker_observe.events(self.api, device, stop)


def _stale_task(error: BaseException) -> bool:
    """The engine's answer to starting a container that an engine crash left half-started
    in containerd (its task, or its containerd container, outlived the crash)."""
    if not isinstance(error, docker.errors.APIError):
        return False
    text = str(error.explanation or error)
    return ("task" in text and "already exists" in text) or "id already in use" in text


if TYPE_CHECKING:  # mypy proves the adapter satisfies the port
    _runtime: Runtime = DockerEngine()
