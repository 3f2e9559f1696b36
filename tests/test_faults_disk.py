"""The state directory's disk fills up (a small tmpfs mounted for the test, real engine).

A full disk must end the pass with one line (no traceback), leave what runs alone, keep
the data directory, and the next pass after space is freed must converge.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from support.cliproc import fleetgate, target
from support.enginepass import managed
from support.passes import FleetRepo

pytestmark = pytest.mark.docker


@pytest.fixture
def fleet(tmp_path: Path, device_id: str, busybox_image: str) -> FleetRepo:
    return FleetRepo(
        tmp_path / "fleet", device_id, APP_IMAGE=busybox_image, BROKER_IMAGE=busybox_image
    )


@pytest.fixture
def small_state(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs as the state directory; unmounted afterwards."""
    state = tmp_path / "state"
    state.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the state directory: {mounted.stderr.strip()}")
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def fill(directory: Path) -> Path:
    """Write until the disk is full; return the filler file."""
    filler = directory / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as f:
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


class TestStateDiskFull:
    def test_a_full_state_disk_fails_in_one_line_and_recovers(
        self,
        fleet: FleetRepo,
        small_state: Path,
        docker_client: docker.DockerClient,
    ) -> None:
        """Nothing running is touched while the disk is full; freed, the next run converges."""
        first = fleetgate("apply", *target(fleet, small_state))
        assert first.returncode == 0, first.stderr[-1500:]
        data = small_state / "data" / fleet.device / "app" / "state" / "keep"
        data.write_text("plant")
        before = managed(docker_client, fleet.device)
        fleet.commit(GREETING="servus")
        filler = fill(small_state)
        full = fleetgate("apply", *target(fleet, small_state))
        assert full.returncode != 0
        out = full.stdout + full.stderr
        assert "Traceback" not in out
        assert "No space left on device" in out or "no space" in out.lower()
        assert managed(docker_client, fleet.device) == before
        filler.unlink()
        again = fleetgate("apply", *target(fleet, small_state))
        assert again.returncode == 0, again.stderr[-1500:]
        after = managed(docker_client, fleet.device)
        assert sorted(after) == sorted(before)
        assert {s for _, s, _ in after.values()} == {"running"}
        assert data.read_text() == "plant"
