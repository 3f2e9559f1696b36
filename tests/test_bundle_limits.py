"""Bundle limits: a hostile tar is refused from its first headers, before anything is written."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs
from support import tarforge

from reconciler.agent.config import AgentConfig
from reconciler.agent.source import AgentSource
from reconciler.errors import SourceError
from reconciler.record import DeviceRecord
from reconciler.source.bundle import BUNDLE_REPO
from reconciler.source.bundle_format import MAX_FILE, MAX_MEMBERS, Member, parse_header
from reconciler.source.bundletar import scan_bundle


class TestParseHeader:
    def test_regular_file(self) -> None:
        """A plain USTAR header of a known name is read as a file with its size."""
        block = tarforge.header(b"repo.bundle", 1234)
        assert parse_header(block, 0) == Member("repo.bundle", "file", 1234)

    def test_end_of_archive(self) -> None:
        """An all-zero block ends the archive."""
        assert parse_header(b"\0" * 512, 3) is None

    @pytest.mark.parametrize(
        ("kind", "what"),
        [(b"2", "symlink"), (b"1", "hard link"), (b"5", "directory"), (b"x", "pax header"),
         (b"L", "GNU long name"), (b"3", "device"), (b"7", "special entry")],
    )  # fmt: skip
    def test_kinds(self, kind: bytes, what: str) -> None:
        """Every non-regular entry type is named as what it is."""
        member = parse_header(tarforge.header(b"manifest.json", 0, kind), 0)
        assert member is not None and member.type == what

    def test_bad_checksum(self) -> None:
        """A header whose checksum does not add up is a damaged file."""
        block = bytearray(tarforge.header(b"manifest.json", 10))
        block[0] = ord("M")
        with pytest.raises(SourceError, match="damaged tar header"):
            parse_header(bytes(block), 0)

    def test_base256_size_is_refused(self) -> None:
        """A GNU base-256 size (how tar writes huge sizes) is not a plain bundle."""
        block = tarforge.header(b"repo.bundle", size_field=b"\x80" + b"\0" * 7 + b"\xff" * 4)
        with pytest.raises(SourceError, match="unreadable size"):
            parse_header(block, 0)


class TestScan:
    def test_many_members_stop_at_the_fourth_header(self, tmp_path: Path) -> None:
        """A 300,000-member tar is refused at its fourth header (an unknown name)."""
        file = tarforge.many_members(tmp_path / "many.fgb", 300_000)
        with pytest.raises(SourceError, match="unexpected entry 'filler'"):
            scan_bundle(file)

    def test_too_many_blobs_stop_after_the_limit(self, tmp_path: Path) -> None:
        """Distinct, well-named image blobs are still refused after MAX_MEMBERS headers."""
        file = tarforge.many_members(tmp_path / "many.fgb", 300_000, blobs=True)
        with pytest.raises(SourceError, match=f"more than {MAX_MEMBERS} entries"):
            scan_bundle(file)

    def test_blob_names_are_exact(self, tmp_path: Path) -> None:
        """Only blobs/sha256/<64 lowercase hex> is an image blob; a near miss is refused."""
        for name in (b"blobs/sha256/" + b"A" * 64, b"blobs/sha256/" + b"a" * 63,
                     b"blobs/sha512/" + b"a" * 128, b"blobs/sha256/../" + b"a" * 61):  # fmt: skip
            file = tarforge.write(tmp_path / "x.fgb", tarforge.member(name, b"x"))
            with pytest.raises(SourceError, match=r"unexpected entry|'\.\.'"):
                scan_bundle(file)

    def test_oversized_file_is_never_opened(self, tmp_path: Path) -> None:
        """A file above the limit is refused by its size alone."""
        file = tarforge.sparse(tmp_path / "huge.fgb", MAX_FILE + 1)
        with pytest.raises(SourceError, match="larger than the limit"):
            scan_bundle(file)

    def test_member_data_beyond_the_end(self, tmp_path: Path) -> None:
        """A header announcing more data than the file holds is truncated, found by the scan."""
        file = tarforge.write(tmp_path / "cut.fgb", tarforge.header(b"repo.bundle", 1 << 20))
        with pytest.raises(SourceError, match=r"repo\.bundle is cut short"):
            scan_bundle(file)

    def test_missing_manifest(self, tmp_path: Path) -> None:
        """A tar with only a signature lacks the manifest and the Git bundle."""
        file = tarforge.write(tmp_path / "x.fgb", tarforge.member(b"manifest.json.sig", b"s"))
        with pytest.raises(SourceError, match="manifest or Git bundle missing"):
            scan_bundle(file)


class TestWatchFolder:
    def test_hostile_files_are_refused_once_without_hashing(self, tmp_path: Path) -> None:
        """The agent refuses a huge and a 300,000-member file by their headers, once each."""
        usb = tmp_path / "usb"
        many = tarforge.many_members(usb / "many.fgb", 300_000)
        huge = tarforge.sparse(usb / "huge.fgb", MAX_FILE + 1)
        past = time.time() - 60
        for file in (many, huge):
            os.utime(file, (past, past))
        allowed = tmp_path / "allowed_signers"
        allowed.write_text("release@plant.example ssh-ed25519 AAAA\n")
        config = AgentConfig(
            device="press-01",
            repo=BUNDLE_REPO,
            state_dir=tmp_path / "state",
            allowed_signers=allowed,
            watch=(usb,),
        )
        source = AgentSource(config, structlog.get_logger())
        with capture_logs() as logs:
            first = source.refresh(DeviceRecord("press-01"), datetime.now(UTC))
            source.refresh(DeviceRecord("press-01"), datetime.now(UTC))
        refused = sorted(e["file"] for e in logs if e["event"] == "bundle.refused")
        assert refused == [str(huge), str(many)]
        assert first.refused is not None and "bundle " in first.refused
        assert not (config.cache_dir / "mirrors").exists()
