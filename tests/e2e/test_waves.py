"""Rollout waves end to end: three agents (one lab, two production) on the real engine, a
git daemon and a real Mosquitto; ``fleetgate promote`` moves production on evidence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from support.engine import cleanup_run
from support.gitserver import GIT_ENV, GitDaemon, Origin, git
from support.mqtt import Mosquitto, running_broker
from support.wait import wait_for

from e2e.agentproc import COMPOSE, AgentProcess
from reconciler.report.broker import parse_broker
from reconciler.report.mqtt import read_retained

pytestmark = [pytest.mark.docker, pytest.mark.slow]

Start = Callable[..., AgentProcess]
CRASHING = '["sh", "-c", "exit 3"]'
SOAK = 20  # seconds: long enough to promote inside it, short enough for CI
FLEET = """\
variables: {{GREETING: {greeting}}}
rollout:
  waves:
    - name: lab
      selector: {{ring: lab}}
    - name: production
      selector: {{}}
      soak: {soak}s
      maxFailed: 0
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with running_broker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def devices(
    device_id: str, docker_client: docker.DockerClient, test_run_id: str
) -> Iterator[dict[str, str]]:
    names = {"lab": f"{device_id}-lab", "p1": f"{device_id}-p1", "p2": f"{device_id}-p2"}
    yield names
    for name in names.values():
        cleanup_run(docker_client, test_run_id, device=name)


def files(
    devices: dict[str, str], image: str, run: str, greeting: str, command: str
) -> dict[str, str]:
    compose = COMPOSE.format(image=image, run=run, command=command, volumes="")
    out = {
        "fleet.yaml": FLEET.format(greeting=greeting, soak=SOAK),
        "stacks/app/compose.yaml": compose,
        "stacks/app/stack.yaml": "healthTimeout: 8s\n",
        f"devices/{devices['lab']}.yaml": "labels: {ring: lab}\nstacks: [app]\n",
    }
    for key in ("p1", "p2"):
        out[f"devices/{devices[key]}.yaml"] = "labels: {ring: production}\nstacks: [app]\n"
    return out


def statuses(broker: Mosquitto) -> dict[str, dict[str, Any]]:
    retained = read_retained(parse_broker(broker.url, "test"), quiet=0.3, timeout=5)
    return {
        topic.split("/")[1]: json.loads(payload)
        for topic, payload in retained.items()
        if topic.endswith("/status") and payload
    }


def runs(broker: Mosquitto, device: str, revision: str, outcome: str = "succeeded") -> bool:
    status = statuses(broker).get(device, {})
    return status.get("applied_revision") == revision and status.get("outcome") == outcome


def promote(origin: Origin, broker: Mosquitto, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "promote",
            "production",
            "--broker",
            broker.url,
            "--repo",
            str(origin.path),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **GIT_ENV},
        check=False,
    )


class TestWaves:
    def test_lab_first_promote_on_evidence_refuse_a_crash_force_and_roll_back(
        self,
        *,
        served: Path,
        daemon: GitDaemon,
        broker: Mosquitto,
        devices: dict[str, str],
        busybox_image: str,
        test_run_id: str,
        start_agent: Start,
    ) -> None:
        """A commit reaches the lab at once and production only after a soaked promotion;
        a crashing release rolled back in the lab is refused (forced, it says so), and
        rolling the promotion back puts production back."""
        origin = Origin(served / "fleet")
        good = origin.commit(
            files(devices, busybox_image, test_run_id, "one", '["sleep", "3600"]'), "release 1"
        )
        for device in devices.values():
            start_agent(
                device=device,
                repo=daemon.url(origin.name),
                pollInterval="1s",
                maxBackoff="3s",
                report=broker.url,
                reportInterval="1s",
            )
        started = time.monotonic()
        lab, p1, p2 = devices["lab"], devices["p1"], devices["p2"]
        wait_for(lambda: runs(broker, lab, good), timeout=120, what="the lab converging")
        print(f"\ncommit -> lab converged: {time.monotonic() - started:.1f}s")
        held = statuses(broker)
        for device in (p1, p2):
            assert held[device]["applied_revision"] is None
            assert "wave production not started" in held[device]["reason"]

        early = promote(origin, broker)
        assert early.returncode == 3, early.stdout + early.stderr
        assert f"device {lab} has not soaked {SOAK}s" in early.stderr
        assert git("rev-parse", "HEAD", cwd=origin.path) == good

        wait_for(
            lambda: promote(origin, broker).returncode == 0, timeout=SOAK + 60, what="the soak"
        )
        assert git("log", "-1", "--format=%s", cwd=origin.path) == f"promote production to {good}"
        promoted = time.monotonic()
        wait_for(
            lambda: runs(broker, p1, good) and runs(broker, p2, good),
            timeout=120,
            what="production converging on the pin",
        )
        print(f"promote -> production converged: {time.monotonic() - promoted:.1f}s")

        bad = origin.commit(
            files(devices, busybox_image, test_run_id, "two", CRASHING), "crashing release"
        )
        wait_for(
            lambda: statuses(broker).get(lab, {}).get("outcome") == "rolled-back",
            timeout=120,
            what="the lab rolling back",
        )
        refused = promote(origin, broker)
        assert refused.returncode == 3
        assert f"{lab} (rolled back" in refused.stderr
        assert git("log", "-1", "--format=%H", cwd=origin.path) == bad

        forced = promote(origin, broker, "--force", "--reason", "e2e: forced on purpose")
        assert forced.returncode == 0, forced.stderr
        body = git("log", "-1", "--format=%B", cwd=origin.path)
        assert body.startswith(f"promote production to {bad}")
        assert "FORCED past the promotion gate: e2e: forced on purpose" in body
        promotion = git("rev-parse", "HEAD", cwd=origin.path)
        undo = subprocess.run(
            [sys.executable, "-m", "reconciler", "rollback", promotion, "--repo", str(origin.path)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **GIT_ENV},
            check=False,
        )
        assert undo.returncode == 0, undo.stderr
        assert f"revision: {good}" in (origin.path / "waves/production.yaml").read_text()
        wait_for(
            lambda: runs(broker, p1, good) and runs(broker, p2, good),
            timeout=180,
            what="production back on the good release",
        )
