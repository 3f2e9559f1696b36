"""An in-memory container engine implementing :class:`reconciler.engine.port.Runtime`.

It behaves like the Docker engine where the planner's correctness depends on it:
names are unique, creating needs the image present, removing needs the container
stopped, starting needs its networks, a network in use cannot be removed, ids and
names are both accepted as references. Faults are injected by configuring it:

- ``failing_pulls``: images whose pull raises ``ImageUnavailable``;
- ``crash_on_start``: container name -> exit code: the process exits right after
  start, and one found running exits on its next inspection (a one-shot job with
  code 0, a crash otherwise);
- ``unhealthy``: container names whose healthcheck reports ``unhealthy``;
- ``starting_polls``: container name -> how many inspections report ``starting``
  before ``healthy``;
- ``vanish(ref)``: a container disappears behind fleetgate's back.

``calls`` records every port call in order, for tests that assert on sequencing.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from reconciler.engine.port import ProgressCallback
from reconciler.errors import EngineError, ImageUnavailable, NameConflict
from reconciler.model import (
    ContainerState,
    Dependency,
    DesiredState,
    Healthcheck,
    NetworkSpec,
    ObservedContainer,
    ObservedImage,
    ObservedNetwork,
    ObservedState,
    ObservedVolume,
    ServiceSpec,
    StackSpec,
    VolumeSpec,
)
from reconciler.plan.planner import image_present

Health = Literal["starting", "healthy", "unhealthy"]


@dataclass(slots=True)
class FakeContainer:
    """Engine-side record of one container (managed or foreign)."""

    id: str
    name: str
    device: str = ""  # "" = not managed by fleetgate (foreign)
    stack: str = ""
    service: str = ""
    state: ContainerState = "running"
    config_hash: str = ""
    field_hashes: tuple[tuple[str, str], ...] = ()
    revision: str = ""
    image: str = ""
    networks: tuple[str, ...] = ()
    has_healthcheck: bool = False
    health: Health | None = None
    exit_code: int | None = None
    restart_count: int = 0

    def observed(self) -> ObservedContainer:
        return ObservedContainer(
            id=self.id,
            name=self.name,
            stack=self.stack,
            service=self.service,
            state=self.state,
            config_hash=self.config_hash,
            field_hashes=self.field_hashes,
            revision=self.revision,
            image=self.image,
            health=self.health,
            restart_count=self.restart_count,
            exit_code=self.exit_code,
        )


@dataclass(slots=True)
class FakeRuntime:
    """The fake engine. Seed it with ``add_*`` and configure faults via the fields."""

    containers: dict[str, FakeContainer] = field(default_factory=dict)
    networks: dict[str, ObservedNetwork] = field(default_factory=dict)
    network_devices: dict[str, str] = field(default_factory=dict)  # name -> device ("" foreign)
    volumes: dict[str, ObservedVolume] = field(default_factory=dict)
    images: dict[str, ObservedImage] = field(default_factory=dict)  # by reference
    failing_pulls: set[str] = field(default_factory=set)
    crash_on_start: dict[str, int] = field(default_factory=dict)
    unhealthy: set[str] = field(default_factory=set)
    starting_polls: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    platform: str = "linux/amd64"  # what load_images accepts
    _next_id: int = 0

    # ---------------------------------------------------------------- seeding

    def _new_id(self) -> str:
        self._next_id += 1
        return hashlib.sha256(f"c{self._next_id}".encode()).hexdigest()[:12]

    def add_container(self, container: FakeContainer) -> FakeContainer:
        if any(c.name == container.name for c in self.containers.values()):
            raise ValueError(f"duplicate container name {container.name}")
        self.containers[container.id] = container
        return container

    def add_image(self, ref: str) -> None:
        image_id = "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
        self.images[ref] = ObservedImage(id=image_id, tags=(ref,), digests=())

    def add_network(self, name: str, device: str, stack: str) -> None:
        self.networks[name] = ObservedNetwork(id=f"net-{name}", name=name, stack=stack)
        self.network_devices[name] = device

    def vanish(self, ref: str) -> None:
        """The container disappears (removed out of band)."""
        del self.containers[self._find(ref).id]

    def by_name(self, name: str) -> FakeContainer | None:
        return next((c for c in self.containers.values() if c.name == name), None)

    def _find(self, ref: str) -> FakeContainer:
        found = self.containers.get(ref) or self.by_name(ref)
        if found is None:
            raise EngineError(f"no such container: {ref}")
        return found

    # ------------------------------------------------------------- the port

    def observe(self, device: str, *, brief: bool = False) -> ObservedState:
        mine = [c for c in self.containers.values() if c.device == device]
        return ObservedState(
            device=device,
            containers=tuple(c.observed() for c in sorted(mine, key=lambda c: c.name)),
            networks=tuple(
                n
                for name, n in sorted(self.networks.items())
                if self.network_devices.get(name) == device
            ),
            volumes=tuple(v for _, v in sorted(self.volumes.items())),
            images=tuple(self.images[r] for r in sorted(self.images)),
            foreign_names=frozenset(c.name for c in self.containers.values() if c.device != device),
            foreign_networks=frozenset(n for n, d in self.network_devices.items() if d != device),
        )

    def pull(self, image: str, platform: str | None, progress: ProgressCallback | None) -> None:
        self.calls.append(("pull", image))
        if image in self.failing_pulls:
            raise ImageUnavailable(image, "manifest unknown")
        if progress is not None:
            progress("pull.progress", {"image": image, "status": "Downloaded"})
        self.add_image(image)

    def load_images(self, archive: Path, platform: str) -> None:
        """Like ``docker load``: every RepoTag of the archive's manifest.json becomes present."""
        self.calls.append(("load_images", platform))
        if platform.split("/")[:2] != self.platform.split("/")[:2]:
            raise EngineError(f"wrong architecture: images {platform}, engine {self.platform}")
        with tarfile.open(archive) as tar:
            handle = tar.extractfile("manifest.json")
            assert handle is not None
            for entry in json.load(handle):
                for ref in entry["RepoTags"]:
                    self.add_image(ref)

    def create_network(self, device: str, stack: str, spec: NetworkSpec) -> None:
        self.calls.append(("create_network", spec.name))
        if spec.name in self.networks:
            raise EngineError(f"network {spec.name} already exists")
        self.add_network(spec.name, device, stack)

    def remove_network(self, name: str) -> None:
        self.calls.append(("remove_network", name))
        if name not in self.networks:
            raise EngineError(f"no such network: {name}")
        if any(name in c.networks for c in self.containers.values()):
            raise EngineError(f"network {name} has active endpoints")
        del self.networks[name]
        del self.network_devices[name]

    def create_volume(self, device: str, stack: str, spec: VolumeSpec) -> None:
        self.calls.append(("create_volume", spec.name))
        self.volumes.setdefault(spec.name, ObservedVolume(name=spec.name, stack=stack))

    def create_container(self, spec: ServiceSpec, revision: str, name: str | None = None) -> str:
        cname = name or spec.container_name
        self.calls.append(("create_container", cname))
        holder = self.by_name(cname)
        if holder is not None:
            if not holder.device:
                raise NameConflict(f"container name {cname} is taken")
            raise EngineError(f"conflict: name {cname} is in use")
        if not image_present(spec.image, self.images.values()):
            raise EngineError(f"no such image: {spec.image}")
        c = FakeContainer(
            id=self._new_id(),
            name=cname,
            device=spec.device,
            stack=spec.stack,
            service=spec.service,
            state="created",
            config_hash=spec.config_hash,
            field_hashes=spec.field_hashes,
            revision=revision,
            image=spec.image,
            networks=tuple(n.network for n in spec.networks),
            has_healthcheck=spec.healthcheck is not None,
        )
        self.containers[c.id] = c
        return c.id

    def rename_container(self, container: str, new_name: str) -> None:
        self.calls.append(("rename_container", container))
        c = self._find(container)
        if self.by_name(new_name) is not None:
            raise NameConflict(f"container name {new_name} is taken")
        c.name = new_name

    def start_container(self, container_id: str) -> None:
        self.calls.append(("start_container", container_id))
        c = self._find(container_id)
        missing = [n for n in c.networks if n not in self.networks]
        if missing:
            raise EngineError(f"network {missing[0]} not found")
        if c.name in self.crash_on_start:
            c.state, c.exit_code = "exited", self.crash_on_start[c.name]
            return
        c.state, c.exit_code = "running", None
        if c.has_healthcheck:
            c.health = "unhealthy" if c.name in self.unhealthy else "healthy"
            if self.starting_polls.get(c.name, 0) > 0:
                c.health = "starting"

    def stop_container(self, container_id: str, timeout: float | None) -> None:
        self.calls.append(("stop_container", container_id))
        c = self._find(container_id)
        c.state, c.exit_code, c.health = "exited", 0, None

    def remove_container(self, container_id: str) -> None:
        self.calls.append(("remove_container", container_id))
        c = self._find(container_id)
        if c.state in ("running", "restarting", "paused"):
            raise EngineError(f"cannot remove running container {c.name}: stop it first")
        del self.containers[c.id]

    def inspect_container(self, container_id: str) -> ObservedContainer | None:
        self.calls.append(("inspect_container", container_id))
        c = self.containers.get(container_id) or self.by_name(container_id)
        if c is None:
            return None
        if c.state == "running" and c.name in self.crash_on_start:
            c.state, c.exit_code, c.health = "exited", self.crash_on_start[c.name], None
        left = self.starting_polls.get(c.name, 0)
        if c.health == "starting" and left > 0:
            self.starting_polls[c.name] = left - 1
            if left == 1:
                c.health = "unhealthy" if c.name in self.unhealthy else "healthy"
            return replace(c.observed(), health="starting")
        return c.observed()


# ------------------------------------------------------------------ desired-state builders

DEVICE = "dev1"


def _short(value: object) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:8]


def service(
    stack: str,
    name: str,
    image: str = "fleetgate-test/busybox:1",
    *,
    environment: dict[str, str] | None = None,
    depends_on: tuple[Dependency, ...] = (),
    healthcheck: bool = False,
    device: str = DEVICE,
    **kwargs: Any,
) -> ServiceSpec:
    """A ServiceSpec whose config/field hashes derive from its values, as render's do."""
    env = tuple(sorted((environment or {}).items()))
    check = Healthcheck(test=("CMD", "true")) if healthcheck else None
    spec = ServiceSpec(
        device=device,
        stack=stack,
        service=name,
        container_name=kwargs.pop("container_name", f"{stack}-{name}"),
        image=image,
        environment=env,
        depends_on=depends_on,
        healthcheck=check,
        **kwargs,
    )
    fields = {
        "container_name": spec.container_name,
        "environment": env,
        "healthcheck": check,
        "image": image,
        "networks": spec.networks,
        "restart": spec.restart,
    }
    field_hashes = tuple(sorted((k, _short(v)) for k, v in fields.items()))
    return replace(spec, field_hashes=field_hashes, config_hash=_short(field_hashes))


def stack(name: str, *services: ServiceSpec, **kwargs: Any) -> StackSpec:
    return StackSpec(name=name, services=services, **kwargs)


def desired(*stacks: StackSpec, revision: str = "a" * 40, device: str = DEVICE) -> DesiredState:
    return DesiredState(
        device=device,
        revision=revision,
        arch="amd64",
        stacks=tuple(sorted(stacks, key=lambda s: s.name)),
    )


def container_of(
    spec: ServiceSpec, cid: str, state: ContainerState = "running", **kwargs: Any
) -> FakeContainer:
    """An engine container as if fleetgate had created it from ``spec``."""
    return FakeContainer(
        id=cid,
        name=kwargs.pop("name", spec.container_name),
        device=spec.device,
        stack=spec.stack,
        service=spec.service,
        state=state,
        config_hash=spec.config_hash,
        field_hashes=spec.field_hashes,
        image=spec.image,
        networks=tuple(n.network for n in spec.networks),
        has_healthcheck=spec.healthcheck is not None,
        health="healthy" if spec.healthcheck is not None and state == "running" else None,
        **kwargs,
    )
