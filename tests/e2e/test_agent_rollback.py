"""A crashing release under `fleetgate agent` as a real process: roll back, never retry.

The bad release's ``web`` exits at once (``sh -c 'exit 3'``), so its health gate fails
fast; the agent must return to the last good revision and then leave the bad one alone
while it stays the desired revision.
"""

from __future__ import annotations

import time
from typing import Any

import docker
import pytest
from support.agente2e import Agents
from support.wait import wait_for

from e2e.agentproc import AgentProcess, Fleet, labelled

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CRASHING = '["sh", "-c", "exit 3"]'


def rolled_back(agent: AgentProcess) -> dict[str, Any]:
    status = agent.status()
    passes = status.get("counters", {}).get("passes", {})
    return status if passes.get("rolled-back") else {}


class TestRollback:
    """A release that fails its health gate is undone and not tried again."""

    def test_crashing_release_rolls_back_and_is_not_retried(
        self,
        fleet: Fleet,
        agents: Agents,
        docker_client: docker.DockerClient,
    ) -> None:
        """The bad revision is rolled back with its reason and not retried for 3 intervals."""
        good = fleet.head
        agent = agents.start()
        agents.converge(agent, good, what="first convergence")

        pushed = time.monotonic()
        bad = fleet.commit(greeting="bad", command=CRASHING)
        status = wait_for(lambda: rolled_back(agent), timeout=90, what="the rollback")
        print(f"\npush of a crashing release -> rolled back: {time.monotonic() - pushed:.1f}s")
        finished = [e for e in agent.events("pass.finished") if e.get("outcome") == "rolled-back"]
        assert len(finished) == 1
        assert bad in finished[0]["reason"]
        assert f"rolled back to {good}" in finished[0]["reason"]
        assert status["applied_revision"] == good
        assert status["last_good_revision"] == good
        failed = {f["revision"]: f["reason"] for f in status["failed_revisions"]}
        assert failed.get(bad)
        print(f"status reason: {status['reason']}")
        assert bad in str(status["reason"])
        after = agents.web()
        assert after[1:] == ("running", "one")
        ids = sorted(c.id for c in labelled(docker_client, fleet.device))

        # The next three poll intervals: passes run, the bad revision is not tried again.
        passes = len(agent.events("pass.started"))
        wait_for(
            lambda: len(agent.events("pass.started")) >= passes + 3,
            timeout=30,
            what="three more passes",
        )
        assert len(agent.events("update.failed")) == 1
        assert len(agent.events("rollback.started")) == 1
        assert sorted(c.id for c in labelled(docker_client, fleet.device)) == ids
        assert agents.web() == after
        status = agent.status()
        assert status["counters"]["passes"].get("rolled-back") == 1
        assert status["outcome"] == "rolled-back"
        assert status["applied_revision"] == good
        assert status["desired_revision"] == bad
        assert bad in str(status["reason"])
