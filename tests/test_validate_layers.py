"""`validate` reports every layer in one run: schema, interpolation, policy, per device."""

from __future__ import annotations

from pathlib import Path

from reconciler.manifests.tree import RepoTree
from reconciler.manifests.validate import validate_fleet

BAD_KEY_AND_PRIVILEGED = """\
services:
  a:
    image: x
    bogus: 1
  b:
    image: y
    privileged: true
"""


class TestEveryLayerInOneRun:
    def test_schema_policy_and_interpolation_findings_together(self, tmp_path: Path) -> None:
        """A schema finding hides neither the policy nor the unset-variable findings."""
        (tmp_path / "devices").mkdir()
        (tmp_path / "devices" / "d1.yaml").write_text("stacks: [s, t, u]\n")
        for name, text in {
            "s": BAD_KEY_AND_PRIVILEGED,
            "t": "services:\n  c:\n    image: z\n    privileged: true\n",
            "u": "services:\n  d:\n    image: n8n:${TAG}\n",
        }.items():
            (tmp_path / "stacks" / name).mkdir(parents=True)
            (tmp_path / "stacks" / name / "compose.yaml").write_text(text)
        lines = [str(f) for f in validate_fleet(RepoTree(tmp_path))]
        assert any(x.startswith("stacks/s/compose.yaml:4: unknown key 'bogus'") for x in lines)
        assert any(x.startswith("stacks/s/compose.yaml:7: service 'b': privileged") for x in lines)
        assert any(x.startswith("stacks/t/compose.yaml:4: service 'c': privileged") for x in lines)
        assert any(x.startswith("stacks/u/compose.yaml:3: variable TAG is required") for x in lines)
        assert len(lines) == 4, lines
