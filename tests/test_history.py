"""`fleetgate history --device`: the commits that changed one device's rendered state."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from support.gitserver import Origin, git

from reconciler.cli import history as history_cmd
from reconciler.review.history import could_touch

FIXTURE = Path(__file__).parent / "fixtures" / "impact"


def edit(origin: Origin, path: str, old: str, new: str, message: str) -> str:
    text = (origin.path / path).read_text()
    assert old in text
    return origin.commit({path: text.replace(old, new)}, message)


@pytest.fixture
def timeline(tmp_path: Path) -> tuple[Origin, dict[str, str]]:
    """Seven commits; a-press-1 is changed by four of them (first, image, own file, merge)."""
    origin = Origin(tmp_path / "fleet")
    shutil.copytree(FIXTURE, origin.path, dirs_exist_ok=True)
    shas = {"init": origin.commit({}, "initial fleet")}
    shas["other device"] = edit(
        origin, "devices/b-pack-1.yaml", "line: pack", "line: pack, hall: 2", "label b-pack-1"
    )
    shas["image"] = edit(
        origin, "stacks/plc/compose.yaml", "plc-bridge:1.0.0", "plc-bridge:1.1.0", "bump plc"
    )
    shas["readme"] = edit(origin, "README.md", "fleet", "fleet (audited)", "docs")
    shas["own"] = edit(
        origin, "devices/a-press-1.yaml", "10.0.3.17", "10.0.3.18", "move a-press-1's PLC"
    )
    shas["web"] = edit(origin, "stacks/web/compose.yaml", "1.25.3", "1.25.4", "bump web")
    git("checkout", "--quiet", "-b", "feature", cwd=origin.path)
    edit(origin, "groups/site-a.yaml", "BROKER: 10.0.0.1", "BROKER: 10.0.0.9", "new broker")
    git("checkout", "--quiet", "main", cwd=origin.path)
    git("merge", "--quiet", "--no-ff", "-m", "merge broker move", "feature", cwd=origin.path)
    shas["merge"] = git("rev-parse", "HEAD", cwd=origin.path)
    return origin, shas


def run_history(origin: Origin, device: str, *extra: str, capsys: Any) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    history_cmd.register(parser.add_subparsers())
    args = parser.parse_args(
        ["history", "--device", device, "--repo", str(origin.path), "--output", "json", *extra]
    )
    assert history_cmd.run(args) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


class TestDeviceHistory:
    def test_only_commits_that_changed_the_device_newest_first(
        self, timeline: tuple[Origin, dict[str, str]], capsys: Any
    ) -> None:
        """Commits touching other devices, docs or unused stacks are left out; newest first."""
        origin, shas = timeline
        entries = run_history(origin, "a-press-1", capsys=capsys)["entries"]
        assert [e["commit"] for e in entries] == [
            shas["merge"],
            shas["own"],
            shas["image"],
            shas["init"],
        ]
        assert [e["impact"]["kind"] for e in entries] == ["changed", "changed", "changed", "added"]
        image = entries[2]["impact"]["stacks"][0]["services"][0]["changes"][0]
        assert image == {
            "subject": "image",
            "before": "registry.plant.example/ot/plc-bridge:1.0.0",
            "after": "registry.plant.example/ot/plc-bridge:1.1.0",
        }
        assert entries[1]["subject"] == "move a-press-1's PLC"
        assert entries[1]["author"] == "Fleet Tester <tester@plant.example>"

    def test_other_device_sees_its_own_commits(
        self, timeline: tuple[Origin, dict[str, str]], capsys: Any
    ) -> None:
        """A label-only change of a device that alters nothing it runs is not in its history."""
        origin, shas = timeline
        entries = run_history(origin, "b-pack-1", capsys=capsys)["entries"]
        assert [e["commit"] for e in entries] == [shas["web"], shas["init"]]

    def test_limit(self, timeline: tuple[Origin, dict[str, str]], capsys: Any) -> None:
        """--limit keeps the newest N entries."""
        origin, shas = timeline
        entries = run_history(origin, "a-press-1", "--limit", "2", capsys=capsys)["entries"]
        assert [e["commit"] for e in entries] == [shas["merge"], shas["own"]]

    def test_text_output(self, timeline: tuple[Origin, dict[str, str]], capsys: Any) -> None:
        """The text form shows each commit once with the reasons below it."""
        origin, shas = timeline
        parser = argparse.ArgumentParser()
        history_cmd.register(parser.add_subparsers())
        args = parser.parse_args(["history", "--device", "b-pack-1", "--repo", str(origin.path)])
        assert history_cmd.run(args) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0].startswith(f"{shas['web'][:12]} ")
        assert "image nginx:1.25.3 → nginx:1.25.4" in out


class TestCouldTouch:
    def test_other_devices_only(self) -> None:
        """A commit changing only other devices' manifests cannot touch this device."""
        assert not could_touch(["devices/b.yaml", "devices/c.yml"], "a")
        assert could_touch(["devices/b.yaml", "devices/a.yaml"], "a")
        assert could_touch(["README.md"], "a")
        assert could_touch(["stacks/x/compose.yaml"], "a")
