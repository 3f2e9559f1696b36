"""The build stage of a pass: repository tree → this device's policy-checked desired state.

Load every manifest, render the device, check the (narrowed) policy. Any finding
anywhere rejects the whole pass before anything is touched (safety rule 3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from reconciler.errors import ManifestError
from reconciler.manifests import policy as policy_mod
from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree
from reconciler.model import DesiredState, Policy
from reconciler.render.cache import RenderCache
from reconciler.render.device import render_device
from reconciler.stages import Stage


def build_desired(
    tree: RepoTree,
    revision: str | None,
    device: str,
    state_dir: str,
    *,
    local: Policy | None = None,
    at: Callable[[Stage], None] = lambda _: None,
) -> DesiredState:
    """Load, render and policy-check ``device``; raise ``ManifestError`` with every finding.

    Any finding anywhere in the repository rejects the pass: a file with a finding is
    left out of the loaded repository, so rendering around it could drop a stack.
    ``at`` is told each stage as it starts (the pass reports where it stopped).
    """
    at(Stage.MANIFESTS)
    repo, findings = load_repository(tree, revision)
    if findings:
        raise ManifestError(findings)
    at(Stage.RENDER)
    rendered = render_device(repo, tree, device, state_dir, RenderCache())  # one per pass
    at(Stage.POLICY)
    fleet = repo.fleet.policy
    violations = policy_mod.check(
        rendered, fleet if local is None else policy_mod.narrow(fleet, local)
    )
    if violations:
        raise ManifestError(violations)
    state: DesiredState = rendered.state
    return state if state.revision == revision else dataclasses.replace(state, revision=revision)
