"""`fleetgate validate`: every problem of the whole fleet, for CI.

The pass is: load (schemas, static stack checks, references) -> per device: render,
cross-stack checks (host ports, container names), policy. Nothing stops at the first
problem; the result is every finding, deduplicated and sorted by path and line.

Deduplication: a device-level finding that points into a shared file (a compose file,
a group) is usually the same mistake seen from many devices. Such findings are
grouped by ``(path, line, message)`` once the device's own name is taken out of the
message (render prefixes ``device <id>: `` and may name ``devices/<id>.yaml``), and
reported once naming the first devices by id: ``... (devices a, b, c and 41 more)``.
Findings in a device's own file are unique to it and are reported as they are.

Devices whose stacks are missing because the stack folder is invalid are not
rendered: the stack's own findings already say what is wrong, and rendering would
only repeat them once per device.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from reconciler.errors import Finding, ManifestError
from reconciler.manifests import policy as policy_mod
from reconciler.manifests import stackcheck
from reconciler.manifests.repository import COMPOSE_NAMES, load_repository, read_manifest
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.waves import load_rollout
from reconciler.manifests.yamlio import LineDict, control_problem
from reconciler.model import DesiredState, FleetRepository, Policy, StackManifest
from reconciler.render.cache import RenderCache
from reconciler.render.device import Rendered, render_device
from reconciler.render.targeting import target_device
from reconciler.workers import map_forked

DEFAULT_STATE_DIR = "/var/lib/fleetgate"


@dataclass(frozen=True, slots=True)
class Validation:
    """The outcome of validating one fleet repository."""

    findings: tuple[Finding, ...]
    devices: int  # device manifests that loaded
    stacks: int  # stacks that loaded

    @property
    def valid(self) -> bool:
        """No errors (warnings do not make a fleet invalid)."""
        return not any(f.is_error for f in self.findings)

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.is_error)

    @property
    def warnings(self) -> int:
        return len(self.findings) - self.errors

    @property
    def files(self) -> int:
        """How many distinct files have findings."""
        return len({f.path for f in self.findings})


def cross_stack_findings(rendered: Rendered) -> list[Finding]:
    """Host ports published twice and container names used twice on one device.

    Two bindings clash when port and protocol are equal and their host IPs are equal
    or either listens on every interface. Reported at the second service's key.
    """
    out: list[Finding] = []
    state: DesiredState = rendered.state
    ports: dict[tuple[int, str], list[tuple[str, str, str]]] = defaultdict(list)
    names: dict[str, tuple[str, str]] = {}
    for stack in state.stacks:
        for svc in stack.services:
            label = f"{stack.name}/{svc.service}"
            if svc.container_name in names:
                first = "/".join(names[svc.container_name])
                where = rendered.where(stack.name, svc.service, "container_name")
                message = (
                    f"container name {svc.container_name!r} is used by {first} and {label}; "
                    "rename one container_name"
                )
                out.append(Finding(where.path, where.line, message))
            else:
                names[svc.container_name] = (stack.name, svc.service)
            for port in svc.ports:
                if port.host_port is None:
                    continue
                key = (port.host_port, port.protocol)
                ip = port.host_ip if port.host_ip not in ("0.0.0.0", "::") else ""
                for other_ip, other_label, _ in ports[key]:
                    if other_label == label or (ip and other_ip and ip != other_ip):
                        continue
                    where = rendered.where(stack.name, svc.service, "ports")
                    message = (
                        f"host port {port.host_port}/{port.protocol} is published by both "
                        f"{other_label} and {label}; change one of them"
                    )
                    out.append(Finding(where.path, where.line, message))
                    break
                ports[key].append((ip, label, stack.name))
    return out


def interpolated_name_findings(rendered: Rendered) -> list[Finding]:
    """Names that gained a control character through a variable (``image: ${IMAGE}``).

    The manifests' own text is checked when it is loaded; this catches what a variable's
    value (free text) brings into an image, container name, hostname or label.
    """
    out: list[Finding] = []
    for stack in rendered.state.stacks:
        for svc in stack.services:
            named = [("image", svc.image), ("container_name", svc.container_name)]
            named += [("hostname", svc.hostname or "")]
            named += [("labels", f"{k}={v}") for k, v in svc.labels]
            for key, value in named:
                what = f"services.{svc.service}.{key} (after interpolation)"
                problem = control_problem(value, what)
                if problem is not None:
                    where = rendered.where(stack.name, svc.service, key)
                    out.append(Finding(where.path, where.line, problem))
    return out


def device_findings(
    repo: FleetRepository,
    tree: RepoTree,
    device_id: str,
    policy: Policy,
    state_dir: str,
    *,
    cache: RenderCache | None = None,
) -> list[Finding]:
    """Render one device and check what only its rendered state shows."""
    cache = RenderCache() if cache is None else cache
    target = target_device(repo, repo.devices[device_id], cache)
    if any(name not in repo.stacks for name in target.stacks):
        return []
    found: list[Finding] = []
    try:
        rendered = render_device(repo, tree, device_id, state_dir, cache, partial=found)
    except ManifestError as e:
        return list(e.findings)
    except (TypeError, AttributeError, ValueError, KeyError, IndexError, OverflowError):
        return []  # a provisional (schema-invalid) stack of odd shape: its findings stand
    return (
        found
        + cross_stack_findings(rendered)
        + interpolated_name_findings(rendered)
        + policy_mod.check(rendered, policy)
    )


def check_fleet(
    tree: RepoTree,
    revision: str | None = None,
    state_dir: str = DEFAULT_STATE_DIR,
    local_policy: Policy | None = None,
) -> Validation:
    """Validate everything; ``local_policy`` (an agent's) narrows the fleet policy."""
    repo, loaded = load_repository(tree, revision)
    policy = repo.fleet.policy
    if local_policy is not None:
        policy = policy_mod.narrow(policy, local_policy)
    findings: set[Finding] = set(loaded)
    findings.update(load_rollout(tree, repo)[1])
    shared: dict[Finding, list[str]] = {}
    # Every layer in one run: a stack whose compose file has schema findings is still
    # rendered per device (provisionally), so its interpolation and policy findings show
    # now, not after the schema ones are fixed. A line that already has a load finding
    # is not reported again from the render.
    provisional = _provisional_stacks(tree, repo)
    seen = {(f.path, f.line) for f in loaded}
    rendered_repo = replace(repo, stacks={**repo.stacks, **provisional}) if provisional else repo
    for device_id, found in _every_device(rendered_repo, tree, policy, state_dir):
        own = repo.devices[device_id].location.path
        for finding in found:
            if (finding.path, finding.line) in seen:
                continue
            if finding.path == own:
                findings.add(finding)
            else:
                generic = _without_device(finding, device_id, own)
                shared.setdefault(generic, []).append(device_id)
    for finding, devices in shared.items():
        message = f"{finding.message} ({_devices(devices)})"
        findings.add(Finding(finding.path, finding.line, message, finding.severity))
    ordered = sorted(findings, key=lambda f: (f.path, f.line or 0, f.message))
    return Validation(tuple(ordered), devices=len(repo.devices), stacks=len(repo.stacks))


def _provisional_stacks(tree: RepoTree, repo: FleetRepository) -> dict[str, StackManifest]:
    """Stacks left out of ``repo`` for findings whose compose file is still a mapping."""
    out: dict[str, StackManifest] = {}
    for name in tree.list_dir("stacks"):
        if name in repo.stacks or tree.kind(f"stacks/{name}") != "dir":
            continue
        path = next(
            (
                f"stacks/{name}/{n}"
                for n in COMPOSE_NAMES
                if tree.kind(f"stacks/{name}/{n}") == "file"
            ),
            None,
        )
        if path is None:
            continue
        doc, _ = read_manifest(tree, path, "compose")
        if isinstance(doc, LineDict) and isinstance(doc.get("services"), LineDict):
            dotenv, _ = stackcheck.dotenv_defaults(tree, path)
            out[name] = StackManifest(name=name, compose=doc, compose_path=path, variables=dotenv)
    return out


def _every_device(
    repo: FleetRepository, tree: RepoTree, policy: Policy, state_dir: str
) -> list[tuple[str, list[Finding]]]:
    """``(device id, findings)`` for every device, in id order (forked for large fleets)."""
    ids = sorted(repo.devices)
    cache = RenderCache()  # one snapshot: every device shares it (each fork its own copy)
    found = map_forked(
        lambda d: device_findings(repo, tree, d, policy, state_dir, cache=cache), ids
    )
    return list(zip(ids, found, strict=True))


def _without_device(finding: Finding, device_id: str, own: str) -> Finding:
    """The finding as any device would see it, so identical mistakes group together."""
    message = finding.message.removeprefix(f"device {device_id}: ")
    message = message.replace(own, "the device's file")
    return Finding(finding.path, finding.line, message, finding.severity)


def _devices(ids: list[str]) -> str:
    """``device a`` / ``devices a, b and c`` / ``devices a, b, c and 41 more``."""
    if len(ids) == 1:
        return f"device {ids[0]}"
    if len(ids) <= 3:
        return f"devices {', '.join(ids[:-1])} and {ids[-1]}"
    return f"devices {', '.join(ids[:3])} and {len(ids) - 3} more"


def validate_fleet(
    tree: RepoTree, revision: str | None = None, state_dir: str = DEFAULT_STATE_DIR
) -> list[Finding]:
    """Every finding of the fleet repository, warnings included (no errors: valid)."""
    return list(check_fleet(tree, revision, state_dir).findings)
