"""`fleetgate bundle create | import`: signed offline updates (air-gapped sites, USB sticks).

``create --repo PATH --ref REF --out FILE [--sign-key KEY] [--since REV|PREVIOUS.fgb]
[--images [--device ID ...|--selector k=v ...]]`` writes one file: a Git bundle of REF,
a manifest and an SSH signature (see :mod:`reconciler.source.bundle_format`). With
``--images`` it also carries, from the local engine, every image the selected devices
(default: all) need at REF, for each device's ``arch``; ``--since`` naming a previous
bundle file also leaves out the layers that bundle listed
(:mod:`reconciler.source.bundle_images`).

``import FILE --state-dir DIR --allowed-signers FILE [--repo URL] [--device ID]``
verifies it, loads its images (those for ``--device``, else all) into the engine
(``--docker-host``) and stores the revision in the mirror the agent reads
(``<state-dir>/cache``), so the agent converges from it as from a remote. ``--repo``
is the agent's configured repository (default: a device updated only from bundles);
``--device`` also prints what the bundle changes on that device. Refusals are one line
that starts with the bundle's file name, exit 1; nothing changes then (the file's size,
entry count, names, types and sizes are checked before anything is read or created;
see :mod:`reconciler.source.bundle_format`).

JSON (``--output json``): create ``{"file", "ref", "revision", "base", "createdAt",
"bundleSha256", "signed"}``; import ``{"revision", "ref", "previous", "signer",
"createdAt", "importedAt", "unchanged"}``.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.cli import EXIT_OK, add_output_flag
from reconciler.cli.impact import device_lines, when
from reconciler.cli.output import emit
from reconciler.errors import ManifestError, UsageError
from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree
from reconciler.model import DesiredState
from reconciler.render.device import DEFAULT_STATE_DIR, render_device
from reconciler.review.impact import compare_device
from reconciler.source import open_source
from reconciler.source.bundle import BUNDLE_REPO, create_bundle, import_bundle
from reconciler.source.bundletar import read_manifest


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bundle",
        help="signed offline updates: create a bundle file, import one",
        description="Carry fleet revisions to devices without network access.",
    )
    sub = parser.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="write a signed bundle of one ref")
    create.add_argument("--repo", default=".", help="local clone (default: .)")
    create.add_argument(
        "--ref", required=True, help="branch or tag to carry (40 hex digits are a commit: refused)"
    )
    create.add_argument("--out", required=True, type=Path, help="bundle file to write")
    create.add_argument("--sign-key", type=Path, help="SSH private key to sign with")
    create.add_argument(
        "--since",
        help="only history after this commit, or after a previous bundle FILE "
        "(then also only the image layers that bundle did not list)",
    )
    create.add_argument(
        "--images", action="store_true", help="also carry the images the devices need"
    )
    create.add_argument(
        "--device", action="append", default=[], help="with --images: only this device"
    )
    create.add_argument(
        "--from-registry",
        action="store_true",
        help="with --images: fetch each image from its registry (multi-arch: each device's "
        "platform) instead of the local engine",
    )
    create.add_argument(
        "--selector", action="append", default=[], help="with --images: devices with label k=v"
    )
    add_output_flag(create)
    create.set_defaults(handler=run_create)
    imp = sub.add_parser("import", help="verify a bundle and make it available to the agent")
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument("--state-dir", type=Path, default=Path(DEFAULT_STATE_DIR))
    imp.add_argument("--allowed-signers", required=True, type=Path, help="SSH allowed signers")
    imp.add_argument("--repo", default=BUNDLE_REPO, help="the agent's repository (its mirror)")
    imp.add_argument(
        "--device", help="load this device's images; also show what the bundle changes on it"
    )
    imp.add_argument("--docker-host", default=None, help="engine URL (default: DOCKER_HOST)")
    add_output_flag(imp)
    imp.set_defaults(handler=run_import)


def run_create(args: argparse.Namespace) -> int:
    if not Path(args.repo).is_dir():
        raise UsageError(f"--repo {args.repo}: not a folder; pass a local clone")
    if (args.device or args.selector or args.from_registry) and not args.images:
        raise UsageError("--device and --selector choose whose images to carry; add --images")
    since, previous = args.since, None
    if since is not None and Path(since).is_file():
        previous = read_manifest(Path(since))
        since = previous.revision
    images = None
    if args.images:
        from reconciler.cli.bundle_images import wanted_images  # noqa: PLC0415  # only here

        images = wanted_images(Path(args.repo), args.ref, args.device, args.selector)
    manifest = create_bundle(
        Path(args.repo),
        args.ref,
        args.out,
        datetime.now(UTC),
        sign_key=args.sign_key,
        since=since,
        images=images,
        previous=previous,
        from_registry=args.from_registry,
    )
    if args.output == "json":
        document = {
            "file": str(args.out),
            "ref": manifest.ref,
            "revision": manifest.revision,
            "base": manifest.base,
            "createdAt": manifest.created_at,
            "bundleSha256": manifest.bundle_sha256,
            "signed": args.sign_key is not None,
            "images": [image.to_json() for image in manifest.images],
            "blobs": len(manifest.blobs),
            "omitted": len(manifest.omitted),
        }
        emit(document)
    else:
        signed = "signed" if args.sign_key else "UNSIGNED (devices will refuse it)"
        since = f" since {manifest.base[:12]}" if manifest.base else ""
        lines = [f"wrote {args.out}: {manifest.ref} at {manifest.revision}{since}, {signed}"]
        lines += [
            f"  image {image.ref} ({image.platform}) for {', '.join(image.devices)}"
            for image in manifest.images
        ]
        if manifest.images:
            size = sum(manifest.blobs.values())
            lines.append(
                f"  {len(manifest.blobs)} blobs, {size} bytes"
                f" ({len(manifest.omitted)} layers left out: the previous bundle had them)"
            )
        emit(lines)
    return EXIT_OK


def _state(repo: str, cache: Path, sha: str | None, device: str) -> DesiredState | None:
    if sha is None:
        return None
    checkout = open_source(repo, cache, ref=sha)
    fleet, _ = load_repository(RepoTree(checkout.root), sha)
    if device not in fleet.devices:
        return None
    return render_device(fleet, RepoTree(checkout.root), device).state


class _Engine:
    """The Docker engine, imported only when a bundle's images are loaded (the docker
    library costs ~0.4 s at start, and most imports carry no images)."""

    def __init__(self, docker_host: str | None) -> None:
        self.docker_host = docker_host

    def load_images(self, archive: Path, platform: str) -> None:
        from reconciler.engine.docker import DockerEngine  # noqa: PLC0415  # see above

        DockerEngine(self.docker_host).load_images(archive, platform)


def run_import(args: argparse.Namespace) -> int:
    cache = args.state_dir / "cache"
    now = datetime.now(UTC)
    result = import_bundle(
        args.file,
        cache,
        args.allowed_signers,
        now,
        repo=args.repo,
        loader=_Engine(args.docker_host),
        device=args.device,
    )
    if args.output == "json":
        document = {
            "revision": result.revision,
            "ref": result.ref,
            "previous": result.previous,
            "signer": result.signer,
            "createdAt": result.created_at,
            "importedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "unchanged": result.unchanged,
        }
        emit(document)
    else:
        state = "already imported" if result.unchanged else "imported"
        emit([f"{state} {result.ref} at {result.revision} (signed by {result.signer})"])
    if args.device and args.output != "json":
        try:
            before = _state(args.repo, cache, result.previous, args.device)
            after = _state(args.repo, cache, result.revision, args.device)
        except ManifestError as e:
            raise ManifestError(e.findings) from None
        impact = compare_device(before, after, now)
        if impact is None:
            emit([f"device {args.device}: no change"])
        else:
            emit([f"device {args.device} {impact.kind} ({when(impact)})", *device_lines(impact)])
    return EXIT_OK
