"""`fleetgate agent` as a real process against a git daemon on 127.0.0.1 and the real engine.

Every test serves a one-stack fleet (``e2e.agentproc.Fleet``) and runs the agent with a
1 s poll interval; it waits on the published ``status.json`` and on the engine, never
on the clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest
from support.agente2e import Agents
from support.gitserver import GitDaemon
from support.wait import wait_for

from e2e.agentproc import Fleet, git_daemon_on

pytestmark = [pytest.mark.docker, pytest.mark.slow]


class TestConverge:
    """The agent converges the device to what is pushed."""

    def test_pushed_commit_converges(self, fleet: Fleet, agents: Agents) -> None:
        """A commit pushed to the served repository runs on the device within seconds."""
        agent = agents.start()
        agents.converge(agent, fleet.head, what="first convergence")
        assert agents.web()[1:] == ("running", "one")
        pushed = time.monotonic()
        head = fleet.commit(greeting="two")
        agents.converge(agent, head, what="the pushed commit")
        latency = time.monotonic() - pushed
        print(f"\npush -> converged: {latency:.1f}s (poll 1s, health settle included)")
        assert agents.web()[1:] == ("running", "two")


class TestDriftRepair:
    """Drift of managed containers is repaired promptly; foreign containers are invisible."""

    def test_stop_and_remove_are_repaired_and_unmanaged_is_untouched(  # pytest fixtures
        self,
        fleet: Fleet,
        agents: Agents,
        docker_client: docker.DockerClient,
        busybox_image: str,
        test_labels: dict[str, str],
    ) -> None:
        """`docker stop` / `docker rm` of a managed container is undone within one interval."""
        foreign = docker_client.containers.run(
            busybox_image,
            ["sleep", "3600"],
            detach=True,
            init=True,
            labels=test_labels,
            name=f"{fleet.device}-foreign",
        )
        agent = agents.start()
        agents.converge(agent, fleet.head, what="first convergence")
        name = f"{fleet.device}_app_web"

        docker_client.containers.get(name).stop(timeout=1)
        stopped = time.monotonic()
        wait_for(lambda: agents.web()[1] == "running", timeout=20, what="restart")
        print(f"\ndocker stop -> running again: {time.monotonic() - stopped:.1f}s")

        before = agents.web()[0]
        docker_client.containers.get(name).remove(force=True)
        removed = time.monotonic()
        wait_for(
            lambda: agents.web()[1] == "running" and agents.web()[0] != before,
            timeout=20,
            what="re-creation",
        )
        print(f"docker rm -f -> running again: {time.monotonic() - removed:.1f}s")

        foreign.reload()
        assert foreign.status == "running"
        foreign.remove(force=True)


class TestSourceOutage:
    """Without the Git server the device keeps running; with it back, it catches up."""

    def test_server_down_keeps_apps_and_reports_then_catches_up(
        self,
        fleet: Fleet,
        agents: Agents,
        daemon: GitDaemon,
        served: Path,
        docker_client: docker.DockerClient,
    ) -> None:
        """Stopping the server leaves apps running, reports the error; restarting catches up."""
        agent = agents.start()
        agents.converge(agent, fleet.head, what="first convergence")
        running = agents.web()
        daemon.stop()
        status = wait_for(
            lambda: (s := agent.status()).get("outcome") == "source-unreachable" and s,
            timeout=30,
            what="source-unreachable",
        )
        assert status["last_fetch_error"]
        wait_for(lambda: agent.status().get("stale"), timeout=30, what="stale status")
        assert agents.web() == running

        # Offline restart: the agent dies, a container goes, the agent comes back alone.
        agent.kill()
        docker_client.containers.get(f"{fleet.device}_app_web").remove(force=True)
        offline = agents.start()
        wait_for(lambda: agents.web()[1] == "running", timeout=60, what="offline repair")
        head = fleet.commit(greeting="after-outage")
        back = git_daemon_on(served, daemon.port)
        try:
            agents.converge(offline, head, what="catching up")
            assert agents.web()[2] == "after-outage"
            assert offline.status()["last_fetch_error"] is None
        finally:
            back.terminate()
            back.wait(timeout=10)


class TestStop:
    """SIGTERM ends the agent cleanly even in the middle of a pass."""

    def test_sigterm_mid_pass_exits_zero_and_writes_status(self, agents: Agents) -> None:
        """SIGTERM during an update's health gate exits 0 within 30 s with the status written."""
        agent = agents.start()
        wait_for(lambda: agent.events("step.applied"), timeout=90, what="a step applied")
        signalled = datetime.now(UTC).replace(microsecond=0)
        started = time.monotonic()
        assert agent.terminate(timeout=30) == 0
        print(f"\nSIGTERM -> exit: {time.monotonic() - started:.1f}s")
        status = agent.status()
        assert status["heartbeat_at"] >= signalled.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert status["outcome"] in ("interrupted", "succeeded")


class TestGates:
    """Update windows and application locks hold updates; drift repair is not held."""

    def test_outside_window_nothing_changes_and_opening_converges(
        self,
        fleet: Fleet,
        agents: Agents,
    ) -> None:
        """An update waits for its window, names the next opening, and converges in it."""
        agent = agents.start()
        agents.converge(agent, fleet.head, what="first convergence")
        now = datetime.now(UTC)
        opens = (now + timedelta(seconds=80)).replace(second=0, microsecond=0)
        fleet.windows = [
            {
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "start": opens.strftime("%H:%M"),
                "end": (opens + timedelta(minutes=30)).strftime("%H:%M"),
                "timezone": "UTC",
            }
        ]
        before = agents.web()
        head = fleet.commit(greeting="in-window")
        status = wait_for(
            lambda: (
                (s := agent.status()).get("outcome") == "waiting"
                and s.get("desired_revision") == head
                and s
            ),
            timeout=30,
            what="deferred by the window",
        )
        assert status["pending_update"]["next_window"] == opens.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert agents.web() == before
        agents.converge(agent, head, what="convergence in the window", timeout=150)
        assert datetime.now(UTC) >= opens
        assert agents.web()[2] == "in-window"

    def test_application_lock_defers_and_its_removal_releases(
        self,
        fleet: Fleet,
        agents: Agents,
    ) -> None:
        """An app's updates.lock holds its stack's update until the file is removed."""
        agent = agents.start(maxDefer="1h")
        agents.converge(agent, fleet.head, what="first convergence")
        lock = agent.state / "locks" / fleet.device / "app" / "updates.lock"
        lock.write_text("batch 42\n")
        before = agents.web()
        head = fleet.commit(greeting="after-lock")
        status = wait_for(
            lambda: (
                (s := agent.status()).get("outcome") == "waiting"
                and s.get("desired_revision") == head
                and s
            ),
            timeout=30,
            what="deferred by the lock",
        )
        assert "lock" in status["reason"]
        assert agents.web() == before
        lock.unlink()
        agents.converge(agent, head, what="release after unlock")
        assert agents.web()[2] == "after-lock"
