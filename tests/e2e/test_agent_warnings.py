"""DESIGN.md §2 rule 8 end to end: an agent without allowedSigners and without a local
policy says loudly, in its log, its status and `fleetgate status`, that whoever can push
may run what the fleet policy allows; a local policy silences it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.agente2e import Agents
from support.gitserver import GitDaemon

from e2e.agentproc import AgentProcess, Fleet

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def status_cli(agent: AgentProcess, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "status", "--offline", "--state-dir",
         str(agent.state), "--device", agent.device, *extra],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip


class TestUnsignedAndUnrestricted:
    """The warning is in the log, status.json and both forms of `fleetgate status`."""

    def test_warned_everywhere(self, fleet: Fleet, daemon: GitDaemon, agents: Agents) -> None:
        """No allowedSigners, no policy: log event, status field, WARNING line."""
        agent = agents.start()
        agents.converge(agent, fleet.head, what="convergence")
        (event,) = agent.events("agent.config_warning")
        assert event["level"] == "warning"
        assert event["warning"].startswith("unsigned-and-unrestricted: ")
        assert "fleetgate: warning: unsigned-and-unrestricted" in agent.log()
        data = json.loads(status_cli(agent, "--output", "json").stdout)
        assert data["warnings"] == [event["warning"]]
        assert f"whoever can push to {daemon.url(fleet.name)}" in data["warnings"][0]
        assert "WARNING     unsigned-and-unrestricted" in status_cli(agent).stdout

    def test_local_policy_silences_it(self, fleet: Fleet, agents: Agents) -> None:
        """With a local policy there is no warning anywhere."""
        agent = agents.start(policy={"privileged": False})
        agents.converge(agent, fleet.head, what="convergence")
        assert agent.events("agent.config_warning") == []
        assert json.loads(status_cli(agent, "--output", "json").stdout)["warnings"] == []
        assert "WARNING" not in status_cli(agent).stdout
