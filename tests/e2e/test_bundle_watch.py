"""Signed offline bundles through the agent's `watch` folder, with no remote at all.

The agent runs with ``repo: bundle://offline`` (a device updated only from bundles), an
``allowedSigners`` file and a watch folder (a USB stick's mount point). Bundles are
made from the test fleet with :func:`reconciler.source.bundle.create_bundle` and copied
into the folder like a technician would; the commits in them are signed too.
"""

from __future__ import annotations

import shutil
import tarfile
import time
from datetime import timedelta
from pathlib import Path

import docker
import pytest
from support.agente2e import BUNDLE_NOW, Agents, Start
from support.gitserver import git
from support.wait import wait_for

from e2e.agentproc import Fleet, allowed_signers, keygen, labelled
from reconciler.source.bundle import BUNDLE_REPO, create_bundle
from reconciler.source.bundle_format import GIT_BUNDLE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NOW = BUNDLE_NOW


class Bundles:
    """Makes bundle files of the fleet outside the watch folder and drops them into it."""

    def __init__(self, fleet: Fleet, folder: Path, usb: Path) -> None:
        self.fleet = fleet
        self.folder = folder
        self.usb = usb

    def make(self, name: str, key: Path | None, ref: str = "main", minute: int = 0) -> Path:
        out = self.folder / name
        at = NOW + timedelta(minutes=minute)
        create_bundle(self.fleet.origin.path, ref, out, at, sign_key=key)
        return out

    def drop(self, bundle: Path, truncate: bool = False) -> float:
        """Copy ``bundle`` onto the stick (cut in the middle of its Git bundle when
        ``truncate``, as an interrupted copy leaves it); the monotonic time."""
        target = self.usb / bundle.name
        if not truncate:
            shutil.copyfile(bundle, target)
            return time.monotonic()
        with tarfile.open(bundle) as tar:
            member = tar.getmember(GIT_BUNDLE)
            cut = member.offset_data + member.size // 2
        target.write_bytes(bundle.read_bytes()[:cut])
        return time.monotonic()


class TestBundleWatch:
    """A signed bundle in a watch folder converges the device; bad bundles change nothing."""

    def test_signed_bundle_converges_and_bad_bundles_are_refused(
        self,
        fleet: Fleet,
        agents: Agents,
        start_agent: Start,
        docker_client: docker.DockerClient,
        tmp_path: Path,
    ) -> None:
        """Signed bundles converge; unsigned, wrong key, truncated and older ones are refused."""
        keys = tmp_path / "keys"
        keys.mkdir()
        release, intruder = keygen(keys / "release"), keygen(keys / "intruder")
        allowed = allowed_signers(keys / "allowed_signers", release)
        made, usb = tmp_path / "made", tmp_path / "usb"
        made.mkdir()
        usb.mkdir()
        bundles = Bundles(fleet, made, usb)
        first = fleet.commit(greeting="bundle-one", sign_with=release)
        git("branch", "old", first, cwd=fleet.origin.path)
        agent = start_agent(
            device=fleet.device,
            repo=BUNDLE_REPO,
            watch=[str(usb)],
            allowedSigners=str(allowed),
            pollInterval="1s",
            maxBackoff="2s",
        )
        wait_for(lambda: agent.status().get("heartbeat_at"), timeout=30, what="a first status")
        assert not labelled(docker_client, fleet.device)

        dropped = bundles.drop(bundles.make("1-first.fgb", release))
        agents.converge(agent, first, what="first bundle converged")
        print(f"\nbundle dropped -> converged (first deploy): {time.monotonic() - dropped:.1f}s")
        second = fleet.commit(greeting="bundle-two", sign_with=release)
        dropped = bundles.drop(bundles.make("2-second.fgb", release))
        agents.converge(agent, second, what="second bundle converged")
        print(f"bundle dropped -> converged (update): {time.monotonic() - dropped:.1f}s")
        running = agents.web()
        assert running[1:] == ("running", "bundle-two")

        fleet.commit(greeting="never", sign_with=release)
        cases = (
            ("3-unsigned.fgb", None, "main", False, "unsigned"),
            ("4-intruder.fgb", intruder, "main", False, "not in allowedSigners"),
            ("5-truncated.fgb", release, "main", True, "truncated"),
            ("6-older.fgb", release, "old", False, "does not descend"),
        )
        for minute, (name, key, ref, cut, why) in enumerate(cases, start=1):
            bundle = bundles.make(name, key, ref=ref, minute=minute)
            dropped = bundles.drop(bundle, truncate=cut)
            status = agents.refusal(agent, name)
            print(f"{name}: refused after {time.monotonic() - dropped:.1f}s: {status['reason']}")
            assert why in str(status["reason"])
            assert status["applied_revision"] == second
            assert status["desired_revision"] == second
            assert agents.web() == running
        assert len(agent.events("bundle.imported")) == 2
        assert len(agent.events("bundle.refused")) == len(cases)
