"""``scripts/demo``, the README's main job, end to end on the real engine.

The demo runs in its own folder, as its own device (``fgt-<run>-<n>``, so the
session's Docker finalizer owns it) and on its own dashboard port, so it never
collides with a demo the user left running.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import docker
import pytest
from support.engine import cleanup_run
from support.gitserver import free_port

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo"
SHA = r"[0-9a-f]{7}"


def demo_env(folder: Path, device: str, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "FLEETGATE_DEMO_DIR": str(folder),
        "FLEETGATE_DEMO_DEVICE": device,
        "FLEETGATE_DEMO_PORT": str(port),
    }


def owned(client: docker.DockerClient, device: str) -> list[str]:
    """Names of the device's fleetgate-managed containers and networks."""
    filters = {"label": ["io.fleetgate.managed=true", f"io.fleetgate.device={device}"]}
    containers = [c.name for c in client.containers.list(all=True, filters=filters)]
    networks = [n.name for n in client.networks.list(filters=filters)]
    return sorted(containers + networks)


def demo_images(client: docker.DockerClient) -> set[str]:
    """Tags of the locally built demo images present now."""
    images = client.images.list(filters={"reference": "fleetgate-demo/*"})
    return {tag for image in images for tag in image.tags}


def process_runs(pid: int) -> bool:
    """``pid`` exists and is not a zombie (an orphan's parent may be slow to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def tail(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-40:])


@pytest.mark.docker
@pytest.mark.slow
class TestDemo:
    """The demo shows rollout, update, automatic and manual rollback and rollout waves,
    then cleans up."""

    def test_runs_end_to_end_and_cleans_up(
        self, tmp_path: Path, device_id: str, docker_client: docker.DockerClient
    ) -> None:
        """The demo exits 0 with a summary of all four steps and the waves story; --clean
        removes its containers, the three wave devices' too."""
        folder = tmp_path / "demo"
        env = demo_env(folder, device_id, free_port())
        waves = [f"{device_id}-lab", f"{device_id}-line-1", f"{device_id}-line-2"]
        had = demo_images(docker_client)  # a user's own demo images are left alone
        started: dict[str, int] = {}
        try:
            result = subprocess.run(
                [str(DEMO)], env=env, capture_output=True, text=True, timeout=600, check=False
            )
            print(result.stdout[-3000:])
            assert result.returncode == 0, tail(result)
            assert "Traceback" not in result.stdout + result.stderr
            summary = result.stdout.partition("==> summary")[2]
            assert re.search(rf"first rollout\s+{SHA}\s+converged and healthy", summary), summary
            assert re.search(rf"update\s+{SHA}\s+sensor :1 -> :2, converged in", summary), summary
            assert re.search(rf"bad release\s+{SHA}\s+rolled back by the agent in", summary)
            assert re.search(rf"fleetgate rollback\s+{SHA}\s+reverts {SHA}, converged", summary)
            assert re.search(rf"waves: lab\s+{SHA}\s+the lab converged", summary), summary
            assert re.search(rf"waves: production holds\s+{SHA}\s+waiting", summary), summary
            assert re.search(rf"waves: promote \(early\)\s+{SHA}\s+refused at .*exit 3", summary)
            assert re.search(rf"waves: promote\s+{SHA}\s+committed at", summary), summary
            assert re.search(rf"waves: production\s+{SHA}\s+converged", summary), summary
            assert f"device {waves[0]} has not soaked 20s" in result.stdout  # the unmet line
            fleet_status = result.stdout.partition("==> fleetgate fleet status")[2]
            assert re.search(rf"{device_id}\s+{SHA}\w* .*\(head\)\s+succeeded", fleet_status)
            page = re.search(r"the fleet page is (http://127\.0\.0\.1:\d+/)", result.stdout)
            assert page, result.stdout[-2000:]
            with urllib.request.urlopen(page.group(1) + "api/fleet", timeout=10) as response:
                rows = {r["device"]: r for r in json.loads(response.read())["devices"]}
            assert rows[device_id]["status"]["outcome"] == "succeeded"  # the page's data
            started = json.loads((folder / "fleet.json").read_text())
            running = docker_client.containers.list(
                filters={"label": f"io.fleetgate.device={device_id}", "status": "running"}
            )
            assert sorted(c.name for c in running) == [
                f"{device_id}_demo_dashboard",
                f"{device_id}_demo_sensor",
            ], "the demo leaves its containers running"
            for device in waves:  # the wave devices' sensors run on the promoted release
                running = docker_client.containers.list(
                    filters={"label": f"io.fleetgate.device={device}", "status": "running"}
                )
                assert [c.name for c in running] == [f"{device}_line_sensor"]
        finally:
            clean = subprocess.run(
                [str(DEMO), "--clean"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            left = {d: owned(docker_client, d) for d in waves}  # what --clean left behind
            for device in waves:  # derived ids: the device_id fixture does not cover them
                cleanup_run(docker_client, device=device)
            for tag in sorted(demo_images(docker_client) - had):  # only what this test built
                docker_client.images.remove(tag)
        assert clean.returncode == 0, tail(clean)
        assert "stopped mosquitto" in clean.stdout, clean.stdout
        for key in ("broker_pid", "page_pid"):  # --clean ends the broker and the page
            assert not process_runs(started[key]), key
        assert owned(docker_client, device_id) == []
        assert left == {d: [] for d in waves}, "--clean removes the wave devices' objects"
        assert not (folder / "waves").exists()
        assert not (folder / "git").exists()
        assert (folder / "state" / "data").is_dir(), "--clean keeps the data"
        assert [p.name for p in (folder / "state").iterdir()] == ["data"]


class TestDemoArguments:
    """Mistakes on the command line are one line and a non-zero exit."""

    def test_unknown_argument(self, tmp_path: Path) -> None:
        """An unknown argument names itself and exits 1 before anything is installed."""
        env = demo_env(tmp_path / "demo", "demo-args", free_port())
        result = subprocess.run(
            [str(DEMO), "--bogus"], env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == "error: unknown argument: --bogus"
