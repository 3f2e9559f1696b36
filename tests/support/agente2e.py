"""Helpers of the end-to-end agent tests: the agent config, convergence, the web service."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import docker
from e2e.agentproc import AgentProcess, Fleet, managed

from support.gitserver import GitDaemon

Start = Callable[..., AgentProcess]


def config(fleet: Fleet, daemon: GitDaemon, **extra: object) -> dict[str, object]:
    return {
        "device": fleet.device,
        "repo": daemon.url(fleet.name),
        "pollInterval": "1s",
        "maxBackoff": "3s",
        **extra,
    }


def converged(agent: AgentProcess, revision: str) -> dict[str, Any]:
    status = agent.status()
    ok = status.get("outcome") == "succeeded" and status.get("applied_revision") == revision
    return status if ok else {}


def web(client: docker.DockerClient, fleet: Fleet) -> tuple[str, str, str]:
    return managed(client, fleet.device).get(f"{fleet.device}_app_web", ("", "", ""))


BUNDLE_NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
"""The creation time of the bundles the watch-folder tests make."""


def refused(agent: AgentProcess, name: str) -> dict[str, Any]:
    """The agent's status once it refused the bundle file ``name`` (else ``{}``)."""
    status = agent.status()
    ok = status.get("outcome") == "rejected" and name in str(status.get("reason"))
    return status if ok else {}
