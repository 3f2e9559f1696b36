"""What the engine reports: the observed state of one device's managed objects.

Immutable values made by the engine adapter (``engine/docker_observe.py``) and read by
plan, decide and status. :mod:`reconciler.model` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ContainerState = Literal["created", "running", "restarting", "paused", "exited", "dead", "removing"]


@dataclass(frozen=True, slots=True)
class ObservedContainer:
    id: str
    name: str
    stack: str
    service: str
    state: ContainerState
    config_hash: str
    field_hashes: tuple[tuple[str, str], ...] = ()
    revision: str = ""
    image: str = ""  # reference it was created from
    image_id: str = ""
    health: Literal["starting", "healthy", "unhealthy"] | None = None
    restart_count: int = 0
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class ObservedNetwork:
    id: str
    name: str
    stack: str


@dataclass(frozen=True, slots=True)
class ObservedVolume:
    name: str
    stack: str


@dataclass(frozen=True, slots=True)
class ObservedImage:
    id: str
    tags: tuple[str, ...]
    digests: tuple[str, ...]  # "repo@sha256:..."


@dataclass(frozen=True, slots=True)
class ObservedState:
    """One snapshot of what this device's fleetgate owns on the engine.

    ``containers``/``networks``/``volumes`` hold only objects labelled
    ``io.fleetgate.managed=true`` for this device. ``foreign_names`` are the names
    of every *other* container on the engine, so a plan can refuse to create a
    container whose name is taken instead of touching it.
    """

    device: str
    containers: tuple[ObservedContainer, ...] = ()
    networks: tuple[ObservedNetwork, ...] = ()
    volumes: tuple[ObservedVolume, ...] = ()
    images: tuple[ObservedImage, ...] = ()
    foreign_names: frozenset[str] = frozenset()
    foreign_networks: frozenset[str] = frozenset()
