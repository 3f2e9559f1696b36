"""No input of any kind yields a traceback: fuzzing every manifest through validate and render.

Hypothesis writes random YAML-ish text, random bytes (invalid UTF-8, BOMs, tabs, deep
nesting, huge numbers, ``!!python/object`` and ``!!binary`` tags, anchors) and random
but well-formed manifests with hostile values into one file of an otherwise valid fleet,
then runs the real command line in-process. Whatever it wrote, ``validate`` and
``render`` return 0, 1 or 2 and raise nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import main

BASE: dict[str, str] = {
    "fleet.yaml": "variables: {TZ: Europe/Berlin}\n",
    "devices/d1.yaml": "labels: {site: a}\nstacks: [s]\n",
    "groups/g.yaml": "selector: {site: a}\nvariables: {A: b}\n",
    "stacks/s/compose.yaml": "services:\n  x:\n    image: x:1\n",
    "stacks/s/stack.yaml": "healthTimeout: 30s\n",
}
TARGETS = (*BASE, "devices/d2.yaml")

FRAGMENTS = (
    "services:",
    "x:",
    "image:",
    "ports:",
    "environment:",
    "labels:",
    "cpus:",
    "mem_limit:",
    "ulimits:",
    "nofile:",
    "stop_grace_period:",
    "selector:",
    "variables:",
    "stacks:",
    "updateWindows:",
    "healthTimeout:",
    "container_name:",
    "networks:",
    "volumes:",
    "null",
    "~",
    "true",
    "<<: *a",
    "&a",
    "*a",
    "*b",
    "!!python/object/apply:os.system",
    "!!binary",
    "!!int",
    "!!float",
    "!!bool",
    "!!timestamp",
    "!!set",
    "!!str",
    "!foo",
    ".nan",
    ".inf",
    "-.inf",
    "1e999",
    "9" * 5000,
    "18446744073709551616",
    "0x" + "f" * 40,
    "-9223372036854775809",
    "\t",
    "\ufeff",
    "[" * 200,
    "{" * 50,
    "]",
    "}",
    "- ",
    ": ",
    ", ",
    '"\\e[31m"',
    '"\\0"',
    '"\\u202e"',
    '"\\x85"',
    "'",
    '"',
    "\n",
    "\n  ",
    "\n    ",
    "#",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "?",
    "|",
    ">",
    "1.5",
    "0",
    "-1",
    "90s",
    "1g",
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["x\x1b[31m", "a\u202eb", "a\x00b", "\t", "90s", "1g", "0.5", "8080:80"]),
)
keys = st.one_of(
    st.sampled_from(
        [
            "services",
            "x",
            "image",
            "ports",
            "environment",
            "labels",
            "cpus",
            "mem_limit",
            "ulimits",
            "nofile",
            "command",
            "selector",
            "variables",
            "stacks",
            "healthTimeout",
            "stop_grace_period",
            "shm_size",
            "user",
            "networks",
            "volumes",
            "healthcheck",
        ]
    ),
    st.none(),
    st.integers(),
    st.text(max_size=6),
)
trees = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


def _dumped(tree: Any) -> str:
    return yaml.safe_dump(tree, allow_unicode=True)


contents = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=30).map("".join),
    st.binary(max_size=300),
    st.tuples(
        st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b""]), st.binary(max_size=100)
    ).map(lambda parts: parts[0] + parts[1]),
    trees.map(_dumped),
    st.dictionaries(keys, trees, max_size=3).map(
        lambda svc: _dumped({"services": {"x": {"image": "x:1", **svc}}})
    ),
)


def _write(root: Path, target: str, content: str | bytes) -> None:
    for rel, text in BASE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    path = root / target
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")


class TestNoTraceback:
    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(target=st.sampled_from(TARGETS), content=contents)
    def test_any_manifest(self, target: str, content: str | bytes, capsys: Any) -> None:
        """Any content in any manifest makes validate and render exit 0, 1 or 2, never raise."""
        root = Path(tempfile.mkdtemp(prefix="fleetgate-fuzz-"))
        try:
            _write(root, target, content)
            for argv in (
                ["validate", "--repo", str(root)],
                ["render", "--device", "d1", "--repo", str(root)],
            ):
                code = main(argv)
                out = capsys.readouterr()
                assert code in (0, 1, 2), (argv, code, out)
                assert "Traceback" not in out.out + out.err
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def test_the_base_fleet_is_valid(self, tmp_path: Path, capsys: Any) -> None:
        """The fleet the fuzzer perturbs is valid, so a finding is the fuzzed file's doing."""
        _write(tmp_path, "devices/d1.yaml", BASE["devices/d1.yaml"])
        assert main(["validate", "--repo", str(tmp_path)]) == 0, capsys.readouterr()


class TestKnownHardInputs:
    @pytest.mark.parametrize(
        "content",
        [
            "a: " + "[" * 10_000,
            "a: !!python/object/apply:os.system [id]",
            "a: " + "9" * 5000,
            "services:\n  x:\n    image: x\n    cpus: .inf\n",
        ],
    )
    def test_refused(self, content: str, tmp_path: Path, capsys: Any) -> None:
        """The seeds the fuzzer must never lose are refused with exit 1, not a traceback."""
        _write(tmp_path, "stacks/s/compose.yaml", content)
        assert main(["validate", "--repo", str(tmp_path)]) == 1
        assert "Traceback" not in capsys.readouterr().err
