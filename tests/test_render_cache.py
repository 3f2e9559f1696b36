"""The render memo is a value the caller owns, keyed by content or by the object itself."""

from __future__ import annotations

import gc
import shutil
from dataclasses import replace
from pathlib import Path

from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.yamlio import parse_yaml
from reconciler.render import hashing, stack, targeting
from reconciler.render.cache import Ref, RenderCache
from reconciler.render.device import render_device

PLANT = Path(__file__).parent / "fixtures" / "render" / "plant"


def _plant(tmp_path: Path) -> Path:
    root = tmp_path / "plant"
    shutil.copytree(PLANT, root)
    return root


class TestRenderCache:
    def test_devices_of_one_snapshot_share_one_cache(self, tmp_path: Path) -> None:
        """Rendering through one cache gives exactly what a fresh cache per device gives."""
        tree = RepoTree(_plant(tmp_path))
        repo, findings = load_repository(tree)
        assert findings == ()
        press2 = repo.devices["press-2"]
        press2 = replace(press2, variables={**press2.variables, "PLC_ADDRESS": "10.0.0.2"})
        repo = replace(repo, devices={**repo.devices, "press-2": press2})
        cache = RenderCache()
        devices = ("press-1", "press-2", "press-1")
        shared = [render_device(repo, tree, d, cache=cache).state for d in devices]
        alone = [render_device(repo, tree, d).state for d in devices]
        assert shared == alone
        assert cache.results and cache.stacks

    def test_a_new_manifest_never_hits_the_entry_of_a_dead_one(self, tmp_path: Path) -> None:
        """Stacks replaced one after another (ids free for reuse) each render their own text.

        A regression guard: the old module memo checked identity too; the key must keep it.
        """
        tree = RepoTree(_plant(tmp_path))
        repo, _ = load_repository(tree)
        cache = RenderCache()
        name = sorted(repo.devices["press-1"].stacks)[0]
        path = repo.stacks[name].compose_path
        for n in range(20):
            compose = parse_yaml(f"services:\n  app:\n    image: busybox:1.{n}\n", path)
            fresh = replace(
                repo, stacks={**repo.stacks, name: replace(repo.stacks[name], compose=compose)}
            )
            state = render_device(fresh, tree, "press-1", cache=cache).state
            images = [s.image for st in state.stacks if st.name == name for s in st.services]
            assert images == [f"busybox:1.{n}"]
            del fresh, compose
            gc.collect()

    def test_ref_is_equal_only_to_the_same_object(self) -> None:
        """A Ref key compares by identity and holds its object, so its id cannot be reused."""
        first, second = {"a": 1}, {"a": 1}
        assert Ref(first) == Ref(first)
        assert Ref(first) != Ref(second)
        key = Ref({"b": 2})
        gc.collect()
        assert key.obj == {"b": 2}

    def test_render_modules_hold_no_module_level_memo(self) -> None:
        """No dictionary or list lives at module level in the render stages any more."""
        for module in (stack, hashing, targeting):
            memos = [
                name
                for name, value in vars(module).items()
                if name.startswith("_")
                and not name.startswith("__")
                and isinstance(value, dict | list)
                and not value
            ]
            assert memos == [], (module.__name__, memos)
