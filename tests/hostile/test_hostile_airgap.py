"""Hostile corpus, air-gapped bundles (issue 15): the image member kinds a stick may hold.

``fleetgate bundle import`` runs as a real process. The header cases are hand-made tars
(:mod:`support.tarforge`) refused by the scan, before anything is read or created. The
signed cases start from a real signed bundle (no images) with image members slipped in
afterwards: the signature still verifies, so what refuses them is the rule that every
image member must be listed in the signed manifest. Every case fails on the code before
issue 15 (there, every ``blobs/...`` name was an "unexpected entry" and the member count
limit was 3), so each proves the new checks, not the old whitelist.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import tarforge
from support.airgap import keypair
from support.gitserver import Origin
from support.hostile import Case, check_outcome, run_fleetgate

from reconciler.source.bundle import create_bundle, mirror_path
from reconciler.source.bundle_format import MAX_BLOB, MAX_MEMBERS

FILE = "stick.fgb"
BLOB = b"blobs/sha256/" + hashlib.sha256(b"layer").hexdigest().encode()


def _base(_: Path) -> bytes:
    return b"".join(tarforge.member(n, b"{}\n") for n in (b"manifest.json", b"repo.bundle"))


@dataclass(frozen=True)
class HeaderCase:
    name: str
    build: Callable[[Path], Path]
    expect: tuple[str, ...]


HEADERS = [
    HeaderCase(
        "blob-flood",
        lambda p: tarforge.many_members(p, 300_000, blobs=True),
        (f"more than {MAX_MEMBERS} entries",),
    ),
    HeaderCase(
        "blob-oversized",
        lambda p: tarforge.write(p, _base(p), tarforge.header(BLOB, MAX_BLOB + 1)),
        (f"is {MAX_BLOB + 1} bytes, larger than its limit of {MAX_BLOB}",),
    ),
    HeaderCase(
        "blob-symlink",
        lambda p: tarforge.write(p, _base(p), tarforge.member(BLOB, b"", b"2", linkname=b"/etc")),
        ("is a symlink, not a file",),
    ),
    HeaderCase(
        "blob-twice",
        lambda p: tarforge.write(
            p, _base(p), tarforge.member(BLOB, b"a"), tarforge.member(BLOB, b"b")
        ),
        ("twice; it was tampered with",),
    ),
    HeaderCase(
        "blob-cut-short",
        lambda p: tarforge.write(p, _base(p), tarforge.header(BLOB, 1 << 20), end=False),
        ("is cut short",),
    ),
]


class TestHostileImageMembers:
    @pytest.mark.parametrize("case", HEADERS, ids=[c.name for c in HEADERS])
    def test_case(self, case: HeaderCase, tmp_path: Path) -> None:
        """An image member breaking a limit is refused in one line; nothing is created."""
        file = case.build(tmp_path / "usb" / FILE)
        allowed = tmp_path / "allowed_signers"
        allowed.write_text("release@plant.example ssh-ed25519 AAAA\n")
        state = tmp_path / "state"
        args = ["bundle", "import", str(file), "--state-dir", str(state)]
        outcome = run_fleetgate([*args, "--allowed-signers", str(allowed)], cwd=tmp_path)
        check_outcome(Case(case.name, {}, (f"bundle {FILE}:", *case.expect)), outcome)
        assert len(outcome.stderr.strip().splitlines()) == 1, outcome.stderr
        assert not state.exists() or not any(state.rglob("*")), "a refused bundle changed state"


def _signed(tmp_path: Path) -> tuple[Path, Path]:
    key, allowed = keypair(tmp_path / "keys")
    origin = Origin(tmp_path / "fleet")
    origin.commit({"devices/d1.yaml": "stacks: []\n"}, "fleet")
    out = tmp_path / "plain.fgb"
    create_bundle(origin.path, "main", out, datetime(2026, 3, 2, tzinfo=UTC), sign_key=key)
    return out, allowed


def _append(bundle: Path, out: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(bundle) as src, tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member in src.getmembers():
            tar.addfile(member, src.extractfile(member))
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


SIGNED = [
    ("unlisted-blob", {BLOB.decode(): b"layer"}, "image entries its signed manifest does not list"),
    ("unlisted-index", {"index.json": b"{}", "oci-layout": b"{}"}, "it was tampered with"),
]


class TestHostileSignedStick:
    @pytest.mark.parametrize(("name", "members", "why"), SIGNED, ids=[c[0] for c in SIGNED])
    def test_case(self, name: str, members: dict[str, bytes], why: str, tmp_path: Path) -> None:
        """Image members slipped into a validly signed bundle: refused, nothing imported."""
        plain, allowed = _signed(tmp_path)
        (tmp_path / "usb").mkdir()
        file = _append(plain, tmp_path / "usb" / FILE, members)
        state = tmp_path / "state"
        args = ["bundle", "import", str(file), "--state-dir", str(state)]
        outcome = run_fleetgate([*args, "--allowed-signers", str(allowed)], cwd=tmp_path)
        check_outcome(Case(name, {}, (f"bundle {FILE}:", why)), outcome)
        assert not (mirror_path(state / "cache") / "HEAD").exists(), "a refused bundle imported"
