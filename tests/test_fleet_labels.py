"""The fleet view's device labels: read from the repository, through the label cache."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.fleet import labelcache
from reconciler.fleet.devices import fleet_devices
from reconciler.manifests.tree import RepoTree


def _repo(tmp_path: Path, files: dict[str, str]) -> RepoTree:
    root = tmp_path / "repo"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return RepoTree(root)


def _plant(cache: Path, text: str, labels: dict[str, str]) -> None:
    document = {"format": labelcache.FORMAT, "labels": {labelcache.digest(text.encode()): labels}}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(document))


class TestLabelCache:
    def test_a_first_read_fills_the_cache_with_the_hardened_loaders_labels(
        self, tmp_path: Path
    ) -> None:
        """Labels are parsed the YAML 1.2 way (``no`` stays text) and kept under the digest."""
        text = "labels: {site: no, line: '2'}\n"
        cache = tmp_path / "cache" / "fleet-labels.json"
        devices, problems = fleet_devices(_repo(tmp_path, {"devices/d1.yaml": text}), cache)
        assert devices == {"d1": {"site": "no", "line": "2"}}
        assert problems == ()
        assert labelcache.load(cache) == {labelcache.digest(text.encode()): devices["d1"]}

    def test_an_unchanged_file_is_answered_from_the_cache(self, tmp_path: Path) -> None:
        """A file whose digest is cached is not parsed again: the cached labels are used."""
        text = "labels: {site: plant-a}\n"
        cache = tmp_path / "cache" / "fleet-labels.json"
        _plant(cache, text, {"site": "from-the-cache"})
        devices, _ = fleet_devices(_repo(tmp_path, {"devices/d1.yaml": text}), cache)
        assert devices == {"d1": {"site": "from-the-cache"}}

    def test_a_changed_file_is_parsed_again(self, tmp_path: Path) -> None:
        """Other bytes, another digest: the file is parsed and the new labels cached."""
        cache = tmp_path / "cache" / "fleet-labels.json"
        _plant(cache, "labels: {site: plant-a}\n", {"site": "plant-a"})
        tree = _repo(tmp_path, {"devices/d1.yaml": "labels: {site: plant-b}\n"})
        devices, _ = fleet_devices(tree, cache)
        assert devices == {"d1": {"site": "plant-b"}}
        assert {"site": "plant-b"} in labelcache.load(cache).values()

    def test_a_broken_file_is_never_cached_and_keeps_its_line(self, tmp_path: Path) -> None:
        """A file with a problem is reported with file:line on every run, never cached."""
        tree = _repo(tmp_path, {"devices/d1.yaml": "labels: {site: a}\nlabels: {site: b}\n"})
        cache = tmp_path / "cache" / "fleet-labels.json"
        for _ in range(2):
            devices, problems = fleet_devices(tree, cache)
            assert devices == {"d1": {}}
            assert len(problems) == 1
            assert problems[0].startswith("devices/d1.yaml:2:")
        assert labelcache.load(cache) == {}

    def test_a_corrupt_or_foreign_cache_is_ignored_and_replaced(self, tmp_path: Path) -> None:
        """Garbage, another format or bad entries in the cache never change the labels."""
        text = "labels: {site: plant-a}\n"
        cache = tmp_path / "cache" / "fleet-labels.json"
        key = labelcache.digest(text.encode())
        for garbage in (
            "{not json",
            json.dumps({"format": "fleet-labels/0", "labels": {key: {"site": "old"}}}),
            json.dumps({"format": labelcache.FORMAT, "labels": {key: {"site": 5}}}),
        ):
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(garbage)
            devices, problems = fleet_devices(_repo(tmp_path, {"devices/d1.yaml": text}), cache)
            assert (devices, problems) == ({"d1": {"site": "plant-a"}}, ())
            assert labelcache.load(cache) == {key: {"site": "plant-a"}}

    def test_an_unwritable_cache_only_costs_speed(self, tmp_path: Path) -> None:
        """A cache path that cannot be written (its folder is a file) is no error."""
        (tmp_path / "blocked").write_text("a file, not a folder")
        cache = tmp_path / "blocked" / "fleet-labels.json"
        tree = _repo(tmp_path, {"devices/d1.yaml": "labels: {site: plant-a}\n"})
        assert fleet_devices(tree, cache) == ({"d1": {"site": "plant-a"}}, ())
