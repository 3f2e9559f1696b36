"""Reading the fleet repository into typed manifests, reporting every problem with its line.

:func:`load_repository` reads ``fleet.yaml``, ``devices/*.yaml``, ``groups/*.yaml`` and
``stacks/<name>/`` through :class:`RepoTree` (so nothing outside the root is read), checks
each file against its JSON Schema (``reconciler/schemas``, draft 2020-12) and the static
Compose rules of :mod:`reconciler.manifests.stackcheck`, and returns the repository value together
with *every* finding. A file with any finding is left out of the value, so later stages
only ever see manifests that passed; the findings say why the rest is missing.

Choices the contract left open:

- ``.yml`` is accepted wherever ``.yaml`` is; both spellings of one name is a finding.
- Variable and label values may be YAML numbers or booleans, turned into text the way
  they read in YAML 1.2 (``true``, ``5``, ``0.5``); a float loses its exact spelling
  (``1.10`` is ``1.1``), so quote values whose spelling matters. Nested maps are refused.
- A group must declare ``selector`` (``{}`` selects every device), so a forgotten
  selector never silently targets the whole fleet.
- A device or group naming a stack folder that exists but is invalid is *not* reported
  again as "unknown stack": the stack's own findings already explain it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from functools import cache
from typing import Any, cast
from zoneinfo import available_timezones

from reconciler.errors import Finding, ManifestError
from reconciler.manifests import policy as policy_mod
from reconciler.manifests import stackcheck
from reconciler.manifests.schema import control_findings, schema_findings
from reconciler.manifests.tree import RepoTree, TreeEscape
from reconciler.manifests.yamlio import (
    MAX_MANIFEST_BYTES,
    LineDict,
    LineList,
    control_problem,
    parse_yaml,
)
from reconciler.model import (
    Arch,
    DeviceManifest,
    FleetManifest,
    FleetRepository,
    GroupManifest,
    Location,
    StackManifest,
    UpdateStrategy,
    UpdateWindow,
    Weekday,
)
from reconciler.units import parse_duration
from reconciler.workers import map_forked

DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
STACK_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


@cache
def known_timezones() -> frozenset[str]:
    """IANA zone names of this system's tz database (scanning it is slow: once)."""
    return frozenset(available_timezones())


def text_of(value: Any) -> str:
    """A scalar as the text it reads as in YAML 1.2 (booleans lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def text_map(mapping: Any) -> dict[str, str]:
    """A schema-checked mapping of scalars as ``str -> str`` (``None``/missing: empty)."""
    if not isinstance(mapping, Mapping):
        return {}
    return {str(k): text_of(v) for k, v in mapping.items()}


def parse_windows(items: Any, path: str) -> tuple[tuple[UpdateWindow, ...], list[Finding]]:
    """Schema-checked ``updateWindows`` items as values; unknown time zones are findings."""
    windows: list[UpdateWindow] = []
    findings: list[Finding] = []
    if not isinstance(items, list):
        return (), findings
    for index, item in enumerate(items):
        line = items.line_of(index) if isinstance(items, LineList) else None
        zone = item.get("timezone") if isinstance(item, Mapping) else None
        if not isinstance(zone, str):
            continue
        if zone not in known_timezones():
            zone_line = item.line_of("timezone") if isinstance(item, LineDict) else line
            close = difflib.get_close_matches(zone, known_timezones(), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "use an IANA name like Europe/Berlin"
            findings.append(Finding(path, zone_line, f"unknown time zone {zone!r}; {hint}"))
            continue
        days = cast(tuple[Weekday, ...], tuple(item.get("days") or ()))
        windows.append(
            UpdateWindow(
                days=days or ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
                start=item["start"],
                end=item["end"],
                timezone=zone,
                location=Location(path, line),
            )
        )
    return tuple(windows), findings


def read_manifest(tree: RepoTree, path: str, kind: str) -> tuple[Any, list[Finding]]:
    """Parse and schema-check one file.

    ``(None, findings)`` when it does not parse; ``(document, findings)`` otherwise, the
    document possibly schema-invalid (callers still run their checks on it so that every
    problem is reported at once, then drop it).
    """
    outside = "is a symlink leading outside the repository; fleetgate never reads it"
    try:
        # size() and read_bytes() refuse escapes themselves: no separate kind() lookup.
        if tree.size(path) > MAX_MANIFEST_BYTES:
            too_big = f"file is larger than {MAX_MANIFEST_BYTES} bytes; split it"
            return None, [Finding(path, None, too_big)]
        document = parse_yaml(tree.read_bytes(path), path)
    except TreeEscape:
        return None, [Finding(path, None, outside)]
    except ManifestError as e:
        return None, list(e.findings)
    except IsADirectoryError:
        return None, [Finding(path, None, "is a folder, not a YAML file; rename it")]
    except OSError as e:
        return None, [Finding(path, None, f"cannot read: {e.strerror}")]
    if document is None and kind != "compose":
        document = LineDict()
        document.line, document.key_lines = 1, {}
    return document, schema_findings(kind, document, path) + control_findings(document, path)


def _yaml_files(tree: RepoTree, folder: str) -> tuple[dict[str, str], list[Finding]]:
    """``stem -> path`` of the ``.yaml``/``.yml`` files of a folder (others are ignored)."""
    found: dict[str, str] = {}
    findings: list[Finding] = []
    for name in tree.list_dir(folder):
        stem, dot, ext = name.rpartition(".")
        if not dot or ext not in ("yaml", "yml") or stem.startswith("."):
            continue
        path = f"{folder}/{name}"
        if stem in found:
            message = f"both {found[stem]} and {path} define {stem!r}; keep one"
            findings.append(Finding(path, None, message))
            continue
        found[stem] = path
    return found, findings


def _load_fleet(tree: RepoTree) -> tuple[FleetManifest, list[Finding]]:
    if tree.kind("fleet.yaml") == "missing":
        return FleetManifest(), []
    doc, findings = read_manifest(tree, "fleet.yaml", "fleet")
    if not isinstance(doc, LineDict):
        return FleetManifest(), findings
    windows, more = parse_windows(doc.get("updateWindows"), "fleet.yaml")
    findings += more
    if findings:
        return FleetManifest(), findings
    policy_doc = doc.get("policy") or {}
    where = Location("fleet.yaml", doc.line_of("policy") if "policy" in doc else None)
    policy, policy_findings = policy_mod.parse_policy(policy_doc, where)
    findings += policy_findings
    fleet = FleetManifest(
        variables=text_map(doc.get("variables")),
        update_windows=windows,
        policy=policy,
        location=Location("fleet.yaml", 1),
    )
    return fleet, findings


def _checks_despite_schema(
    tree: RepoTree, name: str, compose: LineDict, compose_path: str
) -> list[Finding]:
    """The static checks a schema cannot do, run on a file the schema already refused.

    So that one run reports every problem (an unknown key *and* a bad port), not the
    schema's first. The document's shape is not guaranteed here: a value of the wrong
    type that the checks cannot read is already a schema finding, so a shape error in
    the checks only means "nothing more to say".
    """
    provisional = StackManifest(name=name, compose=compose, compose_path=compose_path)
    try:
        return stackcheck.check_stack(tree, provisional)
    except (TypeError, AttributeError, ValueError, KeyError, IndexError, OverflowError):
        return []


def _load_stack(tree: RepoTree, name: str) -> tuple[StackManifest | None, list[Finding]]:
    folder = f"stacks/{name}"
    if not STACK_NAME.fullmatch(name):
        message = "stack name must be lowercase letters, digits and '-'; rename the folder"
        return None, [Finding(folder, None, message)]
    present = [n for n in COMPOSE_NAMES if tree.kind(f"{folder}/{n}") != "missing"]
    if not present:
        return None, [Finding(folder, None, "no compose.yaml in this stack folder; add one")]
    if len(present) > 1:
        both = " and ".join(present)
        return None, [Finding(folder, None, f"{both} both exist; keep exactly one compose file")]
    compose_path = f"{folder}/{present[0]}"
    compose, findings = read_manifest(tree, compose_path, "compose")
    stack_path = f"{folder}/stack.yaml"
    settings: Any = {}
    if tree.kind(stack_path) != "missing":
        settings, more = read_manifest(tree, stack_path, "stack")
        findings += more
    else:
        stack_path = ""
    timeout = 120.0
    raw_timeout = settings.get("healthTimeout") if isinstance(settings, LineDict) else None
    if isinstance(raw_timeout, str | int | float):
        try:
            timeout = parse_duration(raw_timeout)
        except ValueError as e:
            line = settings.line_of("healthTimeout")
            findings.append(Finding(stack_path, line, f"healthTimeout: {e}"))
    if isinstance(compose, LineDict) and (settings is None or findings):
        return None, findings + _checks_despite_schema(tree, name, compose, compose_path)
    if compose is None or settings is None or findings:
        return None, findings
    requires = settings.get("requires") or {}
    seed, more = stackcheck.seed_paths(tree, folder, settings, stack_path)
    dotenv, dotenv_findings = stackcheck.dotenv_defaults(tree, compose_path)
    more += dotenv_findings
    if more:
        return None, findings + more
    stack = StackManifest(
        name=name,
        compose=compose,
        compose_path=compose_path,
        requires_capabilities=tuple(requires.get("capabilities") or ()),
        requires_arch=cast(tuple[Arch, ...], tuple(requires.get("arch") or ())),
        variables=dotenv | text_map(settings.get("variables")),
        health_timeout=timeout,
        update_strategy=cast(UpdateStrategy, settings.get("updateStrategy", "download-then-kill")),
        stack_path=stack_path or None,
        seed=tuple(seed),
    )
    findings += stackcheck.check_stack(tree, stack)
    return (None if findings else stack), findings


def _stack_refs(doc: Any, path: str, stacks: Mapping[str, Any], folders: set[str]) -> list[Finding]:
    items = doc.get("stacks") if isinstance(doc, Mapping) else None
    if not isinstance(items, LineList):
        return []
    out = []
    for index, name in enumerate(items):
        if not isinstance(name, str) or name in stacks or name in folders:
            continue
        close = difflib.get_close_matches(name, list(folders), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"add stacks/{name}/compose.yaml"
        out.append(Finding(path, items.line_of(index), f"unknown stack {name!r}; {hint}"))
    return out


def _load_device(
    tree: RepoTree,
    device_id: str,
    path: str,
    stacks: Mapping[str, StackManifest],
    folders: set[str],
) -> tuple[DeviceManifest | None, list[Finding]]:
    if not DEVICE_ID.fullmatch(device_id):
        message = f"device id {device_id!r} must match [a-z0-9][a-z0-9-]{{0,62}}; rename the file"
        return None, [Finding(path, None, message)]
    doc, more = read_manifest(tree, path, "device")
    more += _stack_refs(doc, path, stacks, folders)
    windows, window_findings = parse_windows(_get(doc, "updateWindows"), path)
    more += window_findings
    if doc is None or more:
        return None, more
    device = DeviceManifest(
        id=device_id,
        labels=text_map(doc.get("labels")),
        arch=doc.get("arch"),
        capabilities=tuple(doc.get("capabilities") or ()),
        variables=text_map(doc.get("variables")),
        update_windows=windows if "updateWindows" in doc else None,
        stacks=tuple(doc.get("stacks") or ()),
        profiles=tuple(doc.get("profiles") or ()),
        location=Location(path, 1),
    )
    return device, []


def load_repository(
    tree: RepoTree, revision: str | None = None
) -> tuple[FleetRepository, tuple[Finding, ...]]:
    """Every manifest that passed its checks, and every finding (sorted by path, line)."""
    findings: list[Finding] = []
    fleet, more = _load_fleet(tree)
    findings += more

    stacks: dict[str, StackManifest] = {}
    folders = {n for n in tree.list_dir("stacks") if tree.kind(f"stacks/{n}") in ("dir", "outside")}
    for name in sorted(folders):
        if tree.kind(f"stacks/{name}") == "outside":
            message = "is a symlink leading outside the repository; fleetgate never reads it"
            findings.append(Finding(f"stacks/{name}", None, message))
            continue
        stack, more = _load_stack(tree, name)
        findings += more
        if stack is not None:
            stacks[name] = stack

    groups: dict[str, GroupManifest] = {}
    files, more = _yaml_files(tree, "groups")
    findings += more
    for name, path in files.items():
        bad_name = control_problem(name, "the group's file name")
        if bad_name is not None:
            findings.append(Finding(path, None, bad_name))
            continue
        doc, more = read_manifest(tree, path, "group")
        more += _stack_refs(doc, path, stacks, folders)
        windows, window_findings = parse_windows(_get(doc, "updateWindows"), path)
        more += window_findings
        findings += more
        if doc is None or more:
            continue
        groups[name] = GroupManifest(
            name=name,
            selector=text_map(doc.get("selector")),
            stacks=tuple(doc.get("stacks") or ()),
            profiles=tuple(doc.get("profiles") or ()),
            variables=text_map(doc.get("variables")),
            update_windows=windows,
            location=Location(path, 1),
        )

    devices: dict[str, DeviceManifest] = {}
    files, more = _yaml_files(tree, "devices")
    findings += more
    loaded = map_forked(
        lambda item: _load_device(tree, item[0], item[1], stacks, folders), list(files.items())
    )
    for device, more in loaded:
        findings += more
        if device is not None:
            devices[device.id] = device

    repo = FleetRepository(
        fleet=fleet, devices=devices, groups=groups, stacks=stacks, revision=revision
    )
    return repo, tuple(sorted(set(findings), key=_order))


def _get(doc: Any, key: str) -> Any:
    return doc.get(key) if isinstance(doc, Mapping) else None


def _order(finding: Finding) -> tuple[str, int, str]:
    return (finding.path, finding.line or 0, finding.message)
