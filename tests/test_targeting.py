"""Targeting: which groups, stacks, variables and windows apply to a device."""

from __future__ import annotations

from reconciler.model import (
    DeviceManifest,
    FleetManifest,
    FleetRepository,
    GroupManifest,
    UpdateWindow,
)
from reconciler.render.targeting import stack_variables, target_device

NIGHT = UpdateWindow(("mon",), "22:00", "04:00", "Europe/Berlin")
WEEKEND = UpdateWindow(("sat",), "06:00", "12:00", "Europe/Berlin")
FLEET_WINDOW = UpdateWindow(("sun",), "01:00", "02:00", "UTC")


def repo(device: DeviceManifest, *groups: GroupManifest) -> FleetRepository:
    return FleetRepository(
        fleet=FleetManifest(variables={"A": "fleet", "B": "fleet"}, update_windows=(FLEET_WINDOW,)),
        devices={device.id: device},
        groups={g.name: g for g in groups},
        stacks={},
    )


DEVICE = DeviceManifest(
    "press-1", labels={"site": "han", "ring": "prod"}, arch="arm64", stacks=("b", "a")
)


class TestGroups:
    def test_selector_needs_every_key_equal(self) -> None:
        """A group applies only when all of its selector keys equal the device labels."""
        yes = GroupManifest("g1", selector={"site": "han", "ring": "prod"}, stacks=("x",))
        no = GroupManifest("g2", selector={"site": "han", "ring": "canary"}, stacks=("y",))
        target = target_device(repo(DEVICE, yes, no), DEVICE)
        assert [g.name for g in target.groups] == ["g1"]

    def test_empty_selector_matches_every_device(self) -> None:
        """A group without selector keys applies to the whole fleet."""
        target = target_device(repo(DEVICE, GroupManifest("all", stacks=("base",))), DEVICE)
        assert target.stacks == ("b", "a", "base")

    def test_stacks_are_device_then_groups_in_file_order_once(self) -> None:
        """Stacks keep device order, then groups by file name, each stack once."""
        g2 = GroupManifest("20-x", stacks=("c", "a"))
        g1 = GroupManifest("10-x", stacks=("d", "b"))
        assert target_device(repo(DEVICE, g2, g1), DEVICE).stacks == ("b", "a", "d", "c")


class TestVariables:
    def test_precedence_is_stack_fleet_groups_device_builtins(self) -> None:
        """Later sources override earlier ones, builtins override everything, PWD is '.'."""
        device = DeviceManifest(
            "press-1", variables={"D": "device", "FLEETGATE_DEVICE": "spoof"}, stacks=("s",)
        )
        g1 = GroupManifest("10", variables={"B": "g10", "C": "g10", "D": "g10"})
        g2 = GroupManifest("20", variables={"C": "g20"})
        target = target_device(repo(device, g2, g1), device)
        got = stack_variables(target, {"A": "stack", "S": "stack"}, "/state", "s")
        assert got == {
            "PWD": ".",
            "S": "stack",
            "A": "fleet",
            "B": "g10",
            "C": "g20",
            "D": "device",
            "FLEETGATE_DEVICE": "press-1",
            "FLEETGATE_ARCH": "",
            "FLEETGATE_LOCK_DIR": "/state/locks/press-1/s",
        }


class TestWindows:
    def test_device_windows_win_even_when_empty(self) -> None:
        """A device that declares windows (even none) ignores groups and fleet."""
        group = GroupManifest("g", update_windows=(NIGHT,))
        own = DeviceManifest("d", update_windows=(WEEKEND,))
        assert target_device(repo(own, group), own).update_windows == (WEEKEND,)
        anytime = DeviceManifest("d", update_windows=())
        assert target_device(repo(anytime, group), anytime).update_windows == ()

    def test_groups_union_then_fleet(self) -> None:
        """Without own windows a device gets its groups' union (once each), else the fleet's."""
        device = DeviceManifest("d")
        g1 = GroupManifest("1", update_windows=(NIGHT, WEEKEND))
        g2 = GroupManifest("2", update_windows=(NIGHT,))
        assert target_device(repo(device, g1, g2), device).update_windows == (NIGHT, WEEKEND)
        assert target_device(repo(device), device).update_windows == (FLEET_WINDOW,)
