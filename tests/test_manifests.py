"""Loading the fleet repository: schemas, names, references and windows, each with its line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from reconciler.manifests.repository import load_repository
from reconciler.manifests.schema import SCHEMA_KINDS
from reconciler.manifests.tree import RepoTree

FIXTURES = Path(__file__).parent / "fixtures"
SCHEMAS = Path(__file__).parent.parent / "reconciler" / "schemas"
APP = """\
services:
  web:
    image: busybox:1.36
"""


def fleet(root: Path, files: dict[str, str]) -> RepoTree:
    """Write a small fleet (a valid stack `app` included) and return its tree."""
    for rel, text in {"stacks/app/compose.yaml": APP, **files}.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    return RepoTree(root)


def findings(tree: RepoTree) -> list[str]:
    return [str(f) for f in load_repository(tree)[1]]


class TestSchemas:
    def test_every_schema_is_valid_draft_2020_12_with_an_id(self) -> None:
        """Each shipped schema is a valid 2020-12 schema with a fleetgate.dev $id and a title."""
        for kind in SCHEMA_KINDS:
            schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
            Draft202012Validator.check_schema(schema)
            assert schema["$id"] == f"https://fleetgate.dev/schemas/{kind}.schema.json"
            assert schema["title"]

    def test_update_window_definition_is_the_same_everywhere(self) -> None:
        """fleet, device and group schemas carry identical copies of the window definition."""
        defs = [
            json.loads((SCHEMAS / f"{k}.schema.json").read_text())["$defs"]["updateWindow"]
            for k in ("fleet", "device", "group")
        ]
        assert defs[0] == defs[1] == defs[2]


class TestValidMinimal:
    def test_the_minimal_fixture_fleet_loads_without_findings(self) -> None:
        """The valid-minimal fixture loads completely and coerces scalar variables to text."""
        repo, found = load_repository(RepoTree(FIXTURES / "valid-minimal"), "a" * 40)
        assert found == ()
        assert sorted(repo.devices) == ["press-1", "press-2"]
        assert sorted(repo.stacks) == ["mqtt-broker", "node-red"]
        assert repo.devices["press-2"].variables == {
            "PLC_ADDRESS": "10.0.3.18",
            "RETRIES": "3",
            "DEBUG": "true",
        }
        assert repo.stacks["node-red"].health_timeout == 120.0
        assert repo.stacks["node-red"].requires_arch == ("arm64", "amd64")
        assert repo.fleet.policy.host_paths == ("/var/lib/plc",)
        assert repo.devices["press-2"].update_windows is None
        assert repo.devices["press-1"].update_windows is not None
        assert repo.revision == "a" * 40


class TestDeviceManifests:
    def test_enum_error_names_file_line_and_allowed_values(self, tmp_path: Path) -> None:
        """A wrong arch is reported at its line with every allowed value."""
        tree = fleet(tmp_path, {"devices/press-1.yaml": "labels: {a: b}\narch: arm65\n"})
        assert findings(tree) == [
            "devices/press-1.yaml:2: arch 'arm65' is not one of amd64, arm64, armv7, armv6, 386"
        ]

    def test_unknown_key_suggests_the_closest_known_key(self, tmp_path: Path) -> None:
        """A misspelt key gets a did-you-mean at the key's line."""
        tree = fleet(tmp_path, {"devices/d1.yaml": "arch: amd64\nstakcs: [app]\n"})
        assert findings(tree) == ["devices/d1.yaml:2: unknown key 'stakcs'; did you mean 'stacks'?"]

    def test_invalid_device_id_names_the_file(self, tmp_path: Path) -> None:
        """A device file whose stem is not a valid id is refused and left out."""
        tree = fleet(tmp_path, {"devices/Press_1.yaml": "arch: amd64\n"})
        repo, found = load_repository(tree)
        assert [str(f) for f in found] == [
            "devices/Press_1.yaml: device id 'Press_1' must match [a-z0-9][a-z0-9-]{0,62}; "
            "rename the file"
        ]
        assert repo.devices == {}

    def test_nested_variable_is_refused(self, tmp_path: Path) -> None:
        """A variable whose value is a mapping is a finding at its line."""
        tree = fleet(tmp_path, {"devices/d1.yaml": "variables:\n  A: x\n  B: {c: 1}\n"})
        assert findings(tree) == [
            "devices/d1.yaml:3: variables.B must be a string, a number or true or false, "
            "not a mapping"
        ]

    def test_unknown_stack_reference_names_the_entry_line(self, tmp_path: Path) -> None:
        """A device listing a stack that does not exist is reported at the list item."""
        tree = fleet(tmp_path, {"devices/d1.yaml": "stacks:\n  - app\n  - ap\n"})
        assert findings(tree) == ["devices/d1.yaml:3: unknown stack 'ap'; did you mean 'app'?"]

    def test_yaml_syntax_error_has_a_line(self, tmp_path: Path) -> None:
        """Broken YAML is one finding with the line of the problem."""
        tree = fleet(tmp_path, {"devices/d1.yaml": "arch: amd64\nlabels: {a: b\n"})
        (found,) = findings(tree)
        assert found.startswith("devices/d1.yaml:3: YAML:")

    def test_duplicate_keys_are_refused(self, tmp_path: Path) -> None:
        """A key given twice is an error, not a silent override."""
        tree = fleet(tmp_path, {"devices/d1.yaml": "arch: amd64\narch: arm64\n"})
        (found,) = findings(tree)
        assert found.startswith("devices/d1.yaml:2: YAML: duplicate key 'arch'")

    def test_both_yaml_spellings_of_one_device_are_refused(self, tmp_path: Path) -> None:
        """d1.yaml and d1.yml together are ambiguous."""
        tree = fleet(tmp_path, {"devices/d1.yaml": "{}\n", "devices/d1.yml": "{}\n"})
        assert findings(tree) == [
            "devices/d1.yml: both devices/d1.yaml and devices/d1.yml define 'd1'; keep one"
        ]

    def test_unrelated_files_are_ignored(self, tmp_path: Path) -> None:
        """README files, docs and hidden files do not count as manifests."""
        tree = fleet(
            tmp_path,
            {
                "README.md": "# fleet\n",
                "devices/README.md": "x",
                "docs/x.yaml": ": : :",
                "devices/.hidden.yaml": ": : :",
                "devices/d1.yaml": "",
            },
        )
        repo, found = load_repository(tree)
        assert found == ()
        assert list(repo.devices) == ["d1"]


class TestUpdateWindows:
    def test_bad_day_time_and_time_zone_are_each_reported(self, tmp_path: Path) -> None:
        """Day names, HH:MM times and IANA zones are all checked, each at its own line."""
        device = """\
            updateWindows:
              - days: [mon, mnd]
                start: "24:00"
                end: "04:00"
                timezone: Europe/Berln
            """
        tree = fleet(tmp_path, {"devices/d1.yaml": device})
        assert findings(tree) == [
            "devices/d1.yaml:2: updateWindows[0].days[1] 'mnd' is not one of "
            "mon, tue, wed, thu, fri, sat, sun",
            "devices/d1.yaml:3: updateWindows[0].start '24:00' is not a time HH:MM "
            "between 00:00 and 23:59 (quote it)",
            "devices/d1.yaml:5: unknown time zone 'Europe/Berln'; did you mean 'Europe/Berlin'?",
        ]

    def test_missing_time_zone_is_required(self, tmp_path: Path) -> None:
        """A window without timezone is refused (a plant's clock is never assumed to be UTC)."""
        tree = fleet(
            tmp_path, {"fleet.yaml": "updateWindows:\n  - {start: '01:00', end: '02:00'}\n"}
        )
        assert findings(tree) == [
            "fleet.yaml:2: updateWindows[0] is missing required key 'timezone'"
        ]

    def test_windows_parse_with_locations(self, tmp_path: Path) -> None:
        """Valid windows keep their days, times, zone and line; no days means every day."""
        group = "selector: {}\nupdateWindows:\n  - {start: '22:00', end: '04:00', timezone: UTC}\n"
        repo, found = load_repository(fleet(tmp_path, {"groups/all.yaml": group}))
        assert found == ()
        (window,) = repo.groups["all"].update_windows
        assert window.days == ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        assert (window.start, window.end, window.timezone) == ("22:00", "04:00", "UTC")
        assert window.location is not None
        assert window.location.line == 3


class TestGroups:
    def test_group_without_selector_is_refused(self, tmp_path: Path) -> None:
        """A group must say whom it selects; `{}` is the explicit 'every device'."""
        tree = fleet(tmp_path, {"groups/g.yaml": "stacks: [app]\n"})
        assert findings(tree) == ["groups/g.yaml:1: the file is missing required key 'selector'"]

    def test_group_unknown_stack_names_file_and_line(self, tmp_path: Path) -> None:
        """A group listing an unknown stack is reported at the entry."""
        tree = fleet(tmp_path, {"groups/g.yaml": "selector: {site: x}\nstacks: [app, nope]\n"})
        assert findings(tree) == [
            "groups/g.yaml:2: unknown stack 'nope'; add stacks/nope/compose.yaml"
        ]


class TestFleetFile:
    def test_policy_keys_are_checked(self, tmp_path: Path) -> None:
        """A misspelt policy key and a relative host path are both reported with lines."""
        text = "policy:\n  privilegd: true\n  hostPaths: [var/lib]\n"
        tree = fleet(tmp_path, {"fleet.yaml": text})
        assert findings(tree) == [
            "fleet.yaml:2: unknown key 'privilegd'; did you mean 'privileged'?",
            "fleet.yaml:3: policy.hostPaths[0] 'var/lib' is not an absolute path",
        ]


class TestStackFolders:
    def test_two_compose_files_are_refused(self, tmp_path: Path) -> None:
        """compose.yaml and docker-compose.yml in one stack folder are ambiguous."""
        tree = fleet(tmp_path, {"stacks/app/docker-compose.yml": APP})
        assert findings(tree) == [
            "stacks/app: compose.yaml and docker-compose.yml both exist; "
            "keep exactly one compose file"
        ]

    def test_docker_compose_yml_alone_is_accepted(self, tmp_path: Path) -> None:
        """An existing docker-compose.yml can move in unchanged."""
        tree = fleet(tmp_path, {"stacks/other/docker-compose.yml": APP})
        repo, found = load_repository(tree)
        assert found == ()
        assert repo.stacks["other"].compose_path == "stacks/other/docker-compose.yml"

    def test_bad_stack_name_is_refused(self, tmp_path: Path) -> None:
        """Stack folder names are lowercase letters, digits and '-'."""
        tree = fleet(tmp_path, {"stacks/My_Stack/compose.yaml": APP})
        assert findings(tree) == [
            "stacks/My_Stack: stack name must be lowercase letters, digits and '-'; "
            "rename the folder"
        ]

    def test_stack_settings_are_checked(self, tmp_path: Path) -> None:
        """stack.yaml keys are schema-checked and healthTimeout must be a duration."""
        settings = "requires: {arch: [arm64]}\nhealthTimeout: 90\nupdateStrategy: kill-first\n"
        tree = fleet(tmp_path, {"stacks/app/stack.yaml": settings})
        assert findings(tree) == [
            "stacks/app/stack.yaml:2: healthTimeout: 90 has no unit; write e.g. 90s",
            "stacks/app/stack.yaml:3: updateStrategy 'kill-first' is not one of "
            "download-then-kill, kill-then-download",
        ]

    def test_stack_settings_are_loaded(self, tmp_path: Path) -> None:
        """requires, variable defaults, timeout and strategy reach the StackManifest."""
        settings = (
            "requires: {capabilities: [hailo8], arch: [arm64]}\nvariables: {PORT: 80}\n"
            "healthTimeout: 1m30s\nupdateStrategy: kill-then-download\n"
        )
        repo, found = load_repository(fleet(tmp_path, {"stacks/app/stack.yaml": settings}))
        assert found == ()
        stack = repo.stacks["app"]
        assert stack.requires_capabilities == ("hailo8",)
        assert stack.variables == {"PORT": "80"}
        assert (stack.health_timeout, stack.update_strategy) == (90.0, "kill-then-download")
        assert stack.stack_path == "stacks/app/stack.yaml"

    def test_device_using_an_invalid_stack_is_not_told_the_stack_is_unknown(
        self, tmp_path: Path
    ) -> None:
        """A reference to a broken stack folder reports the stack's error only."""
        tree = fleet(
            tmp_path,
            {
                "stacks/app/compose.yaml": "services:\n  web:\n    image: x\n    build: .\n",
                "devices/d1.yaml": "stacks: [app]\n",
            },
        )
        assert findings(tree) == [
            "stacks/app/compose.yaml:4: `build` is not supported by fleetgate: "
            "build the image in CI and reference it by tag"
        ]


@pytest.mark.parametrize(
    ("compose", "expected"),
    [
        (
            "services:\n  web:\n    imagee: x\n",
            [
                "stacks/app/compose.yaml:2: services.web is missing required key 'image'",
                "stacks/app/compose.yaml:3: unknown key 'imagee'; did you mean 'image'?",
            ],
        ),
        (
            "services:\n  web:\n    image: x\n    deploy:\n      replicas: 3\n",
            [
                "stacks/app/compose.yaml:5: `replicas` is not supported by fleetgate: "
                "each service is one container on each device; remove it"
            ],
        ),
        (
            "services:\n  web:\n    image: x\n    ipc: host\n",
            ["stacks/app/compose.yaml:4: `ipc` is not supported by fleetgate: remove it"],
        ),
        (
            "include: [x.yaml]\nservices:\n  web: {image: x}\n",
            [
                "stacks/app/compose.yaml:1: `include` is not supported by fleetgate: "
                "copy the included services into this compose file"
            ],
        ),
        (
            "services:\n  web:\n    image: x\n    ports: 80\n",
            ["stacks/app/compose.yaml:4: services.web.ports must be a list, not an integer"],
        ),
        (
            "version: '3.8'\nname: x\nx-common: {a: 1}\nservices:\n  web:\n    image: x\n"
            "    x-note: fine\n",
            [],
        ),
    ],
)
class TestComposeSchema:
    def test_compose_schema_findings(
        self, tmp_path: Path, compose: str, expected: list[str]
    ) -> None:
        """Unsupported and unknown Compose keys are named at their line; x-*, version, name pass."""
        tree = fleet(tmp_path, {"stacks/app/compose.yaml": compose})
        assert findings(tree) == expected
