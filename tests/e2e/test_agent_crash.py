"""kill -9 of `fleetgate agent` at every named crash point during an update, then restart.

Per crash point: an agent converges the first revision and stops; a second agent runs
with ``FLEETGATE_CRASH_AT=<point>`` while an update is pushed and SIGKILLs itself at that
point; a third agent (same state directory, no crash variable) must converge to the
correct end state with exactly one container per desired service, carrying the new
config hash, and nothing left over. The update changes the image (pulled from a
loopback registry, so the pull step runs), the environment and a config file, so every
step kind of :mod:`reconciler.engine.apply` runs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import pytest
from support.agente2e import Agents
from support.crash import ROLLBACK_POINTS, UPDATE_POINTS
from support.registry import Registry
from support.wait import wait_for

from e2e.agentproc import AgentProcess, Fleet, labelled

pytestmark = [pytest.mark.docker, pytest.mark.slow]


REPO_ROOT = Path(__file__).resolve().parents[2]
CRASHING = '["sh", "-c", "exit 3"]'


def crash_points() -> set[str]:
    """Every ``crashpoint("...")`` name in the package's source."""
    names: set[str] = set()
    for path in (REPO_ROOT / "reconciler").rglob("*.py"):
        names.update(re.findall(r'crashpoint\("([^"]+)"\)', path.read_text(encoding="utf-8")))
    return names


def single_container(
    client: docker.DockerClient, fleet: Fleet
) -> docker.models.containers.Container:
    found = labelled(client, fleet.device)
    assert [c.name for c in found] == [f"{fleet.device}_app_web"], "orphans or duplicates"
    return found[0]


def crash_then_recover(
    fleet: Fleet,
    agents: Agents,
    client: docker.DockerClient,
    point: str,
    push: Mapping[str, Any],
) -> tuple[AgentProcess, str, str]:
    """Converge, crash at ``point`` during the update ``push``, restart.

    Returns the restarted agent, the pushed revision and the config hash before it.
    """
    first = agents.start()
    agents.converge(first, fleet.head, what="first convergence")
    assert first.terminate() == 0
    before = single_container(client, fleet).labels["io.fleetgate.config-hash"]
    crashing = agents.start(env={"FLEETGATE_CRASH_AT": point})
    head = fleet.commit(**push)
    wait_for(lambda: not crashing.running(), timeout=90, what=f"the SIGKILL at {point}")
    assert crashing.proc is not None
    assert crashing.proc.returncode == -9
    return agents.start(), head, before


class TestCrashPoints:
    """A SIGKILL at any crash point is recovered by the next agent without leftovers."""

    def test_every_named_crash_point_is_exercised(self) -> None:
        """The parametrized points are exactly the crash points in the code."""
        assert crash_points() == set(UPDATE_POINTS) | set(ROLLBACK_POINTS)

    @pytest.mark.parametrize("point", UPDATE_POINTS)
    def test_update_recovers_after_sigkill(  # noqa: PLR0917  # pytest fixtures
        self,
        point: str,
        fleet: Fleet,
        agents: Agents,
        docker_client: docker.DockerClient,
        registry: Registry,
        test_run_id: str,
    ) -> None:
        """After kill -9 at the point and a restart, exactly the new container runs."""
        # An image only in the registry: the update has to pull it.
        ref = registry.push(fleet.image, f"crash/{re.sub(r'[^a-z0-9]+', '-', point)}:{test_run_id}")
        docker_client.images.remove(ref)
        fleet.image = ref
        push = {"greeting": "two", "config": f"point={point}\n"}
        agent, head, before = crash_then_recover(fleet, agents, docker_client, point, push)
        started = time.monotonic()
        status = agents.converge(agent, head, what="recovery")
        print(f"\n{point}: restart -> converged {time.monotonic() - started:.1f}s")
        web = single_container(docker_client, fleet)
        env = dict(e.split("=", 1) for e in web.attrs["Config"]["Env"] if "=" in e)
        assert (web.status, env["GREETING"], web.attrs["Config"]["Image"]) == (
            "running",
            "two",
            ref,
        )
        new_hash = web.labels["io.fleetgate.config-hash"]
        assert new_hash != before
        assert [s["config_hash"] for s in status["services"]] == [new_hash]

    @pytest.mark.parametrize("point", ROLLBACK_POINTS)
    def test_failed_update_recovers_after_sigkill(
        self,
        point: str,
        fleet: Fleet,
        agents: Agents,
        docker_client: docker.DockerClient,
    ) -> None:
        """After kill -9 between recording a failure and the rollback, the good one runs."""
        good = fleet.head
        push = {"greeting": "bad", "command": CRASHING}
        agent, bad, _ = crash_then_recover(fleet, agents, docker_client, point, push)

        def back_on_good() -> dict[str, Any]:
            s = agent.status()
            ok = s.get("applied_revision") == good and s.get("desired_revision") == bad
            return s if ok and s.get("outcome") in ("rolled-back", "failed-no-change") else {}

        status = wait_for(back_on_good, timeout=90, what="back on the good revision")
        assert bad in {f["revision"] for f in status["failed_revisions"]}
        web = single_container(docker_client, fleet)
        env = dict(e.split("=", 1) for e in web.attrs["Config"]["Env"] if "=" in e)
        assert (web.status, env["GREETING"]) == ("running", "one")
        assert web.labels["io.fleetgate.revision"] == good
