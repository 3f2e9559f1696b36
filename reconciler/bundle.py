"""The offline bundle format: what a fleetgate bundle file holds and the checks on it (pure).

A bundle file is an uncompressed tar with exactly these regular-file members:

- ``manifest.json``: ``{"format": "fleetgate-bundle/1", "ref", "revision", "base",
  "createdAt", "bundleSha256", "bundleSize"}`` (canonical JSON, sorted keys);
- ``repo.bundle``: a Git bundle holding ``ref`` at ``revision`` (all history, or only
  what follows ``base`` when made with ``--since``);
- ``manifest.json.sig``: an SSH signature of ``manifest.json`` (``ssh-keygen -Y sign``,
  namespace ``fleetgate-bundle``). The manifest carries the SHA-256 of the Git bundle,
  so one signature covers both.

Nothing in the tar is ever extracted by its own name: members are checked against the
list above (no other names, no links, devices, directories or duplicates, size limits)
and copied into files whose names the importer chooses, so no member can write
outside the state directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reconciler.errors import SignatureError, SourceError

FORMAT = "fleetgate-bundle/1"
NAMESPACE = "fleetgate-bundle"
MANIFEST = "manifest.json"
GIT_BUNDLE = "repo.bundle"
SIGNATURE = "manifest.json.sig"
LIMITS = {MANIFEST: 64 * 1024, SIGNATURE: 64 * 1024, GIT_BUNDLE: 4 * 1024**3}
MAX_FILE = sum(LIMITS.values()) + 64 * 1024  # members plus tar headers and padding

_SHA = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_REF = re.compile(r"^refs/(heads|tags)/[^\x00-\x20~^:?*\[\\]+$")


@dataclass(frozen=True, slots=True)
class BundleManifest:
    ref: str  # full ref name, e.g. refs/heads/main
    revision: str  # full commit SHA the ref points to (peeled)
    created_at: str  # RFC 3339 UTC
    bundle_sha256: str
    bundle_size: int
    base: str | None = None  # commit the bundle's history starts after (--since)
    format: str = FORMAT

    def to_bytes(self) -> bytes:
        document = {
            "format": self.format,
            "ref": self.ref,
            "revision": self.revision,
            "base": self.base,
            "createdAt": self.created_at,
            "bundleSha256": self.bundle_sha256,
            "bundleSize": self.bundle_size,
        }
        return (json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n").encode()


@dataclass(frozen=True, slots=True)
class Member:
    """A tar member as the checks see it."""

    name: str
    type: str  # "file", "dir", "symlink", "hardlink", "device", "other"
    size: int


def check_members(members: Iterable[Member]) -> None:
    """Refuse any tar layout other than the three known regular files (one line why)."""
    seen: set[str] = set()
    for member in members:
        if member.name not in LIMITS:
            raise SourceError(
                f"bundle holds an unexpected entry {member.name[:80]!r}; "
                "only a file made by fleetgate bundle create is accepted"
            )
        if member.type != "file":
            raise SourceError(f"bundle entry {member.name} is a {member.type}, not a file")
        if member.name in seen:
            raise SourceError(f"bundle holds {member.name} twice; it was tampered with")
        if member.size > LIMITS[member.name]:
            raise SourceError(
                f"bundle entry {member.name} is larger than {LIMITS[member.name]} bytes"
            )
        seen.add(member.name)
    if MANIFEST not in seen or GIT_BUNDLE not in seen:
        raise SourceError("bundle is truncated or incomplete: manifest or Git bundle missing")
    if SIGNATURE not in seen:
        raise SignatureError("bundle is unsigned; create it with --sign-key")


def parse_manifest(data: bytes) -> BundleManifest:
    """The manifest's values; any malformed field is a :class:`SourceError`."""
    try:
        document: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise SourceError("bundle manifest is not JSON; the file is damaged") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise SourceError(f"bundle format {found!r} is not {FORMAT}; update fleetgate")
    ref, revision, base = document.get("ref"), document.get("revision"), document.get("base")
    digest, size, created = (
        document.get("bundleSha256"),
        document.get("bundleSize"),
        document.get("createdAt"),
    )
    if not isinstance(ref, str) or not _REF.match(ref):
        raise SourceError("bundle manifest: ref must be refs/heads/... or refs/tags/...")
    if not isinstance(revision, str) or not _SHA.match(revision):
        raise SourceError("bundle manifest: revision is not a full commit SHA")
    if base is not None and (not isinstance(base, str) or not _SHA.match(base)):
        raise SourceError("bundle manifest: base is not a full commit SHA")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise SourceError("bundle manifest: bundleSha256 is not a SHA-256 hex digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise SourceError("bundle manifest: bundleSize is not a byte count")
    if not isinstance(created, str):
        raise SourceError("bundle manifest: createdAt is missing")
    return BundleManifest(ref, revision, created, digest, size, base)


def check_content(manifest: BundleManifest, sha256: str, size: int) -> None:
    """The Git bundle must be exactly the one the signed manifest names."""
    if size != manifest.bundle_size:
        raise SourceError(
            f"Git bundle is {size} bytes but its manifest says {manifest.bundle_size}; "
            "the file is truncated or was tampered with"
        )
    if sha256 != manifest.bundle_sha256:
        raise SourceError("Git bundle does not match its signed manifest; it was tampered with")
