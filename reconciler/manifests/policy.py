"""Device policy: one check that sees every way a rendered manifest reaches the host.

The agent holds the Docker socket, which is root on the device, so a merge request
must not be able to grant itself the host. :func:`check` runs on the *rendered*
desired state — exactly what ``engine_spec`` turns into Engine API calls, after
interpolation, so ``${PRIV}`` cannot smuggle ``privileged: true`` past it — and reports
each violation at the compose file line of the offending key, naming the service,
volume or network, what is wrong and what to do. The rules (see
:mod:`reconciler.manifests.policy_rules` and docs/repository-format.md "Policy"):

- ``registries``: the image's registry, parsed like Docker; ``None`` allows any.
- ``privileged``: off unless allowed; ``cap_add`` values must be listed.
- host paths: every bind that reaches ``HostConfig.Binds``/``Mounts`` with a host
  source — ``volumes`` (short and long syntax), ``configs``/``secrets`` ``file:`` sources
  (a secret is a host file: it needs ``hostPaths`` too), and a created volume whose
  ``driver_opts`` bind a ``device`` — must lie under a ``hostPaths`` prefix and never
  expose :data:`ALWAYS_REFUSED`. Mounts under the state directory that render made
  (``config``/``data``/``lock``) are fleetgate's own and need no allowance.
- volumes: a name Docker would not take as a volume name (``/etc``, ``../x``) is a host
  path in ``Binds`` and is refused; a driver other than ``local`` and ``driver_opts``
  mounting another filesystem (nfs, cifs, a block device) are refused: policy has no key
  that could check what they reach. ``tmpfs`` options are fine.
- networks: host networking (``network_mode: host``, a network named ``host`` or a
  network with the ``host`` driver) needs ``hostNetwork``; ``none`` and bridges are
  fine; ``network_mode: service:NAME`` (and
  ``container:`` naming a container of the same stack) joins a namespace the same stack
  owns and whose service passes this check itself; any other ``container:`` join, or a
  network *named* ``container:...``, is refused: it enters a namespace fleetgate does not
  own.
- ``devices``: the host path, normalized (``/dev/serial/by-id/../../sda`` is
  ``/dev/sda``), must match a glob; outside ``/dev`` only a glob that names its directory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler.errors import Finding
from reconciler.manifests.policy_rules import (
    ALWAYS_REFUSED,
    capability,
    device_allowed,
    host_path,
    host_path_allowed,
    host_path_hint,
    image_registry,
    looks_like_path,
    narrow,
    parse_policy,
    security_opt_problem,
    volume_host_source,
)
from reconciler.manifests.yamlio import line_at
from reconciler.model import (
    DesiredState,
    Location,
    Mount,
    NetworkSpec,
    Policy,
    ServiceSpec,
    StackSpec,
    VolumeSpec,
)

__all__ = [
    "ALWAYS_REFUSED",
    "Rendered",
    "check",
    "host_path_allowed",
    "image_registry",
    "narrow",
    "parse_policy",
]

_HOST_BINDS = frozenset({"host", "secret"})
"""Mount kinds whose source is a host path the manifest chose (not the state dir's)."""


class Rendered(Protocol):
    """What :func:`check` needs from ``reconciler.render.device.Rendered``."""

    @property
    def state(self) -> DesiredState: ...

    @property
    def compose(self) -> Mapping[str, tuple[str, Any]]: ...

    def where(self, stack: str, service: str | None = None, key: str | None = None) -> Location: ...


@dataclass(frozen=True, slots=True)
class _Stack:
    """One rendered stack and the way back to its compose lines."""

    rendered: Rendered
    spec: StackSpec
    prefix: str  # engine name prefix "{device}_{stack}_"

    @property
    def doc(self) -> Any:
        return self.rendered.compose.get(self.spec.name, ("", None))[1]

    def at_service(self, service: str, key: str, message: str) -> Finding:
        where = self.rendered.where(self.spec.name, service, key)
        return Finding(where.path, where.line, message)

    def at(self, parts: list[str | int], message: str) -> Finding:
        path = self.rendered.where(self.spec.name).path
        doc = self.doc
        return Finding(path, line_at(doc, parts) if doc is not None else None, message)

    def top_key(self, section: str, final: str) -> str:
        """The compose key under top-level ``section`` whose engine name is ``final``."""
        declared = self.doc.get(section) if isinstance(self.doc, Mapping) else None
        if not isinstance(declared, Mapping):
            return final
        fallback = None
        for key, spec in declared.items():
            name = spec.get("name") if isinstance(spec, Mapping) else None
            ext = spec.get("external") if isinstance(spec, Mapping) else None
            external = ext in (True, "true") or isinstance(ext, Mapping)
            legacy = ext.get("name") if isinstance(ext, Mapping) else None
            if final in (
                self.prefix + str(key),
                str(name),
                str(legacy),
                str(key) if external else None,
            ):
                return str(key)
            if isinstance(name, str) and "$" in name and fallback is None:
                fallback = str(key)
        return fallback or final

    def file_source(self, svc: str, mount: Mount) -> tuple[str, str] | None:
        """``(kind, name)`` of the ``configs``/``secrets`` entry that made ``mount``."""
        services = self.doc.get("services") if isinstance(self.doc, Mapping) else None
        node = services.get(svc) if isinstance(services, Mapping) else None
        if not isinstance(node, Mapping):
            return None
        for kind in ("secret", "config"):
            entries = node.get(f"{kind}s")
            for item in entries if isinstance(entries, list) else ():
                if isinstance(item, Mapping):
                    name, target = str(item.get("source") or ""), str(item.get("target") or "")
                else:
                    name, target = str(item), ""
                if not target.startswith("/"):
                    base = "/run/secrets/" if kind == "secret" else "/"
                    target = base + (target or name)
                if target == mount.target:
                    return kind, name
        return None


def check(rendered: Rendered, policy: Policy) -> list[Finding]:
    """Every policy violation of the rendered device, at the line of the offending key."""
    out: list[Finding] = []
    for spec in rendered.state.stacks:
        stack = _Stack(rendered, spec, f"{rendered.state.device}_{spec.name}_")
        owned = {s.container_name for s in spec.services}
        volumes = {v.name for v in spec.volumes}
        for svc in spec.services:
            out += _service(stack, svc, policy, owned, volumes)
        for volume in spec.volumes:
            out += _volume(stack, volume, policy)
        for network in spec.networks:
            out += _network(stack, network, policy)
    return out


def _service(
    stack: _Stack, svc: ServiceSpec, policy: Policy, owned: set[str], volumes: set[str]
) -> Iterator[Finding]:
    name = svc.service
    registry = image_registry(svc.image)
    if policy.registries is not None and registry not in policy.registries:
        yield stack.at_service(
            name,
            "image",
            f"service {name!r}: registry {registry} is not allowed; use an image from "
            f"{', '.join(policy.registries) or 'an allowed registry'} "
            "or add it to fleet.yaml policy.registries",
        )
    if svc.privileged and not policy.privileged:
        yield stack.at_service(
            name,
            "privileged",
            f"service {name!r}: privileged is not allowed; grant devices or cap_add "
            "instead, or allow it in fleet.yaml policy.privileged",
        )
    yield from _network_mode(stack, svc, policy, owned)
    yield from _process(stack, svc, policy)
    for mount in svc.mounts:
        yield from _mount(stack, svc, mount, policy, volumes)
    for device in svc.devices:
        if device_allowed(device.host_path, policy):
            continue
        normal = host_path(device.host_path)
        shown = device.host_path + ("" if normal == device.host_path else f" (that is {normal})")
        yield stack.at_service(
            name,
            "devices",
            f"service {name!r}: device {shown} is not allowed; allow it "
            "in fleet.yaml policy.devices or remove it",
        )
    allowed = {capability(c) for c in policy.capabilities}
    for cap in svc.cap_add:
        if capability(cap) not in allowed and "ALL" not in allowed:
            yield stack.at_service(
                name,
                "cap_add",
                f"service {name!r}: capability {capability(cap)} is not allowed; allow "
                "it in fleet.yaml policy.capabilities or remove it from cap_add",
            )


def _process(stack: _Stack, svc: ServiceSpec, policy: Policy) -> Iterator[Finding]:
    """``pid: host`` and unconfining ``security_opt`` values need their policy key."""
    name = svc.service
    if svc.pid == "host" and not policy.host_pid:
        yield stack.at_service(
            name,
            "pid",
            f"service {name!r}: pid: host is not allowed; it sees and signals every "
            "process of the device; allow it in fleet.yaml policy.hostPid or remove it",
        )
    for value in svc.security_opt:
        problem = security_opt_problem(value)
        if problem is None or (problem == "unconfined" and policy.unconfined):
            continue
        yield stack.at_service(
            name,
            "security_opt",
            f"service {name!r}: security_opt {value} is not allowed; it lifts the "
            "container's confinement; allow it in fleet.yaml policy.unconfined or remove it"
            if problem == "unconfined"
            else f"service {name!r}: {problem}",
        )


def _network_mode(
    stack: _Stack, svc: ServiceSpec, policy: Policy, owned: set[str]
) -> Iterator[Finding]:
    mode, name = svc.network_mode or "", svc.service
    if mode == "host" and not policy.host_network:
        yield stack.at_service(
            name,
            "network_mode",
            f"service {name!r}: network_mode host is not allowed; allow it in "
            "fleet.yaml policy.hostNetwork or publish ports instead",
        )
    elif mode.startswith("container:") and mode[len("container:") :] not in owned:
        yield stack.at_service(
            name,
            "network_mode",
            f"service {name!r}: network_mode {mode} joins a container this stack does not "
            "own; use service:NAME of a service in this stack or a network",
        )


def _mount(
    stack: _Stack, svc: ServiceSpec, mount: Mount, policy: Policy, volumes: set[str]
) -> Iterator[Finding]:
    name = svc.service
    if mount.kind == "volume" and looks_like_path(mount.source) and mount.source not in volumes:
        yield stack.at_service(
            name,
            "volumes",
            f"service {name!r}: volume {mount.source} is a host path, not a volume name; "
            "use a plain volume name",
        )
    if mount.kind not in _HOST_BINDS or host_path_allowed(mount.source, policy):
        return
    origin = stack.file_source(name, mount)
    if origin is None:
        hint = host_path_hint(mount.source).replace("remove it", "remove the mount")
        yield stack.at_service(
            name, "volumes", f"service {name!r}: host path {mount.source} is not allowed; {hint}"
        )
        return
    kind, entry = origin
    yield stack.at(
        [f"{kind}s", entry, "file"],
        f"service {name!r}: {kind} {entry!r} file {mount.source} is not allowed; "
        f"{host_path_hint(mount.source).replace('remove it', f'remove the {kind}')}",
    )


def _volume(stack: _Stack, volume: VolumeSpec, policy: Policy) -> Iterator[Finding]:
    key = stack.top_key("volumes", volume.name)
    if looks_like_path(volume.name):
        yield stack.at(
            ["volumes", key, "name"],
            f"volume {key!r}: name {volume.name} is a host path, not a volume name "
            "(Docker would bind it); use a plain name of letters, digits, _ . -",
        )
        return
    reach = volume_host_source(volume)
    if reach is None:
        return
    what, value = reach
    if what == "driver":
        yield stack.at(
            ["volumes", key, "driver"],
            f"volume {key!r}: driver {value} is not allowed, policy cannot see what it "
            "reaches; use the local driver",
        )
    elif what == "fs":
        yield stack.at(
            ["volumes", key, "driver_opts", "type"],
            f"volume {key!r}: driver_opts type {value} mounts a filesystem policy cannot "
            "check; use a plain local volume or a bind under fleet.yaml policy.hostPaths",
        )
    elif not host_path_allowed(value, policy):
        yield stack.at(
            ["volumes", key, "driver_opts", "device"],
            f"volume {key!r}: driver_opts bind host path {value or '(none)'} is not allowed; "
            f"{host_path_hint(value)}",
        )


def _network(stack: _Stack, network: NetworkSpec, policy: Policy) -> Iterator[Finding]:
    if (network.name == "host" or network.driver == "host") and not policy.host_network:
        key = stack.top_key("networks", network.name)
        field = "driver" if network.name != "host" else "name" if key != "host" else "external"
        yield stack.at(
            ["networks", key, field],
            f"network {key!r}: the host network is host networking, not allowed; allow it "
            "in fleet.yaml policy.hostNetwork or use a bridge network",
        )
    elif ":" in network.name:
        key = stack.top_key("networks", network.name)
        yield stack.at(
            ["networks", key, "name"],
            f"network {key!r}: name {network.name} would join another namespace; "
            "use a network name",
        )
