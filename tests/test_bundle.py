"""Signed offline bundles: create, verify, import into the mirror, and every refusal."""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.gitserver import Origin, git

from reconciler.cli import bundle as bundle_cmd
from reconciler.errors import SignatureError, SourceError
from reconciler.source import open_source
from reconciler.source.bundle import (
    BUNDLE_REPO,
    IMPORTED_REF,
    create_bundle,
    import_bundle,
    mirror_path,
)
from reconciler.source.bundle_format import GIT_BUNDLE, MANIFEST, SIGNATURE

FIXTURE = Path(__file__).parent / "fixtures" / "impact"
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "keys"
    folder.mkdir()
    good = keygen(folder / "release", "release")
    bad = keygen(folder / "intruder", "intruder")
    allowed = folder / "allowed_signers"
    allowed.write_text(f"release@plant.example {good.with_suffix('.pub').read_text()}")
    return {"good": good, "bad": bad, "allowed": allowed}


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    repo = Origin(tmp_path / "fleet")
    shutil.copytree(FIXTURE, repo.path, dirs_exist_ok=True)
    repo.commit({}, "initial fleet")
    return repo


def bump(origin: Origin, version: str) -> str:
    path = "stacks/web/compose.yaml"
    text = (origin.path / path).read_text()
    head, _, _ = text.partition("image: nginx:")
    rest = text.split("image: nginx:", 1)[1].split("\n", 1)[1]
    return origin.commit({path: f"{head}image: nginx:{version}\n{rest}"}, f"web {version}")


def imported(cache: Path) -> str | None:
    mirror = mirror_path(cache)
    if not (mirror / "HEAD").is_file():
        return None
    found = subprocess.run(
        ["git", "--git-dir", str(mirror), "rev-parse", "--verify", "--quiet", IMPORTED_REF],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or None


def rewrite(source: Path, target: Path, replace: dict[str, bytes]) -> None:
    """Copy a bundle tar, replacing the content of some members."""
    with tarfile.open(source) as old, tarfile.open(target, "w") as new:
        for info in old.getmembers():
            data = replace.get(info.name)
            if data is None:
                file = old.extractfile(info)
                assert file is not None
                data = file.read()
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))


class TestSignedImport:
    def test_import_then_checkout_through_the_mirror(
        self, origin: Origin, keys: dict[str, Path], tmp_path: Path
    ) -> None:
        """A signed bundle imports, and its revision is then checked out via the mirror offline."""
        rev = bump(origin, "1.25.4")
        file = tmp_path / "usb" / "fleet.bundle"
        manifest = create_bundle(origin.path, "main", file, NOW, sign_key=keys["good"])
        assert manifest.revision == rev and manifest.ref == "refs/heads/main"
        cache = tmp_path / "state" / "cache"
        result = import_bundle(file, cache, keys["allowed"], NOW)
        assert (result.revision, result.previous, result.signer) == (
            rev,
            None,
            "release@plant.example",
        )
        assert imported(cache) == rev
        checkout = open_source(BUNDLE_REPO, cache, ref=rev, timeout=10)
        assert checkout.revision == rev
        assert "nginx:1.25.4" in (checkout.root / "stacks/web/compose.yaml").read_text()
        again = import_bundle(file, cache, keys["allowed"], NOW)
        assert again.unchanged and again.previous == rev

    def test_incremental_bundle_fast_forwards(
        self, origin: Origin, keys: dict[str, Path], tmp_path: Path
    ) -> None:
        """A --since bundle carrying only newer commits imports on top of the previous one."""
        first = bump(origin, "1.25.4")
        cache = tmp_path / "cache"
        full = tmp_path / "full.bundle"
        whole = create_bundle(origin.path, "main", full, NOW, sign_key=keys["good"])
        import_bundle(full, cache, keys["allowed"], NOW)
        second = bump(origin, "1.25.5")
        delta = tmp_path / "delta.bundle"
        manifest = create_bundle(
            origin.path, "main", delta, NOW, sign_key=keys["good"], since=first
        )
        assert manifest.base == first
        assert manifest.bundle_size < whole.bundle_size
        result = import_bundle(delta, cache, keys["allowed"], NOW)
        assert (result.previous, result.revision) == (first, second)
        assert imported(cache) == second

    def test_incremental_bundle_without_its_base(
        self, origin: Origin, keys: dict[str, Path], tmp_path: Path
    ) -> None:
        """A --since bundle on a device lacking the base commit is refused, naming the base."""
        first = bump(origin, "1.25.4")
        bump(origin, "1.25.5")
        delta = tmp_path / "delta.bundle"
        create_bundle(origin.path, "main", delta, NOW, sign_key=keys["good"], since=first)
        with pytest.raises(SourceError, match=f"needs commit {first[:12]}"):
            import_bundle(delta, tmp_path / "cache", keys["allowed"], NOW)
        assert imported(tmp_path / "cache") is None

    def test_cli_import_shows_the_device_change(
        self, origin: Origin, keys: dict[str, Path], tmp_path: Path, capsys: Any
    ) -> None:
        """`bundle import --device` prints what the bundle changes on that device."""
        file = tmp_path / "fleet.bundle"
        create_bundle(origin.path, "main", file, NOW, sign_key=keys["good"])
        parser = argparse.ArgumentParser()
        bundle_cmd.register(parser.add_subparsers())
        argv = [
            "bundle", "import", str(file), "--state-dir", str(tmp_path / "state"),
            "--allowed-signers", str(keys["allowed"]), "--device", "b-pack-1",
        ]  # fmt: skip
        args = parser.parse_args(argv)
        assert args.handler(args) == 0
        out = capsys.readouterr().out
        assert "signed by release@plant.example" in out
        assert "service web added: image (none) → nginx:1.25.3" in out


class TestRefusals:
    @pytest.fixture
    def base(self, origin: Origin, keys: dict[str, Path], tmp_path: Path) -> tuple[Path, str]:
        """A cache with the current revision imported, and a newer signed bundle."""
        cache = tmp_path / "cache"
        current = tmp_path / "current.bundle"
        create_bundle(origin.path, "main", current, NOW, sign_key=keys["good"])
        rev = import_bundle(current, cache, keys["allowed"], NOW).revision
        bump(origin, "1.25.4")
        create_bundle(origin.path, "main", tmp_path / "new.bundle", NOW, sign_key=keys["good"])
        return cache, rev

    def refused(
        self, file: Path, cache: Path, keys: dict[str, Path], error: type[Exception], match: str
    ) -> None:
        before = imported(cache)
        listing = sorted(p.relative_to(cache) for p in cache.rglob("*") if "objects" not in p.parts)
        with pytest.raises(error, match=match):
            import_bundle(file, cache, keys["allowed"], NOW)
        assert imported(cache) == before
        after = sorted(p.relative_to(cache) for p in cache.rglob("*") if "objects" not in p.parts)
        assert after == listing

    def test_unsigned(self, origin: Origin, keys: dict[str, Path], base: tuple[Path, str]) -> None:
        """An unsigned bundle is refused as unsigned and nothing changes."""
        file = base[0].parent / "unsigned.bundle"
        create_bundle(origin.path, "main", file, NOW)
        self.refused(file, base[0], keys, SignatureError, "bundle is unsigned")

    def test_wrong_key(self, origin: Origin, keys: dict[str, Path], base: tuple[Path, str]) -> None:
        """A bundle signed by a key outside allowedSigners is refused."""
        file = base[0].parent / "intruder.bundle"
        create_bundle(origin.path, "main", file, NOW, sign_key=keys["bad"])
        self.refused(file, base[0], keys, SignatureError, "not in allowedSigners")

    def test_truncated(self, keys: dict[str, Path], base: tuple[Path, str]) -> None:
        """A bundle cut short (a USB stick pulled mid-copy) is refused as truncated."""
        good = base[0].parent / "new.bundle"
        with tarfile.open(good) as tar:
            data = tar.getmember(GIT_BUNDLE)
        for size in (
            100,
            1500,
            data.offset_data + data.size // 2,
            data.offset_data + data.size - 1,
        ):
            cut = base[0].parent / f"cut-{size}.bundle"
            cut.write_bytes(good.read_bytes()[:size])
            self.refused(cut, base[0], keys, SourceError, "truncated")

    def test_tampered_git_bundle(self, keys: dict[str, Path], base: tuple[Path, str]) -> None:
        """A Git bundle swapped after signing no longer matches the signed manifest."""
        good = base[0].parent / "new.bundle"
        old = base[0].parent / "current.bundle"
        with tarfile.open(old) as tar:
            member = tar.extractfile(GIT_BUNDLE)
            assert member is not None
            swapped = member.read()
        evil = base[0].parent / "evil.bundle"
        rewrite(good, evil, {GIT_BUNDLE: swapped})
        self.refused(evil, base[0], keys, SourceError, "tampered")

    def test_tampered_manifest(self, keys: dict[str, Path], base: tuple[Path, str]) -> None:
        """A manifest edited after signing fails signature verification."""
        good = base[0].parent / "new.bundle"
        with tarfile.open(good) as tar:
            member = tar.extractfile(MANIFEST)
            assert member is not None
            text = member.read().replace(b"refs/heads/main", b"refs/heads/evil")
        evil = base[0].parent / "evil.bundle"
        rewrite(good, evil, {MANIFEST: text})
        self.refused(evil, base[0], keys, SignatureError, "does not match its manifest")

    def test_older_bundle(
        self, origin: Origin, keys: dict[str, Path], base: tuple[Path, str]
    ) -> None:
        """After a newer import, the older bundle is refused as not a fast-forward."""
        cache, first = base
        newer = import_bundle(cache.parent / "new.bundle", cache, keys["allowed"], NOW)
        assert newer.previous == first
        self.refused(cache.parent / "current.bundle", cache, keys, SourceError, "does not descend")

    def test_older_than_applied(self, keys: dict[str, Path], base: tuple[Path, str]) -> None:
        """A bundle older than the revision the device runs is refused."""
        cache, first = base
        newer = import_bundle(cache.parent / "new.bundle", cache, keys["allowed"], NOW)
        other = cache.parent / "other-cache"
        with pytest.raises(SourceError, match="applied revision"):
            import_bundle(
                cache.parent / "current.bundle", other, keys["allowed"], NOW, applied=newer.revision
            )
        assert imported(other) is None and first != newer.revision


class TestTarSafety:
    @pytest.mark.parametrize(
        ("name", "kind"),
        [("../../escaped", tarfile.REGTYPE), ("/tmp/abs", tarfile.REGTYPE), ("x", tarfile.REGTYPE)],
    )
    def test_foreign_names_are_refused(
        self, name: str, kind: bytes, keys: dict[str, Path], tmp_path: Path
    ) -> None:
        """A member with any other name is refused before anything is written."""
        file = tmp_path / "evil.bundle"
        with tarfile.open(file, "w") as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
        cache = tmp_path / "state" / "cache"
        with pytest.raises(SourceError, match=r"unexpected entry|absolute name|'\.\.' in its"):
            import_bundle(file, cache, keys["allowed"], NOW)
        assert not (tmp_path / "escaped").exists()
        assert not (tmp_path / "state" / "escaped").exists()
        assert not (cache / "mirrors").exists()  # refused before anything is created

    def test_symlink_member_is_refused(self, keys: dict[str, Path], tmp_path: Path) -> None:
        """A known name as a symlink (to write through it) is refused."""
        file = tmp_path / "evil.bundle"
        with tarfile.open(file, "w") as tar:
            info = tarfile.TarInfo(SIGNATURE)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        with pytest.raises(SourceError, match="is a symlink, not a file"):
            import_bundle(file, tmp_path / "cache", keys["allowed"], NOW)

    def test_create_refuses_a_bare_sha(self, origin: Origin, tmp_path: Path) -> None:
        """A bundle carries a ref, so --ref must name a branch or tag."""
        sha = git("rev-parse", "HEAD", cwd=origin.path)
        with pytest.raises(SourceError, match="name a branch or tag"):
            create_bundle(origin.path, sha, tmp_path / "x.bundle", NOW)
