"""Issue 15 acceptance: a stick carrying revision + images converges a device that lacks
the image and reaches no registry; its status comes back on the stick.

The agent runs as a real process with ``repo: bundle://offline`` and a watch folder (the
stick). The image is a test image with a layer of its own, removed from the (shared)
engine after the bundle is made; its reference names no reachable registry, so only the
bundle can bring it. Bad sticks (a tampered blob, a missing image, the wrong
architecture) are refused whole: the running container, the applied revision and the
engine's images stay as they were.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from support.agente2e import BUNDLE_NOW as NOW
from support.agente2e import Agents, Start
from support.airgap import arm64_image, layered, rewrite
from support.engine import ImageBuilder
from support.wait import wait_for

from e2e.agentproc import Fleet, allowed_signers, keygen
from reconciler.cli.bundle_images import wanted_images
from reconciler.source.bundle import BUNDLE_REPO, create_bundle
from reconciler.source.bundletar import read_manifest

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def fleet(
    served: Path,
    device_id: str,
    test_run_id: str,
    docker_client: docker.DockerClient,
    image_builder: ImageBuilder,
) -> Fleet:
    """The served fleet, on a layered image (its layers go into the bundle)."""
    image = layered(docker_client, image_builder, "ag-e2e")
    return Fleet(served / "fleet", device_id, image, test_run_id)


def present(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def make(fleet: Fleet, out: Path, key: Path) -> Path:
    wanted = wanted_images(fleet.origin.path, "main", [fleet.device], [])
    create_bundle(fleet.origin.path, "main", out, NOW, sign_key=key, images=wanted)
    return out


def arm64_bundle(
    fleet: Fleet, made: Path, key: Path, client: docker.DockerClient, builder: ImageBuilder
) -> Path:
    """A correctly signed bundle whose device is declared arm64 (this engine is amd64)."""
    ref = arm64_image(builder, "ag-e2e-arm64")
    fleet.image = ref
    device = f"devices/{fleet.device}.yaml"
    fleet.commit(greeting="arm", sign_with=key, extra={device: "stacks: [app]\narch: arm64\n"})
    bundle = make(fleet, made / "arm64.fgb", key)
    client.images.remove(ref, force=True)
    return bundle


class TestStickWithImages:
    def test_stick_converges_reports_back_and_bad_sticks_change_nothing(  # noqa: PLR0917
        self,
        fleet: Fleet,
        agents: Agents,
        start_agent: Start,
        docker_client: docker.DockerClient,
        image_builder: ImageBuilder,
        tmp_path: Path,
    ) -> None:
        """Revision + image from the stick run; status on the stick; bad sticks refused."""
        image = fleet.image
        release = keygen(tmp_path / "release")
        allowed = allowed_signers(tmp_path / "allowed_signers", release)
        head = fleet.commit(greeting="from-the-stick", sign_with=release)
        made, usb = tmp_path / "made", tmp_path / "usb"
        made.mkdir()
        usb.mkdir()
        bundle = make(fleet, made / "1-images.fgb", release)
        docker_client.images.remove(image, force=True)
        assert not present(docker_client, image)

        agent = start_agent(
            device=fleet.device, repo=BUNDLE_REPO, watch=[str(usb)],
            allowedSigners=str(allowed), pollInterval="1s", maxBackoff="2s",
        )  # fmt: skip
        wait_for(lambda: agent.status().get("heartbeat_at"), timeout=30, what="a first status")
        dropped = time.monotonic()
        (usb / bundle.name).write_bytes(bundle.read_bytes())
        agents.converge(agent, head, what="converged from the stick", timeout=120)
        print(f"\nstick dropped -> converged (image loaded): {time.monotonic() - dropped:.1f}s")
        running = agents.web()
        assert running[1:] == ("running", "from-the-stick")
        assert present(docker_client, image)

        on_stick = usb / "fleetgate-status" / f"{fleet.device}.json"
        wait_for(
            lambda: (
                on_stick.is_file()
                and json.loads(on_stick.read_text()).get("applied_revision") == head
            ),
            timeout=30,
            what="status on the stick",
        )
        shown = subprocess.run(
            [sys.executable, "-m", "reconciler", "fleet", "status", "--from", str(usb),
             "--repo", str(fleet.origin.path), "--output", "json"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert fleet.device in shown.stdout and head in shown.stdout

        # Bad sticks: a next revision with a new image, each time spoilt another way.
        second = layered(docker_client, image_builder, "ag-e2e2")
        fleet.image = second
        fleet.commit(greeting="never", sign_with=release)
        good = make(fleet, made / "good.fgb", release)
        docker_client.images.remove(second, force=True)
        manifest = read_manifest(good)
        own = next(d for d, s in sorted(manifest.blobs.items(), key=lambda kv: -kv[1]))

        def tamper(name: str, data: bytes) -> bytes:
            return data[:-1] + b"\x01" if name == f"blobs/sha256/{own}" else data

        def drop(name: str, data: bytes) -> bytes | None:
            return None if name == f"blobs/sha256/{own}" else data

        cases = [
            ("2-tampered.fgb", rewrite(good, made / "t.fgb", tamper), "tampered with"),
            ("3-missing.fgb", rewrite(good, made / "m.fgb", drop), "an image is missing"),
            ("4-arm64.fgb", arm64_bundle(fleet, made, release, docker_client, image_builder),
             "wrong architecture"),
        ]  # fmt: skip
        for name, file, why in cases:
            (usb / name).write_bytes(file.read_bytes())
            status = agents.refusal(agent, name)
            print(f"{name}: refused: {status['reason']}")
            assert why in str(status["reason"])
            assert status["applied_revision"] == head
            assert agents.web() == running
            assert not present(docker_client, second)
            assert not present(docker_client, image_builder.tag("ag-e2e-arm64"))
        # The technician at the stick reads why the last one was refused.
        wait_for(lambda: "4-arm64.fgb" in on_stick.read_text(), timeout=30, what="refusal on stick")
        stick: dict[str, Any] = json.loads(on_stick.read_text())
        assert stick["applied_revision"] == head
