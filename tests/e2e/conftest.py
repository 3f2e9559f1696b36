"""Fixtures of the end-to-end tests: a served fleet, agent processes that always die, and
the harness (``agents``: start, converge, refusal and web helpers of support.agente2e)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from support.agente2e import Agents, Start
from support.gitserver import GitDaemon

from e2e.agentproc import AgentProcess, Fleet


@pytest.fixture
def fleet(served: Path, device_id: str, busybox_image: str, test_run_id: str) -> Fleet:
    return Fleet(served / "fleet", device_id, busybox_image, test_run_id)


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Start]:
    """Start an agent with a config (device, repo, ...) and optional extra environment
    (``env=``); every one is killed afterwards."""
    started: list[AgentProcess] = []

    def start(env: dict[str, str] | None = None, **config: Any) -> AgentProcess:
        folder = tmp_path / f"agent-{len(started)}"
        folder.mkdir()
        # A restart (a second agent in one test) keeps the first one's state directory.
        agent = AgentProcess(folder, config, started[0].state if started else None, env)
        started.append(agent.start())
        return agent

    yield start
    for agent in started:
        agent.kill()
        if agent.log_path.exists():
            print(f"--- {agent.log_path} (tail)\n" + "\n".join(agent.log().splitlines()[-15:]))


@pytest.fixture
def agents(
    request: pytest.FixtureRequest,
    start_agent: Start,
    fleet: Fleet,
    docker_client: docker.DockerClient,
) -> Agents:
    """The harness: agents of the served fleet, their convergence, the web container."""

    def repo_url() -> str:  # the git daemon starts with the first config that needs it
        daemon: GitDaemon = request.getfixturevalue("daemon")
        return daemon.url(fleet.name)

    return Agents(start_agent, fleet, docker_client, repo_url)
