"""Signed offline bundles: write one from a clone, import one into the agent's mirror.

:func:`create_bundle` writes the file described in :mod:`reconciler.source.bundle_format`.
:func:`import_bundle` is what ``fleetgate bundle import`` and the agent's ``watch``
folders call. In order, and refusing with one line at the first failure:

1. the file is a tar of the known members only, within size limits (no member is
   extracted by its own name, so nothing can land outside ``cache_dir``);
2. the signature verifies against ``allowedSigners`` (``ssh-keygen -Y find-principals``
   then ``-Y verify``, namespace ``fleetgate-bundle``): unsigned, unknown key and a
   changed manifest are refused with :class:`SignatureError`;
3. the Git bundle's size and SHA-256 equal the signed manifest's (truncated, tampered),
   and so does every image blob (:mod:`reconciler.source.bundle_images`);
4. ``git bundle verify`` in the mirror (a ``--since`` bundle needs its base commit);
5. the bundled ref is fetched to a temporary ref and must be the manifest's revision;
6. fast-forward only: the revision must descend from the previously imported one and
   from ``applied`` (the revision the device runs), else it is refused as older;
7. the device's images are loaded through the engine port; only then is the revision
   recorded (a refused load records nothing).

The mirror is the same bare repository :func:`reconciler.source.fetch.open_source`
uses for ``repo`` (``<cache_dir>/mirrors/<cache_key(repo)>.git``), and the imported
revision is kept at ``refs/fleetgate/imported``. ``open_source(repo, cache_dir,
ref=<revision>)`` then serves it without any network: the agent converges from a bundle
exactly as from a remote. On refusal no ref changes (objects a refused bundle brought
stay unreferenced until ``git gc``).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reconciler.errors import SignatureError, SourceError
from reconciler.source.bundle_format import (
    GIT_BUNDLE,
    INDEX,
    MANIFEST,
    NAMESPACE,
    OCI_LAYOUT_FILE,
    SIGNATURE,
    BundleManifest,
    check_content,
    parse_manifest,
)
from reconciler.source.bundle_images import (
    ImageLoader,
    Wanted,
    for_device,
    gather_images,
    load_images,
    verify_images,
)
from reconciler.source.bundletar import copy_members, scan_bundle
from reconciler.source.fetch import cache_key, init_mirror, mirror_lock
from reconciler.source.gitcmd import check, reason, run_git
from reconciler.source.oci import OCI_LAYOUT

BUNDLE_REPO = "bundle://offline"
"""The ``repo`` of a device that is only ever updated from bundles."""
IMPORTED_REF = "refs/fleetgate/imported"
_INCOMING_REF = "refs/fleetgate/incoming"
_SHA = re.compile(r"^[0-9a-f]{40}$")
TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class ImportResult:
    revision: str
    ref: str
    previous: str | None  # the revision imported before (None: first import)
    signer: str  # the allowed-signers principal that signed it
    created_at: str
    imported_at: datetime
    mirror: Path
    unchanged: bool = False  # the same revision was already imported


def mirror_path(cache_dir: Path, repo: str = BUNDLE_REPO) -> Path:
    return cache_dir / "mirrors" / f"{cache_key(repo)}.git"


# ------------------------------------------------------------------ create


def _git(args: list[str], cwd: Path, what: str) -> str:
    return check(run_git(args, cwd=cwd, timeout=TIMEOUT), what, TIMEOUT)


def create_bundle(
    repo: Path,
    ref: str,
    out: Path,
    now: datetime,
    *,
    sign_key: Path | None = None,
    since: str | None = None,
    images: Iterable[Wanted] | None = None,
    previous: BundleManifest | None = None,
    from_registry: bool = False,
) -> BundleManifest:
    """Write the bundle file for ``ref`` of the clone at ``repo`` to ``out`` (atomically).

    A bundle carries a branch or tag; 40 hex digits always name a commit (never a branch
    named like one), so such a ``ref`` is refused. ``since`` may be any revision; 40 hex
    digits are the commit itself. ``images``: also carry these images from the local
    engine (:mod:`reconciler.source.bundle_images`); ``previous``: the manifest of the
    bundle this one follows, whose layers are left out.
    """
    if _SHA.match(ref):
        raise SourceError(
            f"--ref {ref}: 40 hex digits name a commit, and a bundle carries a ref; "
            "name a branch or tag"
        )
    full = run_git(["rev-parse", "--symbolic-full-name", ref], cwd=repo, timeout=TIMEOUT)
    name = full.stdout.strip()
    if full.status != 0 or not name.startswith(("refs/heads/", "refs/tags/")):
        raise SourceError(f"--ref {ref}: name a branch or tag of {repo} (a bundle carries a ref)")
    revision = _git(
        ["rev-parse", "--verify", f"{name}^{{commit}}"], repo, f"cannot resolve {ref}"
    ).strip()
    base = None
    spec = name
    if since is not None:
        found = run_git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{since}^{{commit}}"],
            cwd=repo,
            timeout=60,
        )
        if found.status != 0 or (_SHA.match(since) and found.stdout.strip() != since):
            raise SourceError(f"--since {since}: unknown revision in {repo}")
        base = found.stdout.strip()
        ancestor = run_git(["merge-base", "--is-ancestor", base, revision], cwd=repo, timeout=60)
        if ancestor.status != 0:
            raise SourceError(f"--since {since} is not an ancestor of {ref}; pick an older base")
        if base == revision:
            raise SourceError(f"--since {since} is {ref} itself; the bundle would be empty")
        spec = f"{base}..{name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".fleetgate-bundle-") as tmp:
        work = Path(tmp)
        _git(["bundle", "create", "--quiet", str(work / GIT_BUNDLE), spec], repo, "cannot bundle")
        data = (work / GIT_BUNDLE).read_bytes()
        gathered = None
        if images is not None:
            gathered = gather_images(images, work, previous, from_registry=from_registry)
        manifest = BundleManifest(
            ref=name,
            revision=revision,
            created_at=now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            bundle_sha256=hashlib.sha256(data).hexdigest(),
            bundle_size=len(data),
            base=base,
        )
        members = [MANIFEST, GIT_BUNDLE]
        if gathered is not None and gathered.images:
            manifest = BundleManifest(
                manifest.ref, manifest.revision, manifest.created_at, manifest.bundle_sha256,
                manifest.bundle_size, manifest.base, gathered.images, gathered.blobs,
                gathered.omitted, hashlib.sha256(gathered.index).hexdigest(),
            )  # fmt: skip
            (work / INDEX).write_bytes(gathered.index)
            (work / OCI_LAYOUT_FILE).write_bytes(OCI_LAYOUT)
            members += [OCI_LAYOUT_FILE, INDEX]
            members += [f"blobs/sha256/{digest}" for digest in sorted(gathered.blobs)]
        (work / MANIFEST).write_bytes(manifest.to_bytes())
        if sign_key is not None:
            _sign(sign_key, work / MANIFEST)
            members.insert(1, SIGNATURE)
        partial = work / "bundle.tar"
        with tarfile.open(partial, "w", format=tarfile.USTAR_FORMAT) as tar:
            for member in members:
                info = tar.gettarinfo(str(work / member), arcname=member)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                info.mtime = int(now.timestamp())
                with (work / member).open("rb") as f:
                    tar.addfile(info, f)
        partial.replace(out)
    return manifest


def _ssh_keygen(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["ssh-keygen", *args],
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=60,
            check=False,
            start_new_session=True,  # no terminal: a passphrase prompt fails instead of hanging
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SSH_ASKPASS": ""},
        )
    except FileNotFoundError:
        raise SourceError(
            "ssh-keygen is not installed (Debian: apt-get install openssh-client)"
        ) from None
    except subprocess.TimeoutExpired:
        raise SourceError("ssh-keygen did not finish within 60s") from None


def _sign(key: Path, file: Path) -> None:
    done = _ssh_keygen(["-Y", "sign", "-f", str(key), "-n", NAMESPACE, str(file)])
    if done.returncode != 0:
        why = (done.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[-1]
        raise SourceError(f"--sign-key {key}: cannot sign ({why}); use an unencrypted SSH key")


# ------------------------------------------------------------------ import


def _verify_signature(manifest: bytes, signature: Path, allowed_signers: Path) -> str:
    """The principal whose allowed key made ``signature`` over ``manifest``."""
    if not allowed_signers.is_file():
        raise SignatureError(f"allowed signers file {allowed_signers} does not exist")
    found = _ssh_keygen(["-Y", "find-principals", "-s", str(signature), "-f", str(allowed_signers)])
    principals = found.stdout.decode(errors="replace").split()
    if found.returncode != 0 or not principals:
        raise SignatureError("bundle is signed by a key that is not in allowedSigners")
    for principal in principals:
        done = _ssh_keygen(
            [
                "-Y", "verify", "-f", str(allowed_signers), "-I", principal,
                "-n", NAMESPACE, "-s", str(signature),
            ],
            stdin=manifest,
        )  # fmt: skip
        if done.returncode == 0:
            return principal
    raise SignatureError("bundle signature does not match its manifest; it was tampered with")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _mirror_git(mirror: Path, args: list[str]) -> tuple[int, str, str]:
    result = run_git(args, cwd=None, git_dir=mirror, timeout=TIMEOUT)
    return result.status, result.stdout.strip(), reason(result, TIMEOUT)


def _is_ancestor(mirror: Path, old: str, new: str) -> bool:
    return _mirror_git(mirror, ["merge-base", "--is-ancestor", old, new])[0] == 0


def import_bundle(
    file: Path,
    cache_dir: Path,
    allowed_signers: Path,
    now: datetime,
    *,
    repo: str = BUNDLE_REPO,
    applied: str | None = None,
    loader: ImageLoader | None = None,
    device: str | None = None,
) -> ImportResult:
    """Verify ``file`` and make its revision available in ``repo``'s mirror (see module doc).

    A bundle with images needs ``loader`` (the engine): the images for ``device`` (all
    when ``None``) are loaded after every check passed and before the revision is
    recorded. Every refusal is one line that starts with the bundle's file name; it is
    raised with the class of the underlying error (:class:`SignatureError` stays one).
    """
    try:
        return _import(
            file, cache_dir, allowed_signers, now,
            repo=repo, applied=applied, loader=loader, device=device,
        )  # fmt: skip
    except SourceError as e:
        raise type(e)(f"bundle {ascii(file.name)[1:-1]}: {e}") from None


def _import(
    file: Path,
    cache_dir: Path,
    allowed_signers: Path,
    now: datetime,
    *,
    repo: str,
    applied: str | None,
    loader: ImageLoader | None,
    device: str | None,
) -> ImportResult:
    entries = scan_bundle(file)  # before anything is created on disk
    mirror = mirror_path(cache_dir, repo)
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=mirror.parent, prefix=".bundle-import-") as tmp:
        work = Path(tmp)
        copy_members(file, entries, work)
        manifest_bytes = (work / MANIFEST).read_bytes()
        signature, git_bundle = work / SIGNATURE, work / GIT_BUNDLE
        signer = _verify_signature(manifest_bytes, signature, allowed_signers)
        manifest = parse_manifest(manifest_bytes)
        check_content(manifest, _digest(git_bundle), git_bundle.stat().st_size)
        images = for_device(manifest, verify_images(manifest, work), device)
        if images and loader is None:
            raise SourceError("bundle carries images but no engine was given to load them")

        def load() -> None:
            if images and loader is not None:
                load_images(manifest, images, work, loader)

        with mirror_lock(mirror.with_suffix(".lock"), TIMEOUT, repo):
            if not (mirror / "HEAD").is_file():
                init_mirror(mirror, repo, TIMEOUT)
            return _import_verified(
                mirror,
                git_bundle=git_bundle,
                manifest=manifest,
                signer=signer,
                now=now,
                applied=applied,
                before_commit=load,
            )


def _import_verified(
    mirror: Path,
    *,
    git_bundle: Path,
    manifest: BundleManifest,
    signer: str,
    now: datetime,
    applied: str | None,
    before_commit: Callable[[], None],
) -> ImportResult:
    status, _, why = _mirror_git(mirror, ["bundle", "verify", "--quiet", str(git_bundle)])
    if status != 0:
        base = manifest.base[:12] if manifest.base else "its base"
        raise SourceError(
            f"bundle needs commit {base}, which this device does not have ({why}); "
            "bring a full bundle (made without --since)"
        )
    status, previous, _ = _mirror_git(
        mirror, ["rev-parse", "--verify", "--quiet", f"{IMPORTED_REF}^{{commit}}"]
    )
    prior = previous if status == 0 else None
    status, _, why = _mirror_git(
        mirror,
        ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", str(git_bundle),
         f"+{manifest.ref}:{_INCOMING_REF}"],
    )  # fmt: skip
    if status != 0:
        raise SourceError(f"cannot read the Git bundle: {why}")
    try:
        _, got, _ = _mirror_git(mirror, ["rev-parse", "--verify", f"{_INCOMING_REF}^{{commit}}"])
        if got != manifest.revision:
            raise SourceError(
                f"Git bundle holds {got[:12]} but its manifest says {manifest.revision[:12]}; "
                "it was tampered with"
            )
        for label, old in (("imported", prior), ("applied", applied)):
            if old is None or old == manifest.revision:
                continue
            if _mirror_git(mirror, ["cat-file", "-e", f"{old}^{{commit}}"])[0] != 0:
                raise SourceError(
                    f"the {label} revision {old[:12]} is not in the mirror, so the bundle "
                    "cannot be shown to be newer; refusing it"
                )
            if not _is_ancestor(mirror, old, manifest.revision):
                raise SourceError(
                    f"bundle revision {manifest.revision[:12]} does not descend from the "
                    f"{label} revision {old[:12]} (older or diverged); refusing to go back"
                )
        before_commit()  # the images: every check passed, the revision is not recorded yet
        if prior != manifest.revision:
            args = ["update-ref", IMPORTED_REF, manifest.revision, prior or ""]
            status, _, why = _mirror_git(mirror, args)
            if status != 0:
                raise SourceError(f"cannot record the imported revision: {why}")
    finally:
        _mirror_git(mirror, ["update-ref", "-d", _INCOMING_REF])
    return ImportResult(
        revision=manifest.revision,
        ref=manifest.ref,
        previous=prior,
        signer=signer,
        created_at=manifest.created_at,
        imported_at=now,
        mirror=mirror,
        unchanged=prior == manifest.revision,
    )
