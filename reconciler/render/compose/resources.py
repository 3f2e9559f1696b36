"""Compose resource and runtime keys: healthcheck, logging, ulimits, devices, accelerators,
memory/CPU limits, extra_hosts, restart — each as Docker Compose maps it onto the Engine.

Mappings worth knowing (checked against ``docker compose`` 2.40):

- ``healthcheck.test`` as a string is ``["CMD-SHELL", s]``; ``disable: true`` is ``["NONE"]``;
- ``gpus: all`` is ``DeviceRequest(count=-1, capabilities=[["gpu"]])``; ``gpus`` entries get
  ``gpu`` appended to their capabilities; a ``reservations.devices`` entry with neither
  ``count`` nor ``device_ids`` means all devices (``count=-1``);
- ``cpus``/``limits.cpus`` become ``NanoCpus``; ``mem_limit``/``limits.memory`` ``Memory``;
  when both spellings are given they must agree (Compose refuses a conflict too);
- ``ulimits: {nofile: 1024}`` sets soft and hard to 1024.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from reconciler.model import DeviceMapping, DeviceRequest, Healthcheck, LogConfig, Ulimit
from reconciler.render.compose.context import Issues, Reader, line_of, scalar_text

_RESTART = re.compile(r"^(no|always|unless-stopped|on-failure(:\d+)?)$")


def restart_policy(r: Reader) -> str:
    value = r.str_("restart")
    if value is not None and not _RESTART.match(value):
        r.bad("restart", f"{value!r} is not no, always, unless-stopped or on-failure[:N]")
        value = None
    deployed = _deploy_restart(r)
    return deployed or value or "no"  # docker compose: deploy.restart_policy wins


_CONDITIONS = {"none": "no", "no": "no", "on-failure": "on-failure", "any": "always",
               "always": "always", "unless-stopped": "unless-stopped", "": "no"}  # fmt: skip
_SWARM_ONLY = "Swarm only: ignored, as docker compose does"


def _deploy_restart(r: Reader) -> str | None:
    """``deploy.restart_policy`` as docker compose maps it onto the engine: ``condition``
    (``none`` -> no, ``any`` -> always) and ``max_attempts`` (on-failure:N); ``delay`` and
    ``window`` are Swarm's only and ignored with a warning."""
    deploy = r.node.get("deploy")
    node = deploy.get("restart_policy") if isinstance(deploy, dict) else None
    if not isinstance(node, dict):
        return None
    pr = Reader(node, f"{r.where}.deploy.restart_policy", r.issues)
    for key in ("delay", "window"):
        if key in node:
            r.issues.warn(pr.line(key), f"{pr.where}.{key}", _SWARM_ONLY)
    condition = (pr.str_("condition") or "").strip()
    if condition not in _CONDITIONS:
        pr.bad("condition", f"{condition!r} is not none, on-failure, any or unless-stopped")
        return None
    mode = _CONDITIONS[condition]
    attempts = pr.int_("max_attempts")
    if attempts is not None and mode != "on-failure":
        pr.bad("max_attempts", "only goes with condition: on-failure; remove one")
        return None
    return f"on-failure:{attempts}" if attempts and mode == "on-failure" else mode


def healthcheck(r: Reader) -> Healthcheck | None:
    node = r.node.get("healthcheck")
    if node is None:
        return None
    if not isinstance(node, dict):
        r.bad("healthcheck", "must be a mapping")
        return None
    h = Reader(node, f"{r.where}.healthcheck", r.issues)
    if h.bool_("disable"):
        return Healthcheck(("NONE",))
    test = node.get("test")
    if test is None:
        cmd: tuple[str, ...] = ()
    elif isinstance(test, str):
        cmd = ("CMD-SHELL", test)
    elif isinstance(test, list) and test and all(isinstance(v, str) for v in test):
        cmd = tuple(test)
        if cmd[0] not in ("CMD", "CMD-SHELL", "NONE"):
            h.bad("test", "a list must start with CMD, CMD-SHELL or NONE")
    else:
        h.bad("test", "must be a string or a list starting with CMD or CMD-SHELL")
        cmd = ()
    return Healthcheck(
        cmd,
        interval=h.duration("interval"),
        timeout=h.duration("timeout"),
        retries=h.int_("retries"),
        start_period=h.duration("start_period"),
        start_interval=h.duration("start_interval"),
    )


def logging(r: Reader) -> LogConfig | None:
    node = r.node.get("logging")
    if node is None:
        return None
    if not isinstance(node, dict):
        r.bad("logging", "must be a mapping with driver and options")
        return None
    lr = Reader(node, f"{r.where}.logging", r.issues)
    options = tuple(sorted((str(k), scalar_text(v)) for k, v in lr.mapping("options").items()))
    # no driver: the engine's default driver with these options, as docker compose does
    return LogConfig(lr.str_("driver") or "", options)


def ulimits(r: Reader) -> tuple[Ulimit, ...]:
    out: list[Ulimit] = []
    for name, value in r.mapping("ulimits").items():
        if isinstance(value, int) and not isinstance(value, bool):
            out.append(Ulimit(str(name), value, value))
        elif isinstance(value, dict) and all(
            isinstance(value.get(k), int) for k in ("soft", "hard")
        ):
            out.append(Ulimit(str(name), value["soft"], value["hard"]))
        else:
            r.bad("ulimits", f"{name}: must be an integer or {{soft: N, hard: N}}")
    return tuple(sorted(out, key=lambda u: u.name))


def devices(r: Reader) -> tuple[DeviceMapping, ...]:
    value = r.node.get("devices")
    if value is None:
        return ()
    if not isinstance(value, list):
        r.bad("devices", "must be a list like /dev/ttyUSB0:/dev/ttyUSB0:rwm")
        return ()
    out: list[DeviceMapping] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            host = scalar_text(item.get("source") or "")
            target = scalar_text(item.get("target") or host)
            perms = scalar_text(item.get("permissions") or "rwm")
        elif isinstance(item, str):
            parts = item.split(":")
            host = parts[0]
            target = parts[1] if len(parts) > 1 and parts[1] else host
            perms = parts[2] if len(parts) > 2 else "rwm"
            if len(parts) == 2 and re.fullmatch(r"[rwm]+", parts[1]):
                target, perms = host, parts[1]
        else:
            host, target, perms = "", "", ""
        if (
            not host.startswith("/")
            or not target.startswith("/")
            or not re.fullmatch(r"[rwm]+", perms)
        ):
            r.issues.add(
                line_of(value, i, r.line("devices")),
                f"{r.where}.devices[{i}]",
                f"{item!r} is not /dev/host[:/dev/container[:rwm]]",
            )
            continue
        out.append(DeviceMapping(host, target, perms))
    return tuple(out)


def _device_request(
    node: Mapping[str, Any], where: str, line: int | None, issues: Issues, gpu: bool
) -> DeviceRequest | None:
    count_raw = node.get("count")
    ids = node.get("device_ids") or []
    if count_raw == "all":
        count = -1
    elif count_raw is None:
        count = -1 if not ids else 0
    elif isinstance(count_raw, int) and not isinstance(count_raw, bool):
        count = count_raw
    elif isinstance(count_raw, str) and count_raw.strip().isdigit():
        count = int(count_raw)
    else:
        issues.add(line, where, f"count {count_raw!r} is not an integer or all")
        return None
    caps = [scalar_text(c) for c in node.get("capabilities") or []]
    if gpu:
        caps.append("gpu")
    options = node.get("options") or {}
    return DeviceRequest(
        driver=scalar_text(node.get("driver") or ""),
        count=count,
        device_ids=tuple(scalar_text(i) for i in ids),
        capabilities=(tuple(caps),) if caps or gpu else (),
        options=tuple(sorted((str(k), scalar_text(v)) for k, v in dict(options).items())),
    )


def device_requests(
    r: Reader, reservations: Mapping[str, Any], where: str
) -> tuple[DeviceRequest, ...]:
    out: list[DeviceRequest] = []
    gpus = r.node.get("gpus")
    if gpus == "all":
        out.append(DeviceRequest(count=-1, capabilities=(("gpu",),)))
    elif isinstance(gpus, list):
        for i, item in enumerate(gpus):
            if not isinstance(item, dict):
                r.bad("gpus", "must be all or a list of {driver, count, device_ids}")
                continue
            req = _device_request(item, f"{r.where}.gpus[{i}]", line_of(gpus, i), r.issues, True)
            if req:
                out.append(req)
    elif gpus is not None:
        r.bad("gpus", "must be all or a list of {driver, count, device_ids}")
    devs = reservations.get("devices") or []
    for i, item in enumerate(devs if isinstance(devs, list) else []):
        if isinstance(item, dict):
            req = _device_request(item, f"{where}.devices[{i}]", line_of(devs, i), r.issues, False)
            if req:
                out.append(req)
    return tuple(out)


def limits(r: Reader) -> tuple[int | None, int | None, int | None, tuple[DeviceRequest, ...]]:
    """(mem_limit, mem_reservation, nano_cpus, device_requests) from both spellings."""
    deploy = r.mapping("deploy")
    dr = Reader(deploy, f"{r.where}.deploy", r.issues)
    for key in deploy:
        if key == "placement":
            message = f"{_SWARM_ONLY}; choose devices with groups and device stacks"
            r.issues.warn(dr.line(key), f"{dr.where}.{key}", message)
        elif key not in ("resources", "restart_policy"):
            dr.bad(key, "is not supported (only deploy.resources); remove it")
    resources = dr.mapping("resources")
    rr = Reader(resources, f"{r.where}.deploy.resources", r.issues)
    lim = Reader(rr.mapping("limits"), f"{rr.where}.limits", r.issues)
    res = Reader(rr.mapping("reservations"), f"{rr.where}.reservations", r.issues)

    def pick(a: int | None, b: int | None, key: str) -> int | None:
        if a is not None and b is not None and a != b:
            r.bad(key, f"conflicts with deploy.resources ({a} != {b}); keep one")
        return a if a is not None else b

    mem = pick(r.size("mem_limit"), lim.size("memory"), "mem_limit")
    mem_res = pick(r.size("mem_reservation"), res.size("memory"), "mem_reservation")
    cpus = pick(_nano(r, "cpus"), _nano(lim, "cpus"), "cpus")
    return mem, mem_res, cpus, device_requests(r, res.node, res.where)


def _nano(r: Reader, key: str) -> int | None:
    value = r.node.get(key)
    if value is None:
        return None
    try:
        cpus = float(scalar_text(value))
    except ValueError:
        r.bad(key, f"{value!r} is not a number of CPUs like 0.5")
        return None
    if cpus < 0:
        r.bad(key, "must not be negative")
        return None
    return round(cpus * 1e9)


def extra_hosts(r: Reader) -> tuple[str, ...]:
    out: list[str] = []
    value = r.node.get("extra_hosts")
    if isinstance(value, dict):
        items = [(str(k), scalar_text(v)) for k, v in value.items()]
    else:
        items = []
        for entry in r.str_list("extra_hosts"):
            sep = "=" if "=" in entry else ":"
            host, _, ip = entry.partition(sep)
            items.append((host, ip))
    for host, ip in items:
        if not host or not ip:
            r.bad("extra_hosts", f"{host}:{ip} is not host:ip or host=ip")
            continue
        out.append(f"{host}:{ip}")
    return tuple(out)
