"""Hostile corpus, source cases: bundles that break the limits, refs and signed local trees.

Bundle cases run ``fleetgate bundle import`` as a real process on a hand-made tar
(:mod:`support.tarforge`) and also check that nothing was created in the state
directory. Every case failed on the code before issue 8 points 3 and 6: the old reader
named no bundle file, read every header (``tarfile.getmembers``) and had no per-name
reasons; the ref cases resolved a branch named like a SHA; the signed local case read
the working tree. ``bundle-oversized-file`` is partly a regression guard (``stat`` came
first already): it fails on the old code only for its new "what to do" advice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import tarforge
from support.gitserver import Origin, git
from support.hostile import Case, check_outcome, run_fleetgate
from support.signedrepo import signed_fleet

from reconciler.source.bundle_format import MAX_FILE, MAX_MEMBERS

FILE = "evil.fgb"
BENIGN = "services:\n  web:\n    image: busybox:1\n"
PRIVILEGED = "services:\n  web:\n    image: busybox:1\n    privileged: true\n"
EVIL = "services:\n  web:\n    image: evil.example/owned:1\n"


@dataclass(frozen=True)
class BundleCase:
    name: str
    build: Callable[[Path], Path]
    expect: tuple[str, ...]


def _ok(name: bytes) -> bytes:
    return tarforge.member(name, b"{}\n")


BUNDLES = [
    BundleCase(
        "bundle-too-many-members",
        lambda p: tarforge.many_members(p, 300_000, blobs=True),
        (f"more than {MAX_MEMBERS} entries",),
    ),
    BundleCase(
        "bundle-absolute-name",
        lambda p: tarforge.write(p, _ok(b"/etc/cron.d/evil")),
        ("'/etc/cron.d/evil'", "absolute name"),
    ),
    BundleCase(
        "bundle-dotdot-name",
        lambda p: tarforge.write(p, _ok(b"../../root/.ssh/authorized_keys")),
        ("'..' in its name",),
    ),
    BundleCase(
        "bundle-nul-in-name",
        lambda p: tarforge.write(p, _ok(b"manifest.json\0../../x")),
        ("manifest.json\\x00", "control character"),
    ),
    BundleCase(
        "bundle-escape-in-name",
        lambda p: tarforge.write(p, _ok(b"\x1b[31mmanifest.json\xe2\x80\xae")),
        ("\\x1b[31m", "\\u202e", "control character"),
    ),
    BundleCase(
        "bundle-long-name",
        lambda p: tarforge.write(p, tarforge.member(b"b" * 100, b"x", prefix=b"a" * 40)),
        ("longer than 100 characters",),
    ),
    BundleCase(
        "bundle-oversized-member",
        lambda p: tarforge.write(p, tarforge.header(b"repo.bundle", 5 * 1024**3)),
        ("repo.bundle is 5368709120 bytes", "larger than its limit"),
    ),
    BundleCase(
        "bundle-oversized-file",
        lambda p: tarforge.sparse(p, MAX_FILE + 1),
        ("larger than the limit", "use --since"),
    ),
    BundleCase(
        "bundle-symlink-member",
        lambda p: tarforge.write(
            p, tarforge.member(b"manifest.json.sig", b"", b"2", linkname=b"/etc/shadow")
        ),
        ("manifest.json.sig is a symlink, not a file",),
    ),
    BundleCase(
        "bundle-unexpected-member",
        lambda p: tarforge.write(p, _ok(b"manifest.json"), _ok(b"hooks/post-checkout")),
        ("unexpected entry 'hooks/post-checkout'",),
    ),
    BundleCase(
        "bundle-pax-header",
        lambda p: tarforge.write(p, tarforge.header(b"PaxHeader/manifest.json", 1024**3, b"x")),
        ("pax header",),
    ),
    BundleCase(
        "bundle-truncated",
        lambda p: tarforge.write(p, tarforge.member(b"repo.bundle", b"x" * 4096)[:2048], end=False),
        ("truncated", "repo.bundle is cut short"),
    ),
    BundleCase(
        "bundle-damaged-header",
        lambda p: tarforge.write(p, b"\x01" * 512),
        ("damaged tar header",),
    ),
]


class TestHostileBundles:
    @pytest.mark.parametrize("case", BUNDLES, ids=[c.name for c in BUNDLES])
    def test_case(self, case: BundleCase, tmp_path: Path) -> None:
        """A hostile bundle is refused in one line naming the file and why; nothing is created."""
        file = case.build(tmp_path / "usb" / FILE)
        allowed = tmp_path / "allowed_signers"
        allowed.write_text("release@plant.example ssh-ed25519 AAAA\n")
        state = tmp_path / "state"
        args = ["bundle", "import", str(file), "--state-dir", str(state)]
        outcome = run_fleetgate([*args, "--allowed-signers", str(allowed)], cwd=tmp_path)
        expect = (f"bundle {FILE}:", *case.expect)
        check_outcome(Case(case.name, {}, expect, exit_code=1), outcome)
        assert len(outcome.stderr.strip().splitlines()) == 1, outcome.stderr
        assert not state.exists() or not any(state.rglob("*")), "a refused bundle changed state"


def _cache(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(tmp_path / "xdg")}


def _shadowed(tmp_path: Path) -> tuple[Origin, str, str]:
    """A fleet whose commit ``good`` is shadowed by a branch named like it (at ``evil``)."""
    origin = Origin(tmp_path / "repo")
    good = origin.commit({"devices/d1.yaml": "stacks: [web]\n", "stacks/web/compose.yaml": BENIGN})
    evil = origin.commit({"stacks/web/compose.yaml": EVIL})
    git("update-ref", f"refs/heads/{good}", evil, cwd=origin.path)
    return origin, good, evil


class TestHostileRefs:
    def test_branch_named_like_a_commit(self, tmp_path: Path) -> None:
        """``--ref <40-hex>`` reads that commit, never the branch named like it."""
        origin, good, _ = _shadowed(tmp_path)
        args = ["render", "--device", "d1", "--repo", str(origin.path), "--ref", good]
        outcome = run_fleetgate([*args, "--output", "json"], tmp_path, _cache(tmp_path))
        check_outcome(Case("ref-branch-named-sha", {}, (good, "busybox:1"), exit_code=0), outcome)
        assert "evil.example" not in outcome.stdout

    def test_branch_named_like_a_missing_commit(self, tmp_path: Path) -> None:
        """A 40-hex ``--ref`` that is only a branch's name is refused as no such commit."""
        origin, _, evil = _shadowed(tmp_path)
        ghost = "1" * 40
        git("update-ref", f"refs/heads/{ghost}", evil, cwd=origin.path)
        args = ["validate", "--repo", str(origin.path), "--ref", ghost]
        outcome = run_fleetgate(args, tmp_path, _cache(tmp_path))
        expect = (str(origin.path), f"has no commit {ghost}")
        check_outcome(Case("ref-branch-named-missing-sha", {}, expect), outcome)

    def test_bundle_create_with_a_sha_branch(self, tmp_path: Path) -> None:
        """``bundle create --ref <40-hex>`` is refused even when a branch has that name."""
        origin, good, _ = _shadowed(tmp_path)
        out = tmp_path / "out.fgb"
        args = ["bundle", "create", "--repo", str(origin.path), "--ref", good, "--out", str(out)]
        outcome = run_fleetgate(args, tmp_path)
        expect = (f"--ref {good}", "40 hex digits name a commit", "name a branch or tag")
        check_outcome(Case("bundle-create-sha-branch", {}, expect), outcome)
        assert not out.exists()


class TestHostileSignedLocal:
    @pytest.mark.parametrize("how", ["--skip-worktree", "--assume-unchanged"])
    def test_hidden_change_masks_the_signed_commit(self, how: str, tmp_path: Path) -> None:
        """A signed local clone is validated as signed, whatever a hidden working-tree edit shows.

        The signed commit asks for ``privileged`` (refused by the fleet policy); a hidden
        edit makes the working tree look harmless. Validation must see the commit.
        """
        files = {"devices/d1.yaml": "stacks: [web]\n", "stacks/web/compose.yaml": PRIVILEGED}
        repo, allowed, _ = signed_fleet(tmp_path, files)
        repo.hide("stacks/web/compose.yaml", BENIGN, how)
        args = ["validate", "--repo", str(repo.path), "--allowed-signers", str(allowed)]
        outcome = run_fleetgate(args, tmp_path, _cache(tmp_path))
        expect = ("stacks/web/compose.yaml:4:", "privileged")
        check_outcome(Case(f"signed-local-hidden{how}", {}, expect), outcome)

    def test_plain_folder_with_signers(self, tmp_path: Path) -> None:
        """With allowed signers a folder outside Git is refused: it has no signed commit."""
        _, allowed, _ = signed_fleet(tmp_path, {"devices/d1.yaml": "stacks: []\n"})
        plain = tmp_path / "plain"
        (plain / "devices").mkdir(parents=True)
        (plain / "devices" / "d1.yaml").write_text("stacks: []\n")
        args = ["validate", "--repo", str(plain), "--allowed-signers", str(allowed)]
        outcome = run_fleetgate(args, tmp_path, _cache(tmp_path))
        expect = (str(plain), "not a Git repository", "signed commit")
        check_outcome(Case("signed-local-plain-folder", {}, expect), outcome)
