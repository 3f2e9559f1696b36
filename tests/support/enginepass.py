"""Helpers of the tests that run a reconcile pass on the real Docker engine."""

from __future__ import annotations

from pathlib import Path

import docker

from reconciler.engine.docker import DockerEngine
from reconciler.manifests.tree import RepoTree
from reconciler.reconcile.run import PassResult, reconcile_once
from reconciler.store import StateStore
from support.passes import FleetRepo


def apply_once(fleet: FleetRepo, engine: DockerEngine, state: Path, **kw: object) -> PassResult:
    """One pass of ``fleet``'s head on ``engine`` with the state in ``state``."""
    return reconcile_once(
        tree=RepoTree(fleet.path),
        revision=fleet.head,
        device=fleet.device,
        state_dir=state,
        runtime=engine,
        store=StateStore(state, fleet.device),
        **kw,  # type: ignore[arg-type]
    )


def managed(client: docker.DockerClient, device: str) -> dict[str, tuple[str, str, str]]:
    """name -> (id, status, config hash) of every container managed for ``device``."""
    found = client.containers.list(
        all=True, filters={"label": [f"io.fleetgate.device={device}", "io.fleetgate.managed=true"]}
    )
    return {c.name: (c.id, c.status, c.labels.get("io.fleetgate.config-hash", "")) for c in found}
