"""Planner tests as data: each ``tests/fixtures/plan/*.yaml`` is observed + desired in,
steps (as ``Step.describe()`` lines), blocked reasons and notes out.

Fixture format (compact; hashes are derived from the values, as render derives them):

    desired:            # stacks by name
      <stack>:
        services:       # in order; container name defaults to "<stack>-<service>"
          <service>: {image, environment, restart, pull_policy, healthcheck: bool,
                      depends_on: {<service>: <condition>}, networks: [name], ...}
        networks: [name]
        volumes: [name]
        data_dirs: [path]
    observed:
      images: [ref]
      networks: {name: stack}
      foreign: [container name]
      containers:       # hashes as if created from the given values
        - {id, stack, service, state, image, environment, name, exit_code, ...}
    steps: [describe lines]
    blocked: [reasons]  # optional, default []
    notes: [notes]      # optional, default: not checked
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes import DEVICE, FakeContainer, FakeRuntime, container_of, desired, service, stack

from reconciler.model import Dependency, DesiredState, NetworkAttachment, NetworkSpec, VolumeSpec
from reconciler.plan.planner import plan

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "plan").glob("*.yaml"))


def _service_kwargs(raw: dict[str, Any]) -> dict[str, Any]:
    kw = dict(raw)
    kw["depends_on"] = tuple(
        Dependency(name, condition) for name, condition in (kw.pop("depends_on", {}) or {}).items()
    )
    kw["networks"] = tuple(NetworkAttachment(n) for n in kw.pop("networks", ()))
    return kw


def _desired(raw: dict[str, Any]) -> DesiredState:
    stacks = []
    for name, body in (raw or {}).items():
        services = tuple(
            service(name, svc, **_service_kwargs(spec or {}))
            for svc, spec in (body.get("services") or {}).items()
        )
        stacks.append(
            stack(
                name,
                *services,
                networks=tuple(NetworkSpec(n) for n in body.get("networks", ())),
                volumes=tuple(VolumeSpec(v) for v in body.get("volumes", ())),
                data_dirs=tuple(body.get("data_dirs", ())),
                update_strategy=body.get("update_strategy", "download-then-kill"),
            )
        )
    return desired(*stacks)


def _runtime(raw: dict[str, Any]) -> FakeRuntime:
    rt = FakeRuntime()
    for ref in raw.get("images", ()):
        rt.add_image(ref)
    for name, owner in (raw.get("networks") or {}).items():
        rt.add_network(name, DEVICE, owner)
    for i, name in enumerate(raw.get("foreign", ())):
        rt.add_container(FakeContainer(id=f"foreign{i}", name=name))
    for item in raw.get("containers", ()):
        c = dict(item)
        cid, state = c.pop("id"), c.pop("state", "running")
        extra = {k: c.pop(k) for k in ("name", "exit_code", "health", "restart_count") if k in c}
        spec = service(c.pop("stack"), c.pop("service"), **_service_kwargs(c))
        rt.add_container(container_of(spec, cid, state, **extra))
    return rt


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
class TestPlanFixtures:
    def test_steps_blocked_and_notes_match(self, path: Path) -> None:
        """The plan for a fixture's observed and desired state is exactly its expected steps."""
        case = yaml.safe_load(path.read_text())
        observed = _runtime(case.get("observed") or {}).observe(DEVICE)
        result = plan(_desired(case.get("desired")), observed)
        assert list(result.describe()) == case["steps"]
        assert list(result.blocked) == case.get("blocked", [])
        if "notes" in case:
            assert list(result.notes) == case["notes"]


class TestFixtureSet:
    def test_there_are_enough_scenarios(self) -> None:
        """The fixture directory holds at least the eight scenarios the planner promises."""
        assert len(FIXTURES) >= 8
