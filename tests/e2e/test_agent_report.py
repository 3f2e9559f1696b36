"""Fleet reporting end to end: agents as processes, a git daemon, the real engine and a
real Mosquitto; ``fleetgate fleet status`` reads what they report."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from support.agente2e import Agents
from support.engine import cleanup_run
from support.mqtt import Mosquitto, running_broker
from support.wait import wait_for

from e2e.agentproc import AgentProcess, Fleet
from reconciler.report.broker import parse_broker
from reconciler.report.mqtt import read_retained

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CANARY = "canary-7f3e9b1c-secret"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with running_broker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def others(
    fleet: Fleet, docker_client: docker.DockerClient, test_run_id: str, tmp_path: Path
) -> Iterator[dict[str, Path]]:
    """Two more device ids, each with a state folder; cleaned up here, since the
    ``device_id`` fixture cleans up only its own id."""
    devices = {d: tmp_path / d for d in (f"{fleet.device}-b", f"{fleet.device}-c")}
    yield devices
    for device in devices:
        cleanup_run(docker_client, test_run_id, device=device)


def _reporting(broker: Mosquitto) -> dict[str, object]:
    """The config keys of an agent that reports to ``broker`` every 2 s."""
    return {"report": broker.url, "reportInterval": "2s"}


def _retained(broker: Mosquitto) -> dict[str, bytes]:
    return dict(read_retained(parse_broker(broker.url, "test"), quiet=0.3, timeout=5))


def _reported(broker: Mosquitto, device: str, revision: str) -> dict[str, Any]:
    payload = _retained(broker).get(f"fleetgate/{device}/status")
    status: dict[str, Any] = json.loads(payload) if payload else {}
    ok = status.get("applied_revision") == revision and status.get("outcome") == "succeeded"
    return status if ok else {}


class TestAgentReports:
    def test_fleet_status_shows_reports_presence_and_silent_devices(
        self, fleet: Fleet, broker: Mosquitto, agents: Agents
    ) -> None:
        """An agent's report reaches fleet status; a kill -9 turns it offline by last will;
        the retained status carries no secret value; a never-reporting device is listed."""
        head = fleet.commit(
            greeting=CANARY,
            message="add a silent device",
            extra={"devices/silent-one.yaml": "stacks: [app]\n"},
        )
        agent = agents.start(**_reporting(broker))
        wait_for(lambda: _reported(broker, fleet.device, head), timeout=120, what="a report")
        everything = b"".join(_retained(broker).values())
        assert CANARY.encode() not in everything
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler",
                "fleet",
                "status",
                "--broker",
                broker.url,
                "--repo",
                str(fleet.origin.path),
                "--output",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        rows = {r["device"]: r for r in json.loads(done.stdout)["devices"]}
        assert rows[fleet.device]["status"]["applied_revision"] == head
        assert rows[fleet.device]["online"] is True
        assert rows["silent-one"]["status"] is None
        text = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler",
                "fleet",
                "status",
                "--broker",
                broker.url,
                "--repo",
                str(fleet.origin.path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        assert "add a silent device (head)" in text and "never reported" in text
        agent.kill()
        wait_for(
            lambda: _retained(broker).get(f"fleetgate/{fleet.device}/online") == b"false",
            timeout=15,
            what="the last will",
        )

    def test_three_agents_show_their_revision_and_outcome(
        self,
        fleet: Fleet,
        broker: Mosquitto,
        agents: Agents,
        others: dict[str, Path],
    ) -> None:
        """Three agents report; fleet status shows each one's applied revision and outcome."""
        head = fleet.commit(
            greeting="three",
            message="three devices",
            extra={f"devices/{d}.yaml": "stacks: [app]\n" for d in others},
        )
        started = [agents.start(**_reporting(broker))]
        try:
            for device, folder in others.items():  # each with a state directory of its own
                folder.mkdir()
                config = agents.config(**_reporting(broker), device=device)
                started.append(AgentProcess(folder, config).start())
            for agent in started:
                wait_for(
                    lambda a=agent: _reported(broker, a.device, head),
                    timeout=180,
                    what=agent.device,
                )
            done = subprocess.run(
                [sys.executable, "-m", "reconciler", "fleet", "status", "--broker", broker.url,
                 "--repo", str(fleet.origin.path), "--output", "json"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            rows = {r["device"]: r for r in json.loads(done.stdout)["devices"]}
            for agent in started:
                status = rows[agent.device]["status"]
                assert (status["applied_revision"], status["outcome"]) == (head, "succeeded")
                assert rows[agent.device]["online"] is True
        finally:
            for agent in started[1:]:
                agent.kill()

    def test_broker_down_never_delays_a_pass_and_catches_up(
        self, fleet: Fleet, broker: Mosquitto, agents: Agents
    ) -> None:
        """With the broker stopped the agent converges as usual; back, it reports the latest.

        The issue asks for "stopped for minutes": the broker is down here for the agent's
        first convergence and a pushed commit (tens of seconds, reportInterval 2s, so many
        report intervals); nothing in the reporter depends on how long the outage is."""
        broker.stop()
        agent = agents.start(**_reporting(broker))
        wait_for(
            lambda: (
                agent.status().get("applied_revision") == fleet.head
                and agent.status().get("outcome") == "succeeded"
            ),
            timeout=120,
            what="convergence without a broker",
        )
        pushed = time.monotonic()
        head = fleet.commit(greeting="two")
        wait_for(
            lambda: (
                agent.status().get("applied_revision") == head
                and agent.status().get("outcome") == "succeeded"
            ),
            timeout=90,
            what="the pushed commit without a broker",
        )
        print(f"\npush -> converged with the broker down: {time.monotonic() - pushed:.1f}s")
        metrics = _metrics(agent)
        assert "fleetgate_report_connected 0.0" in metrics
        assert "fleetgate_report_failures_total 0.0" not in metrics
        broker.start()
        wait_for(lambda: _reported(broker, fleet.device, head), timeout=90, what="catch-up")

    def test_broker_restart_loses_nothing_a_new_report_does_not_restore(
        self, fleet: Fleet, broker: Mosquitto, agents: Agents
    ) -> None:
        """A broker restarted without its retained store (the worst case) holds the agent's
        status and presence again after its next report; /metrics counts the loss."""
        agent = agents.start(**_reporting(broker))
        wait_for(lambda: _reported(broker, fleet.device, fleet.head), timeout=120, what="report")
        broker.stop()
        for stored in broker.folder.glob("*.db"):  # persistence gone: nothing retained
            stored.unlink()
        broker.start()
        assert f"fleetgate/{fleet.device}/status" not in _retained(broker)
        wait_for(lambda: _reported(broker, fleet.device, fleet.head), timeout=60, what="re-report")
        assert _retained(broker).get(f"fleetgate/{fleet.device}/online") == b"true"
        metrics = _metrics(agent)
        assert "fleetgate_report_connected 1.0" in metrics
        assert "fleetgate_report_failures_total 0.0" not in metrics


def _metrics(agent: AgentProcess) -> str:
    """The agent's own /metrics (its status port is logged at start)."""
    address = agent.events("status.listening")[0]["address"]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        return str(response.read().decode())
