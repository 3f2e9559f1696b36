"""Images in bundles: gather them at ``create``, verify and load them at ``import``.

**Create** (:func:`gather_images`): every wanted image (reference + the platform its
devices need) is taken from the local engine with the ``docker`` command (``docker
image inspect`` checks its platform, ``docker save`` writes it) and converted to OCI
blobs (:mod:`reconciler.source.oci`). The local engine holds one platform per tag: a
device whose architecture differs from the local image's is refused with the command
that fetches the right one (``docker pull --platform``). With a previous bundle
(``--since PREVIOUS.fgb``) the delta is decided by that bundle's *signed manifest*:
every layer blob it listed (carried or itself omitted) is left out and listed under
``omitted``; configs and OCI manifests (small) are always carried. A device that
imported the previous bundle has those layers in its engine.

**Import** (:func:`verify_images`, then :func:`load_images`): before anything is
loaded, every blob in the bundle must be one the signed manifest lists, with its size
and SHA-256 (tampered, truncated), every listed blob must be present (missing image),
``index.json`` must be the signed one, each image's config must have the platform the
manifest names. Only then are the images of this device written as a docker-archive
tar and loaded through the engine port (``Runtime.load_images``: no registry contact),
which refuses a platform the engine cannot run (wrong architecture).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reconciler.errors import EngineError, SourceError
from reconciler.source import oci
from reconciler.source.bundle_format import (
    INDEX,
    OCI_LAYOUT_FILE,
    BundleImage,
    BundleManifest,
    shown,
)
from reconciler.source.registry import fetch_image

ARCH_PLATFORMS = {
    "amd64": "linux/amd64",
    "arm64": "linux/arm64",
    "armv7": "linux/arm/v7",
    "armv6": "linux/arm/v6",
    "386": "linux/386",
}
"""The platform an ``arch`` of fleet.yaml names."""
TIMEOUT = 600.0


class ImageLoader(Protocol):
    """What import needs of the engine (``reconciler.engine.port.Runtime`` has it)."""

    def load_images(self, archive: Path, platform: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Wanted:
    """One image a set of devices needs; ``platform`` ``None``: devices declare no arch."""

    ref: str
    platform: str | None
    devices: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Gathered:
    images: tuple[BundleImage, ...]
    blobs: dict[str, int]  # carried: digest -> size
    omitted: dict[str, int]
    index: bytes


def same_platform(have: str, want: str) -> bool:
    """``linux/arm64/v8`` runs where ``linux/arm64`` is wanted; 32-bit arm compares variants."""
    h, w = have.split("/"), want.split("/")
    if h[:2] != w[:2]:
        return False
    return h[1] != "arm" or len(w) < 3 or h[2:3] == w[2:3]


# ------------------------------------------------------------------ create


def _docker(args: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise SourceError("--images needs the docker command (Debian: docker.io)") from None
    except subprocess.TimeoutExpired:
        raise SourceError(f"docker {args[0]} did not finish within {TIMEOUT:.0f}s") from None


def _local_platform(ref: str) -> str:
    done = _docker(["image", "inspect", "--format", "{{.Os}}/{{.Architecture}}/{{.Variant}}",
                    "--", ref])  # fmt: skip
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["not found"])[-1]
        if "No such image" in why:
            raise SourceError(
                f"image {shown(ref)} is not in the local engine; pull it first (docker pull {ref})"
            )
        raise SourceError(f"cannot inspect image {shown(ref)}: {shown(why)}")
    return done.stdout.strip().rstrip("/")


def gather_images(
    wanted: Iterable[Wanted],
    work: Path,
    previous: BundleManifest | None,
    *,
    from_registry: bool = False,
) -> Gathered:
    """Every wanted image, from the local engine (or from its registry: see
    :mod:`reconciler.source.registry`), into ``work`` as an OCI layout."""
    blobs_dir = work / "blobs"
    known = {} if previous is None else {**previous.blobs, **previous.omitted}
    images: list[BundleImage] = []
    carried: dict[str, int] = {}
    omitted: dict[str, int] = {}
    layouts: list[oci.Image] = []
    for want in sorted(wanted, key=lambda w: (w.ref, w.platform or "")):
        if "@" in want.ref:
            raise SourceError(
                f"image {shown(want.ref)}: a digest reference cannot be carried (docker load "
                "names images by tag); reference it by tag in the stack"
            )
        if from_registry:
            image = fetch_image(want.ref, want.platform, blobs_dir, same_platform)
        else:
            image = _saved(want, work, blobs_dir)
        layouts.append(image)
        images.append(BundleImage(want.ref, image.platform, image.manifest.digest, want.devices))
        for blob in (image.manifest, image.config):
            carried[blob.digest] = blob.size
        for layer in image.layers:
            (omitted if layer.digest in known else carried)[layer.digest] = layer.size
    for digest in omitted:
        if digest not in carried:
            oci.blob_path(blobs_dir, digest).unlink(missing_ok=True)
    omitted = {d: s for d, s in omitted.items() if d not in carried}
    index = oci.index_document(layouts)
    return Gathered(tuple(images), carried, omitted, index)


def _saved(want: Wanted, work: Path, blobs_dir: Path) -> oci.Image:
    """``want`` from the local engine (``docker save``), its platform checked."""
    have = _local_platform(want.ref)
    if want.platform is not None and not same_platform(have, want.platform):
        raise SourceError(
            f"image {shown(want.ref)} in the local engine is {have}, but device "
            f"{want.devices[0]} needs {want.platform}; fetch that one first "
            f"(docker pull --platform {want.platform} {want.ref})"
        )
    saved = work / "saved.tar"
    done = _docker(["save", "-o", str(saved), "--", want.ref])
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise SourceError(f"cannot save image {shown(want.ref)}: {shown(why)}")
    image = oci.from_docker_archive(saved, want.ref, blobs_dir)
    saved.unlink()
    return image


# ------------------------------------------------------------------ import


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify_images(manifest: BundleManifest, work: Path) -> tuple[oci.Image, ...]:
    """Check every image member against the signed manifest (see module doc); no I/O
    but reading ``work``. Returns the images, their blobs verified."""
    blobs_dir = work / "blobs" / "sha256"
    present = {p.name for p in blobs_dir.iterdir()} if blobs_dir.is_dir() else set()
    layout_files = [name for name in (INDEX, OCI_LAYOUT_FILE) if (work / name).exists()]
    if not manifest.images:
        if present or layout_files:
            raise SourceError(
                "bundle holds image entries its signed manifest does not list; it was tampered with"
            )
        return ()
    for name in sorted(present - set(manifest.blobs)):
        raise SourceError(
            f"bundle holds blob sha256:{name[:12]} that its signed manifest does not list; "
            "it was tampered with"
        )
    for digest, size in sorted(manifest.blobs.items()):
        path = blobs_dir / digest
        if digest not in present:
            raise SourceError(
                f"bundle lacks blob sha256:{digest[:12]} that its signed manifest lists "
                "(an image is missing or the file is truncated); copy it again"
            )
        if path.stat().st_size != size:
            raise SourceError(
                f"image blob sha256:{digest[:12]} is {path.stat().st_size} bytes but the "
                f"signed manifest says {size}; the file is truncated or was tampered with"
            )
        if _sha256(path) != digest:
            raise SourceError(
                f"image blob sha256:{digest[:12]} does not match its digest; it was tampered with"
            )
    if INDEX not in layout_files or OCI_LAYOUT_FILE not in layout_files:
        raise SourceError("bundle carries images without index.json or oci-layout; copy it again")
    if _sha256(work / INDEX) != manifest.index_sha256:
        raise SourceError("bundle index.json does not match its signed manifest; tampered with")
    return tuple(_image(manifest, entry, work / "blobs") for entry in manifest.images)


def _image(manifest: BundleManifest, entry: BundleImage, blobs: Path) -> oci.Image:
    if entry.manifest not in manifest.blobs:
        raise SourceError(f"image {shown(entry.ref)}: its manifest blob is not in the bundle")
    image = oci.read_image(
        blobs, entry.ref, entry.platform, oci.Blob(entry.manifest, manifest.blobs[entry.manifest])
    )
    if image.config.digest not in manifest.blobs:
        raise SourceError(f"image {shown(entry.ref)}: its config blob is not in the bundle")
    for layer in image.layers:
        if layer.digest not in manifest.blobs and layer.digest not in manifest.omitted:
            raise SourceError(
                f"image {shown(entry.ref)}: layer sha256:{layer.digest[:12]} is neither in "
                "the bundle nor listed as left out; it was tampered with"
            )
    try:
        config = json.loads(oci.blob_path(blobs, image.config.digest).read_bytes())
        platform = oci.platform_of(config)
    except (OSError, ValueError, AttributeError):
        raise SourceError(f"image {shown(entry.ref)}: its config is not JSON") from None
    if platform != entry.platform:
        raise SourceError(
            f"image {shown(entry.ref)} is {platform} but the manifest says {entry.platform}; "
            "it was tampered with"
        )
    return image


def for_device(
    manifest: BundleManifest, images: tuple[oci.Image, ...], device: str | None
) -> tuple[oci.Image, ...]:
    """The images ``device`` gets (all of them when no device is named)."""
    if device is None:
        return images
    chosen = tuple(
        image for image, entry in zip(images, manifest.images, strict=True)
        if device in entry.devices
    )  # fmt: skip
    if images and not chosen:
        raise SourceError(
            f"bundle carries images, but none for device {device}; create it with "
            f"--images --device {device}"
        )
    return chosen


def load_images(
    manifest: BundleManifest, images: Iterable[oci.Image], work: Path, loader: ImageLoader
) -> None:
    """Load ``images`` (verified) into the engine, one docker-archive per platform."""
    by_platform: dict[str, list[oci.Image]] = {}
    for image in images:
        by_platform.setdefault(image.platform, []).append(image)
    for n, (platform, group) in enumerate(sorted(by_platform.items())):
        archive = work / "load" / f"{n}.tar"
        archive.parent.mkdir(exist_ok=True)
        oci.write_docker_archive(group, work / "blobs", archive)
        try:
            loader.load_images(archive, platform)
        except EngineError as e:
            hint = (
                "; this device may lack layers a --since bundle left out: bring a full bundle"
                if manifest.omitted and "wrong architecture" not in str(e)
                else ""
            )
            raise SourceError(f"cannot load its images: {e}{hint}") from None
        finally:
            archive.unlink(missing_ok=True)


def wanted_summary(wanted: Mapping[tuple[str, str | None], list[str]]) -> tuple[Wanted, ...]:
    """``Wanted`` values from ``(ref, platform) -> devices``."""
    return tuple(Wanted(ref, platform, tuple(sorted(devs))) for (ref, platform), devs in
                 sorted(wanted.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")))  # fmt: skip
