"""Finish a ``debootstrap --foreign`` tree on the host, without emulating its second stage.

``debootstrap --foreign`` downloads every package for the target architecture and
unpacks the required ones, host-native (seconds). Its second stage would then run
``dpkg --install`` and every maintainer script under qemu-user-static: 19-26 min on a
loaded 2-core machine. What those scripts leave behind does not depend on the
architecture, so this module does it here, natively:

- every package (but ``--purge`` ones) unpacked with ``dpkg-deb --fsys-tarfile | tar``,
  and recorded in /var/lib/dpkg (status "install ok installed", info/*.list, md5sums,
  conffiles, maintainer scripts), so ``dpkg -l``/``-L``/``-S`` answer as usual;
- accounts from base-passwd's master files, shadowed (``shadowconfig on``), plus the
  ``_ssh`` group openssh-client's postinst adds (ssh-agent setgid);
- the files postinsts install from defaults (nsswitch.conf, /etc/shells, inputrc,
  profile, motd, root's dot files, python3's debian_config, login's subuid/subgid/faillog,
  UTC as /etc/localtime), /bin/sh's diversion to dash, update-alternatives links;
- ca-certificates.conf with every certificate enabled and the bundle plus hash links
  made by the host's ``update-ca-certificates`` (the same arch-independent package);
- the Python stdlib byte-compiled by the host's CPython 3.11 (bytecode does not depend
  on the architecture), as the python3.11 postinsts do;
- ``ldconfig`` (the target's own, one emulated run: the dynamic linker's cache).

Not done (the agent needs none of it): PAM's common-* files (pam-auth-update; the image
has no logins), debconf's database, systemd units' enablement, apt's key setup.

Run as root: ``python3 scripts/image_foreign.py ROOTFS PKG...`` (PKG: not unpacked).
"""

from __future__ import annotations

import compileall
import datetime
import hashlib
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ALT = re.compile(r"update-alternatives\s+(?:--quiet\s+)?--install\s+((?:\\\n|[^\n])*)")
SSH_GID = 101  # first free system gid after base-passwd's (users is 100)


def sh(*cmd: str | Path, **kw: object) -> str:
    args = [str(c) for c in cmd]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    return str(proc.stdout)


def unpack(root: Path, deb: Path, info: Path) -> None:
    """One package into ``root`` and dpkg's database, as ``dpkg --unpack`` would."""
    control = Path(tempfile.mkdtemp(dir=info.parent))
    sh("dpkg-deb", "--control", deb, control)
    fields = (control / "control").read_text()
    pkg = re.search(r"^Package: (\S+)", fields, re.M)
    arch = re.search(r"^Architecture: (\S+)", fields, re.M)
    assert pkg and arch
    same = re.search(r"^Multi-Arch: same", fields, re.M) is not None
    name = f"{pkg[1]}:{arch[1]}" if same else pkg[1]
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    listed = sh(
        "tar", "-x", "-v", "-f", "-", "-C", root, "--keep-directory-symlink", stdin=tar.stdout
    )
    if tar.wait() != 0:
        raise SystemExit(f"dpkg-deb --fsys-tarfile {deb.name} failed")
    paths = ["/." if p in {".", "./"} else "/" + p[2:].rstrip("/") for p in listed.splitlines()]
    (info / f"{name}.list").write_text("".join(f"{p}\n" for p in paths))
    conffiles = []
    for part in sorted(control.iterdir()):
        if part.name == "conffiles":
            for line in part.read_text().split("\n"):
                if line.startswith("/") and (root / line[1:]).is_file():
                    digest = hashlib.md5((root / line[1:]).read_bytes()).hexdigest()
                    conffiles.append(f" {line} {digest}")
        if part.name != "control":
            shutil.copy2(part, info / f"{name}.{part.name}")
    shutil.rmtree(control)
    entry = re.sub(
        r"^(Package: .*)$", r"\1\nStatus: install ok installed", fields, count=1, flags=re.M
    )
    entry = entry.rstrip("\n") + ("\nConffiles:\n" + "\n".join(conffiles) if conffiles else "")
    with (info.parent / "status").open("a") as status:
        status.write(entry + "\n\n")


def triggers(admin: Path, info: Path) -> None:
    """The trigger interests dpkg records on install (file triggers and named ones)."""
    files: list[str] = []
    named: dict[str, list[str]] = {}
    for spec in sorted(info.glob("*.triggers")):
        pkg = spec.name.removesuffix(".triggers").split(":")[0]
        for line in spec.read_text().splitlines():
            words = line.split()
            if len(words) == 2 and words[0].startswith("interest"):
                who = pkg + ("/noawait" if words[0] == "interest-noawait" else "")
                if words[1].startswith("/"):
                    files.append(f"{words[1]} {who}\n")
                else:
                    named.setdefault(words[1], []).append(f"{who}\n")
    (admin / "File").write_text("".join(files))
    for name, pkgs in named.items():
        (admin / name).write_text("".join(pkgs))
    (admin / "Unincorp").touch()


def accounts(root: Path) -> None:
    """base-passwd's preinst/update-passwd, then passwd's ``shadowconfig on``."""
    etc = root / "etc"
    users = (root / "usr/share/base-passwd/passwd.master").read_text().splitlines()
    groups = (root / "usr/share/base-passwd/group.master").read_text().splitlines()
    if (root / "usr/bin/ssh-agent").exists():
        groups.append(f"_ssh:!:{SSH_GID}:")  # groupadd's: no password
    day = (datetime.datetime.now(datetime.UTC).date() - datetime.date(1970, 1, 1)).days
    ufields = [u.split(":") for u in users]
    (etc / "passwd").write_text("".join(":".join([f[0], "x", *f[2:]]) + "\n" for f in ufields))
    (etc / "shadow").write_text("".join(f"{f[0]}:*:{day}:0:99999:7:::\n" for f in ufields))
    gfields = [g.split(":") for g in groups]
    (etc / "group").write_text("".join(":".join([f[0], "x", *f[2:]]) + "\n" for f in gfields))
    (etc / "gshadow").write_text("".join(f"{f[0]}:{f[1]}::{f[3]}\n" for f in gfields))
    for secret in ("shadow", "gshadow"):
        os.chown(etc / secret, 0, 42)  # group shadow
        (etc / secret).chmod(0o640)
    if (root / "usr/bin/ssh-agent").exists():
        os.chown(root / "usr/bin/ssh-agent", 0, SSH_GID)
        (root / "usr/bin/ssh-agent").chmod(0o2755)


def defaults(root: Path) -> None:
    """The files postinsts copy from /usr/share when they are missing."""
    copies = {
        "usr/share/libc-bin/nsswitch.conf": "etc/nsswitch.conf",
        "usr/share/readline/inputrc": "etc/inputrc",
        "usr/share/base-files/profile": "etc/profile",
        "usr/share/base-files/motd": "etc/motd",
        "usr/share/base-files/dot.profile": "root/.profile",
        "usr/share/base-files/dot.bashrc": "root/.bashrc",
        "usr/share/base-files/info.dir": "usr/share/info/dir",
    }
    for src, dest in copies.items():
        if (root / src).exists() and not (root / dest).exists():
            (root / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / src, root / dest)
    listed = (root / "usr/share/debianutils/shells").read_text().splitlines()
    for extra in sorted((root / "usr/share/debianutils/shells.d").glob("*")):
        listed += extra.read_text().split()
    shells = []  # update-shells: each /bin shell and its /usr alias (merged /usr)
    for shell in listed:
        shells += [shell, "/usr" + shell] if shell.startswith("/bin/") else [shell]
    (root / "etc/shells").write_text("".join(f"{s}\n" for s in dict.fromkeys(shells)))
    (root / "var/lib/shells.state").write_text("".join(f"{s}\n" for s in dict.fromkeys(shells)))
    (root / "etc/environment").touch()  # libpam-modules' postinst
    origins = root / "etc/dpkg/origins/default"
    if not origins.exists():
        origins.symlink_to("debian")  # base-files' postinst
    local = [f"usr/local/{d}" for d in ("bin", "etc", "games", "include", "lib", "sbin", "src")]
    site = ["usr/local/share/man", "usr/local/lib/python3.11/dist-packages"]
    for dirname in ("mnt", "srv", "opt", "media", "etc/opt", "var/opt", *local, *site):
        (root / dirname).mkdir(mode=0o755, parents=True, exist_ok=True)
    if not (root / "usr/local/man").is_symlink():
        (root / "usr/local/man").symlink_to("share/man")
    (root / "run/lock").mkdir(parents=True, exist_ok=True)
    (root / "run/lock").chmod(0o1777)
    (root / "var/mail").mkdir(exist_ok=True)
    os.chown(root / "var/mail", 0, 8)  # group mail
    (root / "var/mail").chmod(0o2775)
    if not (root / "var/spool/mail").is_symlink():
        (root / "var/spool/mail").symlink_to("../mail")
    (root / "etc/python3").mkdir(exist_ok=True)
    (root / "etc/python3/debian_config").write_text(
        "[DEFAULT]\n# how to byte-compile (comma separated: standard, optimize)\n"
        "byte-compile = standard\n"
    )
    for empty in ("etc/subuid", "etc/subgid", "var/log/faillog"):
        (root / empty).touch()
    for log, mode in (("wtmp", 0o664), ("btmp", 0o660), ("lastlog", 0o664)):
        (root / "var/log" / log).touch()
        os.chown(root / "var/log" / log, 0, 43)  # group utmp
        (root / "var/log" / log).chmod(mode)
    (root / "etc/localtime").unlink(missing_ok=True)
    (root / "etc/localtime").symlink_to("/usr/share/zoneinfo/Etc/UTC")
    (root / "etc/timezone").write_text("Etc/UTC\n")
    if (root / "usr/bin/dash").exists():  # dash's postinst: /bin/sh is dash's, diverted
        (root / "var/lib/dpkg/diversions").write_text(
            "/usr/share/man/man1/sh.1.gz\n/usr/share/man/man1/sh.distrib.1.gz\ndash\n"
            "/bin/sh\n/bin/sh.distrib\ndash\n"
        )


def alternatives(root: Path, info: Path) -> None:
    """Every ``update-alternatives --install`` of the postinsts: the best one, auto."""
    best: dict[str, tuple[int, str, str, list[tuple[str, str, str]]]] = {}
    for script in sorted(info.glob("*.postinst")):
        for match in ALT.finditer(script.read_text()):
            words = match[1].replace("\\\n", " ").split()
            link, name, path, prio = words[:4]
            slaves = []
            rest = words[4:]
            while len(rest) >= 4 and rest[0] == "--slave":
                slaves.append((rest[1], rest[2], rest[3]))
                rest = rest[4:]
            if prio.isdigit() and (name not in best or int(prio) > best[name][0]):
                best[name] = (int(prio), link, path, slaves)
    admin = root / "var/lib/dpkg/alternatives"
    (root / "etc/alternatives").mkdir(parents=True, exist_ok=True)
    admin.mkdir(parents=True, exist_ok=True)
    for name, (prio, link, path, slaves) in sorted(best.items()):
        for alink, aname, apath in [(link, name, path), *slaves]:
            if not (root / apath.lstrip("/")).exists():
                continue
            (root / "etc/alternatives" / aname).unlink(missing_ok=True)
            (root / "etc/alternatives" / aname).symlink_to(apath)
            dest = root / alink.lstrip("/")
            if not dest.exists() and not dest.is_symlink():
                dest.symlink_to(f"/etc/alternatives/{aname}")
        head = [link, *(x for s in slaves for x in s[:2][::-1])]
        tail = [path, str(prio), *(s[2] for s in slaves)]
        (admin / name).write_text("\n".join(["auto", *head, "", *tail, "", ""]))


def certificates(root: Path) -> None:
    """ca-certificates' postinst: every certificate enabled, the bundle and hash links."""
    share = root / "usr/share/ca-certificates"
    if not share.exists():
        return
    certs = sorted(str(p.relative_to(share)) for p in share.rglob("*.crt"))
    (root / "etc/ca-certificates.conf").write_text(
        "# Generated by scripts/image_foreign.py as ca-certificates' postinst would:\n"
        "# every certificate in /usr/share/ca-certificates is enabled.\n"
        + "".join(f"{c}\n" for c in certs)
    )
    (root / "usr/local/share/ca-certificates").mkdir(parents=True, exist_ok=True)
    hooks = Path(tempfile.mkdtemp())  # the target's hooks run nothing the host should run
    try:
        sh(
            "update-ca-certificates",
            "--fresh",
            "--certsconf", root / "etc/ca-certificates.conf",
            "--certsdir", share,
            "--localcertsdir", root / "usr/local/share/ca-certificates",
            "--etccertsdir", root / "etc/ssl/certs",
            "--hooksdir", hooks,
        )  # fmt: skip
    finally:
        hooks.rmdir()
    # The host wrote links to its own paths: point them inside the image instead.
    for link in (root / "etc/ssl/certs").iterdir():
        if link.is_symlink() and str(link.readlink()).startswith(str(root)):
            target = "/" + str(link.readlink().relative_to(root))
            link.unlink()
            link.symlink_to(target)


def bytecode(root: Path) -> None:
    """The python3.11 postinsts' py_compile of the stdlib, by the host's CPython 3.11."""
    if sys.version_info[:2] != (3, 11):
        return  # the first run in the image compiles on import (PYTHONDONTWRITEBYTECODE aside)
    for rel in ("usr/lib/python3.11", "usr/lib/python3/dist-packages", "usr/share/python3"):
        if (root / rel).exists():
            compileall.compile_dir(
                root / rel,
                quiet=2,
                workers=0,
                stripdir=str(root),
                prependdir="/",
                invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP,
            )


def finish(root: Path, skip: set[str]) -> None:
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").write_text("")
    for line in (root / "debootstrap/debpaths").read_text().splitlines():
        pkg, path = line.split()
        if pkg not in skip:
            unpack(root, root / path.lstrip("/"), info)
    for name in ("available", "diversions"):
        (root / "var/lib/dpkg" / name).touch()
    for name in ("updates", "triggers", "parts"):
        (root / "var/lib/dpkg" / name).mkdir(exist_ok=True)
    (info / "format").write_text("1\n")
    triggers(root / "var/lib/dpkg/triggers", info)
    accounts(root)
    defaults(root)
    alternatives(root, info)
    certificates(root)
    bytecode(root)
    sh("chroot", root, "/sbin/ldconfig")  # the only emulated step: a second or two
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)


if __name__ == "__main__":
    finish(Path(sys.argv[1]), set(sys.argv[2:]))
