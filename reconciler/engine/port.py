"""The runtime port: what the reconciler needs from a container engine.

``reconciler.engine.docker.DockerEngine`` implements it on the Docker Engine API (the
only module that imports ``docker``); tests implement it with an in-memory fake.
Apply executes plan steps against this port and makes no decisions of its own.

Every method raises only :mod:`reconciler.errors` types (``EngineError``,
``ImageUnavailable``, ``NameConflict``); foreign exceptions are translated at the
border.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from reconciler.model import NetworkSpec, ObservedContainer, ObservedState, ServiceSpec, VolumeSpec

ProgressCallback = Callable[[str, Mapping[str, object]], None]
"""Called with an event name and fields while a long operation (a pull) progresses."""


class Runtime(Protocol):
    def observe(self, device: str, *, brief: bool = False) -> ObservedState:
        """One snapshot of everything labelled as owned by ``device`` (plus foreign names).

        Containers that vanish between list and inspect are skipped. ``brief``: what the
        planner reads (ids, names, state, labels, images, health) may come from the list
        alone; restart counts are then not observed (0) and must not be relied on.
        """
        ...

    def pull(self, image: str, platform: str | None, progress: ProgressCallback | None) -> None:
        """Make ``image`` present locally; raise ``ImageUnavailable`` on failure."""
        ...

    def load_images(self, archive: Path, platform: str) -> None:
        """Load the images of a docker-archive tar (``docker load``; no registry contact).

        ``platform`` (``linux/arm64``) is what the images were built for: refused with
        ``EngineError`` ("wrong architecture") before loading when the engine runs another.
        """
        ...

    def create_network(self, device: str, stack: str, spec: NetworkSpec) -> None: ...

    def remove_network(self, name: str) -> None: ...

    def create_volume(self, device: str, stack: str, spec: VolumeSpec) -> None: ...

    def create_container(self, spec: ServiceSpec, revision: str, name: str | None = None) -> str:
        """Create (not start) the container with the ``io.fleetgate.*`` labels; return its id.

        ``name`` (a temporary name) replaces ``spec.container_name`` as the container's
        name; network aliases stay ``spec.container_name``.
        """
        ...

    def rename_container(self, container: str, new_name: str) -> None:
        """Rename a managed container (id or name); ``NameConflict`` if the name is taken."""
        ...

    def start_container(self, container_id: str) -> None: ...

    def stop_container(self, container_id: str, timeout: float | None) -> None: ...

    def remove_container(self, container_id: str) -> None:
        """Remove a stopped container. Anonymous volumes are kept; named volumes always are."""
        ...

    def inspect_container(self, container_id: str) -> ObservedContainer | None:
        """Fresh state/health/restart count of one container (``None`` if it is gone)."""
        ...
