"""The fleets shipped with fleetgate are valid: what a newcomer copies must pass CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import main

ROOT = Path(__file__).resolve().parent.parent
FLEETS = {
    "example-fleet-repo": ROOT / "example-fleet-repo",
    "waterworks": ROOT / "tests" / "fixtures" / "fleets" / "waterworks",
}


class TestShippedFleets:
    """Every shipped fleet validates with zero findings."""

    @pytest.mark.parametrize("name", sorted(FLEETS))
    def test_validates_clean(self, name: str, capsys: pytest.CaptureFixture[str]) -> None:
        """A shipped fleet validates with exit 0 and no finding."""
        code = main(["validate", "--repo", str(FLEETS[name])])
        out, err = capsys.readouterr()
        assert code == 0, f"{name} is invalid:\n{out}{err}"
        assert out.strip() == "", f"{name} has findings:\n{out}"

    @pytest.mark.parametrize("name", sorted(FLEETS))
    def test_every_manifest_names_its_schema(self, name: str) -> None:
        """Each manifest's first line points editors at the matching JSON schema."""
        root = FLEETS[name]
        for path in sorted(root.rglob("*.yaml")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(("devices/", "groups/")) or rel == "fleet.yaml":
                kind = {"devices": "device", "groups": "group"}.get(rel.split("/")[0], "fleet")
            elif rel.startswith("stacks/") and path.name in ("compose.yaml", "stack.yaml"):
                kind = path.stem
            else:
                continue
            first = path.read_text(encoding="utf-8").splitlines()[0]
            prefix = "# yaml-language-server: $schema="
            assert first.startswith(prefix), f"{rel}: first line names no schema"
            schema = (path.parent / first[len(prefix) :]).resolve()
            assert schema == (ROOT / "reconciler" / "schemas" / f"{kind}.schema.json"), rel


class TestExampleFleetShape:
    """The example fleet covers what its README promises an OT engineer."""

    def test_sites_architectures_and_stacks(self) -> None:
        """The example fleet has nine devices or more, every arch and the promised stacks."""
        root = FLEETS["example-fleet-repo"]
        devices = list((root / "devices").glob("*.yaml"))
        texts = "".join(p.read_text(encoding="utf-8") for p in devices)
        assert len(devices) >= 9
        for arch in ("armv7", "arm64", "amd64"):
            assert f"arch: {arch}" in texts
        stacks = {p.parent.name for p in (root / "stacks").glob("*/compose.yaml")}
        assert {
            "node-red",
            "mosquitto",
            "historian",
            "opcua-bridge",
            "anomaly-detector",
            "demo",
        } <= stacks
        assert len(list((root / "groups").glob("*.yaml"))) >= 3
