"""`fleetgate validate`: whole-fleet checks, deduplication, output formats and exit codes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.validate import check_fleet, validate_fleet

FIXTURES = Path(__file__).parent / "fixtures"


def write(root: Path, files: dict[str, str]) -> RepoTree:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return RepoTree(root)


class TestCrossStack:
    def test_same_host_port_in_two_stacks_is_reported(self, tmp_path: Path) -> None:
        """Two stacks of one device publishing 8080/tcp is reported at the second one's ports."""
        tree = write(
            tmp_path,
            {
                "devices/d1.yaml": "stacks: [a, b]\n",
                "stacks/a/compose.yaml": "services:\n  x:\n    image: x\n    ports: ['8080:80']\n",
                "stacks/b/compose.yaml": (
                    "services:\n  y:\n    image: y\n    ports:\n      - 127.0.0.1:8080:81\n"
                ),
            },
        )
        assert [str(f) for f in validate_fleet(tree)] == [
            "stacks/b/compose.yaml:4: host port 8080/tcp is published by both a/x and b/y; "
            "change one of them (device d1)"
        ]

    def test_different_protocols_or_addresses_do_not_clash(self, tmp_path: Path) -> None:
        """8080/tcp and 8080/udp, or two distinct host IPs, coexist."""
        compose = """\
            services:
              x: {image: x, ports: ['8080:80', '10.0.0.1:9000:90']}
              y: {image: y, ports: ['8080:80/udp', '10.0.0.2:9000:90']}
            """
        tree = write(
            tmp_path, {"devices/d1.yaml": "stacks: [a]\n", "stacks/a/compose.yaml": compose}
        )
        assert validate_fleet(tree) == []

    def test_duplicate_container_name_is_reported(self, tmp_path: Path) -> None:
        """Two services choosing one container_name on a device is reported at the second."""
        tree = write(
            tmp_path,
            {
                "devices/d1.yaml": "stacks: [a, b]\n",
                "stacks/a/compose.yaml": "services:\n  x: {image: x, container_name: plc}\n",
                "stacks/b/compose.yaml": "services:\n  y:\n    image: y\n    container_name: plc\n",
            },
        )
        assert [str(f) for f in validate_fleet(tree)] == [
            "stacks/b/compose.yaml:4: container name 'plc' is used by a/x and b/y; "
            "rename one container_name (device d1)"
        ]


class TestDeduplication:
    def test_one_stack_mistake_on_many_devices_is_reported_once(self, tmp_path: Path) -> None:
        """A required variable missing on 5 devices is one line naming 3 devices and 2 more."""
        files = {
            "stacks/a/compose.yaml": "services:\n  x:\n    image: x\n    user: ${UID:?set UID}\n",
            "groups/all.yaml": "selector: {}\nstacks: [a]\n",
        }
        files |= {f"devices/d{i}.yaml": "" for i in range(1, 6)}
        found = [str(f) for f in validate_fleet(write(tmp_path, files))]
        assert len(found) == 1
        assert found[0].startswith("stacks/a/compose.yaml:4: ")
        assert found[0].endswith("(devices d1, d2, d3 and 2 more)")
        assert "device d1:" not in found[0]

    def test_invalid_stack_is_not_rendered_per_device(self, tmp_path: Path) -> None:
        """A broken stack used by many devices is reported once, by the stack check only."""
        files = {
            "stacks/a/compose.yaml": "services:\n  x:\n    image: x\n    restart: sometimes\n",
            "groups/all.yaml": "selector: {}\nstacks: [a]\n",
        }
        files |= {f"devices/d{i}.yaml": "" for i in range(1, 4)}
        result = check_fleet(write(tmp_path, files))
        assert [str(f) for f in result.findings] == [
            "stacks/a/compose.yaml:4: restart 'sometimes' is not one of no, always, "
            "unless-stopped, on-failure[:N]"
        ]
        assert (result.devices, result.stacks) == (3, 0)


class TestCommand:
    def test_valid_fleet_exits_0_with_a_summary(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A valid fleet prints nothing on stdout and a count summary on stderr."""
        assert main(["validate", "--repo", str(FIXTURES / "valid-minimal")]) == 0
        out, err = capsys.readouterr()
        assert out == ""
        assert err.strip().endswith("fleet valid: 2 devices, 2 stacks")

    def test_invalid_fleet_lists_findings_and_exits_1(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each finding is one path:line line on stdout; the summary counts problems and files."""
        assert main(["validate", "--repo", str(FIXTURES / "invalid/many-problems")]) == 1
        out, err = capsys.readouterr()
        assert out.splitlines() == [
            "devices/press-1.yaml:1: arch 'arm65' is not one of amd64, arm64, armv7, armv6, 386",
            "devices/press-2.yaml:1: unknown stack 'ghost'; add stacks/ghost/compose.yaml",
            "stacks/web/compose.yaml:4: `build` is not supported by fleetgate: "
            "build the image in CI and reference it by tag",
        ]
        assert err.strip().endswith("fleet invalid: 3 problems in 3 files")

    def test_json_output_has_stable_fields(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--output json gives valid, devices, stacks and path/line/message/severity findings."""
        repo = str(FIXTURES / "invalid/many-problems")
        assert main(["validate", "--repo", repo, "--output", "json"]) == 1
        document = json.loads(capsys.readouterr().out)
        assert document["valid"] is False
        assert (document["devices"], document["stacks"]) == (0, 0)
        assert document["findings"][0] == {
            "path": "devices/press-1.yaml",
            "line": 1,
            "message": "arch 'arm65' is not one of amd64, arm64, armv7, armv6, 386",
            "severity": "error",
        }
        assert (document["errors"], document["warnings"]) == (3, 0)

    def test_repo_that_is_not_a_folder_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--repo pointing nowhere exits 2 with one line, no traceback."""
        assert main(["validate", "--repo", str(tmp_path / "nope")]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1
        assert "not a folder" in err
