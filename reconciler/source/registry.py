"""Images for a bundle straight from a registry (HTTP API v2), the right platform each.

``bundle create --images --from-registry`` fetches every image from the registry its
reference names instead of the local engine: the manifest by tag (an OCI index or a
Docker manifest list is resolved to the entry of the device's platform: that is how a
multi-arch reference gives each device its own image), the config and the layer blobs
as the registry stores them (compressed; ``docker load`` decompresses them and checks
each layer against the config's diff ids). Every blob's digest is checked as it is
downloaded. Plain HTTP is used for ``127.0.0.1`` / ``localhost`` registries (as dockerd
does), HTTPS otherwise; no credentials (a private registry: pull into the local engine
and create from there).
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from reconciler.errors import SourceError
from reconciler.source import oci
from reconciler.source.bundle_format import shown

TIMEOUT = 120.0
MAX_MANIFEST = 4 * 1024 * 1024
_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        oci.MEDIA_MANIFEST,
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


def split_ref(ref: str) -> tuple[str, str, str]:
    """``(host, repository, tag)`` of ``host[:port]/repo[:tag]``; refuses a Hub name."""
    first, _, rest = ref.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost"):
        raise SourceError(
            f"image {shown(ref)} names no registry host; --from-registry needs "
            "host[:port]/repository:tag (or pull it and create from the local engine)"
        )
    if "@" in rest:
        raise SourceError(f"image {shown(ref)}: a digest reference cannot be tagged on load")
    repo, _, tag = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    return first, repo, tag or "latest"


def _url(host: str, path: str) -> str:
    plain = host.startswith(("127.0.0.1", "localhost"))
    return f"{'http' if plain else 'https'}://{host}/v2/{path}"


def _get(url: str, accept: str | None = None) -> tuple[Any, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)  # http(s) only
    except urllib.error.HTTPError as e:
        raise SourceError(f"registry answered {e.code} for {url}") from None
    except (urllib.error.URLError, OSError) as e:
        raise SourceError(f"cannot reach the registry for {url}: {e}") from None
    return response, str(response.headers.get("Content-Type", "")).split(";")[0]


def _document(host: str, repo: str, ref: str) -> tuple[bytes, str]:
    response, media = _get(_url(host, f"{repo}/manifests/{ref}"), _ACCEPT)
    with response:
        data: bytes = response.read(MAX_MANIFEST + 1)
    if len(data) > MAX_MANIFEST:
        raise SourceError(f"the manifest of {repo}:{ref} is larger than {MAX_MANIFEST} bytes")
    return data, media


def _blob(host: str, repo: str, blob: oci.Blob, blobs: Path) -> None:
    target = oci.blob_path(blobs, blob.digest)
    if target.exists():
        return
    response, _ = _get(_url(host, f"{repo}/blobs/sha256:{blob.digest}"))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(".download")
    h = hashlib.sha256()
    with response, partial.open("wb") as out:
        while chunk := response.read(1 << 20):
            h.update(chunk)
            out.write(chunk)
    if h.hexdigest() != blob.digest:
        partial.unlink()
        raise SourceError(f"blob sha256:{blob.digest[:12]} from {host} does not match its digest")
    partial.replace(target)


def fetch_image(ref: str, platform: str | None, blobs: Path, same: Any) -> oci.Image:
    """``ref`` for ``platform`` (``None``: a single-platform image as it is) into ``blobs``.

    ``same(have, want)`` compares platforms (``bundle_images.same_platform``).
    """
    host, repo, tag = split_ref(ref)
    data, media = _document(host, repo, tag)
    try:
        document = json.loads(data)
        if media in _INDEXES or document.get("mediaType") in _INDEXES:
            entries = document["manifests"]
            found = [
                e for e in entries
                if platform is None or same(oci.platform_of(e.get("platform") or {}), platform)
            ]  # fmt: skip
            if not found:
                have = ", ".join(oci.platform_of(e.get("platform") or {}) for e in entries)
                raise SourceError(f"image {shown(ref)} has no {platform} variant (it has {have})")
            data, media = _document(host, repo, str(found[0]["digest"]))
            document = json.loads(data)
        config = _descriptor(document["config"])
        layers = tuple(_descriptor(layer) for layer in document["layers"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SourceError(f"image {shown(ref)}: the registry's manifest is malformed") from None
    _blob(host, repo, config, blobs)
    for layer in layers:
        _blob(host, repo, layer, blobs)
    have = oci.platform_of(json.loads(oci.blob_path(blobs, config.digest).read_bytes()))
    if platform is not None and not same(have, platform):
        raise SourceError(f"image {shown(ref)} is {have}, not {platform}")
    manifest = oci.store(blobs, data)
    return oci.Image(ref, have, manifest, config, layers)


def _descriptor(value: Any) -> oci.Blob:
    digest, size = str(value["digest"]), int(value["size"])
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise ValueError("digest")
    return oci.Blob(digest[7:], size)
