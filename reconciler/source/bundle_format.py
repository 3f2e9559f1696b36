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

Limits, all checked before any member's content is read and before anything is written
(a hostile file dropped into a watch folder costs a few 512-byte reads, whatever its
size or member count): the file is at most :data:`MAX_FILE` bytes (``stat`` before it is
opened); the tar is read header by header with :func:`parse_header` (plain USTAR only:
pax / GNU extension headers, whose payload would be read into memory, are refused), at
most :data:`MAX_MEMBERS` entries; a name must be one of the three above, so absolute
names, ``..``, control characters (NUL included) and names longer than
:data:`MAX_NAME` are refused, each with its own reason; each member is at most its
:data:`LIMITS` size, and its data must lie inside the file (else: truncated).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import SignatureError, SourceError

FORMAT = "fleetgate-bundle/1"
FORMAT_IMAGES = "fleetgate-bundle/2"
"""A bundle that carries images (fleetgate before images refuses it by its format)."""
NAMESPACE = "fleetgate-bundle"
MANIFEST = "manifest.json"
GIT_BUNDLE = "repo.bundle"
SIGNATURE = "manifest.json.sig"
OCI_LAYOUT_FILE = "oci-layout"
INDEX = "index.json"
LIMITS = {
    MANIFEST: 1024 * 1024,  # lists every blob of the images it carries
    SIGNATURE: 64 * 1024,
    GIT_BUNDLE: 4 * 1024**3,
    OCI_LAYOUT_FILE: 1024,
    INDEX: 1024 * 1024,
}
BLOB = re.compile(r"^blobs/sha256/[0-9a-f]{64}$")
"""Image blobs (OCI layout): the name is the SHA-256 of the content."""
MAX_BLOB = 4 * 1024**3
MAX_BLOBS = 2000
MAX_IMAGE_BYTES = 32 * 1024**3
"""All blobs of one bundle together."""
MAX_FILE = sum(LIMITS.values()) + MAX_IMAGE_BYTES + (len(LIMITS) + MAX_BLOBS) * 2 * 512
MAX_MEMBERS = len(LIMITS) + MAX_BLOBS
"""Entries a bundle may hold; reading stops at the next header."""
MAX_NAME = 100
"""Longest member name (the USTAR name field); fleetgate's own names are far shorter."""
BLOCK = 512

_KINDS = {b"0": "file", b"\0": "file", b"5": "directory", b"2": "symlink"}
_KINDS |= {b"1": "hard link", b"3": "device", b"4": "device", b"6": "fifo"}
_KINDS |= {b"x": "pax header", b"g": "pax header", b"L": "GNU long name", b"K": "GNU long name"}
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_WHAT_TO_DO = "only a file made by fleetgate bundle create is accepted; create it again"

_SHA = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_REF = re.compile(r"^refs/(heads|tags)/[^\x00-\x20~^:?*\[\\]+$")


@dataclass(frozen=True, slots=True)
class BundleImage:
    """One image the bundle carries: for which devices, and its OCI manifest blob."""

    ref: str
    platform: str  # "linux/amd64", "linux/arm/v7"
    manifest: str  # hex SHA-256 of its OCI manifest blob
    devices: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "platform": self.platform, "manifest": self.manifest,
                "devices": list(self.devices)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class BundleManifest:
    """The signed manifest. With images: every blob in the bundle by digest and size
    (``blobs``), the layers a ``--since`` bundle left out because the previous bundle
    carried them (``omitted``) and the SHA-256 of ``index.json``."""

    ref: str  # full ref name, e.g. refs/heads/main
    revision: str  # full commit SHA the ref points to (peeled)
    created_at: str  # RFC 3339 UTC
    bundle_sha256: str
    bundle_size: int
    base: str | None = None  # commit the bundle's history starts after (--since)
    images: tuple[BundleImage, ...] = ()
    blobs: Mapping[str, int] = field(default_factory=dict)
    omitted: Mapping[str, int] = field(default_factory=dict)
    index_sha256: str | None = None

    @property
    def format(self) -> str:
        return FORMAT_IMAGES if self.images else FORMAT

    def to_bytes(self) -> bytes:
        document: dict[str, Any] = {
            "format": self.format,
            "ref": self.ref,
            "revision": self.revision,
            "base": self.base,
            "createdAt": self.created_at,
            "bundleSha256": self.bundle_sha256,
            "bundleSize": self.bundle_size,
        }
        if self.images:
            document |= {
                "images": [image.to_json() for image in self.images],
                "blobs": dict(self.blobs),
                "omitted": dict(self.omitted),
                "indexSha256": self.index_sha256,
            }
        return (json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n").encode()


@dataclass(frozen=True, slots=True)
class Member:
    """A tar member as the checks see it."""

    name: str
    type: str  # "file", "dir", "symlink", "hardlink", "device", "other"
    size: int


def shown(name: str) -> str:
    """A member name as it may be printed: quoted, control and bidi characters escaped."""
    return ascii(name[:80]) + ("..." if len(name) > 80 else "")


def parse_header(block: bytes, index: int) -> Member | None:
    """The member one 512-byte USTAR header describes; ``None`` for the end-of-archive block.

    Refuses (one line) a damaged header, a name that is not a plain relative one
    (absolute, ``..``, control characters including a NUL inside the name field, too
    long, not UTF-8) and any entry that is not a known regular file. ``index`` counts
    entries from 0 and is only used in messages.
    """
    if len(block) != BLOCK:
        raise SourceError("bundle is truncated (it ends inside a tar header); copy it again")
    if not any(block):
        return None
    stored = block[148:156].split(b"\0", 1)[0].strip(b" ")
    actual = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if not re.fullmatch(rb"[0-7]{1,8}", stored) or int(stored, 8) != actual:
        raise SourceError(f"bundle holds a damaged tar header (entry {index + 1}); {_WHAT_TO_DO}")
    kind = _KINDS.get(block[156:157], "special entry")
    magic = block[257:263]
    prefix = block[345:500] if magic == b"ustar\0" else b""
    name = _member_name(block[0:100], prefix, index)
    size_field = block[124:136].split(b"\0", 1)[0].strip(b" ")
    if not re.fullmatch(rb"[0-7]{1,12}", size_field):
        raise SourceError(
            f"bundle holds an entry {shown(name)} with an unreadable size (not a plain tar); "
            f"{_WHAT_TO_DO}"
        )
    return Member(name, kind, int(size_field, 8))


def _member_name(field: bytes, prefix: bytes, index: int) -> str:
    raw = field.rstrip(b"\0")
    head = prefix.rstrip(b"\0")
    if head:
        raw = head + b"/" + raw
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(
            f"bundle holds an entry whose name is not UTF-8 ({raw[:80]!a}); {_WHAT_TO_DO}"
        ) from None
    if _CONTROL.search(name):
        raise SourceError(
            f"bundle holds an entry {shown(name)} with a control character (NUL included) "
            "in its name; "
            f"{_WHAT_TO_DO}"
        )
    if name.startswith("/"):
        raise SourceError(
            f"bundle holds an entry {shown(name)} with an absolute name; {_WHAT_TO_DO}"
        )
    if ".." in name.split("/"):
        raise SourceError(
            f"bundle holds an entry {shown(name)} with '..' in its name; {_WHAT_TO_DO}"
        )
    if len(name) > MAX_NAME:
        raise SourceError(
            f"bundle holds an entry {shown(name)} with a name longer than {MAX_NAME} "
            "characters; "
            f"{_WHAT_TO_DO}"
        )
    return name


def check_member(member: Member, seen: set[str]) -> None:
    """Refuse one entry unless it is a known regular file, seen once, within its limit."""
    if member.type in ("pax header", "GNU long name"):
        raise SourceError(f"bundle holds a {member.type} (not a plain USTAR tar); {_WHAT_TO_DO}")
    blob = BLOB.match(member.name) is not None
    if member.name not in LIMITS and not blob:
        raise SourceError(f"bundle holds an unexpected entry {shown(member.name)}; {_WHAT_TO_DO}")
    if member.type != "file":
        raise SourceError(
            f"bundle entry {member.name} is a {member.type}, not a file; {_WHAT_TO_DO}"
        )
    if member.name in seen:
        raise SourceError(f"bundle holds {member.name} twice; it was tampered with")
    limit = MAX_BLOB if blob else LIMITS[member.name]
    if member.size > limit:
        raise SourceError(
            f"bundle entry {member.name} is {member.size} bytes, larger than its limit of "
            f"{limit} bytes; {_WHAT_TO_DO}"
        )
    seen.add(member.name)


def check_complete(seen: set[str]) -> None:
    """All three members were present (the signature's absence is a signature refusal)."""
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
    if not isinstance(document, dict) or document.get("format") not in (FORMAT, FORMAT_IMAGES):
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
    manifest = BundleManifest(ref, revision, created, digest, size, base)
    if document["format"] == FORMAT_IMAGES:
        return _with_images(manifest, document)
    return manifest


_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")
_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _with_images(manifest: BundleManifest, document: Mapping[str, Any]) -> BundleManifest:
    images, blobs = document.get("images"), document.get("blobs")
    omitted, index = document.get("omitted"), document.get("indexSha256")
    if not isinstance(images, list) or not images:
        raise SourceError("bundle manifest: images must be a non-empty list")
    parsed = tuple(_image(entry) for entry in images)
    sizes = [_blob_sizes(blobs, "blobs"), _blob_sizes(omitted, "omitted")]
    if len(sizes[0]) > MAX_BLOBS:
        raise SourceError(f"bundle manifest lists more than {MAX_BLOBS} blobs")
    if not isinstance(index, str) or not _HEX64.match(index):
        raise SourceError("bundle manifest: indexSha256 is not a SHA-256 hex digest")
    return BundleManifest(
        manifest.ref, manifest.revision, manifest.created_at, manifest.bundle_sha256,
        manifest.bundle_size, manifest.base, parsed, sizes[0], sizes[1], index,
    )  # fmt: skip


def _image(entry: Any) -> BundleImage:
    if not isinstance(entry, dict):
        raise SourceError("bundle manifest: an image entry is not an object")
    ref, platform = entry.get("ref"), entry.get("platform")
    digest, devices = entry.get("manifest"), entry.get("devices")
    if not isinstance(ref, str) or not ref or len(ref) > 255 or _CONTROL.search(ref):
        raise SourceError("bundle manifest: an image has no valid ref")
    if not isinstance(platform, str) or not _PLATFORM.match(platform):
        raise SourceError(f"bundle manifest: image {shown(ref)} has no valid platform")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise SourceError(f"bundle manifest: image {shown(ref)} has no manifest digest")
    if not isinstance(devices, list) or not all(
        isinstance(d, str) and _DEVICE.match(d) for d in devices
    ):
        raise SourceError(f"bundle manifest: image {shown(ref)} has an invalid device list")
    return BundleImage(ref, platform, digest, tuple(devices))


def _blob_sizes(value: Any, key: str) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and _HEX64.match(k) and isinstance(v, int)
        and not isinstance(v, bool) and 0 <= v <= MAX_BLOB
        for k, v in value.items()
    ):  # fmt: skip
        raise SourceError(f"bundle manifest: {key} must map SHA-256 hex digests to sizes")
    return dict(value)


def check_content(manifest: BundleManifest, sha256: str, size: int) -> None:
    """The Git bundle must be exactly the one the signed manifest names."""
    if size != manifest.bundle_size:
        raise SourceError(
            f"Git bundle is {size} bytes but its manifest says {manifest.bundle_size}; "
            "the file is truncated or was tampered with"
        )
    if sha256 != manifest.bundle_sha256:
        raise SourceError("Git bundle does not match its signed manifest; it was tampered with")
