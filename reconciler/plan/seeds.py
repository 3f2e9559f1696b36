"""Seeded data directories (stack.yaml ``seed:``): the steps that fill them (pure).

A seed file is copied into its data directory only where nothing is there yet: on first
use, or when the app (or a person) removed it. A file already there is the app's, so a
later revision whose seed file changed does not touch it; apply logs ``seed.kept`` when
the two differ. When the caller observed the host paths (``existing``), only seed files
that are absent get a step, so a converged device's plan stays empty.
"""

from __future__ import annotations

from reconciler.model import StackSpec
from reconciler.plan.steps import SeedFile


def seed_steps(stack: StackSpec, existing: frozenset[str] | None) -> list[SeedFile]:
    """A ``SeedFile`` per seed file of ``stack`` not observed on the host, by path."""
    why = f"stack {stack.name}: seed"
    return [
        SeedFile(file, why)
        for file in sorted(stack.seed_files, key=lambda f: f.host_path)
        if existing is None or file.host_path not in existing
    ]
