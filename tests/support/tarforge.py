"""Hand-made tar files for the bundle limits: headers Python's ``tarfile`` would never write.

Each header is a raw 512-byte USTAR block with a correct checksum, so the reader's name,
type and size checks (not its checksum check) are what a case exercises.
"""

from __future__ import annotations

from pathlib import Path

BLOCK = 512
END = b"\0" * (2 * BLOCK)


def header(
    name: bytes,
    size: int = 0,
    kind: bytes = b"0",
    *,
    prefix: bytes = b"",
    linkname: bytes = b"",
    size_field: bytes | None = None,
) -> bytes:
    """One USTAR header block; ``name`` may hold any bytes (NUL, ESC) up to 100 of them."""
    block = bytearray(BLOCK)
    block[0 : len(name[:100])] = name[:100]
    block[100:108] = b"0000644\0"
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    block[124:136] = size_field if size_field is not None else b"%011o\0" % size
    block[136:148] = b"00000000000\0"
    block[156:157] = kind
    block[157 : 157 + len(linkname)] = linkname
    block[257:263] = b"ustar\0"
    block[263:265] = b"00"
    block[345 : 345 + len(prefix)] = prefix
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def member(name: bytes, data: bytes, kind: bytes = b"0", **extra: bytes) -> bytes:
    """A header and its data, padded to whole blocks."""
    padding = b"\0" * (-len(data) % BLOCK)
    return header(name, len(data), kind, **extra) + data + padding


def write(path: Path, *parts: bytes, end: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(parts) + (END if end else b""))
    return path


def many_members(path: Path, count: int, *, blobs: bool = False) -> Path:
    """A tar of the three known names followed by ``count`` more empty members (streamed);
    ``blobs``: each a distinct, well-named image blob ``blobs/sha256/<hex>``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for name in (b"manifest.json", b"manifest.json.sig", b"repo.bundle"):
            f.write(member(name, b"{}\n"))
        filler = header(b"filler", 0)
        if blobs:
            for n in range(min(count, 3000)):
                f.write(header(b"blobs/sha256/%064x" % n, 0))
            count -= min(count, 3000)
        for start in range(0, count, 10_000):
            f.write(filler * min(10_000, count - start))
        f.write(END)
    return path


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space (a hole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)
    return path
