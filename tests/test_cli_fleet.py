"""`fleetgate fleet status` as a process: a local Git repository, a real Mosquitto with the
documented ACL (the reader is the viewer user), agents' reporters publishing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.mqtt import VIEWER, Mosquitto, running_broker
from support.wait import wait_for

from reconciler.report.broker import Broker, parse_broker
from reconciler.report.mqtt import MqttReporter
from reconciler.report.status import Status

USERS = {"d1": "pw1", "d2": "pw2", "stranger": "pw3", VIEWER: "viewer-pw"}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    for device, site in (("d1", "plant-a"), ("d2", "plant-a"), ("d3", "plant-b")):
        path = root / "devices" / f"{device}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"labels: {{site: {site}}}\nstacks: [s]\n")
    (root / "stacks/s").mkdir(parents=True)
    (root / "stacks/s/compose.yaml").write_text("services:\n  x:\n    image: x\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "first fleet")
    (root / "devices/d1.yaml").write_text("labels: {site: plant-a, ring: lab}\nstacks: [s]\n")
    _git(root, "commit", "-qam", "d1 joins the lab ring")
    return root


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with running_broker(tmp_path / "broker", USERS) as b:
        yield b


def _report(b: Mosquitto, device: str, applied: str, outcome: str) -> None:
    url = parse_broker(b.url, "test")
    reporter = MqttReporter(Broker(url.host, url.port, False, None, device, USERS[device]), device)
    reporter.start()
    try:
        reporter.publish(
            Status(
                device, applied_revision=applied, outcome=outcome, heartbeat_at=datetime.now(UTC)
            )
        )
        wait_for(lambda: reporter.stats().last_publish_at, timeout=10, what=f"{device} report")
    finally:
        reporter.stop()


def _fleet(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "fleet", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


class TestFleetStatusFromBroker:
    def test_json_lists_every_device_with_its_report(
        self, tmp_path: Path, repo: Path, broker: Mosquitto
    ) -> None:
        """Reporters, a never-reporting device and a stranger all show up as §6 says."""
        head = _git(repo, "rev-parse", "HEAD")
        old = _git(repo, "rev-parse", "HEAD~1")
        _report(broker, "d1", head, "succeeded")
        _report(broker, "d2", old, "rolled-back")
        _report(broker, "stranger", head, "failed")
        (tmp_path / "pw").write_text("viewer-pw\n")
        flags = (
            "--broker",
            broker.url,
            "--username",
            VIEWER,
            "--password-file",
            str(tmp_path / "pw"),
            "--repo",
            str(repo),
        )
        done = _fleet(tmp_path, *flags, "--output", "json")
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        rows = {r["device"]: r for r in document["devices"]}
        assert rows["d1"]["status"]["applied_revision"] == head
        assert rows["d1"]["online"] is False  # a clean stop said so
        assert rows["d2"]["status"]["outcome"] == "rolled-back"
        assert rows["d3"]["status"] is None
        assert [u["device"] for u in document["unknown_devices"]] == ["stranger"]
        assert document["summary"]["on_head"] == 1 and document["summary"]["behind"] == 1
        assert "viewer-pw" not in done.stdout + done.stderr

        text = _fleet(tmp_path, *flags, "--behind")
        assert text.returncode == 0, text.stderr
        assert "\nd1 " not in text.stdout and "\nd2 " in text.stdout
        assert "first fleet (behind)" in text.stdout
        assert "rolled-back" in text.stdout

    def test_wrong_viewer_password_is_one_line(
        self, tmp_path: Path, repo: Path, broker: Mosquitto
    ) -> None:
        """A refused reader gets exit 1 and one line, never the password."""
        (tmp_path / "pw").write_text("wrong-pw\n")
        done = _fleet(
            tmp_path,
            "--broker",
            broker.url,
            "--username",
            VIEWER,
            "--password-file",
            str(tmp_path / "pw"),
            "--repo",
            str(repo),
        )
        assert done.returncode == 1
        assert "refused the reader" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert "wrong-pw" not in done.stderr and "Traceback" not in done.stderr
