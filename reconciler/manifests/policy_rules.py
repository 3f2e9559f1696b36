"""Device policy rules: what one value asks of the host, and who may widen it (nobody).

These are the pure predicates :mod:`reconciler.manifests.policy` applies to every way a rendered
manifest reaches the host, plus :func:`parse_policy` and :func:`narrow`.

Host paths are compared after :func:`host_path` normalization (``..``, ``.``, repeated
and leading ``//`` slashes collapse, as the kernel resolves them) and by *path
component* (``/var/lib/plc`` allows ``/var/lib/plc/x``, not ``/var/lib/plcx``).
:data:`ALWAYS_REFUSED` (the root, the Docker and containerd sockets, ``/proc`` whose
``/proc/1/root`` is the host's root) and anything above them are refused whatever
``hostPaths`` says. Symlinks *on the device* cannot be seen from the repository: a
``hostPaths`` prefix must not hold links a container could plant.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from reconciler.errors import Finding
from reconciler.manifests.yamlio import LineDict
from reconciler.model import Location, Policy, VolumeSpec

ALWAYS_REFUSED = (
    "/",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/run/containerd/containerd.sock",
    "/run/containerd/containerd.sock",
    "/proc",
)
"""Host paths no policy can allow: they hand out the host (root, engine sockets, /proc)."""

VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
"""Docker's own rule for a volume name: anything else in ``Binds`` is a host path."""

_POLICY_KEYS = (
    *("registries", "privileged", "hostNetwork", "hostPaths", "devices", "capabilities"),
    *("hostPid", "unconfined"),
)

# security_opt values that switch a confinement off (policy.unconfined); every other
# value must be one of _HARDENING (it only adds confinement or labels).
_UNCONFINED = re.compile(
    r"(?:seccomp|apparmor)[=:]unconfined|label[=:]disable|systempaths[=:]unconfined",
    re.IGNORECASE,
)
_HARDENING = re.compile(
    r"no-new-privileges(?:[=:](?:true|false))?|label[=:](?:user|role|type|level):\S+"
    r"|apparmor[=:][\w.-]+|seccomp[=:][\w./-]+\.json",
    re.IGNORECASE,
)


def security_opt_problem(value: str) -> str | None:
    """``None`` (hardening), ``"unconfined"`` (needs policy) or a refusal message."""
    if _UNCONFINED.fullmatch(value):
        return "unconfined"
    if _HARDENING.fullmatch(value):
        return None
    return (
        f"security_opt {value!r} is not supported; use no-new-privileges, label:..., "
        "apparmor:PROFILE, or seccomp/apparmor unconfined with policy.unconfined"
    )


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


capability = _capability


def host_path(path: str) -> str:
    """``path`` as the kernel resolves it (no symlinks): ``//a/./b/../c`` -> ``/a/c``."""
    normal = posixpath.normpath(path)
    return "/" + normal.lstrip("/") if normal.startswith("/") else normal


def _under(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or inside it, by path component."""
    path, prefix = host_path(path), host_path(prefix)
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix + "/")


def hands_out_host(path: str) -> bool:
    """The path is, contains or (but for ``/``) lies inside a path of :data:`ALWAYS_REFUSED`."""
    normal = host_path(path)
    return any(
        _under(refused, normal) or (refused != "/" and _under(normal, refused))
        for refused in ALWAYS_REFUSED
    )


def host_path_allowed(path: str, policy: Policy) -> bool:
    """A host path source is allowed: under a prefix, and exposes no refused path."""
    if not path.startswith("/") or hands_out_host(path):
        return False
    return any(_under(path, prefix) for prefix in policy.host_paths)


def host_path_hint(path: str) -> str:
    """What to do about a refused host path."""
    if path.startswith("/") and hands_out_host(path):
        return "it would hand out the host; remove it"
    return "allow it in fleet.yaml policy.hostPaths or remove it"


def _literal_dir(glob: str) -> str:
    """The directory a glob is pinned to before its first wildcard (``/opt/x*`` -> ``/opt``)."""
    cut = min((i for i, c in enumerate(glob) if c in "*?["), default=len(glob))
    if cut == len(glob):
        return glob
    return posixpath.dirname(glob[:cut])


def device_allowed(path: str, policy: Policy) -> bool:
    """A device path, normalized, matches a glob; outside ``/dev`` the glob must name its
    directory explicitly (``*`` or ``/*`` never hand out ``/etc/...``)."""
    normal = host_path(path)
    if not normal.startswith("/"):
        return False
    in_dev = normal.startswith("/dev/")
    for glob in policy.devices:
        if not fnmatch.fnmatchcase(normal, host_path(glob)):
            continue
        if in_dev or _literal_dir(host_path(glob)) not in ("", "/"):
            return True
    return False


def looks_like_path(name: str) -> bool:
    """A volume or network name Docker would not take as a plain name."""
    return not VOLUME_NAME.match(name)


BIND_TYPES = frozenset({"none", "bind", "rbind"})
"""``driver_opts.type`` values of the local driver that bind the ``device`` host path."""


def volume_host_source(volume: VolumeSpec) -> tuple[str, str] | None:
    """What a created volume reaches on the host: ``("bind", path)``, ``("fs", type)``
    for another filesystem (nfs, cifs, ext4 on a block device ...), ``("driver", name)``
    for a driver other than ``local``; ``None`` for a plain local volume or an external one
    (it is used, never created)."""
    if volume.external:
        return None
    if volume.driver not in ("local", ""):
        return ("driver", volume.driver)
    opts = dict(volume.options)
    if not opts:
        return None
    kind = opts.get("type", "")
    flags = {f.strip() for f in opts.get("o", "").split(",")}
    if kind in BIND_TYPES or flags & {"bind", "rbind"} or (not kind and "device" in opts):
        return ("bind", opts.get("device", ""))
    if kind == "tmpfs":
        return None
    return ("fs", kind or "(none)")


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
    fleet_caps = {_capability(c) for c in fleet.capabilities}
    return Policy(
        registries=registries,
        privileged=fleet.privileged and local.privileged,
        host_network=fleet.host_network and local.host_network,
        host_paths=paths(fleet.host_paths, local.host_paths),
        devices=devices,
        capabilities=(
            local.capabilities
            if "ALL" in fleet_caps
            else tuple(c for c in fleet.capabilities if {_capability(c), "ALL"} & local_caps)
        ),
        host_pid=fleet.host_pid and local.host_pid,
        unconfined=fleet.unconfined and local.unconfined,
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
            host_pid=flag("hostPid"),
            unconfined=flag("unconfined"),
        ),
        findings,
    )
