"""Source security of `fleetgate agent` as a real process: signed commits and anti-rollback.

The fleet is served by a ``git daemon`` on 127.0.0.1; commits are signed with SSH keys
made per test. A refused commit carries a deliberately invalid device manifest: the
status must name the signature (never YAML), and the commit's checkout directory must
never exist, which proves no manifest of it was read.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from support.agente2e import Agents
from support.wait import wait_for

from e2e.agentproc import AgentProcess, Fleet, allowed_signers, keygen

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "keys"
    folder.mkdir()
    good, unknown = keygen(folder / "release"), keygen(folder / "intruder")
    return {"good": good, "unknown": unknown, "allowed": allowed_signers(folder / "as", good)}


def rejected(agent: AgentProcess, revision: str) -> dict[str, Any]:
    status = agent.status()
    ok = status.get("outcome") == "rejected" and status.get("desired_revision") == revision
    return status if ok else {}


def checkout_of(agent: AgentProcess, revision: str) -> Path:
    return agent.state / "cache" / "checkouts" / revision


class TestSignedCommits:
    """With allowedSigners only commits signed by an allowed key reach the device."""

    def test_unsigned_and_unknown_key_refused_before_parse_signed_applied(
        self,
        fleet: Fleet,
        agents: Agents,
        keys: dict[str, Path],
    ) -> None:
        """Unsigned and unknown-key commits are refused unread; a signed one converges."""
        first = fleet.commit(greeting="signed-one", sign_with=keys["good"])
        agent = agents.start(allowedSigners=str(keys["allowed"]))
        agents.converge(agent, first, what="signed first revision")
        running = agents.web()
        broken = {f"devices/{fleet.device}.yaml": "stacks: [app\n  labels: {{{\n"}

        unsigned = fleet.commit(greeting="unsigned", extra=broken)
        status = wait_for(lambda: rejected(agent, unsigned), timeout=30, what="unsigned refused")
        print(f"\nunsigned: {status['reason']}")
        assert "not signed" in str(status["reason"])
        assert "yaml" not in str(status["reason"]).lower()
        assert not checkout_of(agent, unsigned).exists()
        assert status["applied_revision"] == first

        unknown = fleet.commit(greeting="unknown", sign_with=keys["unknown"], extra=broken)
        status = wait_for(lambda: rejected(agent, unknown), timeout=30, what="unknown key refused")
        print(f"unknown key: {status['reason']}")
        assert "not in" in str(status["reason"])
        assert "yaml" not in str(status["reason"]).lower()
        assert not checkout_of(agent, unknown).exists()
        assert status["applied_revision"] == first
        assert agents.web() == running

        pushed = time.monotonic()
        signed = fleet.commit(greeting="signed-two", sign_with=keys["good"])
        agents.converge(agent, signed, what="signed second revision")
        print(f"signed push -> converged: {time.monotonic() - pushed:.1f}s")
        assert agents.web()[1:] == ("running", "signed-two")
        assert not checkout_of(agent, unsigned).exists()


class TestAntiRollback:
    """The tracked ref may only move forward unless allowRewind is set."""

    def test_force_push_to_an_older_commit_is_refused(
        self,
        fleet: Fleet,
        agents: Agents,
    ) -> None:
        """A force-push back to an older commit is refused and the device keeps running."""
        older = fleet.head
        agent = agents.start()
        agents.converge(agent, older, what="first convergence")
        newer = fleet.commit(greeting="newer")
        agents.converge(agent, newer, what="second convergence")
        running = agents.web()

        fleet.rewind(older)
        status = wait_for(lambda: rejected(agent, older), timeout=30, what="rewind refused")
        print(f"\nforce-push back: {status['reason']}")
        assert "moved backwards" in str(status["reason"])
        assert status["applied_revision"] == newer
        assert status["last_fetch_error"] is None
        assert agents.web() == running
        assert agents.web()[2] == "newer"
