"""Status back on the stick: atomic, never through a planted link, skipped when pulled."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import structlog

from reconciler.agent.stick import StickStatus, stick_status_path
from reconciler.record import DeviceRecord
from reconciler.report.status import Status, build_status

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def status(device: str = "press-01") -> Status:
    return build_status(DeviceRecord(device=device), now=NOW)


class TestStickStatus:
    def test_written_only_to_folders_a_bundle_came_from(self, tmp_path: Path) -> None:
        """Nothing is written before an import; after it, the status document is there."""
        stick = StickStatus("press-01", structlog.get_logger())
        stick.publish(status())
        assert not (tmp_path / "fleetgate-status").exists()
        stick.note(tmp_path)
        stick.publish(status())
        written = json.loads(stick_status_path(tmp_path, "press-01").read_text())
        assert written["device"] == "press-01"
        assert [p.name for p in (tmp_path / "fleetgate-status").iterdir()] == ["press-01.json"]

    def test_planted_link_is_not_followed(self, tmp_path: Path) -> None:
        """A fleetgate-status symlink on the stick refuses the write; its target stays empty."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        usb = tmp_path / "usb"
        usb.mkdir()
        (usb / "fleetgate-status").symlink_to(elsewhere)
        stick = StickStatus("press-01", structlog.get_logger())
        stick.note(usb)
        stick.publish(status())  # logged, not raised
        assert not any(elsewhere.iterdir())

    def test_pulled_stick_is_skipped(self, tmp_path: Path) -> None:
        """A folder that is gone (stick pulled) is skipped without an error or a new folder."""
        stick = StickStatus("press-01", structlog.get_logger())
        stick.note(tmp_path / "usb")
        stick.publish(status())
        assert not (tmp_path / "usb").exists()
