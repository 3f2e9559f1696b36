"""The values that flow through the pipeline: manifests in, desired state, observed state.

Everything here is an immutable, typed value with no behaviour beyond small
derived properties. Stages exchange these and nothing else:

    manifests (FleetRepository) -> render (DesiredState) -> plan (with ObservedState) -> apply

Conventions:
- collections are tuples (ordered as the stage that made them documents) or
  ``Mapping`` values that are never mutated after construction;
- durations are seconds as ``float``; sizes are bytes as ``int``;
- names of Docker objects are the *final* engine names (already prefixed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from reconciler.observed import (
    ContainerState,
    ObservedContainer,
    ObservedImage,
    ObservedNetwork,
    ObservedState,
    ObservedVolume,
)

__all__ = [
    "ContainerState",
    "ObservedContainer",
    "ObservedImage",
    "ObservedNetwork",
    "ObservedState",
    "ObservedVolume",
]

# --------------------------------------------------------------------------- labels

LABEL_MANAGED = "io.fleetgate.managed"
LABEL_DEVICE = "io.fleetgate.device"
LABEL_STACK = "io.fleetgate.stack"
LABEL_SERVICE = "io.fleetgate.service"
LABEL_REVISION = "io.fleetgate.revision"
LABEL_CONFIG_HASH = "io.fleetgate.config-hash"
LABEL_FIELD_HASHES = "io.fleetgate.config-fields"
"""Short per-field hashes (``image=1a2b3c4d,environment=...``) so a plan can say *which*
part of a service changed without storing any value (values may be secrets)."""

Arch = Literal["amd64", "arm64", "armv7", "armv6", "386"]
ARCHES: tuple[Arch, ...] = ("amd64", "arm64", "armv7", "armv6", "386")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# ------------------------------------------------------------------------ manifests


@dataclass(frozen=True, slots=True)
class Location:
    """Where a manifest value came from: repository-relative path and 1-based line."""

    path: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class UpdateWindow:
    """A recurring period in which updates may start, in the device's local time."""

    days: tuple[Weekday, ...]
    start: str  # "HH:MM"
    end: str  # "HH:MM"; end <= start wraps past midnight
    timezone: str  # IANA name, e.g. "Europe/Berlin"
    location: Location | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Policy:
    """What manifests may ask for. The defaults are the safe ones.

    ``registries`` is ``None`` when any registry is allowed.
    """

    registries: tuple[str, ...] | None = None
    privileged: bool = False
    host_network: bool = False
    host_paths: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()  # "ALL" allows any cap_add
    host_pid: bool = False  # pid: host
    unconfined: bool = False  # security_opt seccomp/apparmor unconfined, label:disable


@dataclass(frozen=True, slots=True)
class FleetManifest:
    variables: Mapping[str, str] = field(default_factory=dict)
    update_windows: tuple[UpdateWindow, ...] = ()
    policy: Policy = Policy()
    location: Location = Location("fleet.yaml")


@dataclass(frozen=True, slots=True)
class DeviceManifest:
    id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    arch: Arch | None = None
    capabilities: tuple[str, ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict)
    update_windows: tuple[UpdateWindow, ...] | None = None  # None: not declared
    stacks: tuple[str, ...] = ()
    location: Location = Location("")
    profiles: tuple[str, ...] = ()  # Compose profiles enabled (like COMPOSE_PROFILES)


@dataclass(frozen=True, slots=True)
class GroupManifest:
    name: str
    selector: Mapping[str, str] = field(default_factory=dict)
    stacks: tuple[str, ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict)
    update_windows: tuple[UpdateWindow, ...] = ()
    location: Location = Location("")
    profiles: tuple[str, ...] = ()  # Compose profiles enabled (like COMPOSE_PROFILES)


UpdateStrategy = Literal["download-then-kill", "kill-then-download"]


@dataclass(frozen=True, slots=True)
class StackManifest:
    """A stack directory: the raw Compose document plus the optional ``stack.yaml``.

    ``compose`` is the parsed Compose file as :class:`reconciler.manifests.yamlio.LineDict`
    (line numbers kept) so render and validate can report ``path:line``.
    """

    name: str
    compose: Mapping[str, Any]
    compose_path: str  # e.g. "stacks/node-red/compose.yaml"
    requires_capabilities: tuple[str, ...] = ()
    requires_arch: tuple[Arch, ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict)
    health_timeout: float = 120.0
    update_strategy: UpdateStrategy = "download-then-kill"
    stack_path: str | None = None  # "stacks/<name>/stack.yaml" when present
    seed: tuple[str, ...] = ()  # stack.yaml `seed:` as repository paths (seed, then persist)


@dataclass(frozen=True, slots=True)
class FleetRepository:
    """The parsed fleet repository at one revision (files are read through ``files``)."""

    fleet: FleetManifest
    devices: Mapping[str, DeviceManifest]
    groups: Mapping[str, GroupManifest]  # iterate in sorted(name) order = file-name order
    stacks: Mapping[str, StackManifest]
    revision: str | None = None  # full 40-hex commit SHA when read from Git


# -------------------------------------------------------------------- desired state

MountKind = Literal["config", "data", "host", "volume", "tmpfs", "secret", "lock"]
"""Where a mount's source lives:

- ``config``: a file or directory from the repository, materialized per content digest
  under ``<stateDir>/configs``; read-only unless the Compose file says ``rw``;
- ``data``: a relative source that is not in the repository: a persistent directory
  under ``<stateDir>/data/<device>/<stack>/``, never removed by an update or rollback;
- ``host``: an absolute host path (checked against policy ``hostPaths``);
- ``volume``: a named Docker volume;
- ``secret``: an absolute file on the device, mounted read-only at ``/run/secrets/<name>``;
- ``lock``: the stack's ``FLEETGATE_LOCK_DIR``.
"""


@dataclass(frozen=True, slots=True)
class Mount:
    kind: MountKind
    source: str  # host path (bind kinds) or final volume name (volume); "" for tmpfs
    target: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class PortBinding:
    container_port: int
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    host_port: int | None = None  # None: published on an ephemeral port
    host_ip: str = ""  # "" = all interfaces


@dataclass(frozen=True, slots=True)
class DeviceMapping:
    host_path: str
    container_path: str
    permissions: str = "rwm"


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    """An accelerator routed into a container (``gpus`` / ``reservations.devices``)."""

    driver: str = ""
    count: int = 0  # -1 = all
    device_ids: tuple[str, ...] = ()
    capabilities: tuple[tuple[str, ...], ...] = ()
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Healthcheck:
    test: tuple[str, ...]  # Docker form: ("CMD", ...), ("CMD-SHELL", "..."), ("NONE",)
    interval: float | None = None
    timeout: float | None = None
    retries: int | None = None
    start_period: float | None = None
    start_interval: float | None = None


@dataclass(frozen=True, slots=True)
class LogConfig:
    driver: str
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Ulimit:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True, slots=True)
class NetworkAttachment:
    network: str  # final engine name
    aliases: tuple[str, ...] = ()
    ipv4_address: str | None = None


@dataclass(frozen=True, slots=True)
class Dependency:
    service: str
    condition: Literal["service_started", "service_healthy", "service_completed_successfully"] = (
        "service_started"
    )


PullPolicy = Literal["missing", "always", "never"]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One container, fully resolved: every field maps 1:1 onto the Engine API.

    ``config_hash`` covers every field except the identity (device/stack/service),
    ``pull_policy`` and ``depends_on``; ``field_hashes`` breaks it down per field so a
    plan can give a reason. Both are computed by render (see ``render.spec_hashes``).
    """

    device: str
    stack: str
    service: str
    container_name: str
    image: str
    platform: str | None = None
    pull_policy: PullPolicy = "missing"
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: tuple[tuple[str, str], ...] = ()  # sorted by name
    labels: tuple[tuple[str, str], ...] = ()  # user labels, sorted; io.fleetgate.* added by apply
    ports: tuple[PortBinding, ...] = ()
    mounts: tuple[Mount, ...] = ()  # sorted by target
    tmpfs: tuple[tuple[str, str], ...] = ()  # (target, options)
    networks: tuple[NetworkAttachment, ...] = ()
    network_mode: str | None = None  # "host", "none", "bridge", "container:<name>"
    devices: tuple[DeviceMapping, ...] = ()
    device_requests: tuple[DeviceRequest, ...] = ()
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    user: str | None = None
    working_dir: str | None = None
    hostname: str | None = None
    init: bool | None = None
    read_only: bool = False
    restart: str = "no"  # "no" | "always" | "unless-stopped" | "on-failure[:N]"
    healthcheck: Healthcheck | None = None
    logging: LogConfig | None = None
    mem_limit: int | None = None
    mem_reservation: int | None = None
    nano_cpus: int | None = None
    shm_size: int | None = None
    ulimits: tuple[Ulimit, ...] = ()
    extra_hosts: tuple[str, ...] = ()  # "host:ip"
    stop_signal: str | None = None
    stop_grace_period: float | None = None
    # Added in issue 12; hashed only when set, so existing containers keep their hash.
    expose: tuple[str, ...] = ()  # as written: "1883", "9000-9001/udp"
    tty: bool = False
    stdin_open: bool = False
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    pid: str | None = None  # "host" or "container:<name>"
    group_add: tuple[str, ...] = ()
    depends_on: tuple[Dependency, ...] = ()
    config_hash: str = ""
    field_hashes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkSpec:
    name: str  # final engine name
    driver: str = "bridge"
    internal: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    external: bool = False  # external networks are used, never created or removed
    options: tuple[tuple[str, str], ...] = ()  # compose driver_opts, sorted
    subnets: tuple[str, ...] = ()  # compose ipam.config[].subnet (needed for ipv4_address)


@dataclass(frozen=True, slots=True)
class VolumeSpec:
    name: str  # final engine name
    driver: str = "local"
    labels: tuple[tuple[str, str], ...] = ()
    external: bool = False
    options: tuple[tuple[str, str], ...] = ()  # compose driver_opts, sorted


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A repository file to materialize before containers that mount it start."""

    repo_path: str  # repository-relative POSIX path
    host_path: str  # absolute destination under <stateDir>/configs
    digest: str  # "sha256:<hex>" of the content
    mode: int = 0o444


@dataclass(frozen=True, slots=True)
class StackSpec:
    name: str
    services: tuple[ServiceSpec, ...]  # in depends_on order (dependencies first), then name
    networks: tuple[NetworkSpec, ...] = ()
    volumes: tuple[VolumeSpec, ...] = ()
    config_files: tuple[ConfigFile, ...] = ()
    data_dirs: tuple[str, ...] = ()  # absolute host directories to create (never removed)
    lock_dir: str = ""
    seed_files: tuple[ConfigFile, ...] = ()  # copied into data dirs only where absent
    health_timeout: float = 120.0
    update_strategy: UpdateStrategy = "download-then-kill"


@dataclass(frozen=True, slots=True)
class DesiredState:
    """Everything one device should run at one revision."""

    device: str
    revision: str | None
    arch: Arch | None
    stacks: tuple[StackSpec, ...]  # sorted by name
    update_windows: tuple[UpdateWindow, ...] = ()  # empty: any time

    @property
    def services(self) -> tuple[ServiceSpec, ...]:
        return tuple(s for stack in self.stacks for s in stack.services)


# ------------------------------------------------------------------- observed state
# (defined in reconciler/observed.py, re-exported here: one import place for values)


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as RFC 3339 with a ``Z`` suffix, whole seconds."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    """The aware UTC datetime of an RFC 3339 string (``Z`` or an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
