"""The application lock gate: which stacks' updates wait, and until when (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.decide.gates import lock_gate

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class TestLockGate:
    """Locks defer a pending update up to maxDefer, measured from when first seen."""

    def test_a_new_lock_holds_its_stack_until_max_defer(self) -> None:
        """A lock seen for the first time holds the update for max_defer from now."""
        gate = lock_gate(frozenset({"app"}), {}, NOW, HOUR, update_pending=True)
        assert gate.held == {"app": NOW + HOUR}
        assert gate.first_seen == {"app": NOW}
        assert not gate.expired
        assert "app until" in gate.reason()

    def test_only_locked_stacks_are_held(self) -> None:
        """Stacks without a lock file are not held."""
        gate = lock_gate(frozenset({"app"}), {}, NOW, HOUR, update_pending=True)
        assert gate.held_stacks == frozenset({"app"})

    def test_the_clock_keeps_running_across_passes(self) -> None:
        """The deferral ends max_defer after the first sighting, not after the latest one."""
        first = NOW - timedelta(minutes=50)
        gate = lock_gate(frozenset({"app"}), {"app": first}, NOW, HOUR, update_pending=True)
        assert gate.held == {"app": first + HOUR}
        assert gate.first_seen == {"app": first}

    def test_max_defer_expiry_releases_the_update(self) -> None:
        """A lock held longer than max_defer no longer holds the update."""
        first = NOW - HOUR
        gate = lock_gate(frozenset({"app"}), {"app": first}, NOW, HOUR, update_pending=True)
        assert gate.held == {}
        assert gate.expired == frozenset({"app"})
        assert gate.reason() == ""

    def test_removing_the_lock_releases_and_resets_the_clock(self) -> None:
        """A removed lock holds nothing and forgets its first sighting."""
        gate = lock_gate(
            frozenset(), {"app": NOW - timedelta(minutes=5)}, NOW, HOUR, update_pending=True
        )
        assert gate.held == {}
        assert gate.first_seen == {}

    def test_a_lock_without_a_pending_update_does_not_count(self) -> None:
        """A lock held while nothing is pending starts no deferral clock."""
        gate = lock_gate(frozenset({"app"}), {}, NOW, HOUR, update_pending=False)
        assert gate.held == {}
        assert gate.first_seen == {}
        later = lock_gate(
            frozenset({"app"}), gate.first_seen, NOW + 2 * HOUR, HOUR, update_pending=True
        )
        assert later.held == {"app": NOW + 3 * HOUR}

    def test_several_stacks_each_have_their_own_clock(self) -> None:
        """Each stack's deferral is measured from its own first sighting."""
        seen = {"a": NOW - 2 * HOUR, "b": NOW - timedelta(minutes=10)}
        gate = lock_gate(frozenset({"a", "b", "c"}), seen, NOW, HOUR, update_pending=True)
        assert gate.held == {"b": seen["b"] + HOUR, "c": NOW + HOUR}
        assert gate.expired == frozenset({"a"})

    def test_now_must_be_aware(self) -> None:
        """A naive time is refused (time zones matter on devices)."""
        with pytest.raises(ValueError, match="aware"):
            lock_gate(frozenset(), {}, datetime(2026, 1, 1), HOUR, update_pending=True)

    def test_a_clock_from_the_future_restarts_now(self) -> None:
        """A first_seen later than now (damaged file, wrong clock) grants max_defer from now."""
        far = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
        gate = lock_gate(frozenset({"mqtt"}), {"mqtt": far}, NOW, 4 * HOUR, update_pending=True)
        assert gate.held == {"mqtt": NOW + 4 * HOUR}
        assert gate.first_seen == {"mqtt": NOW}
