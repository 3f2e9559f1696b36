"""The repository's side of the fleet view: every device id and its labels.

The fleet view needs only ``devices/<id>.yaml`` → ``labels``, not the validated fleet:
loading and schema-checking every manifest of a 10,000-device repository took 9 s, reading
just the device files with the same hardened YAML parser takes well under one. A device
whose file has a problem is still a device of the fleet: it is listed (without labels)
with one problem line pointing at ``fleetgate validate``, never silently left out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from reconciler.errors import ManifestError
from reconciler.fleet import labelcache
from reconciler.fleet.reports import DEVICE_ID, shown
from reconciler.manifests.repository import text_map
from reconciler.manifests.tree import RepoTree, TreeEscape
from reconciler.manifests.yamlio import MAX_MANIFEST_BYTES, parse_yaml
from reconciler.workers import map_forked

_SUFFIXES = (".yaml", ".yml")


def _read(tree: RepoTree, path: str, entry: os.DirEntry[str] | None) -> bytes:
    """The bytes of a device file: a plain file in the real ``devices`` folder is read
    directly (resolving 10,000 paths was most of the time); a symlink goes through the
    tree, which refuses one leading outside the repository."""
    if entry is not None and not entry.is_symlink():
        if not entry.is_file(follow_symlinks=False):
            raise _NotAFile
        size = entry.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise _TooLarge
        return _read_path(entry.path, size)
    kind = tree.kind(path)
    if kind == "outside":
        raise TreeEscape(path)
    if kind != "file":
        raise _NotAFile
    if tree.size(path) > MAX_MANIFEST_BYTES:
        raise _TooLarge
    return tree.read_bytes(path)


def _read_path(path: str, size: int) -> bytes:
    """The bytes of ``path`` (about ``size`` long), at most ``MAX_MANIFEST_BYTES``; plain
    ``os`` calls, as a ``Path`` per file was half the time of reading 10,000 cached ones."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        parts: list[bytes] = []
        total = 0
        while chunk := os.read(descriptor, size + 1 if not parts else 65536):
            total += len(chunk)
            if total > MAX_MANIFEST_BYTES:
                raise _TooLarge
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(descriptor)


class _TooLarge(Exception):
    pass


class _NotAFile(Exception):
    pass


def _content(tree: RepoTree, path: str, entry: os.DirEntry[str] | None) -> bytes | str:
    """The bytes of a device file, or one problem line."""
    try:
        return _read(tree, path, entry)
    except _TooLarge:
        return f"{path}: larger than {MAX_MANIFEST_BYTES} bytes"
    except _NotAFile:
        return f"{path}: not a regular file"
    except TreeEscape:
        return f"{path}: a symlink leading outside the repository"
    except OSError as e:
        return f"{path}: cannot read: {e.strerror}"


def _labels(path: str, data: bytes) -> tuple[dict[str, str], str]:
    """The labels of one device file, or none and one problem line."""
    try:
        document = parse_yaml(data, path)
    except ManifestError as e:
        return {}, str(e.findings[0]) if e.findings else f"{path}: not readable YAML"
    if document is None:
        return {}, ""
    if not isinstance(document, Mapping):
        return {}, f"{path}:1: a device manifest is a mapping"
    labels = document.get("labels")
    if labels is not None and not isinstance(labels, Mapping):
        return {}, f"{path}: labels is not a mapping"
    return text_map(labels), ""


def _entries(tree: RepoTree) -> dict[str, os.DirEntry[str]]:
    """The entries of ``devices/`` when it is a real folder inside the tree (else none:
    every file then goes through the tree's checks)."""
    if tree.kind("devices") != "dir" or (tree.root / "devices").is_symlink():
        return {}
    try:
        with os.scandir(tree.root / "devices") as scan:
            return {entry.name: entry for entry in scan}
    except OSError:
        return {}


def fleet_devices(
    tree: RepoTree, cache: Path | None = None
) -> tuple[dict[str, dict[str, str]], tuple[str, ...]]:
    """``{device id: labels}`` of ``devices/*.yaml`` and one problem line per bad file
    (such a device is listed without labels; a file name that is no device id is skipped).
    With ``cache`` (:mod:`reconciler.fleet.labelcache`), a file read before with the same
    bytes is not parsed again; many files that are not are parsed by forked workers
    (:mod:`reconciler.workers`)."""
    problems: list[str] = []
    entries = _entries(tree)
    files: dict[str, str] = {}
    for name in tree.list_dir("devices"):
        stem, dot, ext = name.rpartition(".")
        if not dot or f".{ext}" not in _SUFFIXES or stem.startswith("."):
            continue
        path = f"devices/{name}"
        if not DEVICE_ID.match(stem):
            problems.append(f"{shown(path)}: {shown(stem)!r} is not a device id; skipped")
        elif stem in files:
            problems.append(f"{path}: a second file for device {stem!r}; skipped")
        else:
            files[stem] = name
    known = labelcache.load(cache) if cache is not None else {}
    found: dict[str, tuple[dict[str, str], str]] = {}
    fresh: dict[str, Mapping[str, str]] = {}
    parse: list[tuple[str, str, bytes, str]] = []  # (device, path, bytes, digest): not cached
    for device, name in files.items():
        path = f"devices/{name}"
        data = _content(tree, path, entries.get(name))
        if isinstance(data, str):
            found[device] = {}, data
            continue
        key = labelcache.digest(data)
        cached = labelcache.labels_of(known.get(key))
        if cached is None:
            parse.append((device, path, data, key))
        else:
            found[device], fresh[key] = (cached, ""), cached
    parsed = map_forked(lambda item: _labels(item[1], item[2]), parse)
    for (device, _, _, key), (labels, problem) in zip(parse, parsed, strict=True):
        found[device] = labels, problem
        if not problem:
            fresh[key] = labels
    if cache is not None and parse:
        labelcache.save(cache, fresh, known)
    devices: dict[str, dict[str, str]] = {}
    for device in files:
        labels, problem = found[device]
        devices[device] = labels
        if problem:
            problems.append(
                f"{shown(problem, 200)}; listed without labels (see fleetgate validate)"
            )
    return devices, tuple(problems)
