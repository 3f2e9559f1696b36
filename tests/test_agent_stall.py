"""Error classes say what happens next; a refused revision stalls instead of backing off."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.gitserver import git
from support.signedrepo import signed_fleet

from reconciler.agent.config import AgentConfig
from reconciler.agent.loop import Agent, FileStatus
from reconciler.engine.docker import DockerEngine
from reconciler.errors import (
    EngineError,
    HealthError,
    ImageUnavailable,
    ManifestError,
    RewindRefused,
    SignatureError,
    SourceError,
    UsageError,
)
from reconciler.store import StateStore


class TestNextStep:
    def test_each_error_class_names_what_happens_next(self) -> None:
        """Refusals and rejections stall, unreachable sources and engines retry."""
        steps = {
            cls.__name__: cls.next_step
            for cls in (UsageError, ManifestError, SourceError, SignatureError, RewindRefused,
                        EngineError, ImageUnavailable, HealthError)
        }  # fmt: skip
        assert steps == {
            "UsageError": "fix",
            "ManifestError": "stall",
            "SourceError": "retry",
            "SignatureError": "stall",
            "RewindRefused": "stall",
            "EngineError": "retry",
            "ImageUnavailable": "retry",
            "HealthError": "rollback",
        }


@pytest.mark.docker
class TestSignatureStall:
    def test_unsigned_revision_stalls_until_the_ref_moves(
        self, tmp_path: Path, device_id: str
    ) -> None:
        """An unsigned head is refused pass after pass without backoff; a signed one applies.

        A guard on purpose: the stall held before the error classes carried it.
        """
        files = {f"devices/{device_id}.yaml": "stacks: []\n"}
        repo, allowed, first = signed_fleet(tmp_path, files)
        state = tmp_path / "state"
        config = AgentConfig(
            device=device_id, repo=str(repo.path), state_dir=state, allowed_signers=allowed
        )
        engine = DockerEngine()
        agent = Agent(
            config,
            runtime=engine,
            store=StateStore(state, device_id),
            publisher=FileStatus(state),
        )
        try:
            assert agent.run_pass(frozenset({"start"})).outcome == "succeeded"
            git("-c", "commit.gpgsign=false", "commit", "--quiet", "--allow-empty", "-m",
                "unsigned", cwd=repo.path)  # fmt: skip
            for _ in range(3):
                status = agent.run_pass(frozenset({"timer"}))
                assert status.outcome == "rejected", status.reason
                assert "not signed" in status.reason
                assert agent.failures == 0  # no backoff: retrying cannot change a verdict
                assert agent.applied == first
            second = repo.commit({"README": "signed again\n"}, "signed")
            status = agent.run_pass(frozenset({"timer"}))
            assert (status.outcome, agent.applied) == ("succeeded", second), status.reason
        finally:
            engine.close()
