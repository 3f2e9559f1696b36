"""Staged rollout declared in Git (pure): ``rollout.waves`` in ``fleet.yaml`` and the
``waves/<wave>.yaml`` pins (DESIGN.md §6).

:func:`load_rollout` reads both through :class:`RepoTree` and returns the
:class:`Rollout` value with every finding (file and line). The JSON Schemas
(``fleet.schema.json`` ``$defs.rollout``, ``wave.schema.json``) check the shapes; this
module checks what a schema cannot:

- wave names are unique; ``soak`` is a Compose duration (``2h``);
- a pin file names a declared wave that is not the first (the first wave follows the
  branch and has no pin); a pin without ``rollout`` is a finding too;
- once ``rollout`` is declared, every device is in a wave: a device is in the *first*
  wave whose selector its labels match (``{}`` matches every device), and a device in
  none is a finding at its own file.

Pins being ancestors of the tracked head (and signed) needs Git: the source layer checks
it (:func:`reconciler.source.commits.is_ancestor`), never this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.errors import Finding
from reconciler.manifests.repository import read_manifest, text_map
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.yamlio import LineDict, LineList
from reconciler.model import FleetManifest, FleetRepository, Location
from reconciler.units import parse_duration

WAVES_DIR = "waves"
_FLEET = Location("fleet.yaml", None)


@dataclass(frozen=True, slots=True)
class Wave:
    """One wave as declared in ``fleet.yaml`` (``soak`` in seconds)."""

    name: str
    selector: Mapping[str, str]
    soak: float = 0.0
    max_failed: int = 0
    location: Location = _FLEET


@dataclass(frozen=True, slots=True)
class Pin:
    """``waves/<wave>.yaml``: the commit a later wave runs."""

    wave: str
    revision: str
    location: Location


@dataclass(frozen=True, slots=True)
class Rollout:
    """The declared waves in order and the pins of the waves that started."""

    waves: tuple[Wave, ...] = ()
    pins: Mapping[str, Pin] | None = None

    @property
    def declared(self) -> bool:
        return bool(self.waves)

    def wave(self, name: str) -> Wave | None:
        return next((w for w in self.waves if w.name == name), None)

    def index(self, name: str) -> int:
        """Position of wave ``name`` (``ValueError`` when it is not declared)."""
        for position, wave in enumerate(self.waves):
            if wave.name == name:
                return position
        raise ValueError(name)

    def wave_of(self, labels: Mapping[str, str]) -> Wave | None:
        """The first wave whose selector ``labels`` match (``None``: in no wave)."""
        for wave in self.waves:
            if all(labels.get(k) == v for k, v in wave.selector.items()):
                return wave
        return None

    def pin(self, name: str) -> str | None:
        """The pinned revision of wave ``name`` (``None``: not started, or the first wave)."""
        found = (self.pins or {}).get(name)
        return None if found is None else found.revision


def membership(rollout: Rollout, repo: FleetRepository) -> dict[str, str]:
    """``device id -> wave name`` for every device that is in a wave."""
    out: dict[str, str] = {}
    for device_id, device in sorted(repo.devices.items()):
        wave = rollout.wave_of(device.labels)
        if wave is not None:
            out[device_id] = wave.name
    return out


def parse_waves(doc: object) -> tuple[tuple[Wave, ...], list[Finding]]:
    """The schema-checked ``rollout`` mapping of ``fleet.yaml`` as waves, with findings."""
    if not isinstance(doc, LineDict):
        return (), []
    items = doc.get("waves")
    if not isinstance(items, LineList):
        return (), []
    waves: list[Wave] = []
    findings: list[Finding] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        line = items.line_of(index)
        if not isinstance(item, LineDict) or not isinstance(item.get("name"), str):
            continue
        name = item["name"]
        if name in seen:
            message = f"wave {name!r} is declared twice (first at line {seen[name]}); rename one"
            findings.append(Finding("fleet.yaml", item.line_of("name"), message))
            continue
        seen[name] = line
        soak = 0.0
        raw = item.get("soak")
        if isinstance(raw, str | int | float):
            try:
                soak = parse_duration(raw)
            except ValueError as e:
                findings.append(Finding("fleet.yaml", item.line_of("soak"), f"soak: {e}"))
        max_failed = item.get("maxFailed", 0)
        waves.append(
            Wave(
                name=name,
                selector=text_map(item.get("selector")),
                soak=soak,
                max_failed=max_failed if isinstance(max_failed, int) else 0,
                location=Location("fleet.yaml", line),
            )
        )
    return tuple(waves), findings


def _pins(tree: RepoTree, waves: tuple[Wave, ...]) -> tuple[dict[str, Pin], list[Finding]]:
    pins: dict[str, Pin] = {}
    findings: list[Finding] = []
    names = [w.name for w in waves]
    for entry in sorted(tree.list_dir(WAVES_DIR)):
        stem, dot, ext = entry.rpartition(".")
        if not dot or ext not in ("yaml", "yml") or stem.startswith("."):
            continue
        path = f"{WAVES_DIR}/{entry}"
        doc, more = read_manifest(tree, path, "wave")
        if not names:
            message = "a wave pin without rollout.waves in fleet.yaml; declare waves or remove it"
            findings.append(Finding(path, 1, message))
            continue
        if stem not in names:
            hint = ", ".join(names)
            message = f"no wave {stem!r} in fleet.yaml rollout.waves ({hint}); rename or remove it"
            findings.append(Finding(path, 1, message))
            continue
        if stem == names[0]:
            message = (
                f"wave {stem!r} is the first wave: it follows the branch and has no pin; "
                "remove this file"
            )
            findings.append(Finding(path, 1, message))
            continue
        if stem in pins:
            message = f"both {pins[stem].location.path} and {path} pin wave {stem!r}; keep one"
            findings.append(Finding(path, 1, message))
            continue
        findings += more
        if more or not isinstance(doc, LineDict) or not isinstance(doc.get("revision"), str):
            continue
        pins[stem] = Pin(stem, doc["revision"], Location(path, doc.line_of("revision")))
    return pins, findings


def read_rollout(tree: RepoTree) -> tuple[Rollout, list[Finding]]:
    """The waves of ``fleet.yaml`` and their pins, with the findings about them alone
    (no device membership: see :func:`load_rollout`)."""
    findings: list[Finding] = []
    waves: tuple[Wave, ...] = ()
    if tree.kind("fleet.yaml") != "missing":
        doc, schema = read_manifest(tree, "fleet.yaml", "fleet")
        if isinstance(doc, LineDict) and not schema:
            waves, findings = parse_waves(doc.get("rollout"))
    pins, more = _pins(tree, waves)
    return Rollout(waves, pins), findings + more


def load_rollout(tree: RepoTree, repo: FleetRepository) -> tuple[Rollout, list[Finding]]:
    """The rollout of the repository at ``tree`` and every finding about it.

    ``fleet.yaml``'s own schema findings are reported by the repository loader; this
    adds the wave-level ones. ``repo`` supplies the devices whose membership is checked.
    """
    rollout, findings = read_rollout(tree)
    if rollout.waves:
        for device_id, device in sorted(repo.devices.items()):
            if rollout.wave_of(device.labels) is None:
                hint = ", ".join(f"{w.name} {dict(w.selector)}" for w in rollout.waves)
                message = (
                    f"device {device_id} is in no rollout wave ({hint}); give it the labels "
                    "of one, or end rollout.waves with a wave whose selector is {}"
                )
                findings.append(Finding(device.location.path, 1, message))
    return rollout, findings


def device_wave(tree: RepoTree, device_id: str) -> tuple[Rollout, Wave | None, list[Finding]]:
    """The rollout and the wave of one device, reading only what that needs.

    For the agent: ``fleet.yaml``, ``devices/<id>.yaml`` (its labels) and ``waves/``,
    not the whole fleet. Findings are those of these files (membership of other devices
    is not checked here).
    """
    empty = FleetRepository(fleet=FleetManifest(), devices={}, groups={}, stacks={})
    rollout, findings = load_rollout(tree, empty)
    if not rollout.declared or findings:
        return rollout, None, findings
    path = next(
        (
            f"devices/{device_id}.{ext}"
            for ext in ("yaml", "yml")
            if tree.kind(f"devices/{device_id}.{ext}") != "missing"
        ),
        None,
    )
    labels: dict[str, str] = {}
    if path is not None:
        doc, more = read_manifest(tree, path, "device")
        if more:
            return rollout, None, more
        labels = text_map(doc.get("labels") if isinstance(doc, LineDict) else None)
    return rollout, rollout.wave_of(labels), []
