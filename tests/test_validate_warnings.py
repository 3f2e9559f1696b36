"""Findings have a severity: warnings are printed, never fail validate, never block a pass."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.validate import check_fleet
from reconciler.render.desired import build_desired


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


UNSET_IN_ENV = {
    "devices/d1.yaml": "stacks: [s]\n",
    "stacks/s/compose.yaml": (
        "services:\n  x:\n    image: x\n    environment:\n      GREETING: hello ${NAME}\n"
    ),
}


class TestUnsetVariableWarning:
    def test_unset_variable_in_environment_is_a_warning_naming_device_and_variable(
        self, tmp_path: Path
    ) -> None:
        """An unset $NAME in an environment value is a warning at its line; the fleet is valid."""
        result = check_fleet(RepoTree(write(tmp_path, UNSET_IN_ENV)))
        assert result.valid
        assert [(str(f), f.severity) for f in result.findings] == [
            (
                "stacks/s/compose.yaml:5: warning: variable NAME is not set, so "
                "services.x.environment.GREETING gets an empty string there (as in Compose); "
                "set it in the device's file, a group or fleet.yaml, or write ${NAME-} where "
                "empty is meant (device d1)",
                "warning",
            )
        ]

    def test_unset_variable_in_image_stays_an_error(self, tmp_path: Path) -> None:
        """An unset $TAG that would empty the image tag is still an error, not a warning."""
        files = UNSET_IN_ENV | {"stacks/s/compose.yaml": "services:\n  x:\n    image: n8n:$TAG\n"}
        result = check_fleet(RepoTree(write(tmp_path, files)))
        assert not result.valid
        assert [f.severity for f in result.findings] == ["error"]
        assert "variable TAG is required" in result.findings[0].message

    def test_explicit_empty_default_is_silent(self, tmp_path: Path) -> None:
        """${NAME-} says empty on purpose: no finding at all."""
        files = UNSET_IN_ENV | {
            "stacks/s/compose.yaml": "services:\n  x:\n    image: x\n"
            "    environment: {GREETING: 'hello ${NAME-}'}\n"
        }
        assert check_fleet(RepoTree(write(tmp_path, files))).findings == ()

    def test_warning_does_not_block_the_desired_state(self, tmp_path: Path) -> None:
        """The pass's build stage (apply, agent) renders through a warning, value empty."""
        state = build_desired(RepoTree(write(tmp_path, UNSET_IN_ENV)), None, "d1", "/state")
        (svc,) = state.stacks[0].services
        assert dict(svc.environment) == {"GREETING": "hello "}

    def test_many_devices_share_one_warning_line(self, tmp_path: Path) -> None:
        """The same warning seen from three devices is one line naming them."""
        files = UNSET_IN_ENV | {f"devices/d{i}.yaml": "stacks: [s]\n" for i in (2, 3)}
        result = check_fleet(RepoTree(write(tmp_path, files)))
        (finding,) = result.findings
        assert finding.severity == "warning"
        assert finding.message.endswith("(devices d1, d2 and d3)")


class TestValidateCommand:
    def test_warnings_alone_exit_zero_and_print_marked(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Warnings print as `file:line: warning:` and the exit code stays 0."""
        assert main(["validate", "--repo", str(write(tmp_path, UNSET_IN_ENV))]) == 0
        out, err = capsys.readouterr()
        assert out.startswith("stacks/s/compose.yaml:5: warning: variable NAME is not set")
        assert err.strip() == "fleet valid: 1 devices, 1 stacks, 1 warning"

    def test_strict_makes_warnings_fatal(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--strict exits 1 on a warning-only fleet, for CI that wants none."""
        repo = str(write(tmp_path, UNSET_IN_ENV))
        assert main(["validate", "--repo", repo, "--strict"]) == 1
        assert capsys.readouterr().err.strip() == "fleet invalid (--strict): 1 warning"

    def test_json_carries_severity(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """JSON findings have `severity`; `valid` is true with warnings only."""
        repo = str(write(tmp_path, UNSET_IN_ENV))
        assert main(["validate", "--repo", repo, "--output", "json"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert (document["valid"], document["errors"], document["warnings"]) == (True, 0, 1)
        assert document["findings"][0]["severity"] == "warning"


class TestMissingFileSource:
    @pytest.mark.parametrize(
        ("source", "warned"),
        [
            ("./acme.json", True),
            ("./certs/ca.crt", True),
            ("./mosquitto.conf", True),
            ("./data", False),
            ("./.node-red", False),
            ("./conf.d", False),
        ],
    )
    def test_missing_source_with_an_extension_warns(
        self, tmp_path: Path, source: str, warned: bool
    ) -> None:
        """A missing source with a file extension warns; one without stays a quiet data dir."""
        files = {
            "devices/d1.yaml": "stacks: [s]\n",
            "stacks/s/compose.yaml": f"services:\n  x:\n    image: x\n"
            f"    volumes: ['{source}:/t']\n",
        }
        result = check_fleet(RepoTree(write(tmp_path, files)))
        assert result.valid
        messages = [str(f) for f in result.findings]
        if warned:
            assert messages == [
                f"stacks/s/compose.yaml:4: warning: services.x.volumes[0]: {source!r} is not in "
                "the repository, so it becomes an empty data directory (as Compose would create "
                f"one); ship the file as stacks/s/{source[2:]}, or use a named volume or a data "
                "directory without a file extension (device d1)"
            ]
        else:
            assert messages == []

    def test_missing_file_source_still_renders_a_data_directory(self, tmp_path: Path) -> None:
        """apply does what Compose does: the missing source is an (empty) data directory."""
        files = {
            "devices/d1.yaml": "stacks: [s]\n",
            "stacks/s/compose.yaml": "services:\n  x:\n    image: x\n"
            "    volumes: ['./a.json:/a']\n",
        }
        state = build_desired(RepoTree(write(tmp_path, files)), None, "d1", "/state")
        (mount,) = state.stacks[0].services[0].mounts
        assert (mount.kind, mount.source) == ("data", "/state/data/d1/s/a.json")
