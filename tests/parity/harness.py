"""Compose parity harness: create a fixture with ``docker compose`` and with fleetgate.

:func:`projection` reduces ``docker inspect`` of a created container to the fields
parity compares, normalized so that the *intentional* differences documented in
``tests/parity/README.md`` (object name prefixes, bind sources, labels, Env order,
engine-added aliases) do not count.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import yaml
from support.compose import DOCKER_COMPOSE

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_names() -> list[str]:
    """Every fixture directory (one stack each)."""
    return sorted(p.name for p in FIXTURES.iterdir() if (p / "compose.yaml").is_file())


def _strip(name: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def projection(info: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any]:
    """The compared fields of one inspected container, names stripped of ``prefixes``."""
    c, h = info["Config"], info["HostConfig"]
    short_id = info["Id"][:12]
    hidden = {info["Name"].lstrip("/"), short_id, c.get("Hostname")}
    networks = {
        _strip(name, prefixes): sorted(set(ep.get("Aliases") or ()) - hidden)
        for name, ep in (info["NetworkSettings"]["Networks"] or {}).items()
    }
    restart = dict(h["RestartPolicy"] or {})
    restart["Name"] = restart.get("Name") or "no"
    return {
        "Image": c["Image"],
        "Cmd": c["Cmd"],
        "Entrypoint": c["Entrypoint"],
        # a bare NAME (unset variable) is dropped: see README, "Intentional differences"
        "Env": sorted(e for e in c["Env"] or () if "=" in e),
        "ExposedPorts": sorted(c.get("ExposedPorts") or {}),
        "PortBindings": h["PortBindings"] or {},
        "Mounts": sorted(
            (m["Destination"], m["Type"], m["RW"], _strip(m.get("Name", ""), prefixes))
            for m in info["Mounts"]
        ),
        "RestartPolicy": restart,
        "Healthcheck": c.get("Healthcheck"),
        "Devices": h["Devices"] or [],
        "DeviceRequests": h["DeviceRequests"] or [],
        "CapAdd": sorted(h["CapAdd"] or ()),
        "CapDrop": sorted(h["CapDrop"] or ()),
        "Privileged": h["Privileged"],
        "NetworkMode": _strip(h["NetworkMode"], prefixes),
        "Networks": networks,
        "User": c["User"],
        "WorkingDir": c["WorkingDir"],
        "Hostname": c["Hostname"] if c["Hostname"] != short_id else "<id>",
        "LogConfig": h["LogConfig"],
        "Memory": h["Memory"],
        "MemoryReservation": h["MemoryReservation"],
        "NanoCpus": h["NanoCpus"],
        "ShmSize": h["ShmSize"],
        "Ulimits": sorted(h["Ulimits"] or (), key=lambda u: str(u["Name"])),
        "Tmpfs": h.get("Tmpfs") or {},
        "ReadonlyRootfs": h["ReadonlyRootfs"],
        "ExtraHosts": sorted(h["ExtraHosts"] or ()),
        "Init": h.get("Init"),
        "StopSignal": c.get("StopSignal"),
        "StopTimeout": c.get("StopTimeout"),
        "Tty": c.get("Tty"),
        "OpenStdin": c.get("OpenStdin"),
        "Dns": h.get("Dns") or [],
        "DnsSearch": h.get("DnsSearch") or [],
        "SecurityOpt": h.get("SecurityOpt") or [],
        "GroupAdd": h.get("GroupAdd") or [],
        "PidMode": h.get("PidMode") or "",
    }


def services_by_label(
    client: docker.DockerClient, label: str, value: str, service_label: str
) -> dict[str, dict[str, Any]]:
    """Inspect results of containers with ``label=value``, keyed by their service label."""
    found = client.api.containers(all=True, filters={"label": f"{label}={value}"})
    out = {}
    for entry in found:
        info = client.api.inspect_container(entry["Id"])
        out[info["Config"]["Labels"][service_label]] = info
    return out


@contextmanager
def compose_project(
    fixture: str,
    *,
    project: str,
    workdir: Path,
    env: dict[str, str],
    labels: dict[str, str],
    client: docker.DockerClient,
) -> Iterator[dict[str, dict[str, Any]]]:
    """``docker compose create`` the fixture in a copy at ``workdir``; yield inspect by service.

    An override file adds ``labels`` (the test-run label) to every service. On exit the
    project is taken ``down`` (without ``-v``) and its volumes are removed by project label.
    """
    shutil.copytree(FIXTURES / fixture, workdir)
    compose_doc = yaml.safe_load((workdir / "compose.yaml").read_text())
    override = {"services": {name: {"labels": labels} for name in compose_doc["services"]}}
    (workdir / "override.yaml").write_text(yaml.safe_dump(override))
    args = [str(DOCKER_COMPOSE), "-p", project, "-f", "compose.yaml", "-f", "override.yaml"]
    run_env = {**os.environ, **env}
    try:
        done = subprocess.run(
            [*args, "create"], cwd=workdir, env=run_env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"docker compose create failed: {done.stderr.strip()}")
        yield services_by_label(
            client, "com.docker.compose.project", project, "com.docker.compose.service"
        )
    finally:
        subprocess.run(
            [*args, "down", "--timeout", "1"],
            cwd=workdir,
            env=run_env,
            capture_output=True,
            check=False,
        )
        for volume in client.volumes.list(
            filters={"label": f"com.docker.compose.project={project}"}
        ):
            volume.remove(force=True)
