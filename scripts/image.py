"""The steps of scripts/image: a Debian base by debootstrap, wheels from the host, docker build.

Run through ``scripts/image`` (it installs debootstrap, qemu-user-static, the venv and a
Docker engine first). Standard library only; every external step is a command whose
failure stops the build with one line naming it.

1. base (scripts/image_base.py): ``debootstrap --variant=minbase bookworm`` with the
   packages the agent runs (for a foreign architecture only its first stage; the
   second stage's work is done on the host by scripts/image_foreign.py), trimmed,
   tarred into the cache and ``docker import``-ed as
   ``fleetgate-base:bookworm-<arch>-<key>``.
2. site: every requirement as a wheel for the target (``pip download --platform``;
   PyYAML, whose C extension is optional, falls back to its pure-Python modules where no
   wheel exists), fleetgate itself by ``pip wheel``; all unpacked into one
   site-packages tree and byte-compiled on the host (CPython 3.11 bytecode does not
   depend on the architecture).
3. image: ``docker build`` of the repository's Dockerfile ``FROM`` that base, tagged
   ``fleetgate:<version>`` for the host platform, ``-arm64`` / ``-armv7`` otherwise.
4. ``--push REGISTRY``: each image pushed under its own tag, then one manifest list
   ``REGISTRY/fleetgate:<version>`` put over the registry's HTTP API (Docker 20.10's
   ``docker manifest`` needs the experimental CLI).
"""

from __future__ import annotations

import argparse
import compileall
import fcntl
import hashlib
import json
import os
import py_compile
import re
import shutil
import sys
import tempfile
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

from image_base import HOST, ROOT, TARGETS, BuildError, Target, base_image, run, say

PURE_FALLBACK = frozenset({"pyyaml"})  # C extension optional: pure modules work alone
SITE = "usr/local/lib/python3.11/dist-packages"
ENTRY = "#!/usr/bin/python3\nimport sys\nfrom reconciler.cli import main\nsys.exit(main())\n"


def version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def requirements() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


# --- 2. the site-packages tree -------------------------------------------------------


def _pin(wheel: Path) -> tuple[str, str]:
    name, ver = wheel.name.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), ver


def wheels(target: Target, work: Path, logs: Path) -> list[Path]:
    """fleetgate and every dependency as wheels for ``target``."""
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    host = work / "host"
    out = work / target.deb_arch
    out.mkdir(parents=True)
    log = logs / f"wheels-{target.deb_arch}.log"
    say(f"wheels for {target.platform} (log: {log})")
    own = work / "fleetgate"  # pure Python: built once, the same wheel for every target
    if not own.exists():
        # setuptools builds in the checkout (build/): two scripts/image runs at once in one
        # checkout (the host and ARM image tests on parallel workers) take turns here, or
        # the second fails with "File exists: build/bdist.*/wheel/fleetgate-*.dist-info".
        with (logs / "wheel.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            run(*pip, "wheel", "--no-deps", "-w", own, ROOT, log=log)
    for wheel in own.glob("*.whl"):
        shutil.copy(wheel, out)
    # The host resolves the versions once; the target gets the same pins.
    if not host.exists():
        run(*pip, "download", "--only-binary=:all:", "-d", host, *requirements(), log=log)
    pins = sorted({_pin(w) for w in host.glob("*.whl")})
    exact = [f"{n}=={v}" for n, v in pins if n not in PURE_FALLBACK]
    tags = [a for t in target.wheel_tags for a in ("--platform", t)]
    target_args = (
        "--only-binary=:all:",
        "--no-deps",
        *tags,
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        "--abi",
        "abi3",
        "--abi",
        "none",
    )
    run(*pip, "download", *target_args, "-d", out, *exact, log=log)
    for name, ver in pins:
        if name not in PURE_FALLBACK:
            continue
        try:
            run(*pip, "download", *target_args, "-d", out, f"{name}=={ver}", log=log)
        except BuildError:
            say(f"{name} {ver}: no wheel for {target.platform}, its pure-Python modules are used")
            (fallback,) = (w for w in host.glob("*.whl") if _pin(w) == (name, ver))
            shutil.copy(fallback, out / f"pure-{fallback.name}")
    return sorted(out.glob("*.whl"))


def unpack(wheel: Path, site: Path) -> None:
    """A wheel into ``site`` (what pip does for a pure install, minus scripts)."""
    pure = wheel.name.startswith("pure-")
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            parts = Path(info.filename).parts
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in {"purelib", "platlib"}:
                    continue  # scripts, headers, data: the image needs none
                parts = parts[2:]
            if pure and parts[-1].endswith(".so"):
                continue
            dest = site.joinpath(*parts)
            if info.is_dir():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, dest.open("wb") as dst:
                shutil.copyfileobj(src, dst)


def stage(target: Target, context: Path, work: Path, logs: Path) -> None:
    """The build context: ``site/`` (site-packages) and ``bin/fleetgate``."""
    site = context / "site"
    for wheel in wheels(target, work, logs):
        unpack(wheel, site)
    for junk in (*site.rglob("__pycache__"), *site.glob("*/tests")):
        shutil.rmtree(junk, ignore_errors=True)
    if sys.version_info[:2] == (3, 11):  # Debian bookworm's Python: same bytecode
        compileall.compile_dir(
            site,
            quiet=2,
            workers=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    (context / "bin").mkdir()
    (context / "bin" / "fleetgate").write_text(ENTRY)
    (context / "bin" / "fleetgate").chmod(0o755)


# --- 3. the image, 4. the manifest list ---------------------------------------------


def build(target: Target, base: str, tag: str, context: Path, *, logs: Path, offline: bool) -> None:
    """``docker build``; with our own base under ``--network none``: nothing is fetched."""
    say(f"docker build {tag} FROM {base}")
    network = ("--network", "none") if offline else ()
    run(
        "docker",
        "build",
        *network,
        "-q",
        "--build-arg",
        f"BASE={base}",
        "-f",
        ROOT / "Dockerfile",
        "-t",
        tag,
        context,
        log=logs / "build.log",
    )


def size(tag: str) -> int:
    return int(run("docker", "image", "inspect", "-f", "{{.Size}}", tag).strip())


def push_index(registry: str, repo: str, tag: str, pushed: dict[Target, str]) -> None:
    """PUT a manifest list naming every pushed platform's manifest."""
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    entries = []
    for target, ref in pushed.items():
        req = urllib.request.Request(
            f"http://{registry}/v2/{repo}/manifests/{ref}", headers={"Accept": accept}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
            digest = resp.headers.get("Docker-Content-Digest") or (
                "sha256:" + hashlib.sha256(body).hexdigest()
            )
        os_, arch, *variant = target.platform.split("/")
        plat = {"os": os_, "architecture": arch, **({"variant": variant[0]} if variant else {})}
        entries.append({"mediaType": accept, "size": len(body), "digest": digest, "platform": plat})
    index_type = "application/vnd.docker.distribution.manifest.list.v2+json"
    body = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries})
    req = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{tag}",
        data=body.encode(),
        method="PUT",
        headers={"Content-Type": index_type},
    )
    with urllib.request.urlopen(req, timeout=30):
        pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/image")
    parser.add_argument("--platform", action="append", choices=sorted(TARGETS))
    parser.add_argument("--push", metavar="REGISTRY", help="host:port of a registry (http)")
    parser.add_argument("--base", help="a Debian bookworm image to build FROM instead")
    parser.add_argument("--name", default="fleetgate", help="the image name (default fleetgate)")
    args = parser.parse_args(argv)
    default = sorted(TARGETS) if args.push else [HOST]
    chosen = [TARGETS[p] for p in (args.platform or default)]
    cache = Path(os.environ.get("FLEETGATE_IMAGE_CACHE", "/var/cache/fleetgate-image"))
    logs = ROOT / ".demo" / "image"
    logs.mkdir(parents=True, exist_ok=True)
    ver = version()
    built: dict[Target, str] = {}
    with tempfile.TemporaryDirectory(prefix="fleetgate-image-") as tmp:
        for target in chosen:
            started = time.monotonic()
            base = args.base or base_image(target, cache, logs)
            context = Path(tmp) / f"context-{target.deb_arch}"
            stage(target, context, Path(tmp) / "wheels", logs)
            tag = f"{args.name}:{ver}{'' if target.platform == HOST else target.suffix}"
            build(target, base, tag, context, logs=logs, offline=not args.base)
            built[target] = tag
            print(
                f"{tag}\t{target.platform}\t{size(tag) / 1e6:.1f} MB\t"
                f"{time.monotonic() - started:.0f}s"
            )
    if args.push:
        pushed = {}
        for target, tag in built.items():
            ref = f"{ver}{target.suffix}"
            remote = f"{args.push}/fleetgate:{ref}"
            run("docker", "tag", tag, remote)
            say(f"docker push {remote}")
            run("docker", "push", remote, log=logs / "push.log")
            pushed[target] = ref
        push_index(args.push, "fleetgate", ver, pushed)
        print(
            f"{args.push}/fleetgate:{ver}\tmanifest list: {', '.join(t.platform for t in pushed)}"
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
