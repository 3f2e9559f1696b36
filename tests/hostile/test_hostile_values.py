"""Hostile corpus, values: numbers the engine refuses, control characters, null keys, tags.

Every case failed on the code before issue 8 point 4 (a traceback, exit 0, or a raw
control character in the output) unless its docstring-like ``name`` says ``guard``: those
pin behaviour that was already right so that it stays right.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.gitserver import Origin
from support.hostile import Case, check_outcome, run_case, run_fleetgate

DEVICE = {"devices/d1.yaml": "stacks: [s]\n"}
COMPOSE = "stacks/s/compose.yaml"
BIG = "9" * 5000


def service(*lines: str) -> dict[str, str | bytes]:
    """One device running stack ``s`` whose service ``x`` has ``lines`` (from line 4)."""
    body = "".join(f"    {line}\n" for line in lines)
    return DEVICE | {COMPOSE: f"services:\n  x:\n    image: x\n{body}"}


CASES = [
    Case(
        name="nan-port",
        files=service("ports:", "  - .nan"),
        expect=(f"{COMPOSE}:5:", "'.nan' is not a finite number"),
    ),
    Case(
        name="inf-cpus",
        files=service("cpus: .inf"),
        expect=(f"{COMPOSE}:4:", "'.inf' is not a finite number"),
    ),
    Case(
        name="minus-inf-mem-limit",
        files=service("mem_limit: -.inf"),
        expect=(f"{COMPOSE}:4:", "'-.inf' is not a finite number"),
    ),
    Case(
        name="ulimit-2-pow-64",
        files=service("ulimits:", "  nofile: 18446744073709551616"),
        expect=(f"{COMPOSE}:5:", "does not fit in 64 bits"),
    ),
    Case(
        name="5000-digit-label",
        files=service("labels:", f"  a: {BIG}"),
        expect=(f"{COMPOSE}:5:", "integer of 5000 digits is out of range"),
    ),
    Case(
        name="5000-digit-port",
        files=service("ports:", f"  - {BIG}"),
        expect=(f"{COMPOSE}:5:", "integer of 5000 digits is out of range"),
    ),
    Case(
        name="explicit-int-tag-on-text",
        files=service("mem_limit: !!int abc"),
        expect=(f"{COMPOSE}:4:", "'abc' is not an integer"),
    ),
    Case(
        name="cpus-text-overflowing-to-infinity",
        files=service('cpus: "1e308"'),
        expect=(f"{COMPOSE}:4:", "is not a number of CPUs like 0.5"),
    ),
    Case(
        name="stop-grace-period-beyond-int64-nanoseconds",
        files=service('stop_grace_period: "99999999999999999999h"'),
        expect=(f"{COMPOSE}:4:", "longer than the engine can count"),
    ),
    Case(
        name="nul-byte-in-service-name",
        files=DEVICE | {COMPOSE: b"services:\n  a\x00b:\n    image: x\n"},
        expect=(f"{COMPOSE}:2:", "control character U+0000"),
    ),
    Case(
        name="escaped-nul-in-service-name",
        files=DEVICE | {COMPOSE: 'services:\n  "a\\0b":\n    image: x\n'},
        expect=(f"{COMPOSE}:2:", "NUL character (U+0000)"),
    ),
    Case(
        name="esc-sequence-in-image",
        files=DEVICE | {COMPOSE: 'services:\n  x:\n    image: "x\\e[31mred"\n'},
        expect=(f"{COMPOSE}:3:", "services.x.image contains a control character U+001B; remove it"),
    ),
    Case(
        name="bidi-override-in-device-label",
        files={"devices/d1.yaml": 'labels: {site: "a\\u202eb"}\nstacks: [s]\n'}
        | {COMPOSE: "services:\n  x:\n    image: x\n"},
        expect=("devices/d1.yaml:1:", "labels.site contains a control character U+202E"),
    ),
    Case(
        name="bidi-override-in-stack-folder-name",
        files={
            "devices/d1.yaml": "stacks: [s]\n",
            "stacks/s/compose.yaml": "services:\n  x:\n    image: x\n",
            "stacks/t\u202eu/compose.yaml": "services:\n  x:\n    image: x\n",
        },
        expect=("stacks/t\\u202eu", "stack name must be"),
    ),
    Case(
        name="bidi-override-in-device-file-name",
        files={"devices/d\u202e1.yaml": "stacks: []\n"},
        expect=("devices/d\\u202e1.yaml", "rename the file"),
    ),
    Case(
        name="bidi-isolate-in-group-file-name",
        files=service() | {"groups/g\u2066.yaml": "selector: {}\n"},
        expect=("groups/g\\u2066.yaml", "control character U+2066"),
    ),
    Case(
        name="esc-via-variable-into-image",
        files={"devices/d1.yaml": 'stacks: [s]\nvariables: {IMG: "x\\e[31m"}\n'}
        | {COMPOSE: "services:\n  x:\n    image: ${IMG}\n"},
        expect=(f"{COMPOSE}:3:", "image (after interpolation) contains a control character U+001B"),
    ),
    Case(
        name="bell-in-container-name",
        files=service('container_name: "c\\ad"'),
        expect=(f"{COMPOSE}:4:", "services.x.container_name contains a control character U+0007"),
    ),
    Case(
        name="bidi-in-environment-list-name",
        files=service("environment:", '  - "A\\u202e=1"'),
        expect=(f"{COMPOSE}:5:", "control character U+202E"),
    ),
    Case(
        name="null-key-in-environment",
        files=service("environment:", "  null: x"),
        expect=(f"{COMPOSE}:5:", "mapping key is empty (null)"),
    ),
    Case(
        name="null-key-in-labels",
        files=service("labels:", "  ~: x"),
        expect=(f"{COMPOSE}:5:", "mapping key is empty (null)"),
    ),
    Case(
        name="boolean-key-in-labels",
        files=service("labels:", "  true: x"),
        expect=(f"{COMPOSE}:5:", "mapping key True is not a name"),
    ),
    Case(
        name="null-key-in-services",
        files=DEVICE | {COMPOSE: "services:\n  null:\n    image: x\n"},
        expect=(f"{COMPOSE}:2:", "mapping key is empty (null)"),
    ),
    Case(
        name="null-key-in-device-variables",
        files={"devices/d1.yaml": "variables:\n  null: x\n"},
        expect=("devices/d1.yaml:2:", "mapping key is empty (null)"),
    ),
    Case(
        name="null-key-in-group-selector",
        files={"devices/d1.yaml": "labels: {a: b}\n", "groups/g.yaml": "selector:\n  ~: b\n"},
        expect=("groups/g.yaml:2:", "mapping key is empty (null)"),
    ),
    Case(
        name="python-object-apply-tag",
        files=service('command: !!python/object/apply:os.system ["id"]'),
        expect=(f"{COMPOSE}:4:", "!!python/object/apply:os.system is not allowed"),
    ),
    Case(
        name="binary-tag",
        files=DEVICE | {COMPOSE: "services:\n  x:\n    image: !!binary aGVsbG8=\n"},
        expect=(f"{COMPOSE}:3:", "!!binary is not allowed"),
    ),
    Case(
        name="invalid-utf8",
        files=DEVICE | {COMPOSE: b"services:\n  x:\n    image: \xff\xfe\n"},
        expect=(f"{COMPOSE}:3:", "is not valid UTF-8 text (byte 0xff)"),
    ),
    Case(
        name="utf8-bom-keeps-line-numbers",
        files=DEVICE | {COMPOSE: b"\xef\xbb\xbfservices:\n  x:\n    image: x\n    cpus: .nan\n"},
        expect=(f"{COMPOSE}:4:", "'.nan' is not a finite number"),
    ),
    Case(
        name="guard-deeply-nested-flow",
        files=DEVICE | {COMPOSE: "[" * 10_000},
        expect=(f"{COMPOSE}:1:", "nesting"),
    ),
    Case(
        name="tab-indented-file",
        files=DEVICE | {COMPOSE: "services:\n\tx:\n\t\timage: x\n"},
        expect=(f"{COMPOSE}:2:", "a tab indents this line"),
    ),
    Case(
        name="nul-in-env-file",
        files=service("env_file: app.env") | {"stacks/s/app.env": b"A=x\x00y\n"},
        expect=("stacks/s/app.env:1:", "NUL character (U+0000)"),
    ),
    Case(
        name="render-escapes-esc-and-newline-in-env-value",
        files=service("environment:", '  A: "\\e[31mred\\nforged line"'),
        args=("render", "--device", "d1", "--repo", "{repo}"),
        exit_code=0,
        expect=("A=\\x1b[31mred\\x0aforged line",),
    ),
    Case(
        name="render-refuses-bidi-device-label-escaped",
        files={"devices/d1.yaml": 'labels: {site: "\\u202eevil"}\nstacks: [s]\n'}
        | {COMPOSE: "services:\n  x:\n    image: x\n"},
        args=("render", "--device", "d1", "--repo", "{repo}"),
        expect=("devices/d1.yaml:1:", "U+202E"),
    ),
]


class TestValuesCorpus:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A value the engine refuses or a terminal would obey is a file:line finding, escaped."""
        run_case(case, tmp_path)


class TestImpactEscapes:
    def test_bidi_label_at_head(self, tmp_path: Path) -> None:
        """impact refuses a HEAD whose device label holds a bidi override, printed escaped."""
        origin = Origin(tmp_path / "fleet")
        origin.commit(
            {
                "devices/d1.yaml": "labels: {site: a}\nstacks: [s]\n",
                COMPOSE: "services:\n  x:\n    image: x:1\n",
            },
            "base",
        )
        origin.commit({"devices/d1.yaml": 'labels: {site: "a\\u202eb"}\nstacks: [s]\n'}, "head")
        outcome = run_fleetgate(["impact", "HEAD~1", "HEAD", "--repo", str(origin.path)], tmp_path)
        case = Case(
            name="impact-bidi-label",
            files={},
            expect=("devices/d1.yaml:1:", "labels.site contains a control character U+202E"),
        )
        check_outcome(case, outcome)

    def test_esc_in_environment_value(self, tmp_path: Path) -> None:
        """impact of a change to an environment value holding ESC and a newline prints no raw
        control character (guard: impact names the key, not the value)."""
        origin = Origin(tmp_path / "fleet")
        origin.commit(
            {
                "devices/d1.yaml": "stacks: [s]\n",
                COMPOSE: "services:\n  x:\n    image: x:1\n    environment: {A: '1'}\n",
            },
            "base",
        )
        origin.commit(
            {COMPOSE: 'services:\n  x:\n    image: x:1\n    environment: {A: "\\e[2J\\nx"}\n'},
            "head",
        )
        outcome = run_fleetgate(["impact", "HEAD~1", "HEAD", "--repo", str(origin.path)], tmp_path)
        case = Case(name="impact-esc-env", files={}, expect=("environment ~A",), exit_code=0)
        check_outcome(case, outcome)
