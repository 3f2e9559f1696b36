"""Hostile corpus, state directory: symlinks a container planted are refused, never followed.

The validate-shaped :class:`~support.hostile.Case` runner has no hook to prepare a state
directory, so each case here writes its fleet, plants a link in a fresh state directory
(where a running container could have put it: its data or lock directory, or the
device folder through a host mount) and runs ``fleetgate apply`` as a real process
against the real engine. Each case fails on the code before the fix: there the link
was followed (a directory or file created outside the state directory, or a container
created with a bind source outside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from support.engine import DEVICE_LABEL
from support.hostile import Case, check_outcome, run_fleetgate, write_files


@dataclass(frozen=True)
class Planted:
    """A fleet, where a link is planted (relative to the state dir), and what must be said."""

    name: str
    compose: str
    link: str  # "{device}" is replaced; relative to the state directory
    expect: tuple[str, ...]
    dangling: bool = False  # the link points at a directory that does not exist


CASES = [
    Planted(
        name="data-subdir-through-planted-link",
        compose="    volumes:\n      - ./data/sub:/x\n",
        link="data/{device}/s/data",
        expect=("data directory", "of s/x contains a symlink", "remove it"),
    ),
    Planted(
        name="data-dir-is-a-dangling-link",
        compose="    volumes:\n      - ./data:/data\n",
        link="data/{device}/s/data",
        expect=("data directory", "of s/x is a symlink", "that a container planted"),
        dangling=True,
    ),
    Planted(
        name="lock-dir-is-a-planted-link",
        compose="    volumes:\n      - ${{FLEETGATE_LOCK_DIR}}:/run/fleetgate\n",
        link="locks/{device}/s",
        expect=("lock directory", "of s/x is a symlink", "remove it"),
    ),
    Planted(
        name="device-state-folder-is-a-planted-link",
        compose="",
        link="devices/{device}",
        expect=("devices/", "is a symlink", "remove it"),
    ),
]


def _fleet(case: Planted, device: str, image: str) -> dict[str, str | bytes]:
    service = f"services:\n  x:\n    image: {image}\n    command: [sleep, '3600']\n    init: true\n"
    return {
        f"devices/{device}.yaml": "stacks: [s]\n",
        "stacks/s/compose.yaml": service + case.compose.format(),
    }


def _sources_outside(client: docker.DockerClient, device: str, state: Path) -> list[str]:
    """Bind sources of the device's containers that are not under the state directory."""
    found = client.containers.list(all=True, filters={"label": f"{DEVICE_LABEL}={device}"})
    sources = [m["Source"] for c in found for m in c.attrs["Mounts"] if m["Type"] == "bind"]
    return [s for s in sources if not s.startswith(str(state.resolve()) + "/")]


@pytest.mark.docker
class TestPlantedLinks:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(
        self,
        case: Planted,
        tmp_path: Path,
        device_id: str,
        busybox_image: str,
        docker_client: docker.DockerClient,
    ) -> None:
        """`apply` refuses a planted link (exit 1, one clear line) and writes nothing outside."""
        repo, state, host = tmp_path / "repo", tmp_path / "state", tmp_path / "host"
        write_files(repo, _fleet(case, device_id, busybox_image))
        host.mkdir()
        (host / "canary").write_text("host only\n")
        link = state / case.link.format(device=device_id)
        link.parent.mkdir(parents=True)
        link.symlink_to(tmp_path / "outside" if case.dangling else host)
        args = ["apply", "--device", device_id, "--repo", str(repo), "--state-dir", str(state)]
        outcome = run_fleetgate(args, cwd=tmp_path)
        check_outcome(Case(case.name, {}, case.expect, tuple(args)), outcome)
        assert sorted(p.name for p in host.iterdir()) == ["canary"]
        assert not (tmp_path / "outside").exists()
        assert _sources_outside(docker_client, device_id, state) == []
