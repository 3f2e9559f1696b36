"""OCI image layouts inside bundles: from ``docker save``, back to a ``docker load`` stream.

A bundle's images are an OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/<hex>``): every image is an OCI manifest blob naming a config blob and
layer blobs; a blob shared by several images is stored once (its name is its digest).

- :func:`from_docker_archive` converts what ``docker save`` of Docker 20.10 writes (the
  legacy docker-archive: ``manifest.json``, ``<id>.json``, ``<dir>/layer.tar`` with
  uncompressed layers) into blobs: the layer tars as they are (their digest is the
  layer's diff id), the config json, and a new OCI manifest json.
- :func:`write_docker_archive` does the reverse from *verified* blobs: a docker-archive
  tar the engine loads with ``docker load`` (no registry contact). A layer blob that a
  delta bundle left out is named but not written: the engine skips a layer it already
  has before opening its file, and refuses the load when it does not.

Files only (no engine, no network); the docker-archive input comes from the local
engine the operator runs, the blobs written back out were checked against a signed
manifest by the caller.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import SourceError

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}\n'
REF_ANNOTATION = "org.opencontainers.image.ref.name"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Blob:
    digest: str  # 64 hex digits (sha256)
    size: int


@dataclass(frozen=True, slots=True)
class Image:
    """One image of a bundle: its reference, platform and the blobs that make it."""

    ref: str
    platform: str  # "linux/amd64", "linux/arm/v7"
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]


def blob_path(blobs: Path, digest: str) -> Path:
    return blobs / "sha256" / digest


def platform_of(config: Mapping[str, Any]) -> str:
    """``os/architecture[/variant]`` of an image config document."""
    parts = [str(config.get("os") or "linux"), str(config.get("architecture") or "unknown")]
    if config.get("variant"):
        parts.append(str(config["variant"]))
    return "/".join(parts)


def store(blobs: Path, data: bytes) -> Blob:
    digest = hashlib.sha256(data).hexdigest()
    path = blob_path(blobs, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return Blob(digest, len(data))


def _store_stream(blobs: Path, source: Any) -> Blob:
    """Copy a file object into the blob store, named by its digest."""
    (blobs / "sha256").mkdir(parents=True, exist_ok=True)
    partial = blobs / "sha256" / ".partial"
    h = hashlib.sha256()
    size = 0
    with partial.open("wb") as out:
        while chunk := source.read(1 << 20):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
    path = blob_path(blobs, h.hexdigest())
    if path.exists():
        partial.unlink()
    else:
        partial.replace(path)
    return Blob(h.hexdigest(), size)


def manifest_document(config: Blob, layers: Iterable[Blob]) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": f"sha256:{config.digest}",
                   "size": config.size},
        "layers": [
            {"mediaType": MEDIA_LAYER, "digest": f"sha256:{layer.digest}", "size": layer.size}
            for layer in layers
        ],
    }  # fmt: skip
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def from_docker_archive(archive: Path, ref: str, blobs: Path) -> Image:
    """The image ``ref`` of a ``docker save`` tar, its blobs written under ``blobs``."""
    try:
        with tarfile.open(archive) as tar:
            saved = json.loads(_member(tar, "manifest.json"))
            entry = next((e for e in saved if ref in (e.get("RepoTags") or ())), None)
            if entry is None and len(saved) == 1:
                entry = saved[0]
            if entry is None:
                raise SourceError(f"docker save did not write image {ref}")
            config_bytes = _member(tar, str(entry["Config"]))
            config = store(blobs, config_bytes)
            layers: list[Blob] = []
            for name in entry["Layers"]:
                handle = tar.extractfile(str(name))
                if handle is None:
                    raise SourceError(f"docker save wrote no layer {name} for {ref}")
                layers.append(_store_stream(blobs, handle))
    except (OSError, tarfile.TarError, ValueError, KeyError, TypeError) as e:
        raise SourceError(f"cannot read the saved image {ref}: {e}") from None
    diff_ids = json.loads(config_bytes).get("rootfs", {}).get("diff_ids", [])
    if [f"sha256:{layer.digest}" for layer in layers] != diff_ids:
        raise SourceError(f"the saved image {ref} has layers that do not match its config")
    manifest = store(blobs, manifest_document(config, layers))
    return Image(ref, platform_of(json.loads(config_bytes)), manifest, config, tuple(layers))


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    if handle is None:
        raise SourceError(f"docker save wrote no {name}")
    return handle.read()


def index_document(images: Iterable[Image]) -> bytes:
    """``index.json``: one entry per image, named by its reference, with its platform."""
    entries = []
    for image in images:
        os_name, arch, *variant = image.platform.split("/")
        platform = {"os": os_name, "architecture": arch} | (
            {"variant": variant[0]} if variant else {}
        )
        entries.append(
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": f"sha256:{image.manifest.digest}",
                "size": image.manifest.size,
                "platform": platform,
                "annotations": {REF_ANNOTATION: image.ref},
            }
        )
    document = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def read_image(blobs: Path, ref: str, platform: str, manifest: Blob) -> Image:
    """An image from its (verified) manifest blob; ``SourceError`` when it is malformed."""
    try:
        document = json.loads(blob_path(blobs, manifest.digest).read_bytes())
        config = _descriptor(document["config"])
        layers = tuple(_descriptor(layer) for layer in document["layers"])
    except (OSError, ValueError, KeyError, TypeError):
        raise SourceError(f"image {ref}: its OCI manifest is malformed") from None
    return Image(ref, platform, manifest, config, layers)


def _descriptor(value: Any) -> Blob:
    digest, size = value["digest"], value["size"]
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise ValueError("digest")
    if not _HEX64.match(digest[7:]) or not isinstance(size, int) or size < 0:
        raise ValueError("digest")
    return Blob(digest[7:], size)


def write_docker_archive(images: Iterable[Image], blobs: Path, out: Path) -> None:
    """A ``docker load`` tar of ``images`` from the blobs present under ``blobs``."""
    entries: list[dict[str, Any]] = []
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar:
        written: set[str] = set()

        def add(name: str, path: Path) -> None:
            if name not in written:
                tar.add(str(path), arcname=name, recursive=False)
                written.add(name)

        for image in images:
            add(f"{image.config.digest}.json", blob_path(blobs, image.config.digest))
            names = []
            for layer in image.layers:
                name = f"{layer.digest}/layer.tar"
                names.append(name)
                if blob_path(blobs, layer.digest).is_file():
                    add(name, blob_path(blobs, layer.digest))
            entries.append(
                {"Config": f"{image.config.digest}.json", "RepoTags": [image.ref], "Layers": names}
            )
        data = json.dumps(entries).encode()
        (out.parent / "manifest.json.load").write_bytes(data)
        tar.add(str(out.parent / "manifest.json.load"), arcname="manifest.json")
