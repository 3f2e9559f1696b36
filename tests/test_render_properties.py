"""Render is a deterministic function of the repository's content, not of its ordering."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.cli.render import render_json
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.yamlio import parse_yaml
from reconciler.model import (
    DeviceManifest,
    FleetManifest,
    FleetRepository,
    GroupManifest,
    Location,
    StackManifest,
)
from reconciler.render.device import render_device

SERVICES = {
    "db": [
        "image: postgres:${PG:-16}",
        "environment: {A: '${A}', B: '${B}'}",
        "volumes: [pg:/var/lib/pg]",
    ],
    "api": [
        "image: api:${TAG}",
        "depends_on: {db: {condition: service_healthy}}",
        "ports: ['${PORT:-8080}:80', '9090']",
        "labels: [z=1, a=2]",
    ],
    "web": [
        "image: web:1",
        "depends_on: [api]",
        "environment: [A, 'C=${C-none}']",
        "command: run --fast",
    ],
    "cron": ["image: cron:1", "networks: [back, front]", "extra_hosts: {plc: 10.0.0.1}"],
}
TOP = {"volumes": ["pg: {}"], "networks": ["front: {}", "back: {internal: true}"]}


def compose_text(rng: random.Random) -> str:
    names = list(SERVICES)
    rng.shuffle(names)
    lines = ["services:"]
    for name in names:
        keys = list(SERVICES[name])
        rng.shuffle(keys)
        lines += [f"  {name}:"] + [f"    {k}" for k in keys]
    tops = list(TOP)
    rng.shuffle(tops)
    for top in tops:
        entries = list(TOP[top])
        rng.shuffle(entries)
        lines += [f"{top}:"] + [f"  {e}" for e in entries]
    return "\n".join(lines) + "\n"


def shuffled(mapping: dict[str, str], rng: random.Random) -> dict[str, str]:
    items = list(mapping.items())
    rng.shuffle(items)
    return dict(items)


def build(seed: int) -> FleetRepository:
    rng = random.Random(seed)
    groups = [
        GroupManifest("10-site", {"site": "a"}, ("s1",), shuffled({"A": "g10", "TAG": "1"}, rng)),
        GroupManifest("20-ring", {"ring": "p"}, ("s2",), shuffled({"A": "g20", "C": "c"}, rng)),
        GroupManifest("30-all", {}, ("s1",), shuffled({"B": "all", "PORT": "81"}, rng)),
    ]
    rng.shuffle(groups)
    stacks = []
    for name in ("s1", "s2"):
        path = f"stacks/{name}/compose.yaml"
        stacks.append(StackManifest(name, parse_yaml(compose_text(rng), path), path))
    rng.shuffle(stacks)
    device_stacks = ["s2", "s1"]
    rng.shuffle(device_stacks)
    device = DeviceManifest(
        "dev-1",
        labels=shuffled({"site": "a", "ring": "p"}, rng),
        arch="arm64",
        variables=shuffled({"B": "dev", "PG": "15"}, rng),
        stacks=tuple(device_stacks),
        location=Location("devices/dev-1.yaml", 1),
    )
    return FleetRepository(
        FleetManifest(variables=shuffled({"A": "fleet", "C": "fleet", "TAG": "0"}, rng)),
        {"dev-1": device},
        {g.name: g for g in groups},
        {s.name: s for s in stacks},
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> RepoTree:
    root: Path = tmp_path_factory.mktemp("empty-fleet")
    return RepoTree(root)


class TestDeterminism:
    @settings(max_examples=40, deadline=None)
    @given(seed=st.integers(min_value=1, max_value=2**32))
    def test_order_of_files_and_keys_does_not_change_the_output(
        self, tree: RepoTree, seed: int
    ) -> None:
        """Shuffled groups, variables, stacks, services and keys render to identical JSON bytes."""
        expected = render_json(render_device(build(0), tree, "dev-1").state)
        assert render_json(render_device(build(seed), tree, "dev-1").state) == expected

    def test_reference_output_has_the_precedence_applied(self, tree: RepoTree) -> None:
        """The reference render applies group file order and device precedence."""
        state = render_device(build(0), tree, "dev-1").state
        s1 = state.stacks[0]
        db = next(s for s in s1.services if s.service == "db")
        assert dict(db.environment) == {"A": "g20", "B": "dev"}
        assert db.image == "postgres:15"
        assert [s.service for s in s1.services] == ["cron", "db", "api", "web"]
