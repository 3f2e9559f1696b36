"""Safe paths under the state directory: no symlink below it is ever followed.

Data, lock and (``:rw``) config directories live under the agent's state directory
and are mounted writable into containers, so a container can plant a symlink there
(``data/sub -> /``). Docker resolves a bind source's links on the host, and so would
a plain ``mkdir -p`` or ``open``: a later mount of ``./data/sub`` would expose the
host root. Safety rule 9: every path below the state directory that fleetgate writes
or hands to the engine as a bind source is walked one component at a time without
following links (``openat`` with ``O_NOFOLLOW``), and a link anywhere below the state
directory is refused with :class:`~reconciler.errors.PlantedLink` — even one that
points back inside it (the simplest rule that is honest: nothing is ever followed).

The state directory itself (and its parents) is trusted: an administrator may keep it
on a linked mount. Its path is not carried in plans, so :func:`state_root` tells it
from the fixed layout render gives every agent path (``{state}/data/{device}/{stack}/…``,
``{state}/locks/{device}/{stack}``, ``{state}/configs/{device}/{stack}/…``); a path
that does not follow that layout is walked from ``/`` (stricter, never looser).
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from reconciler.errors import PlantedLink
from reconciler.model import Mount, MountKind, ServiceSpec

PathPurpose = Literal["data", "lock", "config", "state"]

_FOLDERS: dict[str, str] = {"data": "data", "lock": "locks", "config": "configs"}
_NOUNS: dict[str, str] = {
    "data": "data directory",
    "lock": "lock directory",
    "config": "config path",
    "state": "state file",
}
_DEVICE = r"[a-z0-9][a-z0-9-]{0,62}"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_STATE_KINDS: dict[MountKind, PathPurpose] = {"data": "data", "lock": "lock", "config": "config"}
"""Mount kinds whose source render puts under the state directory."""


def state_root(path: str, purpose: str, device: str | None = None, stack: str | None = None) -> str:
    """The state directory ``path`` was built under (``/`` when the layout is not there).

    The shortest prefix wins: a state directory whose own path looks like the layout
    only makes the walk longer (safe), never shorter.
    """
    folder = _FOLDERS.get(purpose)
    if folder is None:
        return "/"
    dev = re.escape(device) if device else _DEVICE
    name = re.escape(stack) if stack else r"[^/]+"
    found = re.match(rf"^(.*?)/{folder}/{dev}/{name}(?:/|$)", path)
    return (found.group(1) or "/") if found else "/"


def _parts(root: str, path: str) -> list[str]:
    """The components of ``path`` below ``root`` (lexically; ``..`` is refused)."""
    rel = posixpath.relpath(posixpath.normpath(path), posixpath.normpath(root))
    if rel == ".":
        return []
    if rel == ".." or rel.startswith("../") or ".." in rel.split("/"):
        raise PlantedLink(f"{shown(path)} is not under the state directory {shown(root)}")
    return rel.split("/")


def shown(text: str, limit: int = 200) -> str:
    """``text`` safe for a one-line message: no control characters, bounded length."""
    clean = _PRINTABLE.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def _refusal(path: str, link: str, target: str, purpose: str, owner: str | None) -> PlantedLink:
    noun = _NOUNS.get(purpose, "path")
    of = f" of {owner}" if owner else ""
    what = (
        f"is a symlink (-> {shown(target)})"
        if posixpath.normpath(link) == posixpath.normpath(path)
        else f"contains a symlink ({shown(link)} -> {shown(target)})"
    )
    return PlantedLink(
        f"{noun} {shown(path)}{of} {what} that a container planted; remove it "
        "(fleetgate never follows links under its state directory)"
    )


def _target(dir_fd: int | None, name: str) -> str:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return "?"


def find_link(root: str, path: str) -> tuple[str, str] | None:
    """The first symlink on ``path`` below ``root`` as ``(link path, target)``, else ``None``.

    Components that do not exist end the walk (nothing below them can be a link).
    """
    current = posixpath.normpath(root)
    for part in _parts(root, path):
        current = posixpath.join(current, part)
        try:
            info = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(info.st_mode):
            return current, _target(None, current)
    return None


def check_path(
    path: str, purpose: PathPurpose, *, root: str | None = None, owner: str | None = None
) -> None:
    """Raise :class:`PlantedLink` when ``path`` has a symlink below its state directory."""
    base = root if root is not None else state_root(path, purpose)
    found = find_link(base, path)
    if found is not None:
        raise _refusal(path, found[0], found[1], purpose, owner)


def bind_sources(spec: ServiceSpec) -> Iterable[Mount]:
    """The mounts of ``spec`` whose source lies under the state directory."""
    return (m for m in spec.mounts if m.kind in _STATE_KINDS)


def check_binds(spec: ServiceSpec) -> None:
    """Refuse ``spec`` when a state-directory bind source has a symlink component.

    Run right before a container is created (and before a plan touches anything): the
    engine would resolve such a link on the host.
    """
    owner = f"{spec.stack}/{spec.service}"
    for mount in bind_sources(spec):
        purpose = _STATE_KINDS[mount.kind]
        root = state_root(mount.source, purpose, spec.device, spec.stack)
        check_path(mount.source, purpose, root=root, owner=owner)


def check_started(binds: Iterable[str], device: str, stack: str, service: str) -> None:
    """Refuse to (re)start a container whose ``source:target`` binds cross a planted link.

    The engine resolves bind sources again at every start, so a container created
    safely can be exposed by a link planted later (by another container sharing the
    directory). Only sources in the layout of ``device``/``stack`` are checked.
    """
    for bind in binds:
        source = bind.split(":", 1)[0]
        for purpose in _STATE_KINDS.values():
            root = state_root(source, purpose, device, stack)
            if source.startswith("/") and root != "/":
                check_path(source, purpose, root=root, owner=f"{stack}/{service}")
                break


# ------------------------------------------------------------------------- writes


def _open_below(root: str, parts: list[str], path: str, purpose: PathPurpose) -> int:
    """An fd of ``root/parts…``, creating missing directories, following no link below root."""
    Path(root).mkdir(parents=True, exist_ok=True)  # the state directory itself is trusted
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walked = posixpath.normpath(root)
    try:
        for part in parts:
            walked = posixpath.join(walked, part)
            nxt = _open_or_make(fd, part)
            if nxt is None:
                raise _refusal(path, walked, _target(fd, part), purpose, None)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_or_make(dir_fd: int, name: str) -> int | None:
    """Open (making it if missing) directory ``name`` in ``dir_fd``; ``None`` for a link."""
    for _ in range(3):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            # raced, or a dangling link: the next open tells
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=dir_fd)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                return None
            raise
    raise FileNotFoundError(errno.ENOENT, "directory keeps vanishing", name)


def ensure_dir(path: str, purpose: PathPurpose, *, root: str | None = None) -> None:
    """``mkdir -p path`` below its state directory without following any link."""
    base = root if root is not None else state_root(path, purpose)
    os.close(_open_below(base, _parts(base, path), path, purpose))


def write_file(
    path: str, data: bytes, mode: int, purpose: PathPurpose, *, root: str | None = None
) -> None:
    """Atomically replace ``path`` (temp file, fsync, rename) without following links.

    A link planted as the file itself is replaced (``rename`` never follows it); its
    target is untouched. A link on a directory above it is refused.
    """
    dir_fd, name = _parent_of(path, purpose, root)
    try:
        tmp = _temp_file(dir_fd, name, data, mode)
        try:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _parent_of(path: str, purpose: PathPurpose, root: str | None) -> tuple[int, str]:
    """An fd of ``path``'s directory (made if missing, no link followed) and its name."""
    base = root if root is not None else state_root(path, purpose)
    parts = _parts(base, path)
    if not parts:
        raise IsADirectoryError(errno.EISDIR, "cannot write the state directory itself", path)
    return _open_below(base, parts[:-1], path, purpose), parts[-1]


def _temp_file(dir_fd: int, name: str, data: bytes, mode: int) -> str:
    """A new temp file beside ``name`` holding ``data`` with ``mode``, synced; its name."""
    tmp = f".{name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dir_fd)  # fmt: skip
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    return tmp


def read_file(
    path: str, purpose: PathPurpose, *, root: str | None = None
) -> tuple[bytes, int] | None:
    """Content and permission bits of the regular file ``path``; ``None`` when it is not one.

    A missing file, a directory and a link (at the file or above it) are all ``None``
    here, so a caller rewrites the file through :func:`write_file` (which refuses a link
    above and replaces one at the file).
    """
    base = root if root is not None else state_root(path, purpose)
    parts = _parts(base, path)
    if not parts or find_link(base, path) is not None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        return f.read(), info.st_mode & 0o7777


def set_mode(path: str, mode: int) -> None:
    """``chmod`` the regular file ``path`` through a no-follow descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def create_file(path: str, data: bytes, mode: int, purpose: PathPurpose) -> bool:
    """Create ``path`` with ``data`` only if nothing (not even a link) is there; ``True``
    when created. Atomic and never overwriting: a temp file is hard-linked to the name,
    which fails when the name appeared meanwhile (a seed never replaces what an app
    wrote). A link on a directory above it is refused, as for :func:`write_file`."""
    dir_fd, name = _parent_of(path, purpose, None)
    try:
        try:
            os.lstat(name, dir_fd=dir_fd)
            return False
        except FileNotFoundError:
            pass
        tmp = _temp_file(dir_fd, name, data, mode)
        try:
            os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            created = True
        except FileExistsError:
            created = False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
        os.fsync(dir_fd)
        return created
    finally:
        os.close(dir_fd)
