"""`fleetgate impact`: which devices a change touches, why, and when (real Git repositories)."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from support.gitserver import Origin, git

from reconciler.cli import impact as impact_cmd
from reconciler.cli import main
from reconciler.errors import UsageError

FIXTURE = Path(__file__).parent / "fixtures" / "impact"
MONDAY_NOON = "2026-03-02T12:00:00Z"  # site-a's window opens Monday 22:00 Europe/Berlin


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    repo = Origin(tmp_path / "fleet")
    shutil.copytree(FIXTURE, repo.path, dirs_exist_ok=True)
    repo.commit({}, "the impact fixture fleet")
    return repo


def edit(origin: Origin, path: str, old: str, new: str) -> str:
    file = origin.path / path
    text = file.read_text()
    assert old in text, f"{old!r} not in {path}"
    return origin.commit({path: text.replace(old, new)}, f"edit {path}")


def run_impact(
    origin: Origin, *extra: str, base: str = "HEAD~1", head: str = "HEAD", capsys: Any
) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    impact_cmd.register(parser.add_subparsers())
    args = parser.parse_args(
        ["impact", base, head, "--repo", str(origin.path), "--now", MONDAY_NOON, *extra]
    )
    code = impact_cmd.run(args)
    return code, capsys.readouterr().out


def devices(origin: Origin, capsys: Any, **kw: Any) -> dict[str, Mapping[str, Any]]:
    code, out = run_impact(origin, "--output", "json", capsys=capsys, **kw)
    assert code == 0, out
    return {d["device"]: d for d in json.loads(out)["devices"]}


def reasons(device: Mapping[str, Any]) -> list[str]:
    out = []
    for stack in device["stacks"]:
        out += [f"{stack['name']}: {c['subject']}" for c in stack["changes"]]
        for svc in stack["services"]:
            out += [
                f"{stack['name']}/{svc['service']} {svc['kind']}: {c['subject']} "
                f"{c['before']} -> {c['after']}"
                for c in svc["changes"]
            ] or [f"{stack['name']}/{svc['service']} {svc['kind']}"]
    return out


class TestImpactNamesExactlyTheRightDevices:
    def test_site_group_variable(self, origin: Origin, capsys: Any) -> None:
        """A variable changed in one site's group touches exactly that site's devices."""
        edit(origin, "groups/site-a.yaml", "BROKER: 10.0.0.1", "BROKER: 10.0.0.2")
        found = devices(origin, capsys)
        assert sorted(found) == ["a-pack-1", "a-press-1"]
        assert reasons(found["a-pack-1"]) == [
            "mqtt/broker changed: environment ~BROKER None -> None"
        ]

    def test_stack_config_file(self, origin: Origin, capsys: Any) -> None:
        """A changed stack config file touches the devices running that stack, naming the file."""
        edit(origin, "stacks/plc/plc.yaml", "100ms", "50ms")
        found = devices(origin, capsys)
        assert sorted(found) == ["a-press-1", "b-press-1"]
        subjects = reasons(found["b-press-1"])
        assert "plc: config stacks/plc/plc.yaml" in subjects
        assert any("mount /etc/plc.yaml: config content changed" in s for s in subjects)

    def test_image_bump(self, origin: Origin, capsys: Any) -> None:
        """An image bump names the one device running the stack, with before and after tags."""
        edit(origin, "stacks/web/compose.yaml", "nginx:1.25.3", "nginx:1.25.4")
        found = devices(origin, capsys)
        assert list(found) == ["b-pack-1"]
        assert reasons(found["b-pack-1"]) == ["web/web changed: image nginx:1.25.3 -> nginx:1.25.4"]

    def test_comment_only(self, origin: Origin, capsys: Any) -> None:
        """Comments, blank lines and a README change no rendered state and list no device."""
        edit(origin, "groups/site-a.yaml", "# Plant A.", "# Plant A, hall 3.\n")
        edit(origin, "stacks/mqtt/compose.yaml", "services:", "# the broker\nservices:")
        edit(origin, "README.md", "fleet", "fleet, for tests")
        assert devices(origin, capsys, base="HEAD~3") == {}
        code, out = run_impact(origin, base="HEAD~3", capsys=capsys)
        assert code == 0
        assert "no device's desired state changes" in out

    def test_device_added_and_removed(self, origin: Origin, capsys: Any) -> None:
        """Adding one device and removing another names those two and nothing else."""
        git("rm", "--quiet", "devices/a-pack-1.yaml", cwd=origin.path)
        origin.commit({"devices/c-press-1.yaml": "labels: {site: c, line: press}\n"}, "swap")
        found = devices(origin, capsys)
        assert {k: v["kind"] for k, v in found.items()} == {
            "a-pack-1": "removed",
            "c-press-1": "added",
        }
        assert reasons(found["c-press-1"]) == [
            "plc/bridge added: image None -> registry.plant.example/ot/plc-bridge:1.0.0"
        ]

    def test_group_selector(self, origin: Origin, capsys: Any) -> None:
        """Narrowing a group's selector names only the devices that stop matching it."""
        edit(origin, "groups/presses.yaml", "{line: press}", "{line: press, site: a}")
        found = devices(origin, capsys)
        assert list(found) == ["b-press-1"]
        assert reasons(found["b-press-1"]) == ["plc/bridge removed"]


class TestImpactReasons:
    def test_secret_values_never_appear(self, origin: Origin, capsys: Any) -> None:
        """An environment change is reported by key only; the value is in no output format."""
        edit(
            origin,
            "groups/presses.yaml",
            "stacks: [plc]",
            "stacks: [plc]\nvariables:\n  API_TOKEN: s3cr3t-value",
        )
        for output in ("text", "json", "markdown"):
            code, out = run_impact(origin, "--output", output, capsys=capsys)
            assert code == 0
            assert "API_TOKEN" in out
            assert "s3cr3t-value" not in out and "not-set" not in out

    def test_when_it_applies(self, origin: Origin, capsys: Any) -> None:
        """Each device's change lands at its next window opening, in the window's time zone."""
        edit(origin, "fleet.yaml", "LOG_LEVEL: info", "LOG_LEVEL: debug")
        found = devices(origin, capsys)
        assert sorted(found) == ["a-pack-1", "a-press-1", "b-pack-1", "b-press-1"]
        assert found["a-press-1"]["schedule"] == "scheduled"
        assert found["a-press-1"]["appliesAt"] == "2026-03-02T21:00:00Z"
        assert found["a-press-1"]["timezone"] == "Europe/Berlin"
        assert found["b-press-1"]["schedule"] == "any time"
        _, out = run_impact(origin, capsys=capsys)
        assert "next window 2026-03-02 22:00 Europe/Berlin" in out

    def test_totals_per_site_and_group(self, origin: Origin, capsys: Any) -> None:
        """JSON totals count the changed devices per site label and per matching group."""
        edit(origin, "stacks/plc/plc.yaml", "100ms", "50ms")
        _, out = run_impact(origin, "--output", "json", capsys=capsys)
        totals = json.loads(out)["totals"]
        assert totals == {
            "devices": 2,
            "bySite": {"a": 1, "b": 1},
            "byGroup": {"presses": 2, "site-a": 1, "site-b": 1},
        }

    def test_markdown_for_a_pull_request(self, origin: Origin, capsys: Any) -> None:
        """Markdown groups identical changes once, with a table of devices and when they apply."""
        edit(origin, "stacks/plc/compose.yaml", "plc-bridge:1.0.0", "plc-bridge:1.1.0")
        code, out = run_impact(origin, "--output", "markdown", capsys=capsys)
        assert code == 0
        assert out.startswith("### fleetgate impact")
        assert "**2 of 4 devices change.**" in out
        assert out.count("#### Change") == 1
        assert "image `registry.plant.example/ot/plc-bridge:1.0.0` → `registry.plant.example" in out
        assert "| `a-press-1` | a | next window 2026-03-02 22:00 Europe/Berlin |" in out


class TestImpactInvalidHead:
    def test_findings_and_exit_1(self, origin: Origin, capsys: Any) -> None:
        """An invalid HEAD prints its findings with file and line and exits 1."""
        edit(
            origin,
            "stacks/web/compose.yaml",
            "image: nginx:1.25.3",
            "image: nginx:1.25.3\n    build: .",
        )
        code, out = run_impact(origin, capsys=capsys)
        assert code == 1
        assert "stacks/web/compose.yaml:" in out and "build" in out
        code, out = run_impact(origin, "--output", "json", capsys=capsys)
        assert code == 1
        assert json.loads(out)["valid"] is False

    def test_unknown_revision(self, origin: Origin, capsys: Any) -> None:
        """An unknown BASE is one clear error naming it."""
        with pytest.raises(Exception, match="no-such-branch"):
            run_impact(origin, base="no-such-branch", capsys=capsys)

    def test_bad_now(self) -> None:
        """A --now without a time zone is a usage error."""
        with pytest.raises(UsageError, match="time zone"):
            impact_cmd.parse_now("2026-03-02T10:00:00")


class TestImpactCommand:
    def test_registered_in_the_cli(self, origin: Origin, capsys: Any) -> None:
        """`fleetgate impact` is reachable from the entry point and exits 0 on a valid HEAD."""
        edit(origin, "stacks/web/compose.yaml", "nginx:1.25.3", "nginx:1.25.4")
        argv = ["impact", "HEAD~1", "HEAD", "--repo", str(origin.path), "--now", MONDAY_NOON]
        assert main(argv) == 0
        assert "device b-pack-1 changed" in capsys.readouterr().out
