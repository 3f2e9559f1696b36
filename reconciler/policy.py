"""Device policy: what rendered services may ask of the host, and who may widen it (nobody).

The agent holds the Docker socket, which is root on the device, so a merge request
must not be able to grant itself the host. :func:`check` runs on *rendered* services
(after interpolation, so ``${PRIV}`` cannot smuggle ``privileged: true`` past it) and
reports each violation at the compose file line of the offending key, with what to do.

Rules:

- ``registries``: the image's registry, parsed like Docker (no domain is ``docker.io``;
  the first component is a registry only when it has a ``.`` or ``:`` or is
  ``localhost``); ``None`` allows any registry.
- ``privileged`` / ``hostNetwork``: off unless allowed.
- host bind mounts (``Mount.kind == "host"``) must lie under a ``hostPaths`` prefix,
  compared by *path component* (``/var/lib/plc`` allows ``/var/lib/plc/x``, not
  ``/var/lib/plcx``). ``/``, ``/var/run/docker.sock`` and ``/run/docker.sock`` (and
  anything above them) are always refused: they hand out the host.
- ``devices``: host device paths must match a glob (``fnmatch``).
- ``cap_add`` values must be listed (``CAP_`` prefixes and case are ignored).

:func:`narrow` intersects a fleet policy with the agent's local one: every
permission needs both, so the local file can only take permissions away.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Mapping
from typing import Any, Protocol

from reconciler.errors import Finding
from reconciler.model import DesiredState, Location, Policy
from reconciler.yamlio import LineDict

ALWAYS_REFUSED = ("/", "/var/run/docker.sock", "/run/docker.sock")
"""Host paths no policy can allow: the root and the Docker socket (root on the host)."""

_POLICY_KEYS = ("registries", "privileged", "hostNetwork", "hostPaths", "devices", "capabilities")


class Rendered(Protocol):
    """What :func:`check` needs from ``reconciler.render.Rendered``."""

    @property
    def state(self) -> DesiredState: ...

    def where(self, stack: str, service: str | None = None, key: str | None = None) -> Location: ...


def image_registry(image: str) -> str:
    """The registry host of an image reference, the way Docker decides it."""
    name = image.split("@", 1)[0]
    first, slash, _ = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first.lower()
    return "docker.io"


def _capability(name: str) -> str:
    upper = name.upper()
    return upper[4:] if upper.startswith("CAP_") else upper


def _under(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or inside it, by path component."""
    path, prefix = posixpath.normpath(path), posixpath.normpath(prefix)
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix + "/")


def host_path_allowed(path: str, policy: Policy) -> bool:
    """A host bind-mount source is allowed: under a prefix, and exposes no refused path."""
    normal = posixpath.normpath(path)
    if any(_under(refused, normal) for refused in ALWAYS_REFUSED):
        return False
    return any(_under(normal, prefix) for prefix in policy.host_paths)


def check(rendered: Rendered, policy: Policy) -> list[Finding]:
    """Every policy violation of the rendered device, at the line of the offending key."""
    out: list[Finding] = []

    def report(stack: str, service: str, key: str, message: str) -> None:
        where = rendered.where(stack, service, key)
        out.append(Finding(where.path, where.line, message))

    for stack in rendered.state.stacks:
        for svc in stack.services:
            name = svc.service
            registry = image_registry(svc.image)
            if policy.registries is not None and registry not in policy.registries:
                report(
                    stack.name,
                    name,
                    "image",
                    f"service {name!r}: registry {registry} is not allowed; use an image from "
                    f"{', '.join(policy.registries) or 'an allowed registry'} "
                    "or add it to fleet.yaml policy.registries",
                )
            if svc.privileged and not policy.privileged:
                report(
                    stack.name,
                    name,
                    "privileged",
                    f"service {name!r}: privileged is not allowed; grant devices or cap_add "
                    "instead, or allow it in fleet.yaml policy.privileged",
                )
            if svc.network_mode == "host" and not policy.host_network:
                report(
                    stack.name,
                    name,
                    "network_mode",
                    f"service {name!r}: network_mode host is not allowed; allow it in "
                    "fleet.yaml policy.hostNetwork or publish ports instead",
                )
            for mount in svc.mounts:
                if mount.kind != "host" or host_path_allowed(mount.source, policy):
                    continue
                if any(_under(r, posixpath.normpath(mount.source)) for r in ALWAYS_REFUSED):
                    hint = "it would hand out the host; remove the mount"
                else:
                    hint = "allow it in fleet.yaml policy.hostPaths or remove the mount"
                report(
                    stack.name,
                    name,
                    "volumes",
                    f"service {name!r}: host path {mount.source} is not allowed; {hint}",
                )
            for device in svc.devices:
                if any(fnmatch.fnmatchcase(device.host_path, g) for g in policy.devices):
                    continue
                report(
                    stack.name,
                    name,
                    "devices",
                    f"service {name!r}: device {device.host_path} is not allowed; allow it "
                    "in fleet.yaml policy.devices or remove it",
                )
            allowed = {_capability(c) for c in policy.capabilities}
            for cap in svc.cap_add:
                if _capability(cap) in allowed:
                    continue
                report(
                    stack.name,
                    name,
                    "cap_add",
                    f"service {name!r}: capability {_capability(cap)} is not allowed; allow "
                    "it in fleet.yaml policy.capabilities or remove it from cap_add",
                )
    return out


def narrow(fleet: Policy, local: Policy) -> Policy:
    """The policy allowing only what *both* allow: a local policy never widens the fleet's.

    Registries: the intersection (``None`` = any, so the other side wins). Host paths:
    a prefix survives when it lies under a prefix of the other side. Devices globs and
    capabilities: those the other side allows as well (a glob survives when the other
    side lists the same glob or a glob matching it).
    """
    if fleet.registries is None:
        registries = local.registries
    elif local.registries is None:
        registries = fleet.registries
    else:
        registries = tuple(r for r in fleet.registries if r in local.registries)

    def paths(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
        keep = [p for p in a if any(_under(p, q) for q in b)]
        keep += [q for q in b if any(_under(q, p) for p in a) and q not in keep]
        return tuple(keep)

    devices = tuple(
        g for g in fleet.devices if any(fnmatch.fnmatchcase(g, h) for h in local.devices)
    ) + tuple(
        h
        for h in local.devices
        if h not in fleet.devices and any(fnmatch.fnmatchcase(h, g) for g in fleet.devices)
    )
    local_caps = {_capability(c) for c in local.capabilities}
    return Policy(
        registries=registries,
        privileged=fleet.privileged and local.privileged,
        host_network=fleet.host_network and local.host_network,
        host_paths=paths(fleet.host_paths, local.host_paths),
        devices=devices,
        capabilities=tuple(c for c in fleet.capabilities if _capability(c) in local_caps),
    )


def parse_policy(mapping: Any, location: Location) -> tuple[Policy, list[Finding]]:
    """A ``policy:`` mapping (fleet.yaml or the agent config) as a :class:`Policy`.

    Checks types itself (the agent config has no schema); a wrong entry is a finding and
    falls back to the safe default for that key.
    """
    path = location.path
    if mapping is None:
        return Policy(), []
    if not isinstance(mapping, Mapping):
        return Policy(), [Finding(path, location.line, "policy must be a mapping of keys")]

    def line(key: str) -> int | None:
        return mapping.line_of(key) if isinstance(mapping, LineDict) else location.line

    findings: list[Finding] = []
    for key in mapping:
        if key not in _POLICY_KEYS:
            message = f"unknown policy key {key!r}; use one of {', '.join(_POLICY_KEYS)}"
            findings.append(Finding(path, line(str(key)), message))

    def flag(key: str) -> bool:
        value = mapping.get(key, False)
        if isinstance(value, bool):
            return value
        findings.append(Finding(path, line(key), f"policy.{key} must be true or false"))
        return False

    def strings(key: str, absolute: bool = False) -> tuple[str, ...] | None:
        value = mapping.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            findings.append(Finding(path, line(key), f"policy.{key} must be a list of strings"))
            return ()
        if absolute and not all(v.startswith("/") for v in value):
            findings.append(Finding(path, line(key), f"policy.{key} entries must be absolute"))
            return tuple(v for v in value if v.startswith("/"))
        return tuple(value)

    registries = strings("registries")
    return (
        Policy(
            registries=None if registries is None else tuple(r.lower() for r in registries),
            privileged=flag("privileged"),
            host_network=flag("hostNetwork"),
            host_paths=strings("hostPaths", absolute=True) or (),
            devices=strings("devices", absolute=True) or (),
            capabilities=strings("capabilities") or (),
        ),
        findings,
    )
