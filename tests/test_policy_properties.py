"""Whatever a fleet asks, what passes the policy check never reaches the host past it.

Hypothesis writes fleets (bind mounts in short and long syntax with absolute, relative,
``..`` and ``//`` sources incl. the Docker socket and ``/``, interpolated sources,
secrets and configs with ``file:``, top-level volumes with ``driver_opts``, drivers and
external names, external networks incl. ``host``, every ``network_mode``, devices with
``..`` tricks) and random policies. Each fleet goes through the real path (load,
render, policy check); for every fleet with no policy finding, the Engine API payloads
— ``engine_spec``'s create body plus the volume and network create specs — are checked
against the policy by an oracle written here independently of ``reconciler.manifests.policy``.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconciler.engine import spec as engine_spec
from reconciler.errors import ManifestError
from reconciler.manifests import policy as policy_mod
from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree
from reconciler.model import Policy, StackSpec
from reconciler.render.device import render_device

STATE = "/var/lib/fleetgate"
SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
HOST_SOURCES = (
    "/",
    "//",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "//var/run/docker.sock",
    "/var/run/../run/docker.sock",
    "/var/lib/plc/../../run/docker.sock",
    "/var",
    "/run",
    "/var/lib/plc",
    "/var/lib/plc/x",
    "/var/lib/plcx",
    "/var/lib/plc/../../../etc",
    "/etc",
    "/etc/shadow",
    "/srv/data",
    "/proc/1/root",
    "/etc/fleetgate/secrets/pw",
)
BIND_SOURCES = (
    *HOST_SOURCES,
    "./conf.txt",
    "./data",
    "./data/../../other",
    "${HOSTP}",
    "${FLEETGATE_LOCK_DIR}",
    "${FLEETGATE_LOCK_DIR}/../../..",
)
VOLUME_NAMES = ("plant-data", "/etc", "../x", "/", "/var/run/docker.sock", "ok.v_1")
NETWORK_NAMES = ("host", "host", "none", "bridge", "plantnet", "container:sshd")
DEVICES = (
    "/dev/ttyUSB0",
    "/dev/ttyUSB0/../sda",
    "/dev/serial/by-id/usb-1",
    "/dev/serial/by-id/../../sda",
    "//dev/ttyUSB0",
    "/etc/shadow",
    "/opt/fpga/0",
    "/opt/fpga/../../etc/shadow",
)
GLOBS = ("/dev/ttyUSB*", "/dev/serial/by-id/*", "/dev/*", "/*", "/opt/fpga/*")
PREFIXES = ("/", "/var", "/run", "/var/lib/plc", "/etc", "/srv", "/proc", "/etc/fleetgate")
MODES = ("host", "none", "bridge", "container:sshd", "service:b", "container:side")


# ------------------------------------------------------------------------ the oracle


def kernel_path(path: str) -> str:
    """The path as the kernel resolves it without symlinks (own code, not policy's)."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)


def inside(path: str, prefix: str) -> bool:
    path, prefix = kernel_path(path), kernel_path(prefix)
    return prefix in ("/", path) or path.startswith(prefix + "/")


def host_source_ok(source: str, policy: Policy) -> bool:
    path = kernel_path(source)
    if path == "/" or any(inside(sock, path) for sock in SOCKETS):
        return False
    managed = ("configs", "data", "locks")
    if any(inside(path, f"{STATE}/{m}") and path != f"{STATE}/{m}" for m in managed):
        return True
    return any(inside(path, p) for p in policy.host_paths)


def device_ok(path: str, policy: Policy) -> bool:
    path = kernel_path(path)
    for glob in policy.devices:
        pinned = glob.split("*")[0].rsplit("/", 1)[0]
        if fnmatch.fnmatchcase(path, glob) and (path.startswith("/dev/") or pinned):
            return True
    return False


def assert_engine_payload_within(stack: StackSpec, policy: Policy) -> None:
    """What would reach the Engine API for ``stack`` stays inside ``policy``."""
    names = {s.container_name for s in stack.services}
    for spec in stack.services:
        body = engine_spec.container_config(spec, "0" * 40)
        hc = body["HostConfig"]
        for bind in hc["Binds"]:
            source = bind.rsplit(":", 2)[0]
            if source.startswith("/"):
                assert host_source_ok(source, policy), bind
            else:
                assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", source), bind
        for mount in hc["Mounts"]:
            if mount["Type"] == "bind":
                assert host_source_ok(mount["Source"], policy), mount
        mode = hc.get("NetworkMode", "")
        assert mode != "host" or policy.host_network, mode
        if mode.startswith("container:"):
            assert mode.split(":", 1)[1] in names, mode
        endpoints = body.get("NetworkingConfig", {}).get("EndpointsConfig", {})
        for network in (*endpoints, *(a.network for a in spec.networks)):
            assert network != "host" or policy.host_network, network
            assert ":" not in network, network
        assert not hc["Privileged"] or policy.privileged
        for device in hc["Devices"]:
            assert device_ok(device["PathOnHost"], policy), device
    for volume in stack.volumes:
        assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", volume.name), volume
        if volume.external:
            continue
        assert volume.driver == "local", volume  # what create_volume sends
        opts = dict(volume.options)
        if opts and opts.get("type") != "tmpfs":
            assert host_source_ok(opts.get("device", "/"), policy), volume
    for network in stack.networks:
        assert "host" not in (network.name, network.driver) or policy.host_network, network
        assert ":" not in network.name, network


# ---------------------------------------------------------------------- generators

paths = st.sampled_from(BIND_SOURCES)


@st.composite
def volume_item(draw: st.DrawFn, i: int) -> Any:
    kind = draw(st.sampled_from(("short", "long", "named", "named-long")))
    vol = f"v{draw(st.integers(0, 2))}"
    if kind == "short":
        return f"{draw(paths)}:/m{i}{draw(st.sampled_from(('', ':ro', ':rw')))}"
    if kind == "long":
        return {"type": "bind", "source": draw(paths), "target": f"/m{i}"}
    if kind == "named":
        return f"{vol}:/m{i}"
    return {"type": "volume", "source": vol, "target": f"/m{i}"}


@st.composite
def service(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A service with one or two of the ways to the host (more would rarely all pass)."""
    svc: dict[str, Any] = {"image": "busybox"}
    for feature in draw(st.lists(st.integers(0, 5), min_size=1, max_size=2, unique=True)):
        if feature == 0:
            n = draw(st.integers(1, 2))
            svc["volumes"] = [draw(volume_item(i)) for i in range(n)]
        elif feature == 1:
            svc["secrets"] = [draw(st.sampled_from(("s0", "s1")))]
        elif feature == 2:
            svc["configs"] = [{"source": "c0", "target": "/etc/c0"}]
        elif feature == 3 and draw(st.booleans()):
            svc["network_mode"] = draw(st.sampled_from(MODES))
        elif feature == 3:
            svc["networks"] = draw(st.lists(st.sampled_from(("n0", "n1")), unique=True, min_size=1))
        elif feature == 4:
            svc["devices"] = [f"{draw(st.sampled_from(DEVICES))}:/dev/x0"]
        else:
            svc["privileged"] = True
    return svc


@st.composite
def top_volume(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(("plain", "external", "named", "opts", "opts", "opts", "driver")))
    if kind == "external":
        return {"external": True, "name": draw(st.sampled_from(VOLUME_NAMES))}
    if kind == "named":
        return {"name": draw(st.sampled_from(VOLUME_NAMES))}
    if kind == "driver":
        return {"driver": draw(st.sampled_from(("local", "local-persist", "nfs")))}
    if kind == "opts":
        opts = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "type": st.sampled_from(("none", "bind", "tmpfs", "nfs", "ext4")),
                    "o": st.sampled_from(("bind", "rbind,ro", "size=64m", "addr=10.0.0.1")),
                    "device": st.sampled_from((*HOST_SOURCES, "tmpfs", ":/export")),
                },
            )
        )
        return {"driver_opts": opts}
    return {}


@st.composite
def fleet(draw: st.DrawFn) -> tuple[dict[str, Any], Policy, str]:
    doc: dict[str, Any] = {"services": {"a": draw(service("a")), "b": draw(service("b"))}}
    if draw(st.booleans()):
        doc["services"]["b"]["container_name"] = "side"
    doc["volumes"] = {f"v{i}": draw(top_volume()) for i in range(3)}
    doc["networks"] = {
        f"n{i}": draw(
            st.one_of(  # external more often: that is where the holes were
                st.sampled_from(({"driver": "bridge"}, {"driver": "host"})),
                *[
                    st.builds(
                        lambda n: {"external": True, "name": n}, st.sampled_from(NETWORK_NAMES)
                    )
                ]
                * 2,
            )
        )
        for i in range(2)
    }
    doc["secrets"] = {f"s{i}": {"file": draw(st.sampled_from(HOST_SOURCES))} for i in range(2)}
    doc["configs"] = {"c0": {"file": draw(st.sampled_from(("./conf.txt",) * 3 + ("/etc/shadow",)))}}
    wide = draw(st.booleans())  # half the policies allow much, so more fleets pass
    policy = Policy(
        privileged=wide or draw(st.booleans()),
        host_network=draw(st.booleans()),
        host_paths=tuple(draw(st.lists(st.sampled_from(PREFIXES), unique=True, max_size=3)))
        + (("/",) if wide else ()),
        devices=tuple(draw(st.lists(st.sampled_from(GLOBS), unique=True, max_size=3)))
        + (("/dev/*", "/opt/fpga/*") if wide else ()),
    )
    return doc, policy, draw(st.sampled_from(HOST_SOURCES))


def write_fleet(root: Path, doc: dict[str, Any], hostp: str) -> None:
    files = {
        "devices/d1.yaml": json.dumps({"stacks": ["s"], "variables": {"HOSTP": hostp}}),
        "stacks/s/compose.yaml": json.dumps(doc, indent=1),
        "stacks/s/conf.txt": "x = 1\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


class TestPolicyProperties:
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(fleet())
    def test_nothing_passing_the_check_reaches_past_the_policy(
        self, case: tuple[dict[str, Any], Policy, str]
    ) -> None:
        """A rendered device with no policy finding sends the engine only what policy allows."""
        doc, policy, hostp = case
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_fleet(root, doc, hostp)
            tree = RepoTree(root)
            repo, findings = load_repository(tree)
            if findings:
                event("refused when loading")
                return
            try:
                rendered = render_device(repo, tree, "d1", state_dir=STATE)
            except ManifestError:
                event("refused by render")
                return
            if policy_mod.check(rendered, policy):
                event("refused by policy")
                return
            event("passed: engine payload checked")
            for stack in rendered.state.stacks:
                assert_engine_payload_within(stack, policy)

    def test_the_generator_reaches_the_engine_payload(self) -> None:
        """A fleet that passes is checked at all (the property is not vacuous)."""
        doc = {
            "services": {"a": {"image": "busybox", "volumes": ["/var/lib/plc/x:/x", "v0:/v"]}},
            "volumes": {"v0": {"driver_opts": {"type": "none", "o": "bind", "device": "/srv"}}},
        }
        with tempfile.TemporaryDirectory() as tmp:
            write_fleet(Path(tmp), doc, "/")
            tree = RepoTree(Path(tmp))
            repo, findings = load_repository(tree)
            assert findings == ()
            rendered = render_device(repo, tree, "d1", state_dir=STATE)
        policy = Policy(host_paths=("/var/lib/plc", "/srv"))
        assert policy_mod.check(rendered, policy) == []
        (stack,) = rendered.state.stacks
        assert_engine_payload_within(stack, policy)
        narrower = Policy(host_paths=("/var/lib/plc",))
        try:
            assert_engine_payload_within(stack, narrower)
        except AssertionError:
            return
        raise AssertionError("the oracle let a driver_opts bind outside hostPaths through")
