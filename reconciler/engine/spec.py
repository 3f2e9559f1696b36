"""ServiceSpec -> Docker Engine API create parameters (pure; no Docker needed).

The body follows ``POST /containers/create`` of Engine API 1.41 field for field, the
way docker compose v2 (2.40) fills it on that API version, so a service created by
fleetgate and by ``docker compose create`` inspect the same (``tests/parity``):

- bind-like mounts (``config``/``data``/``host``/``lock``) and named ``volume`` mounts
  go into ``HostConfig.Binds`` as ``source:target:ro|rw`` — compose's choice on API 1.41
  for both short and long syntax; the engine creates a missing bind source directory,
  as ``docker compose`` does;
- ``secret`` mounts and ``tmpfs`` mounts go into ``HostConfig.Mounts``: a secret whose
  file is missing must fail the create instead of being replaced by an empty directory;
- ``NetworkMode`` is ``network_mode`` when set, else the *first* attached network
  (render orders attachments as compose does: priority, then name); only that network is
  in ``NetworkingConfig`` (API < 1.44 accepts one endpoint at create); the others are
  connected after create, before start, see :func:`extra_network_attachments`;
- every network endpoint gets the aliases ``container_name`` and ``service`` (compose's
  service DNS name) followed by the declared aliases, without duplicates;
- capabilities are spelled ``CAP_<NAME>`` as compose sends them;
- ``Labels`` are the user labels plus the ``io.fleetgate.*`` ownership labels, which
  always win over a user label of the same name.

Secret *values* never pass through here: secrets are files mounted from the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.model import (
    LABEL_CONFIG_HASH,
    LABEL_DEVICE,
    LABEL_FIELD_HASHES,
    LABEL_MANAGED,
    LABEL_REVISION,
    LABEL_SERVICE,
    LABEL_STACK,
    DeviceRequest,
    Healthcheck,
    LogConfig,
    Mount,
    NetworkAttachment,
    ServiceSpec,
)

NS_PER_SECOND = 1_000_000_000
BIND_KINDS = frozenset({"config", "data", "host", "lock", "volume"})
"""Mount kinds written as ``HostConfig.Binds`` (compose's form on API 1.41)."""


def encode_field_hashes(field_hashes: tuple[tuple[str, str], ...]) -> str:
    """``(("image", "1a2b"), ...)`` -> ``"image=1a2b,..."`` (the config-fields label)."""
    return ",".join(f"{name}={digest}" for name, digest in field_hashes)


def decode_field_hashes(text: str) -> tuple[tuple[str, str], ...]:
    """Inverse of :func:`encode_field_hashes`; malformed parts are skipped."""
    pairs = []
    for part in text.split(","):
        name, sep, digest = part.partition("=")
        if sep and name:
            pairs.append((name, digest))
    return tuple(pairs)


def ownership_labels(spec: ServiceSpec, revision: str) -> dict[str, str]:
    """The ``io.fleetgate.*`` labels of a service container."""
    return {
        LABEL_MANAGED: "true",
        LABEL_DEVICE: spec.device,
        LABEL_STACK: spec.stack,
        LABEL_SERVICE: spec.service,
        LABEL_REVISION: revision,
        LABEL_CONFIG_HASH: spec.config_hash,
        LABEL_FIELD_HASHES: encode_field_hashes(spec.field_hashes),
    }


def restart_policy(restart: str) -> dict[str, Any]:
    """``"on-failure:3"`` -> ``{"Name": "on-failure", "MaximumRetryCount": 3}``."""
    name, _, count = restart.partition(":")
    return {"Name": name, "MaximumRetryCount": int(count) if count else 0}


def _ns(seconds: float) -> int:
    return round(seconds * NS_PER_SECOND)


def healthcheck_config(hc: Healthcheck) -> dict[str, Any]:
    """Engine ``Healthcheck``: durations in nanoseconds; unset fields inherit the image's."""
    out: dict[str, Any] = {"Test": list(hc.test)}
    if hc.interval is not None:
        out["Interval"] = _ns(hc.interval)
    if hc.timeout is not None:
        out["Timeout"] = _ns(hc.timeout)
    if hc.start_period is not None:
        out["StartPeriod"] = _ns(hc.start_period)
    if hc.start_interval is not None:
        out["StartInterval"] = _ns(hc.start_interval)  # ignored by engines < API 1.44
    if hc.retries is not None:
        out["Retries"] = hc.retries
    return out


def device_request(req: DeviceRequest) -> dict[str, Any]:
    """Engine ``DeviceRequest`` (compose sends ``null`` for empty ids and options)."""
    return {
        "Driver": req.driver,
        "Count": req.count,
        "DeviceIDs": list(req.device_ids) or None,
        "Capabilities": [list(caps) for caps in req.capabilities],
        "Options": dict(req.options) or None,
    }


def capability(name: str) -> str:
    """``NET_ADMIN`` -> ``CAP_NET_ADMIN`` (compose's normalization); ``ALL`` stays ``ALL``."""
    upper = name.upper()
    return upper if upper == "ALL" or upper.startswith("CAP_") else f"CAP_{upper}"


def bind_entry(mount: Mount) -> str:
    """``source:target:ro|rw`` for a bind-like or named-volume mount."""
    return f"{mount.source}:{mount.target}:{'ro' if mount.read_only else 'rw'}"


def mount_entry(mount: Mount) -> dict[str, Any]:
    """``HostConfig.Mounts`` entry for ``tmpfs`` and ``secret`` mounts."""
    if mount.kind == "tmpfs":
        return {"Type": "tmpfs", "Target": mount.target, "ReadOnly": mount.read_only}
    return {"Type": "bind", "Source": mount.source, "Target": mount.target, "ReadOnly": True}


def endpoint_config(spec: ServiceSpec, attachment: NetworkAttachment) -> dict[str, Any]:
    """``EndpointSettings`` of one network attachment (aliases as compose sets them)."""
    aliases: list[str] = []
    for alias in (spec.container_name, spec.service, *attachment.aliases):
        if alias not in aliases:
            aliases.append(alias)
    out: dict[str, Any] = {"Aliases": aliases}
    if attachment.ipv4_address:
        out["IPAMConfig"] = {"IPv4Address": attachment.ipv4_address}
    return out


def network_mode(spec: ServiceSpec) -> str | None:
    """``HostConfig.NetworkMode``: explicit mode, else the first attached network."""
    if spec.network_mode:
        return spec.network_mode
    if spec.networks:
        return spec.networks[0].network
    return None


def primary_attachment(spec: ServiceSpec) -> NetworkAttachment | None:
    """The attachment named by ``NetworkMode`` (configured at create), if any."""
    if not spec.networks:
        return None
    first = spec.networks[0]
    if spec.network_mode is None or spec.network_mode == first.network:
        return first
    return None


def extra_network_attachments(spec: ServiceSpec) -> tuple[NetworkAttachment, ...]:
    """Attachments to connect after create, before start (all but the primary one)."""
    if primary_attachment(spec) is None:
        return ()
    return spec.networks[1:]


def host_config(spec: ServiceSpec) -> dict[str, Any]:
    """The ``HostConfig`` object of the create body."""
    hc: dict[str, Any] = {
        "Binds": [bind_entry(m) for m in spec.mounts if m.kind in BIND_KINDS],
        "Mounts": [mount_entry(m) for m in spec.mounts if m.kind not in BIND_KINDS],
        "PortBindings": port_bindings(spec),
        "RestartPolicy": restart_policy(spec.restart),
        "Privileged": spec.privileged,
        "CapAdd": [capability(c) for c in spec.cap_add] or None,
        "CapDrop": [capability(c) for c in spec.cap_drop] or None,
        "ReadonlyRootfs": spec.read_only,
        "Devices": [
            {
                "PathOnHost": d.host_path,
                "PathInContainer": d.container_path,
                "CgroupPermissions": d.permissions,
            }
            for d in spec.devices
        ],
        "DeviceRequests": [device_request(r) for r in spec.device_requests] or None,
        "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in spec.ulimits] or None,
        "ExtraHosts": list(spec.extra_hosts) or None,
        "Tmpfs": dict(spec.tmpfs) or None,
    }
    hc.update(set_fields(spec, HOST_CONFIG_FIELDS))
    return hc


Field = tuple[str, Callable[[ServiceSpec], object]]
"""An optional create-body field: its Engine API key and its value (``None``: left out)."""

HOST_CONFIG_FIELDS: tuple[Field, ...] = (
    ("NetworkMode", network_mode),
    ("Init", lambda s: s.init),
    ("ShmSize", lambda s: s.shm_size),
    ("Memory", lambda s: s.mem_limit),
    ("MemoryReservation", lambda s: s.mem_reservation),
    ("NanoCpus", lambda s: s.nano_cpus),
    ("Dns", lambda s: list(s.dns) or None),
    ("DnsSearch", lambda s: list(s.dns_search) or None),
    ("SecurityOpt", lambda s: [security_opt(v) for v in s.security_opt] or None),
    ("PidMode", lambda s: s.pid),
    ("GroupAdd", lambda s: list(s.group_add) or None),
    ("LogConfig", lambda s: None if s.logging is None else log_config(s.logging)),
)
"""``HostConfig`` fields sent only when the service sets them (as compose leaves them out)."""

CONTAINER_FIELDS: tuple[Field, ...] = (
    ("Cmd", lambda s: None if s.command is None else list(s.command)),
    ("Entrypoint", lambda s: None if s.entrypoint is None else list(s.entrypoint)),
    ("Tty", lambda s: True if s.tty else None),
    ("OpenStdin", lambda s: True if s.stdin_open else None),
    ("User", lambda s: s.user),
    ("WorkingDir", lambda s: s.working_dir),
    ("Hostname", lambda s: s.hostname),
    ("Healthcheck", lambda s: None if s.healthcheck is None else healthcheck_config(s.healthcheck)),
    ("StopSignal", lambda s: s.stop_signal),
    ("StopTimeout", lambda s: None if s.stop_grace_period is None else round(s.stop_grace_period)),
)
"""Top-level create-body fields sent only when the service sets them."""


def set_fields(spec: ServiceSpec, fields: tuple[Field, ...]) -> dict[str, object]:
    """The fields of ``fields`` that ``spec`` sets, in table order."""
    return {key: value for key, get in fields if (value := get(spec)) is not None}


def log_config(logging: LogConfig) -> dict[str, object]:
    """``HostConfig.LogConfig``: the driver and its options."""
    return {"Type": logging.driver, "Config": dict(logging.options)}


def security_opt(value: str) -> str:
    """Compose's ``security_opt`` as the engine takes it: ``no-new-privileges:true`` and
    ``label:type:x`` keep their form; ``seccomp:unconfined`` becomes ``seccomp=unconfined``
    (the ``KEY:VALUE`` form the engine refuses for seccomp/apparmor)."""
    key, sep, rest = value.partition(":")
    if sep and key in ("seccomp", "apparmor", "systempaths"):
        return f"{key}={rest}"
    return value


def port_bindings(spec: ServiceSpec) -> dict[str, list[dict[str, str]]]:
    """``HostConfig.PortBindings``: ``"80/tcp" -> [{"HostIp", "HostPort"}, ...]``."""
    out: dict[str, list[dict[str, str]]] = {}
    for p in spec.ports:
        host_port = "" if p.host_port is None else str(p.host_port)
        out.setdefault(f"{p.container_port}/{p.protocol}", []).append(
            {"HostIp": p.host_ip, "HostPort": host_port}
        )
    return out


def container_config(spec: ServiceSpec, revision: str) -> dict[str, Any]:
    """The complete ``POST /containers/create`` body for ``spec`` at ``revision``."""
    labels = dict(spec.labels)
    labels.update(ownership_labels(spec, revision))
    body: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{name}={value}" for name, value in spec.environment],
        "Labels": labels,
        "ExposedPorts": {key: {} for key in (*port_bindings(spec), *spec.expose)},
        "HostConfig": host_config(spec),
    }
    body.update(set_fields(spec, CONTAINER_FIELDS))
    first = primary_attachment(spec)
    if first is not None:
        body["NetworkingConfig"] = {
            "EndpointsConfig": {first.network: endpoint_config(spec, first)}
        }
    return body
