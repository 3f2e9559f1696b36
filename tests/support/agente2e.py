"""The end-to-end agent harness (:class:`Agents`, the ``agents`` fixture of tests/e2e/conftest.py).

It starts agents of the served fleet and holds the waits and looks every agent test
repeats: until a revision converged, until a bundle was refused, the web container now.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import docker
from e2e.agentproc import AgentProcess, Fleet, managed

from support.wait import wait_for

Status = dict[str, Any]


class Start(Protocol):
    """``start_agent``: start an agent with a whole config (and extra environment ``env=``)."""

    def __call__(self, env: dict[str, str] | None = None, **config: Any) -> AgentProcess: ...


class Agents:
    """Agents of one test's served fleet, and what the test waits for and looks at.

    ``repo_url`` is called only when a config is made, so a test whose agents read
    bundles (no ``repo`` URL) never starts a git daemon.
    """

    def __init__(
        self,
        start_agent: Start,
        fleet: Fleet,
        client: docker.DockerClient,
        repo_url: Callable[[], str],
    ) -> None:
        self._start = start_agent
        self._fleet = fleet
        self._client = client
        self._repo_url = repo_url

    def config(self, **extra: object) -> dict[str, object]:
        """The config of an agent of the served fleet (1 s polls, 3 s backoff at most)."""
        return {
            "device": self._fleet.device,
            "repo": self._repo_url(),
            "pollInterval": "1s",
            "maxBackoff": "3s",
            **extra,
        }

    def start(self, env: dict[str, str] | None = None, **extra: object) -> AgentProcess:
        """Start an agent of the served fleet with ``extra`` config keys (killed afterwards)."""
        return self._start(env, **self.config(**extra))

    def converge(
        self, agent: AgentProcess, revision: str, *, what: str = "convergence", timeout: float = 90
    ) -> Status:
        """Wait until ``agent`` reports ``revision`` applied and its pass succeeded."""

        def converged() -> Status:
            status = agent.status()
            done = status.get("outcome") == "succeeded"
            return status if done and status.get("applied_revision") == revision else {}

        return wait_for(converged, timeout=timeout, what=what)

    def refusal(self, agent: AgentProcess, name: str, *, timeout: float = 30) -> Status:
        """Wait until ``agent``'s status says it refused the bundle file ``name``."""

        def refused() -> Status:
            status = agent.status()
            rejected = status.get("outcome") == "rejected" and name in str(status.get("reason"))
            return status if rejected else {}

        return wait_for(refused, timeout=timeout, what=f"{name} refused")

    def web(self) -> tuple[str, str, str]:
        """The fleet's web container now: (id, state, its greeting); empty strings: none."""
        device = self._fleet.device
        return managed(self._client, device).get(f"{device}_app_web", ("", "", ""))


BUNDLE_NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
"""The creation time of the bundles the watch-folder tests make."""
