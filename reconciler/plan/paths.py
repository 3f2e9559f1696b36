"""Host paths the planner prepares for a stack (pure): data, lock, config and seeds.

Directories are created, config files materialized (content-addressed, so idempotent),
seed files copied where absent (``plan/seeds.py``); no plan ever removes a path (safety
rule 4).
"""

from __future__ import annotations

from typing import Literal

from reconciler.model import StackSpec
from reconciler.plan.seeds import seed_steps
from reconciler.plan.steps import EnsureDirectory, MaterializeConfig, Step


def prepare_paths(stack: StackSpec, existing: frozenset[str] | None) -> list[Step]:
    """Data and lock dirs, config parents, then config files; each path once, sorted.

    ``existing``: the paths observed on the host (only missing ones get a step), or
    ``None`` when not observed (every path gets one).
    """
    why = f"stack {stack.name}"
    dirs: dict[str, Literal["data", "lock", "config"]] = dict.fromkeys(stack.data_dirs, "data")
    if stack.lock_dir:
        dirs[stack.lock_dir] = "lock"
    for cfg in stack.config_files:
        dirs.setdefault(cfg.host_path.rsplit("/", 1)[0] or "/", "config")
    out: list[Step] = [
        EnsureDirectory(path, purpose, why)
        for path, purpose in sorted(dirs.items())
        if existing is None or path not in existing
    ]
    out.extend(
        MaterializeConfig(cfg, why)
        for cfg in sorted(stack.config_files, key=lambda c: c.host_path)
        if existing is None or cfg.host_path not in existing
    )
    out.extend(seed_steps(stack, existing))
    return out
