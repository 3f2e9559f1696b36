"""Seeded data directories (stack.yaml `seed:`): render, plan and the no-overwrite write."""

from __future__ import annotations

import textwrap
from pathlib import Path

from reconciler import statedir
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.validate import check_fleet
from reconciler.model import DesiredState
from reconciler.plan.seeds import seed_steps
from reconciler.plan.steps import SeedFile
from reconciler.render.desired import build_desired

COMPOSE = "services:\n  z2m:\n    image: x\n    volumes: ['./data:/app/data']\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


def fleet(root: Path, stack_yaml: str = "seed: [data]\n", **more: str) -> Path:
    files = {
        "devices/d1.yaml": "stacks: [z2m]\n",
        "stacks/z2m/compose.yaml": COMPOSE,
        "stacks/z2m/stack.yaml": stack_yaml,
        "stacks/z2m/data/configuration.yaml": "homeassistant: true\n",
        "stacks/z2m/data/sub/devices.yaml": "{}\n",
    }
    return write(root, files | more)


def render(root: Path) -> DesiredState:
    return build_desired(RepoTree(root), None, "d1", "/state")


class TestRender:
    def test_seeded_folder_is_a_data_directory_with_seed_files(self, tmp_path: Path) -> None:
        """A seeded folder mounts the persistent data directory and lists its files as seeds."""
        (stack,) = render(fleet(tmp_path)).stacks
        (mount,) = stack.services[0].mounts
        assert (mount.kind, mount.source) == ("data", "/state/data/d1/z2m/data")
        assert stack.data_dirs == ("/state/data/d1/z2m/data",)
        assert [(f.repo_path, f.host_path, f.mode) for f in stack.seed_files] == [
            (
                "stacks/z2m/data/configuration.yaml",
                "/state/data/d1/z2m/data/configuration.yaml",
                0o644,
            ),
            ("stacks/z2m/data/sub/devices.yaml", "/state/data/d1/z2m/data/sub/devices.yaml", 0o644),
        ]
        assert stack.config_files == ()

    def test_changed_seed_file_keeps_the_service_hash(self, tmp_path: Path) -> None:
        """A new seed content does not recreate the container: the mount is the same."""
        before = render(fleet(tmp_path)).stacks[0].services[0].config_hash
        (tmp_path / "stacks/z2m/data/configuration.yaml").write_text("changed: 1\n")
        assert render(tmp_path).stacks[0].services[0].config_hash == before

    def test_seeded_single_file(self, tmp_path: Path) -> None:
        """A seeded file (acme.json) is seeded in place, with no directory made for it."""
        root = fleet(
            tmp_path,
            "seed: [acme.json]\n",
            **{
                "stacks/z2m/compose.yaml": "services:\n  t:\n    image: x\n"
                "    volumes: ['./acme.json:/acme.json']\n",
                "stacks/z2m/acme.json": "{}\n",
            },
        )
        (stack,) = render(root).stacks
        assert stack.data_dirs == ()
        assert [f.host_path for f in stack.seed_files] == ["/state/data/d1/z2m/acme.json"]

    def test_rw_repository_folder_without_seed_warns(self, tmp_path: Path) -> None:
        """A :rw repository folder not listed under seed is a warning naming the choice."""
        root = fleet(
            tmp_path, "{}\n", **{"stacks/z2m/compose.yaml": COMPOSE.replace("data']", "data:rw']")}
        )
        result = check_fleet(RepoTree(root))
        assert result.valid
        (finding,) = result.findings
        assert finding.severity == "warning"
        assert str(finding).startswith(
            "stacks/z2m/compose.yaml:4: warning: services.z2m.volumes[0]: './data' from the "
            "repository is mounted writable"
        )
        assert "list data under seed: in stacks/z2m/stack.yaml" in finding.message

    def test_seed_outside_the_stack_or_missing_is_an_error(self, tmp_path: Path) -> None:
        """A seed entry leaving the stack folder or not in the repository is refused at its line."""
        root = fleet(tmp_path, "seed:\n  - ../other\n  - nothing-here\n")
        lines = [str(f) for f in check_fleet(RepoTree(root)).findings]
        assert lines == [
            "stacks/z2m/stack.yaml:2: seed: '../other' is not inside stacks/z2m/; "
            "list a path in the stack folder",
            "stacks/z2m/stack.yaml:3: seed: 'nothing-here' is not in the repository; "
            "commit it as stacks/z2m/nothing-here or remove it from seed",
        ]


class TestPlan:
    def test_only_absent_seed_files_get_a_step(self, tmp_path: Path) -> None:
        """With the host observed, a seed file already there gets no step (plan stays empty)."""
        (stack,) = render(fleet(tmp_path)).stacks
        steps = seed_steps(stack, frozenset({"/state/data/d1/z2m/data/configuration.yaml"}))
        assert [s.file.host_path for s in steps] == ["/state/data/d1/z2m/data/sub/devices.yaml"]
        assert all(isinstance(s, SeedFile) for s in steps)
        assert steps[0].describe().startswith("seed stacks/z2m/data/sub/devices.yaml -> ")


class TestCreateFile:
    def test_never_overwrites_what_is_there(self, tmp_path: Path) -> None:
        """create_file writes an absent file and leaves an existing one (or a link) alone."""
        base = tmp_path / "data" / "d1" / "z2m"
        target = base / "data" / "configuration.yaml"
        assert statedir.create_file(str(target), b"seed\n", 0o644, "data")
        assert target.read_bytes() == b"seed\n"
        assert target.stat().st_mode & 0o777 == 0o644
        target.write_bytes(b"app\n")
        assert not statedir.create_file(str(target), b"seed\n", 0o644, "data")
        assert target.read_bytes() == b"app\n"
        link = base / "data" / "link.yaml"
        link.symlink_to(tmp_path / "elsewhere")
        assert not statedir.create_file(str(link), b"seed\n", 0o644, "data")
        assert not (tmp_path / "elsewhere").exists()
        assert sorted(p.name for p in target.parent.iterdir()) == [
            "configuration.yaml",
            "link.yaml",
        ]
