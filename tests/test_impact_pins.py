"""`fleetgate impact` of a commit that only moves a wave's pin (a promotion or its revert):
what the pin change lands on each device of that wave (real Git repositories)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from support.gitserver import Origin, git

from reconciler.cli import impact as impact_cmd

NOW = "2026-03-02T12:00:00Z"
FLEET = """\
rollout:
  waves:
    - name: lab
      selector: {ring: lab}
    - name: production
      selector: {}
      soak: 1h
"""
COMPOSE = """\
services:
  app:
    image: registry.example/app:{version}
"""


def release(version: str) -> dict[str, str]:
    return {"stacks/app/compose.yaml": COMPOSE.format(version=version)}


def pin(revision: str) -> dict[str, str]:
    return {"waves/production.yaml": f"revision: {revision}\n"}


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    repo = Origin(tmp_path / "fleet")
    devices = {
        "devices/lab-1.yaml": "labels: {ring: lab}\nstacks: [app]\n",
        "devices/press-1.yaml": "labels: {ring: prod}\nstacks: [app]\n",
        "devices/press-2.yaml": "labels: {ring: prod}\nstacks: [app]\n",
    }
    repo.commit({"fleet.yaml": FLEET, **devices, **release("1")}, "release 1")
    return repo


def impact(origin: Origin, *extra: str, capsys: Any) -> str:
    parser = argparse.ArgumentParser()
    impact_cmd.register(parser.add_subparsers())
    args = parser.parse_args(
        ["impact", "HEAD~1", "HEAD", "--repo", str(origin.path), "--now", NOW, *extra]
    )
    assert impact_cmd.run(args) == 0
    return str(capsys.readouterr().out)


def head(origin: Origin) -> str:
    return git("rev-parse", "HEAD", cwd=origin.path)


def images(device: dict[str, Any]) -> list[str]:
    return [
        f"{c['before']} -> {c['after']}"
        for stack in device["stacks"]
        for service in stack["services"]
        for c in service["changes"]
        if c["subject"] == "image"
    ]


class TestPinMoveImpact:
    def test_promotion_lands_the_release_on_each_production_device(
        self, origin: Origin, capsys: Any
    ) -> None:
        """Moving production's pin from release 1 to 2 lists both production devices with
        the image change between the two pinned revisions, and not the lab."""
        first = head(origin)
        origin.commit(pin(first), "pin 1")
        two = origin.commit(release("2"), "release 2")
        origin.commit(pin(two), f"promote production to {two}")
        document = json.loads(impact(origin, "--output", "json", capsys=capsys))
        assert document["devices"] == []  # the files of no device changed
        [moved] = document["pins"]
        assert (moved["wave"], moved["before"], moved["after"]) == ("production", first, two)
        assert moved["members"] == 2
        by_device = {d["device"]: d for d in moved["devices"]}
        assert sorted(by_device) == ["press-1", "press-2"]
        for device in by_device.values():
            assert images(device) == ["registry.example/app:1 -> registry.example/app:2"]
            assert (device["wave"], device["lands"]) == ("production", "now")

    def test_text_names_the_wave_the_pins_and_the_changes(
        self, origin: Origin, capsys: Any
    ) -> None:
        """The text output says the files of no device change, then per device of the wave
        what the pin move lands."""
        first = head(origin)
        origin.commit(pin(first), "pin 1")
        two = origin.commit(release("2"), "release 2")
        origin.commit(pin(two), "promote")
        out = impact(origin, capsys=capsys)
        assert "the files of no device change; the pin of production moves" in out
        assert f"wave production: pin {first[:12]} → {two[:12]}: 2 of 2 devices change" in out
        assert "  device press-1 changed" in out
        assert "image registry.example/app:1 → registry.example/app:2" in out
        assert "lab-1" not in out

    def test_first_promotion_starts_the_wave(self, origin: Origin, capsys: Any) -> None:
        """A wave without a pin had not started: its first pin adds the release to each device."""
        origin.commit(pin(head(origin)), "first promotion")
        [moved] = json.loads(impact(origin, "--output", "json", capsys=capsys))["pins"]
        assert moved["before"] is None
        assert {d["device"]: d["kind"] for d in moved["devices"]} == {
            "press-1": "added",
            "press-2": "added",
        }

    def test_rollback_of_a_promotion_shows_the_way_back(self, origin: Origin, capsys: Any) -> None:
        """Reverting a promotion moves the pin back: the image change is shown reversed."""
        first = head(origin)
        origin.commit(pin(first), "pin 1")
        two = origin.commit(release("2"), "release 2")
        origin.commit(pin(two), "promote")
        origin.commit(pin(first), "revert the promotion")
        [moved] = json.loads(impact(origin, "--output", "json", capsys=capsys))["pins"]
        assert [images(d) for d in moved["devices"]] == [
            ["registry.example/app:2 -> registry.example/app:1"]
        ] * 2

    def test_markdown_has_a_section_per_moved_pin(self, origin: Origin, capsys: Any) -> None:
        """The merge-request comment of a promotion lists the wave's devices and changes."""
        origin.commit(pin(head(origin)), "pin 1")
        two = origin.commit(release("2"), "release 2")
        origin.commit(pin(two), "promote")
        out = impact(origin, "--output", "markdown", capsys=capsys)
        assert "#### wave `production`: pin" in out
        assert "- `press-2` changed" in out
        assert "`registry.example/app:1` → `registry.example/app:2`" in out

    def test_a_release_commit_moves_no_pin(self, origin: Origin, capsys: Any) -> None:
        """An ordinary commit lists its devices as before and no pin section."""
        origin.commit(release("2"), "release 2")
        document = json.loads(impact(origin, "--output", "json", capsys=capsys))
        assert document["pins"] == []
        assert {d["device"]: d["lands"] for d in document["devices"]} == {
            "lab-1": "now",
            "press-1": "at promotion",
            "press-2": "at promotion",
        }
