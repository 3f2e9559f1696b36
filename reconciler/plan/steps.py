"""Plan steps: what :func:`reconciler.plan.planner.plan` decides and
:func:`reconciler.engine.apply.apply` does.

Every step is a frozen value with a ``kind`` (a closed ``Literal``), a ``reason`` a
human can read ("config-hash changed: environment"), ``describe()`` (one line for
``fleetgate plan``) and ``to_json()`` (stable fields for ``--output json``; never an
environment value, which may be a secret).

Destructive steps (``stop``, ``remove``, ``remove-network``) only ever name objects of
the managed observation; no step kind removes a volume or a data directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from reconciler.model import ConfigFile, NetworkSpec, ServiceSpec, VolumeSpec

# ------------------------------------------------------------------------------ steps


def scalar_json(step: Any) -> dict[str, object]:
    """``kind`` then every field, for steps whose fields are all plain values.

    Steps that carry a spec (create, materialize, network, volume) list their fields by
    hand instead: a spec holds environment values, which may be secrets.
    """
    return {"kind": step.kind, **{f.name: getattr(step, f.name) for f in fields(step)
                                  if f.name != "kind"}}  # fmt: skip


@dataclass(frozen=True, slots=True)
class PullImage:
    """Make ``image`` present locally (for ``platform`` when set)."""

    image: str
    platform: str | None
    reason: str
    kind: Literal["pull"] = field(default="pull", init=False)

    def describe(self) -> str:
        target = self.image if self.platform is None else f"{self.image} ({self.platform})"
        return f"pull {target}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        return scalar_json(self)


DirectoryPurpose = Literal["data", "lock", "config"]


@dataclass(frozen=True, slots=True)
class EnsureDirectory:
    """``mkdir -p`` a host directory; never removed by any plan."""

    path: str
    purpose: DirectoryPurpose
    reason: str
    kind: Literal["mkdir"] = field(default="mkdir", init=False)

    def describe(self) -> str:
        return f"mkdir {self.purpose} {self.path}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        return scalar_json(self)


@dataclass(frozen=True, slots=True)
class MaterializeConfig:
    """Write a repository file to its content-addressed host path (atomic, idempotent)."""

    file: ConfigFile
    reason: str
    kind: Literal["materialize"] = field(default="materialize", init=False)

    def describe(self) -> str:
        return f"materialize {self.file.repo_path} -> {self.file.host_path}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "repo_path": self.file.repo_path,
                "host_path": self.file.host_path, "digest": self.file.digest,
                "mode": oct(self.file.mode), "reason": self.reason}  # fmt: skip


@dataclass(frozen=True, slots=True)
class SeedFile:
    """Copy a repository file into a data directory *only if nothing is there yet*.

    stack.yaml ``seed:`` (seed, then persist): what the app wrote is never overwritten,
    by a later revision with a changed seed file either (apply logs ``seed.kept``).
    """

    file: ConfigFile
    reason: str
    kind: Literal["seed"] = field(default="seed", init=False)

    def describe(self) -> str:
        return f"seed {self.file.repo_path} -> {self.file.host_path} (if absent): {self.reason}"

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "repo_path": self.file.repo_path,
                "host_path": self.file.host_path, "digest": self.file.digest,
                "reason": self.reason}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CreateNetwork:
    stack: str
    spec: NetworkSpec
    reason: str
    kind: Literal["create-network"] = field(default="create-network", init=False)

    def describe(self) -> str:
        return f"create network {self.spec.name}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "stack": self.stack, "name": self.spec.name,
                "driver": self.spec.driver, "reason": self.reason}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CreateVolume:
    stack: str
    spec: VolumeSpec
    reason: str
    kind: Literal["create-volume"] = field(default="create-volume", init=False)

    def describe(self) -> str:
        return f"create volume {self.spec.name}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "stack": self.stack, "name": self.spec.name,
                "driver": self.spec.driver, "reason": self.reason}  # fmt: skip


@dataclass(frozen=True, slots=True)
class StopContainer:
    """Stop a *managed, observed* container (never anything else)."""

    id: str
    name: str
    stack: str
    service: str
    timeout: float | None
    reason: str
    kind: Literal["stop"] = field(default="stop", init=False)

    def describe(self) -> str:
        return f"stop {self.stack}/{self.service} ({self.name}): {self.reason}"

    def to_json(self) -> dict[str, object]:
        return scalar_json(self)


@dataclass(frozen=True, slots=True)
class RemoveContainer:
    """Remove a stopped *managed, observed* container; its volumes are kept."""

    id: str
    name: str
    stack: str
    service: str
    reason: str
    kind: Literal["remove"] = field(default="remove", init=False)

    def describe(self) -> str:
        return f"remove {self.stack}/{self.service} ({self.name}): {self.reason}"

    def to_json(self) -> dict[str, object]:
        return scalar_json(self)


@dataclass(frozen=True, slots=True)
class CreateContainer:
    """Create (not start) ``spec.container_name``; labelled with ``revision``.

    ``name``, when set, is a temporary name (:func:`temp_name`): the new container is
    created beside the running one and renamed once the old one is gone.
    """

    spec: ServiceSpec
    revision: str
    reason: str
    name: str = ""
    kind: Literal["create"] = field(default="create", init=False)

    @property
    def container_name(self) -> str:
        return self.name or self.spec.container_name

    def describe(self) -> str:
        beside = f" as {self.name}" if self.name else ""
        return f"create {self.spec.stack}/{self.spec.service}{beside}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        # Never the whole spec: environment values may be secrets.
        return {"kind": self.kind, "stack": self.spec.stack, "service": self.spec.service,
                "name": self.container_name, "image": self.spec.image,
                "config_hash": self.spec.config_hash, "revision": self.revision,
                "reason": self.reason}  # fmt: skip


@dataclass(frozen=True, slots=True)
class StartContainer:
    """Start a container by name (it was created by this plan or observed)."""

    name: str
    stack: str
    service: str
    reason: str
    kind: Literal["start"] = field(default="start", init=False)

    def describe(self) -> str:
        return f"start {self.stack}/{self.service}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        return scalar_json(self)


TEMP_MARK = "-fgnew-"
"""What a temporary container name carries (``<container_name>-fgnew-<hash>``)."""


def temp_name(spec: ServiceSpec) -> str:
    """The name a service's new container is created under while the old one runs."""
    digits = "".join(ch for ch in spec.config_hash.split(":")[-1] if ch.isalnum())
    return f"{spec.container_name}{TEMP_MARK}{digits[:8] or 'x'}"


@dataclass(frozen=True, slots=True)
class RenameContainer:
    """Give a container created under a temporary name its real name (the old one is gone)."""

    name: str
    new_name: str
    stack: str
    service: str
    reason: str
    kind: Literal["rename"] = field(default="rename", init=False)

    def describe(self) -> str:
        return f"rename {self.stack}/{self.service} {self.name} -> {self.new_name}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        return scalar_json(self)


WaitCondition = Literal["healthy", "completed"]


@dataclass(frozen=True, slots=True)
class WaitHealthy:
    """Wait until a dependency is healthy (or exited 0 for ``completed``), up to ``timeout``."""

    stack: str
    service: str
    name: str
    timeout: float
    reason: str
    condition: WaitCondition = "healthy"
    kind: Literal["wait-healthy"] = field(default="wait-healthy", init=False)

    def describe(self) -> str:
        return f"wait {self.condition} {self.stack}/{self.service}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        return scalar_json(self)


@dataclass(frozen=True, slots=True)
class RemoveNetwork:
    """Remove a *managed, observed* network after every container of it is gone."""

    name: str
    stack: str
    reason: str
    kind: Literal["remove-network"] = field(default="remove-network", init=False)

    def describe(self) -> str:
        return f"remove network {self.name}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        return scalar_json(self)


Step = (
    PullImage
    | EnsureDirectory
    | MaterializeConfig
    | SeedFile
    | CreateNetwork
    | CreateVolume
    | StopContainer
    | RemoveContainer
    | CreateContainer
    | RenameContainer
    | StartContainer
    | WaitHealthy
    | RemoveNetwork
)
DESTRUCTIVE_KINDS = frozenset({"stop", "remove", "remove-network"})


@dataclass(frozen=True, slots=True)
class Plan:
    """Ordered steps, reasons why something cannot proceed, and why the rest is a no-op."""

    steps: tuple[Step, ...]
    blocked: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    device: str = ""
    revision: str | None = None

    @property
    def is_empty(self) -> bool:
        return not self.steps

    def describe(self) -> tuple[str, ...]:
        return tuple(step.describe() for step in self.steps)

    def to_json(self) -> dict[str, object]:
        return {"device": self.device, "revision": self.revision,
                "steps": [s.to_json() for s in self.steps], "blocked": list(self.blocked),
                "notes": list(self.notes)}  # fmt: skip
