"""Render: one device's desired state from the fleet repository, its errors and hashes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import structlog

from reconciler.cli import main
from reconciler.cli.render import render_json
from reconciler.errors import ManifestError
from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.yamlio import parse_yaml
from reconciler.model import (
    DeviceManifest,
    FleetManifest,
    FleetRepository,
    Location,
    StackManifest,
)
from reconciler.render.device import render_device, spec_hashes

PLANT = Path(__file__).parent / "fixtures" / "render" / "plant"


@pytest.fixture(autouse=True)
def _keep_logging_config() -> Iterator[None]:
    """`main()` binds structlog to the (captured) stderr; restore it for later tests."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    root = tmp_path / "plant"
    shutil.copytree(PLANT, root)
    return root


def load(root: Path) -> tuple[FleetRepository, RepoTree]:
    tree = RepoTree(root)
    repo, findings = load_repository(tree)
    assert findings == ()
    return repo, tree


def stack_repo(compose: str, **device: object) -> FleetRepository:
    stack = StackManifest(
        "s", parse_yaml(compose, "stacks/s/compose.yaml"), "stacks/s/compose.yaml"
    )
    dev = DeviceManifest(
        "d1",
        stacks=("s",),
        location=Location("devices/d1.yaml", 1),
        **device,  # type: ignore[arg-type]
    )
    return FleetRepository(FleetManifest(), {"d1": dev}, {}, {"s": stack})


class TestRenderFromDisk:
    def test_fixture_fleet_renders_with_groups_and_variables(self, plant: Path) -> None:
        """press-1 gets its own stack plus its group's, group variables and windows."""
        repo, tree = load(plant)
        state = render_device(repo, tree, "press-1").state
        assert [s.name for s in state.stacks] == ["node-red", "plc-bridge"]
        bridge = state.stacks[1]
        assert [s.service for s in bridge.services] == ["mqtt", "bridge"]  # depends_on first
        svc = bridge.services[1]
        assert svc.command == ("--address", "10.0.3.17", "--log", "debug")
        assert ("DEVICE", "press-1") in svc.environment
        assert [w.start for w in state.update_windows] == ["22:00"]
        assert bridge.lock_dir == "/var/lib/fleetgate/locks/press-1/plc-bridge"
        assert len(svc.config_hash) == 64 and svc.field_hashes[0][0] == "container_name"

    def test_missing_required_variable_names_device_and_line(self, plant: Path) -> None:
        """An unset ${X:?msg} is reported at its compose line, naming device and variable."""
        repo, tree = load(plant)
        with pytest.raises(ManifestError) as info:
            render_device(repo, tree, "press-2")
        assert [str(f) for f in info.value.findings] == [
            "stacks/plc-bridge/compose.yaml:4: device press-2: variable PLC_ADDRESS is required "
            "(the PLC's IP address); set it in devices/press-2.yaml, a group or fleet.yaml"
        ]

    def test_where_points_at_the_service_key(self, plant: Path) -> None:
        """Rendered.where gives the compose file and the line of a service key."""
        repo, tree = load(plant)
        rendered = render_device(repo, tree, "press-1")
        where = rendered.where("plc-bridge", "bridge", "ports")
        assert (where.path, where.line) == ("stacks/plc-bridge/compose.yaml", 9)
        assert rendered.where("plc-bridge", "bridge", "nope").line == 2

    def test_devices_sharing_a_stack_get_their_own_names(self, plant: Path) -> None:
        """Memoized stacks are rebound to each device's names and paths, never shared."""
        (plant / "devices" / "press-3.yaml").write_text("labels: {site: hannover}\n")
        repo, tree = load(plant)
        one = render_device(repo, tree, "press-1").state.stacks[0].services[0]
        three = render_device(repo, tree, "press-3").state.stacks[0].services[0]
        assert (one.container_name, three.container_name) == (
            "press-1_node-red_node-red",
            "press-3_node-red_node-red",
        )
        assert three.mounts[0].source.startswith("/var/lib/fleetgate/configs/press-3/node-red/")
        assert "press-1" not in json.dumps([m.source for m in three.mounts])
        assert one.config_hash != three.config_hash

    def test_changed_variable_changes_the_state(self, plant: Path) -> None:
        """A different variable value is never served from the memo of another value."""
        repo, tree = load(plant)
        before = render_device(repo, tree, "press-1").state
        device = replace(repo.devices["press-1"], variables={"PLC_ADDRESS": "10.9.9.9"})
        repo2 = replace(repo, devices={**repo.devices, "press-1": device})
        after = render_device(repo2, tree, "press-1").state
        assert after.stacks[1].services[1].command == ("--address", "10.9.9.9", "--log", "debug")
        assert before.stacks[1].services[1].config_hash != after.stacks[1].services[1].config_hash


class TestRenderErrors:
    def test_unknown_device(self, plant: Path) -> None:
        """Rendering a device without a manifest says which file to add."""
        repo, tree = load(plant)
        with pytest.raises(ManifestError, match="unknown device 'ghost'"):
            render_device(repo, tree, "ghost")

    def test_requirements_are_reported_on_the_device_file(self, tmp_path: Path) -> None:
        """A stack requiring a capability or arch the device lacks is a device-file finding."""
        repo = stack_repo("services:\n  a:\n    image: x\n", arch="amd64")
        stack = replace(
            repo.stacks["s"], requires_capabilities=("hailo8",), requires_arch=("arm64",)
        )
        repo = replace(repo, stacks={"s": stack})
        with pytest.raises(ManifestError) as info:
            render_device(repo, RepoTree(tmp_path), "d1")
        got = [str(f) for f in info.value.findings]
        assert len(got) == 2 and all(g.startswith("devices/d1.yaml:1: stack s ") for g in got)

    def test_every_finding_of_the_device_at_once(self, tmp_path: Path) -> None:
        """Interpolation errors and invalid values of several stacks come together."""
        repo = stack_repo(
            "services:\n  a:\n    image: x\n    ports: ['99999']\n  b:\n    image: ${B:?set B}\n"
            "    depends_on: [c]\n  c:\n    image: y\n    depends_on: [b]\n"
        )
        with pytest.raises(ManifestError) as info:
            render_device(repo, RepoTree(tmp_path), "d1")
        assert [f.line for f in info.value.findings] == [6]  # interpolation stops that stack
        repo = stack_repo(
            "services:\n  a:\n    image: x\n    ports: ['99999']\n  b:\n    image: z\n"
            "    depends_on: [c]\n  c:\n    image: y\n    depends_on: [b]\n"
        )
        with pytest.raises(ManifestError) as info:
            render_device(repo, RepoTree(tmp_path), "d1")
        assert [f.line for f in info.value.findings] == [4, 7, 10]


class TestHashes:
    def test_hash_ignores_identity_pull_policy_and_depends_on(self, plant: Path) -> None:
        """Only container-shaping fields change config_hash; field_hashes say which."""
        repo, tree = load(plant)
        svc = render_device(repo, tree, "press-1").state.stacks[1].services[1]
        same = replace(svc, pull_policy="always", depends_on=(), service="other")
        assert spec_hashes(same)[0] == spec_hashes(svc)[0] == svc.config_hash
        changed = replace(svc, environment=(("TZ", "UTC"),))
        digest, fields = spec_hashes(changed)
        assert digest != svc.config_hash
        diff = [a[0] for a, b in zip(fields, svc.field_hashes, strict=True) if a != b]
        assert diff == ["environment"]


class TestCommand:
    def test_json_is_deterministic_and_masks_secrets(
        self, plant: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Two runs print identical JSON; a secret-looking env value never appears."""
        assert main(["render", "--device", "press-1", "--repo", str(plant), "-o", "json"]) == 0
        first = capsys.readouterr().out
        assert main(["render", "--device", "press-1", "--repo", str(plant), "-o", "json"]) == 0
        assert capsys.readouterr().out == first
        assert "s3cr3t-token" not in first
        doc = json.loads(first)
        env = doc["stacks"][1]["services"][1]["environment"]
        assert env["API_TOKEN"] == "********"
        assert doc["stacks"][1]["services"][0]["healthcheck"]["interval"] == "10s"

    def test_text_shows_mount_kinds_and_masks(
        self, plant: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The text form lists each service with image, env, ports and kinded mounts."""
        assert main(["render", "--device", "press-1", "--repo", str(plant)]) == 0
        out = capsys.readouterr().out
        assert "s3cr3t-token" not in out and "API_TOKEN=********" in out
        for fragment in (
            "image:",
            "config /var/lib",
            "data   /var/lib",
            "lock   /var/lib",
            "volume ",
        ):
            assert fragment in out

    def test_invalid_device_prints_findings_and_exits_1(
        self, plant: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Findings go to stderr one per line and the exit code is 1."""
        assert main(["render", "--device", "press-2", "--repo", str(plant)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(
            "stacks/plc-bridge/compose.yaml:4: device press-2: variable PLC_ADDRESS"
        )

    def test_state_dir_moves_every_path(self, plant: Path) -> None:
        """--state-dir changes config, data and lock paths, and nothing else."""
        repo, tree = load(plant)
        text = render_json(render_device(repo, tree, "press-1", "/data/fg").state)
        assert "/var/lib/fleetgate" not in text and "/data/fg/locks/press-1/plc-bridge" in text


class TestMemo:
    def test_bare_environment_names_and_env_files_are_part_of_the_key(self, tmp_path: Path) -> None:
        """Devices differing only in a variable read by `environment: [X]` or an env file differ."""
        (tmp_path / "stacks" / "s").mkdir(parents=True)
        (tmp_path / "stacks" / "s" / "app.env").write_text("FROM_FILE=${SITE}\n")
        repo = stack_repo(
            "services:\n  a:\n    image: x\n    environment: [MODE]\n    env_file: app.env\n"
        )
        one = replace(repo.devices["d1"], variables={"MODE": "fast", "SITE": "ham"})
        two = replace(one, id="d2", variables={"MODE": "slow", "SITE": "hh"})
        repo = replace(repo, devices={"d1": one, "d2": two})
        tree = RepoTree(tmp_path)
        env1 = render_device(repo, tree, "d1").state.stacks[0].services[0].environment
        env2 = render_device(repo, tree, "d2").state.stacks[0].services[0].environment
        assert env1 == (("FROM_FILE", "ham"), ("MODE", "fast"))
        assert env2 == (("FROM_FILE", "hh"), ("MODE", "slow"))

    def test_device_name_in_a_path_is_looked_up_per_device(self, tmp_path: Path) -> None:
        """A stack using FLEETGATE_DEVICE in a bind source classifies it for each device."""
        (tmp_path / "stacks" / "s" / "conf").mkdir(parents=True)
        (tmp_path / "stacks" / "s" / "conf" / "d1.yaml").write_text("x: 1\n")
        repo = stack_repo(
            "services:\n  a:\n    image: x\n"
            "    volumes: ['./conf/${FLEETGATE_DEVICE}.yaml:/etc/app.yaml']\n"
        )
        repo = replace(repo, devices={**repo.devices, "d2": replace(repo.devices["d1"], id="d2")})
        tree = RepoTree(tmp_path)
        kinds = [
            render_device(repo, tree, d).state.stacks[0].services[0].mounts[0].kind
            for d in ("d1", "d2")
        ]
        assert kinds == ["config", "data"]

    def test_service_memo_never_serves_another_devices_lookups(self, tmp_path: Path) -> None:
        """A service reusing an earlier normalization still gets its own bare env values."""
        repo = stack_repo(
            "services:\n  a:\n    image: x\n    environment: [MODE]\n  b:\n    image: y:${TAG:-1}\n"
        )
        one = replace(repo.devices["d1"], variables={"MODE": "fast"})
        two = replace(one, id="d2", variables={"MODE": "slow", "TAG": "2"})
        repo = replace(repo, devices={"d1": one, "d2": two})
        tree = RepoTree(tmp_path)
        got = []
        for device in ("d1", "d2"):
            a, b = render_device(repo, tree, device).state.stacks[0].services
            got.append((a.environment, a.container_name, b.image))
        assert got == [
            ((("MODE", "fast"),), "d1_s_a", "y:1"),
            ((("MODE", "slow"),), "d2_s_a", "y:2"),
        ]

    def test_service_derived_from_another_device_equals_its_full_render(
        self, tmp_path: Path
    ) -> None:
        """A service re-derived from a memoized one renders exactly as if rendered alone."""
        repo = stack_repo(
            "services:\n  a:\n    image: x:${TAG:-1}\n    command: [--plc, '${PLC}']\n"
            "    environment: {PLC: '${PLC}', MODE: fixed}\n    ports: ['${PORT:-80}:80']\n"
            "    labels: ['site=${PLC}']\n    volumes: ['${FLEETGATE_LOCK_DIR}:/run/lock']\n"
        )
        one = replace(repo.devices["d1"], variables={"PLC": "10.0.0.1"})
        two = replace(one, id="d2", variables={"PLC": "10.0.0.2", "TAG": "2", "PORT": "81"})
        repo = replace(repo, devices={"d1": one, "d2": two})
        tree = RepoTree(tmp_path)
        derived = [render_device(repo, tree, d).state for d in ("d1", "d2")][1]
        fresh = replace(repo, stacks={"s": replace(repo.stacks["s"])})  # a cold memo
        alone = render_device(fresh, RepoTree(tmp_path), "d2").state
        assert derived == alone
        assert derived.stacks[0].services[0].command == ("--plc", "10.0.0.2")
