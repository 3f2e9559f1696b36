"""`fleetgate render --device ID [--repo PATH] [--state-dir DIR] [--output json]`.

Prints the normalized desired state of one device: byte-identical for the same
revision (sorted keys, stable order). Secret values never appear: secrets are mounts
that show only their device path, and environment values whose *name* looks secret
(``DB_PASS``, ``ADMIN_PWD``, ``API_KEY``, ...: the rule of :mod:`reconciler.redaction`)
are printed as ``********`` in both forms (the config hash still covers the real value),
and URL credentials in any value (``mqtt://user:pw@broker``) as ``***``.

JSON (stable fields): ``{"device", "revision", "arch", "updateWindows": [{days, start,
end, timezone}], "stacks": [StackSpec as snake_case fields]}`` with durations written as
in Compose (``90s``), sizes in bytes, and name/value pairs (``environment``, ``labels``,
``options``, ``tmpfs``, ``field_hashes``) as objects. Exit 0, 1 when the repository is invalid for
this device (findings one per line on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any

from reconciler.cli import (
    EXIT_OK,
    add_output_flag,
    add_repo_flags,
    add_state_dir_flag,
    checkout_repo,
    state_dir_of,
)
from reconciler.cli.output import emit
from reconciler.errors import Finding, ManifestError, escape_text
from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree
from reconciler.model import DesiredState, Mount, PortBinding, ServiceSpec, StackSpec
from reconciler.redaction import mask_environment, redact, redact_document, secret_values
from reconciler.render.device import render_device
from reconciler.render.hashing import plain
from reconciler.render.targeting import matching_groups
from reconciler.units import format_duration

_PAIRS = frozenset({"environment", "labels", "options", "field_hashes", "tmpfs"})
"""Fields that are sorted (name, value) pairs in the model and objects in JSON."""
_DURATIONS = frozenset(
    {"stop_grace_period", "interval", "timeout", "start_period", "start_interval", "health_timeout"}
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "render",
        help="print the normalized desired state of one device",
        description="Render one device's desired state from the fleet repository.",
    )
    parser.add_argument("--device", required=True, help="device id (devices/<id>.yaml)")
    add_repo_flags(parser)
    add_state_dir_flag(parser)
    add_output_flag(parser)
    parser.set_defaults(handler=run)


def _hidden(state: DesiredState) -> frozenset[str]:
    """The secret values of ``state``: hidden wherever else they show (a command, say)."""
    return secret_values(pair for svc in state.services for pair in svc.environment)


def _masked_env(env: tuple[tuple[str, str], ...]) -> list[list[str]]:
    return [[k, v] for k, v in mask_environment(env)]


def _jsonable(value: Any, key: str = "") -> Any:
    if key in _PAIRS and isinstance(value, list):
        return {k: _jsonable(v, "") for k, v in value}
    if isinstance(value, dict):
        return {k: _jsonable(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v, key) for v in value]
    if key in _DURATIONS and isinstance(value, int | float) and not isinstance(value, bool):
        return format_duration(value)
    return value


def state_document(state: DesiredState) -> dict[str, Any]:
    """The JSON document of a desired state (secret-looking env values masked)."""
    stacks = []
    for stack in state.stacks:
        doc = plain(stack)
        for svc_doc, svc in zip(doc["services"], stack.services, strict=True):
            svc_doc["environment"] = _masked_env(svc.environment)
        stacks.append(redact_document(_jsonable(doc), _hidden(state)))
    windows = [
        {"days": list(w.days), "start": w.start, "end": w.end, "timezone": w.timezone}
        for w in state.update_windows
    ]
    return {
        "device": state.device,
        "revision": state.revision,
        "arch": state.arch,
        "updateWindows": windows,
        "stacks": stacks,
    }


def render_json(state: DesiredState) -> str:
    """Deterministic JSON text (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(state_document(state), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _port(p: PortBinding) -> str:
    host = f"{p.host_ip}:" if p.host_ip else ""
    published = f"{host}{p.host_port if p.host_port is not None else '(any)'}"
    return f"{published}->{p.container_port}/{p.protocol}"


def _mount(m: Mount) -> str:
    mode = "ro" if m.read_only else "rw"
    source = m.source or "(tmpfs)"
    return f"{m.kind:<6} {source} -> {m.target} ({mode})"


def _service_lines(svc: ServiceSpec) -> list[str]:
    rows: list[tuple[str, list[str]]] = [("image", [svc.image])]
    if svc.entrypoint is not None:
        rows.append(("entrypoint", [shlex.join(svc.entrypoint)]))
    if svc.command is not None:
        rows.append(("command", [shlex.join(svc.command)]))
    rows.append(("env", [f"{k}={v}" for k, v in _masked_env(svc.environment)]))
    rows.append(("ports", [_port(p) for p in svc.ports]))
    rows.append(("mounts", [_mount(m) for m in svc.mounts]))
    rows.append(("tmpfs", [f"{t} {o}".rstrip() for t, o in svc.tmpfs]))
    nets = [
        f"{n.network} (aliases {', '.join(n.aliases)})"
        + (f" ip {n.ipv4_address}" if n.ipv4_address else "")
        for n in svc.networks
    ]
    rows.append(("networks", nets or ([f"mode {svc.network_mode}"] if svc.network_mode else [])))
    rows.append(
        ("devices", [f"{d.host_path}:{d.container_path}:{d.permissions}" for d in svc.devices])
    )
    rows.append(("depends on", [f"{d.service} ({d.condition})" for d in svc.depends_on]))
    rows.append(("restart", [svc.restart]))
    if svc.privileged:
        rows.append(("privileged", ["yes"]))
    rows.append(("config hash", [svc.config_hash]))
    lines = [f"  service {svc.service}  (container {svc.container_name})"]
    for label, values in rows:
        for i, value in enumerate(values):
            # escape_text: a value's own newline must not start a line of its own.
            lines.append(f"    {(label + ':') if i == 0 else '':<12} {escape_text(value)}")
    return lines


def _stack_lines(stack: StackSpec) -> list[str]:
    lines = [
        f"stack {stack.name}  (health timeout {format_duration(stack.health_timeout)}, "
        f"{stack.update_strategy}, lock dir {stack.lock_dir})"
    ]
    for svc in stack.services:
        lines += _service_lines(svc)
    lines += [f"  network {n.name}" + (" (external)" if n.external else "") for n in stack.networks]
    lines += [f"  volume  {v.name}" + (" (external)" if v.external else "") for v in stack.volumes]
    lines += [f"  data    {d}" for d in stack.data_dirs]
    lines += [f"  config  {c.repo_path} -> {c.host_path}" for c in stack.config_files]
    return lines


def render_text(state: DesiredState) -> str:
    """The human-readable form, for an OT engineer at the machine."""
    revision = state.revision or "(working tree)"
    head = f"device {state.device}  revision {revision}  arch {state.arch or '-'}"
    windows = [
        f"{','.join(w.days)} {w.start}-{w.end} {w.timezone}" for w in state.update_windows
    ] or ["any time"]
    lines = [head, "update windows: " + "; ".join(windows)]
    for stack in state.stacks:
        lines += ["", *_stack_lines(stack)]
    if not state.stacks:
        lines += ["", "no stacks: this device runs nothing"]
    return redact("\n".join(lines), _hidden(state)) + "\n"


def _relevant(findings: tuple[Finding, ...], device: str, stacks: set[str]) -> list[Finding]:
    """Load findings that can change this device's state: its file, fleet, groups, its stacks."""
    own = f"devices/{device}."
    out = []
    for f in findings:
        top = f.path.split("/", 2)
        if (
            f.path.startswith(own)
            or f.path == "fleet.yaml"
            or top[0] in ("groups", "schemas")
            or (top[0] == "stacks" and len(top) > 1 and top[1] in stacks)
        ):
            out.append(f)
    return out


def run(args: argparse.Namespace) -> int:
    checkout = checkout_repo(args.repo, args.ref, args.allowed_signers)
    tree = RepoTree(checkout.root)
    repo, loaded = load_repository(tree, checkout.revision)
    device = repo.devices.get(args.device)
    stacks: set[str] = set()
    if device is not None:
        stacks = set(device.stacks).union(*(g.stacks for g in matching_groups(repo, device)))
    problems = _relevant(loaded, args.device, stacks)
    if problems:
        raise ManifestError(problems)
    state = render_device(repo, tree, args.device, str(state_dir_of(args))).state
    emit(render_json(state) if args.output == "json" else render_text(state))
    return EXIT_OK
