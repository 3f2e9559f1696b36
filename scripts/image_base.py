"""The base of scripts/image: Debian bookworm by debootstrap, ``docker import``-ed.

For the host's architecture ``debootstrap --variant=minbase`` runs in full. For a
foreign one (arm64, armhf on an amd64 builder) only its first stage runs (download and
unpack, host-native); scripts/image_foreign.py then does on the host what the second
stage's maintainer scripts would have done under qemu-user-static (19-26 min on a loaded
2-core machine; this way about a minute). Either way the tree is trimmed (docs, perl),
tarred into the cache and imported as ``fleetgate-base:bookworm-<arch>-<key>``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What the agent runs besides Python: git (the source adapter), ssh (ssh:// fleets,
# SSH-signed commits), gpg (GPG-signed commits), CA certificates (https:// fleets).
PACKAGES = ("python3", "git", "openssh-client", "gpg", "ca-certificates")
# Removed from the base: documentation, manuals, translations, apt's caches.
TRIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt",
    "var/lib/apt/lists",
    "debootstrap",
    *(
        f"usr/lib/git-core/{tool}"
        for tool in (
            "git-daemon",
            "git-http-backend",
            "git-shell",
            "git-imap-send",
            "git-http-push",
            "scalar",
        )
    ),
    "usr/bin/git-shell",
    "usr/bin/scalar",
)
# git depends on perl only for porcelain the agent never runs (add -i, send-email, svn):
# purged, with git's manual. About 50 MB.
PURGE = ("git-man", "liberror-perl", "perl", "perl-modules-5.36", "libperl5.36")
BASE_RECIPE = 2  # bump when the base's making changes: the cache key follows it
FOREIGN_RECIPE = 2  # bump when image_foreign.py changes: foreign bases' key follows it


@dataclass(frozen=True, slots=True)
class Target:
    platform: str  # linux/arm64
    deb_arch: str  # arm64
    suffix: str  # tag suffix: "" for the host, "-arm64"
    qemu: str  # qemu binfmt name, "" for the host
    wheel_tags: tuple[str, ...]  # pip --platform values


def _manylinux(arch: str) -> tuple[str, ...]:
    # bookworm has glibc 2.36: every manylinux_2_x up to it, newest first.
    return (
        *(f"manylinux_2_{m}_{arch}" for m in range(36, 16, -1)),
        f"manylinux2014_{arch}",
        f"linux_{arch}",
    )


TARGETS = {
    "linux/amd64": Target("linux/amd64", "amd64", "-amd64", "x86_64", _manylinux("x86_64")),
    "linux/arm64": Target("linux/arm64", "arm64", "-arm64", "aarch64", _manylinux("aarch64")),
    "linux/arm/v7": Target("linux/arm/v7", "armhf", "-armv7", "arm", _manylinux("armv7l")),
}
HOST = {"x86_64": "linux/amd64", "aarch64": "linux/arm64", "armv7l": "linux/arm/v7"}.get(
    platform.machine(), ""
)


class BuildError(Exception):
    """One line: which step failed and where to look."""


STARTED = time.monotonic()


def say(text: str) -> None:
    """A progress line on stderr, with the seconds since the build started."""
    print(f"==> [{time.monotonic() - STARTED:3.0f}s] {text}", file=sys.stderr, flush=True)


def run(*cmd: str | Path, log: Path | None = None, **kw: object) -> str:
    """Run a command; its stdout. On failure the tail of its output and one line."""
    args = [str(c) for c in cmd]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise BuildError(
            f"{args[0]} {args[1] if len(args) > 1 else ''} failed (exit {proc.returncode}):\n{tail}"
        )
    return str(proc.stdout)


def as_root(*cmd: str | Path) -> tuple[str | Path, ...]:
    return cmd if os.geteuid() == 0 else ("sudo", *cmd)


def register_binfmt(target: Target) -> None:
    """Make the kernel run ``target``'s binaries through qemu-user-static (flag F: the
    interpreter is opened now, so it works inside chroots and containers)."""
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        run(*as_root("mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)))
    if (binfmt / f"qemu-{target.qemu}").exists():
        return
    conf = Path(f"/usr/lib/binfmt.d/qemu-{target.qemu}.conf")
    if not conf.exists():
        raise BuildError(f"{conf} is missing: apt-get install qemu-user-static")
    line = conf.read_text().strip().splitlines()[0]
    run(*as_root("sh", "-c", f"printf '%s' '{line}' > {binfmt}/register"))


def base_key(target: Target) -> str:
    lists = " ".join(" ".join(names) for names in (PACKAGES, TRIM, PURGE))
    foreign = "" if target.platform == HOST else f" foreign-{FOREIGN_RECIPE}"
    text = f"{BASE_RECIPE} {SUITE} {target.deb_arch} {lists}{foreign}"
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def base_image(target: Target, cache: Path, logs: Path) -> str:
    """The imported base image's tag, made from the cached tarball (debootstrap once)."""
    key = base_key(target)
    tag = f"fleetgate-base:{SUITE}-{target.deb_arch}-{key}"
    tarball = cache / f"base-{SUITE}-{target.deb_arch}-{key}.tar"
    if not tarball.exists():
        debootstrap(target, tarball, logs)
    present = (
        subprocess.run(
            ["docker", "image", "inspect", tag], capture_output=True, check=False
        ).returncode
        == 0
    )
    if not present:
        say(f"docker import {tarball.name} -> {tag}")
        run(
            "docker", "import", "--platform", target.platform, tarball, tag, log=logs / "import.log"
        )
    return tag


def debootstrap(target: Target, tarball: Path, logs: Path) -> None:
    started = time.monotonic()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    log = logs / f"debootstrap-{target.deb_arch}.log"
    say(f"debootstrap {SUITE} {target.deb_arch} (once; log: {log})")
    try:
        common = (
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            f"--arch={target.deb_arch}",
        )
        if target.platform == HOST:
            run(*as_root("debootstrap", *common, SUITE, rootfs, MIRROR), log=log)
            run(*as_root("chroot", rootfs, "dpkg", "--purge", "--force-depends", *PURGE), log=log)
        else:
            # The second stage would run every maintainer script under emulation: its
            # work is done on the host instead (PURGE: never unpacked), but for ldconfig.
            register_binfmt(target)
            run(*as_root("debootstrap", "--foreign", *common, SUITE, rootfs, MIRROR), log=log)
            say(f"unpack and configure {target.deb_arch} on the host (image_foreign.py)")
            finish = Path(__file__).with_name("image_foreign.py")
            run(*as_root(sys.executable, finish, rootfs, *PURGE), log=log)
        say(f"trim and tar the {target.deb_arch} base")
        for rel in TRIM:
            run(*as_root("rm", "-rf", rootfs / rel))
        run(*as_root("mkdir", "-p", rootfs / "var/lib/apt/lists/partial", rootfs / "var/cache/apt"))
        part = tarball.with_suffix(".part")
        run(*as_root("tar", "-C", rootfs, "--numeric-owner", "-cf", part, "."))
        part.replace(tarball)
    finally:
        run(*as_root("rm", "-rf", rootfs))
    say(
        f"base {target.deb_arch}: {time.monotonic() - started:.0f}s, "
        f"{tarball.stat().st_size / 1e6:.0f} MB tarball"
    )
