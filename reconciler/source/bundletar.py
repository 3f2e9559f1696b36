"""Reading a bundle file: its tar checked header by header before any content is read.

:func:`scan_bundle` enforces every limit of :mod:`reconciler.source.bundle_format` (file size by
``stat`` before opening, at most ``MAX_MEMBERS`` entries, names, types, member sizes,
truncation) with a handful of 512-byte reads and writes nothing; :func:`copy_members`
then copies the checked entries into files whose names the importer chose. Python's
``tarfile`` is not used on purpose: it reads every header of the archive
(``getmembers``) and loads pax / GNU long-name payloads into memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import SourceError
from reconciler.source.bundle_format import (
    BLOCK,
    MANIFEST,
    MAX_FILE,
    MAX_MEMBERS,
    BundleManifest,
    check_complete,
    check_member,
    parse_header,
    parse_manifest,
)


@dataclass(frozen=True, slots=True)
class Entry:
    name: str  # one of the known member names
    offset: int  # where its data starts in the file
    size: int


def scan_bundle(file: Path) -> tuple[Entry, ...]:
    """The bundle's entries, checked header by header before any content is read.

    ``stat`` first (an oversized file is never opened), then at most
    :data:`MAX_MEMBERS` + 1 headers of 512 bytes each are read, skipping over member data
    with ``seek``; every limit of :mod:`reconciler.source.bundle_format` is checked here,
    so a hostile file costs a few small reads. Writes nothing.
    """
    try:
        size = file.stat().st_size
    except OSError as e:
        raise SourceError(f"cannot read it: {e.strerror}") from None
    if size > MAX_FILE:
        raise SourceError(
            f"the file is {size} bytes, larger than the limit of {MAX_FILE} bytes; "
            "carry a smaller bundle (use --since)"
        )
    if size == 0:
        raise SourceError("the file is empty; copy it again")
    entries: list[Entry] = []
    seen: set[str] = set()
    try:
        with file.open("rb") as f:
            while True:
                block = f.read(BLOCK)
                if not block:
                    break  # end of file at a header boundary: tolerated like tar does
                member = parse_header(block, len(entries))
                if member is None:
                    break
                if len(entries) >= MAX_MEMBERS:
                    raise SourceError(
                        f"bundle holds more than {MAX_MEMBERS} entries; only a file made by "
                        "fleetgate bundle create is accepted"
                    )
                check_member(member, seen)
                offset = f.tell()
                padded = -(-member.size // BLOCK) * BLOCK
                if offset + member.size > size:
                    raise SourceError(
                        f"bundle is truncated ({member.name} is cut short); copy it again"
                    )
                entries.append(Entry(member.name, offset, member.size))
                f.seek(offset + padded)
    except OSError as e:
        raise SourceError(f"cannot read it: {e.strerror}") from None
    check_complete(seen)
    return tuple(entries)


def copy_members(file: Path, entries: tuple[Entry, ...], work: Path) -> None:
    """Copy each scanned entry into ``work`` under its checked name (one of LIMITS or
    ``blobs/sha256/<64 hex>``: no other name passed :func:`scan_bundle`)."""
    try:
        with file.open("rb") as f:
            for entry in entries:
                f.seek(entry.offset)
                left = entry.size
                (work / entry.name).parent.mkdir(parents=True, exist_ok=True)
                with (work / entry.name).open("wb") as target:
                    while left > 0:
                        chunk = f.read(min(left, 1 << 20))
                        if not chunk:
                            raise SourceError(
                                f"bundle is truncated ({entry.name} is cut short); copy it again"
                            )
                        target.write(chunk)
                        left -= len(chunk)
    except OSError as e:
        raise SourceError(f"cannot read it: {e.strerror}") from None


def read_manifest(file: Path) -> BundleManifest:
    """The manifest of a bundle file (``--since PREVIOUS``: the operator's own file)."""
    entries = scan_bundle(file)
    entry = next(e for e in entries if e.name == MANIFEST)
    with file.open("rb") as f:
        f.seek(entry.offset)
        return parse_manifest(f.read(entry.size))
