"""`fleetgate fleet serve` as a process against a real Mosquitto: the page, /api/fleet that
follows reports as they arrive, /metrics, the loopback Host check; Chromium renders it."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.gitserver import free_port
from support.mqtt import Mosquitto, running_broker
from support.wait import wait_for

from reconciler.fleet.serve import FleetServer
from reconciler.fleet.view import build_view, with_waves
from reconciler.fleet.waves import wave_summary
from reconciler.manifests.waves import Rollout, Wave
from reconciler.report.broker import parse_broker
from reconciler.report.mqtt import MqttReporter
from reconciler.report.status import Status

SHA = "c" * 40


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    for device, site in (("d1", "plant-a"), ("d2", "plant-b")):
        path = root / "devices" / f"{device}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"labels: {{site: {site}}}\nstacks: [s]\n")
    (root / "stacks/s").mkdir(parents=True)
    (root / "stacks/s/compose.yaml").write_text("services:\n  x:\n    image: x\n")
    return root


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with running_broker(tmp_path / "broker") as b:
        yield b


def _get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Host": host} if host else {}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def waves_repo(repo: Path) -> Path:
    """The same fleet as a Git repository with waves: d1 in lab, d2 in production."""
    (repo / "devices/d1.yaml").write_text("labels: {site: plant-a, ring: lab}\nstacks: [s]\n")
    (repo / "fleet.yaml").write_text(
        "rollout:\n  waves:\n    - name: lab\n      selector: {ring: lab}\n"
        "    - name: production\n      selector: {}\n      soak: 1h\n      maxFailed: 0\n"
    )
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "fleet with waves"], check=True)
    return repo


def _head(repo: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def served(repo: Path, broker: Mosquitto) -> Iterator[int]:
    yield from _serve(repo, broker)


@pytest.fixture
def served_waves(waves_repo: Path, broker: Mosquitto) -> Iterator[int]:
    yield from _serve(waves_repo, broker)


def _serve(repo: Path, broker: Mosquitto) -> Iterator[int]:
    port = free_port()
    args = ["fleet", "serve", "--broker", broker.url, "--repo", str(repo)]
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *args, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def up() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                return _get(port, "/api/fleet")[0] == 200
            except OSError:
                return False

        wait_for(up, timeout=30, what="fleet serve")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _report(broker: Mosquitto, device: str, outcome: str, revision: str = SHA) -> None:
    reporter = MqttReporter(parse_broker(broker.url, "test"), device)
    reporter.start()
    try:
        reporter.publish(
            Status(
                device,
                applied_revision=revision,
                outcome=outcome,
                reason=f"{outcome} <b>x</b>",
                heartbeat_at=datetime.now(UTC),
            )
        )
        wait_for(lambda: reporter.stats().last_publish_at, timeout=10, what="publish")
    finally:
        reporter.stop()


def _fleet(port: int) -> dict[str, Any]:
    status, body = _get(port, "/api/fleet")
    assert status == 200
    document: dict[str, Any] = json.loads(body)
    return document


class TestFleetServe:
    def test_api_follows_reports_as_they_arrive(self, served: int, broker: Mosquitto) -> None:
        """A report published after start shows up in /api/fleet and /metrics."""
        first = _fleet(served)
        assert [d["device"] for d in first["devices"]] == ["d1", "d2"]
        assert all(d["status"] is None for d in first["devices"])
        _report(broker, "d1", "succeeded")
        wait_for(lambda: _fleet(served)["devices"][0]["status"] is not None, timeout=10, what="d1")
        assert _fleet(served)["devices"][0]["online"] is False
        status, metrics = _get(served, "/metrics")
        assert status == 200
        assert b'fleetgate_fleet_devices{outcome="succeeded",wave=""} 1.0' in metrics
        assert b"fleetgate_fleet_devices_offline 1.0" in metrics

    def test_api_carries_no_waves_without_rollout(self, served: int) -> None:
        """A fleet without rollout.waves has an empty waves list in /api/fleet."""
        assert _fleet(served)["waves"] == []

    def test_page_and_host_check(self, served: int) -> None:
        """The page is plain HTML with no remote resource; a foreign Host is refused."""
        status, page = _get(served, "/")
        assert status == 200 and b"/api/fleet" in page
        assert b"http://" not in page and b"https://" not in page
        assert _get(served, "/api/fleet", host="evil.example:9280")[0] == 403
        assert _get(served, "/api/fleet", host=f"localhost:{served}")[0] == 200


class TestFleetServerWaves:
    def test_api_fleet_and_page_carry_the_waves_summary(self) -> None:
        """/api/fleet and /api/fleet/page carry the same waves document as fleet status."""
        rollout = Rollout(
            (Wave("lab", {"ring": "lab"}), Wave("production", {}, soak=3600.0, max_failed=0))
        )
        devices = {"d1": {"ring": "lab"}, "d2": {}}
        at = datetime.now(UTC)
        view = with_waves(
            build_view(devices, {}, head=SHA, now=at), {"d1": "lab", "d2": "production"}
        )
        server = FleetServer(
            "127.0.0.1:0", lambda: view, lambda v: wave_summary(v, rollout, SHA, at)
        )
        server.start()
        try:
            for route in ("/api/fleet", "/api/fleet/page"):
                status, body = _get(server.address[1], route)
                assert status == 200
                assert json.loads(body)["waves"] == wave_summary(view, rollout, SHA, at)
        finally:
            server.stop()
        waves = wave_summary(view, rollout, SHA, at)
        assert [w["wave"] for w in waves] == ["lab", "production"]
        assert waves[1]["promotion"]["gate_met"] is False
        assert any("d1" in reason for reason in waves[1]["promotion"]["reasons"])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(url: str, tmp: Path, *extra: str) -> str:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (Debian package chromium; scripts/test)")
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp / 'profile'}",
            "--window-size=1200,900",
            "--virtual-time-budget=5000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.stdout


class TestFleetPageInChromium:
    def test_page_renders_devices_and_updates(
        self, served: int, broker: Mosquitto, tmp_path: Path
    ) -> None:
        """Chromium shows every device, and a new report after a reload of the data."""
        url = f"http://127.0.0.1:{served}/"
        dom = _chromium(url, tmp_path, "--dump-dom")
        assert 'data-device="d1"' in dom and 'data-device="d2"' in dom
        assert "never reported" in dom
        _report(broker, "d2", "rolled-back")
        wait_for(lambda: _fleet(served)["devices"][1]["status"], timeout=10, what="d2")
        dom = _chromium(url, tmp_path, "--dump-dom")
        assert "rolled-back" in dom
        assert "<b>x</b>" not in dom  # reports are text, never markup
        _chromium(url, tmp_path, f"--screenshot={tmp_path / 'fleet.png'}")
        assert (tmp_path / "fleet.png").stat().st_size > 1000

    def test_page_renders_the_wave_table(
        self, served_waves: int, waves_repo: Path, broker: Mosquitto, tmp_path: Path
    ) -> None:
        """Chromium shows a wave table: lab runs the head, production's gate not met, why."""
        head = _head(waves_repo)
        _report(broker, "d1", "succeeded", revision=head)
        wait_for(lambda: _fleet(served_waves)["waves"][0]["running"] == 1, timeout=10, what="d1")
        waves = _fleet(served_waves)["waves"]
        assert waves[0]["revision"] == head and waves[1]["revision"] is None
        dom = _chromium(f"http://127.0.0.1:{served_waves}/", tmp_path, "--dump-dom")
        assert '<section id="waves">' in dom  # no longer hidden
        assert 'data-wave="lab"' in dom and 'data-gate="first"' in dom
        assert 'data-wave="production"' in dom and 'data-gate="not-met"' in dom
        assert head[:12] in dom and "1 of 1" in dom and "not started" in dom
        assert "gate not met: " in dom and "d1" in dom
