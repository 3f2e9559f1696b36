"""Selective impact (render only devices whose inputs changed) equals rendering every device."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.manifests.tree import RepoTree
from reconciler.review.scope import Side, assess, devices_in_scope, read_side

sys.path.insert(0, str(Path(__file__).parent.parent))
from bench.validate import generate

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
DEVICES, STACKS = 90, 80


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def _image_bump(root: Path) -> None:
    _replace(root / "stacks/app-061/compose.yaml", "app-061:1.61.0", "app-061:1.61.1")


def _config_file(root: Path) -> None:
    (root / "stacks/app-003/config/app.conf").write_text("name=changed\n")


def _group_variable(root: Path) -> None:
    _replace(root / "groups/site-brno.yaml", "SITE: brno", "SITE: brno-2")


def _group_selector(root: Path) -> None:
    _replace(root / "groups/line-lyon-2.yaml", "line: l2}", "line: l3}")


def _device_labels(root: Path) -> None:
    _replace(root / "devices/hannover-00000.yaml", "line: l0", "line: l1")


def _fleet_variable(root: Path) -> None:
    _replace(root / "fleet.yaml", "LOG_LEVEL: info", "LOG_LEVEL: debug")


def _readme(root: Path) -> None:
    (root / "README.md").write_text("# changed\n")


def _device_added(root: Path) -> None:
    text = (root / "devices/hannover-00000.yaml").read_text()
    (root / "devices/hannover-99999.yaml").write_text(text)
    (root / "devices/brno-00001.yaml").unlink()


def _reaching_stack(root: Path) -> None:
    """A stack mounts a file outside its folder, and only that outside file changes."""
    (root / "shared").mkdir(exist_ok=True)
    (root / "shared/ca.pem").write_text("second\n")


def _reaching_setup(root: Path) -> None:
    (root / "shared").mkdir()
    (root / "shared/ca.pem").write_text("first\n")
    _replace(
        root / "stacks/app-062/compose.yaml",
        "- ./config:/etc/app:ro",
        "- ./config:/etc/app:ro\n      - ../../shared/ca.pem:/etc/ca.pem:ro",
    )


CHANGES: dict[str, Callable[[Path], None]] = {
    "image bump": _image_bump,
    "config file": _config_file,
    "group variable": _group_variable,
    "group selector": _group_selector,
    "device labels": _device_labels,
    "fleet variable": _fleet_variable,
    "readme": _readme,
    "device added and removed": _device_added,
    "file reached through ..": _reaching_stack,
}


@pytest.fixture(scope="module")
def base_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scope") / "base"
    generate(root, DEVICES, STACKS)
    _reaching_setup(root)
    return root


def _sides(base_root: Path, tmp_path: Path, change: Callable[[Path], None]) -> tuple[Side, Side]:
    head_root = tmp_path / "head"
    shutil.copytree(base_root, head_root)
    change(head_root)
    base = read_side(RepoTree(base_root), None)
    head = read_side(RepoTree(head_root), None)
    assert not head.findings, head.findings
    return base, head


class TestSelectiveEqualsFull:
    @pytest.mark.parametrize("name", sorted(CHANGES))
    def test_same_devices_and_reasons(self, name: str, base_root: Path, tmp_path: Path) -> None:
        """For each kind of change, selective rendering reports exactly what full rendering does."""
        base, head = _sides(base_root, tmp_path, CHANGES[name])
        selective = assess(base, head, NOW)
        full = assess(base, head, NOW, selective=False)
        assert selective.findings == full.findings == ()
        assert selective.devices == full.devices
        assert full.devices or name == "readme"


class TestScopeIsSmall:
    def test_one_stack_change_renders_few_devices(self, base_root: Path, tmp_path: Path) -> None:
        """An image bump in a device-owned stack renders only the devices that run it."""
        base, head = _sides(base_root, tmp_path, _image_bump)
        scope = devices_in_scope(base, head)
        assert scope is not None
        users = {d for d, m in head.repo.devices.items() if "app-061" in m.stacks}
        reaching = {d for d, m in head.repo.devices.items() if "app-062" in m.stacks}
        assert users <= scope <= users | reaching
        assert len(scope) < DEVICES // 4

    def test_readme_renders_only_reaching_stacks(self, base_root: Path, tmp_path: Path) -> None:
        """A README change renders only devices whose stacks reach outside their folder."""
        base, head = _sides(base_root, tmp_path, _readme)
        scope = devices_in_scope(base, head)
        assert scope == {d for d, m in head.repo.devices.items() if "app-062" in m.stacks}

    def test_fleet_change_renders_everything(self, base_root: Path, tmp_path: Path) -> None:
        """A change of fleet.yaml can reach every device, so every device is rendered."""
        base, head = _sides(base_root, tmp_path, _fleet_variable)
        assert devices_in_scope(base, head) is None
