"""The one pure decision per pass (decide.py): each gate, their combinations, ``now`` injected."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from fakes import desired, service, stack

from reconciler.decide.passplan import FailedWait, Gates, LockWait, WindowWait, decide
from reconciler.decide.rollout import fingerprint
from reconciler.model import DesiredState, UpdateWindow
from reconciler.record import DeviceRecord, RevisionMark

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday
SATURDAY = (UpdateWindow(("sat",), "01:00", "02:00", "UTC"),)
BERLIN = (UpdateWindow(("tue",), "22:00", "04:00", "Europe/Berlin"),)
UNTIL = datetime(2026, 3, 4, 16, 0, tzinfo=UTC)
OLD = desired(
    stack("app", service("app", "web", "img/app:1")),
    stack("mqtt", service("mqtt", "broker", "img/broker:1")),
    revision="a" * 40,
)
NEW = desired(
    stack("app", service("app", "web", "img/app:2")),
    stack("mqtt", service("mqtt", "broker", "img/broker:2")),
    revision="b" * 40,
)


def applied(state: DesiredState) -> DeviceRecord:
    mark = RevisionMark(state.revision or "", NOW)
    return DeviceRecord("dev1", last_applied=mark, last_good=mark, last_good_state=state)


def failed(record: DeviceRecord, state: DesiredState) -> DeviceRecord:
    return record.failed_with(state.revision or "", fingerprint(state), "app/web: unhealthy", NOW)


def images(state: DesiredState | None) -> list[str]:
    return [] if state is None else [s.image for s in state.services]


class TestKinds:
    """The pass is an update, a repair, a rollback or a hold."""

    def test_new_revision_is_an_update_toward_the_candidate(self) -> None:
        """With every gate open a new revision is an update with nothing waiting."""
        out = decide(applied(OLD), NEW, Gates(), NOW)
        assert (out.kind, out.target, out.waits, out.ahead) == ("update", NEW, (), None)
        assert out.target_revision == NEW.revision and not out.confirmed

    def test_applied_revision_is_a_confirmed_repair(self) -> None:
        """The applied and good revision again is drift repair, already confirmed healthy."""
        out = decide(applied(OLD), OLD, Gates(), NOW)
        assert (out.kind, out.target, out.confirmed) == ("repair", OLD, True)

    def test_failed_revision_returns_to_last_good(self) -> None:
        """A revision that failed before targets the stored last good state and says why."""
        record = failed(applied(OLD), NEW)
        out = decide(record, NEW, Gates(), NOW)
        assert (out.kind, out.target, out.target_revision) == ("rollback", OLD, OLD.revision)
        assert out.failure == FailedWait(NEW.revision or "", NEW.revision or "",
                                         "app/web: unhealthy", OLD.revision)  # fmt: skip
        assert out.describe() == (
            f"revision {NEW.revision} failed health before: app/web: unhealthy; "
            "push a fix or run with --retry",
        )

    def test_failed_first_install_holds_everything(self) -> None:
        """With no last good state to return to, a failed revision touches nothing."""
        out = decide(failed(DeviceRecord("dev1"), NEW), NEW, Gates(), NOW)
        assert (out.kind, out.target) == ("hold", None)

    def test_same_state_under_another_revision_counts_as_failed(self) -> None:
        """A new commit with the failed desired state names the revision that failed."""
        record = failed(applied(OLD), NEW)
        out = decide(record, replace(NEW, revision="c" * 40), Gates(), NOW)
        assert out.kind == "rollback"
        assert f"(same desired state as {NEW.revision})" in out.describe()[0]

    def test_retry_makes_a_failed_revision_an_update_again(self) -> None:
        """--retry ignores the failure record."""
        out = decide(failed(applied(OLD), NEW), NEW, Gates(retry=True), NOW)
        assert (out.kind, out.target, out.waits) == ("update", NEW, ())


class TestWindowGate:
    """Updates wait for windows; drift repair waits only when repair_drift is off."""

    def test_update_outside_window_waits_and_pulls_ahead(self) -> None:
        """Outside the windows an update waits with the next opening; its images are pulled."""
        out = decide(applied(OLD), replace(NEW, update_windows=SATURDAY), Gates(), NOW)
        assert out.kind == "update"
        assert out.window == WindowWait(datetime(2026, 3, 7, 1, 0, tzinfo=UTC), "UTC", False)
        assert images(out.ahead) == ["img/app:2", "img/broker:2"]
        assert out.describe() == (
            "outside the update windows (next opens 2026-03-07T01:00:00Z, Sat 01:00 UTC); "
            "run with --ignore-windows to update now",
        )

    def test_reason_names_the_local_opening_in_the_windows_zone(self) -> None:
        """The next opening is also said in the window's own time zone and weekday."""
        out = decide(applied(OLD), replace(NEW, update_windows=BERLIN), Gates(), NOW)
        assert out.window is not None
        assert out.window.opening() == "2026-03-10T21:00:00Z, Tue 22:00 Europe/Berlin"

    def test_ignore_windows_lets_the_update_go(self) -> None:
        """--ignore-windows removes the window wait and the pull-ahead."""
        state = replace(NEW, update_windows=SATURDAY)
        out = decide(applied(OLD), state, Gates(ignore_windows=True), NOW)
        assert (out.waits, out.ahead) == ((), None)

    def test_open_window_or_no_windows_hold_nothing(self) -> None:
        """Inside a window, or with no windows at all, nothing waits."""
        saturday = datetime(2026, 3, 7, 1, 30, tzinfo=UTC)
        state = replace(NEW, update_windows=SATURDAY)
        assert decide(applied(OLD), state, Gates(repair_drift=False), saturday).waits == ()
        assert decide(applied(OLD), NEW, Gates(repair_drift=False), NOW).waits == ()

    def test_drift_repair_waits_only_when_switched_off(self) -> None:
        """Repairing the applied revision goes ahead unless repair_drift is off."""
        state = replace(OLD, update_windows=SATURDAY)
        assert decide(applied(OLD), state, Gates(), NOW).waits == ()
        out = decide(applied(OLD), state, Gates(repair_drift=False), NOW)
        assert out.kind == "repair" and out.window is not None and out.window.drift
        assert "repairDrift is off" in out.describe()[0]

    def test_first_install_waits_for_its_window(self) -> None:
        """A device with nothing applied yet waits for its window too."""
        out = decide(DeviceRecord("dev1"), replace(NEW, update_windows=SATURDAY), Gates(), NOW)
        assert out.kind == "update" and out.window is not None

    def test_failed_revision_is_not_gated_by_windows(self) -> None:
        """Staying on last good is not an update: a closed window does not stop it."""
        record = failed(applied(OLD), NEW)
        out = decide(record, replace(NEW, update_windows=SATURDAY), Gates(), NOW)
        assert out.kind == "rollback" and out.window is None


class TestLockGate:
    """Locked stacks that the update changes keep their last good definition."""

    def test_locked_changed_stack_keeps_last_good(self) -> None:
        """The held stack stays as it was, the rest moves on, held images are pulled ahead."""
        out = decide(applied(OLD), NEW, Gates(held={"mqtt": UNTIL}), NOW)
        assert out.held_stacks == ("mqtt",)
        assert images(out.target) == ["img/app:2", "img/broker:1"]
        assert images(out.ahead) == ["img/broker:2"]
        assert out.lock == LockWait((("mqtt", UNTIL),))
        assert out.describe() == (
            "held by application lock: mqtt (updates.lock), until 2026-03-04T16:00:00Z "
            "or its removal",
        )

    def test_lock_on_an_unchanged_stack_holds_nothing(self) -> None:
        """A lock on a stack the update leaves alone does not hold the update."""
        same_mqtt = replace(NEW, stacks=(NEW.stacks[0], OLD.stacks[1]))
        out = decide(applied(OLD), same_mqtt, Gates(held={"mqtt": None}), NOW)
        assert (out.held_stacks, out.waits, out.target) == ((), (), same_mqtt)

    def test_lock_does_not_hold_drift_repair(self) -> None:
        """Repairing the applied revision is not an update: locks do not apply."""
        out = decide(applied(OLD), OLD, Gates(held={"mqtt": None, "app": None}), NOW)
        assert (out.kind, out.held_stacks, out.waits) == ("repair", (), ())

    def test_window_and_lock_together_report_both(self) -> None:
        """Closed window and held lock: both reasons, window first; everything pulled ahead."""
        state = replace(NEW, update_windows=SATURDAY)
        out = decide(applied(OLD), state, Gates(held={"mqtt": None}), NOW)
        assert [type(w) for w in out.waits] == [WindowWait, LockWait]
        assert images(out.ahead) == ["img/app:2", "img/broker:2"]
        assert images(out.target) == ["img/app:2", "img/broker:1"]

    def test_failed_revision_wins_over_locks(self) -> None:
        """A failed candidate is not updated at all, so no lock is reported."""
        record = failed(applied(OLD), NEW)
        out = decide(record, NEW, Gates(held={"mqtt": None}), NOW)
        assert out.kind == "rollback" and out.lock is None and out.held_stacks == ()


class TestJson:
    """The pass plan and its waits have stable JSON fields."""

    def test_to_json_fields(self) -> None:
        """Kind, revisions, held stacks and typed waits with RFC 3339 times."""
        state = replace(NEW, update_windows=SATURDAY)
        out = decide(applied(OLD), state, Gates(held={"mqtt": UNTIL}), NOW).to_json()
        assert out["kind"] == "update" and out["held_stacks"] == ["mqtt"]
        waits = out["waits"]
        assert isinstance(waits, list)
        assert waits[0]["kind"] == "window" and waits[0]["next_window"] == "2026-03-07T01:00:00Z"
        assert waits[1] == {
            "kind": "lock",
            "reason": "held by application lock: mqtt (updates.lock), until "
            "2026-03-04T16:00:00Z or its removal",
            "stacks": {"mqtt": "2026-03-04T16:00:00Z"},
        }
