"""The image store's disk fills up during a pull (a private engine on a small tmpfs).

The private ``dockerd`` keeps its data root on a tmpfs that a filler file leaves 4 MiB
of; the update names an 8 MiB image (one incompressible layer) in a registry inside the
engine's network namespace, so the pull runs out of space mid-layer. Download-then-kill:
nothing running stops, the pass fails in one line and stays retryable (no failed
revision recorded), the data directory and the named volume keep their data, and once
the filler is gone the next pass converges to the new image.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from support.cliproc import fleetgate, target
from support.dockerd import Dockerd
from support.enginepass import apply_once, managed
from support.nsregistry import push_bulk, registry_inside
from support.passes import FleetRepo

from reconciler.engine.docker import DockerEngine
from reconciler.store import StateStore

pytestmark = pytest.mark.docker

MIB = 1 << 20


@pytest.fixture
def starved(docker_client: docker.DockerClient, busybox_image: str) -> Iterator[Dockerd]:
    """A private engine whose data root is a 48 MiB tmpfs, holding the busybox image."""
    root = Path(tempfile.mkdtemp(prefix="fgs-", dir="/tmp"))
    engine = Dockerd(root)
    engine.data_root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(engine.data_root)],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        if mounted.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs for the image store: {mounted.stderr.strip()}")
        engine.start()
        engine.load_image(docker_client, busybox_image)
        yield engine
    finally:
        engine.close()


def leave_free(directory: Path, free: int) -> Path:
    """Take the disk's space but ``free`` bytes with one file; return it."""
    filler = directory / "filler"
    stat = os.statvfs(directory)
    size = stat.f_bavail * stat.f_frsize - free
    with filler.open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, size)
    return filler


def volume_file(client: docker.DockerClient, device: str) -> str:
    web = client.containers.get(f"{device}_app_web")
    return str(web.exec_run(["cat", "/data/keep"]).output.decode())


class TestImageStoreFull:
    def test_a_pull_that_fills_the_image_store_changes_nothing_and_recovers(
        self, starved: Dockerd, device_id: str, busybox_image: str, tmp_path: Path
    ) -> None:
        """Old containers keep running, one line, retryable; space freed, the update lands."""
        state = tmp_path / "state"
        fleet = FleetRepo(
            tmp_path / "fleet", device_id, APP_IMAGE=busybox_image, BROKER_IMAGE=busybox_image
        )
        with (
            contextlib.closing(starved.client()) as client,
            registry_inside(starved, starved.root / "registry") as address,
        ):
            ref = f"{address}/faults/bulk:1"
            push_bulk(client, busybox_image, ref, mib=8)
            with contextlib.closing(DockerEngine(starved.host)) as engine:
                assert apply_once(fleet, engine, state, settle=0.5).outcome == "succeeded"
            (state / "data" / device_id / "app" / "state" / "keep").write_text("plant")
            web = client.containers.get(f"{device_id}_app_web")
            assert web.exec_run(["sh", "-c", "echo plant > /data/keep"]).exit_code == 0
            before = managed(client, device_id)
            fleet.commit(APP_IMAGE=ref)
            filler = leave_free(starved.data_root, 4 * MIB)
            full = fleetgate(
                "apply", *target(fleet, state), "--output", "json",
                env={"DOCKER_HOST": starved.host},
            )  # fmt: skip
            assert "Traceback" not in full.stdout + full.stderr
            result = json.loads(full.stdout)
            assert result["outcome"] == "failed-no-change", result
            assert "no space left on device" in result["reason"].lower(), result["reason"]
            assert "\n" not in result["reason"]
            assert managed(client, device_id) == before
            assert StateStore(state, device_id).load().failed == ()
            filler.unlink()
            with contextlib.closing(DockerEngine(starved.host)) as engine:
                done = apply_once(fleet, engine, state, settle=0.5)
            assert done.outcome == "succeeded", done.reason
            assert client.containers.get(f"{device_id}_app_web").attrs["Config"]["Image"] == ref
            assert sorted(managed(client, device_id)) == sorted(before)
            assert volume_file(client, device_id) == "plant\n"
        assert (state / "data" / device_id / "app" / "state" / "keep").read_text() == "plant"
